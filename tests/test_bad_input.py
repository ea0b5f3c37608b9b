"""Bad input is a 4xx with a message, never a 500 with a traceback: deep JSON to the bridge, a
repository URL with a bad port, a signed webhook whose ids are beyond 64 bits."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from github_app.bridge.repository_url import RepositoryNameError, parse_repository
from github_app.intake import WEBHOOK_PATH
from github_app.runtime import Runtime
from github_app.store import deliveries
from tests.fakegithub import sign
from tests.harness import GITHUB_URL, Harness, bearer, harness, running_bridge

pytestmark = pytest.mark.anyio

DEEP = b"[" * 20_000 + b"]" * 20_000


@pytest.fixture
async def http(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with running_bridge(runtime) as (client, _cache):
        client.headers.update(bearer())
        yield client


@pytest.mark.parametrize(
    ("method", "suffix"), [("PUT", "config"), ("POST", "test"), ("POST", "refresh")]
)
@pytest.mark.parametrize("body", [DEEP, b'{"repository": ' + DEEP + b"}"], ids=["array", "member"])
async def test_json_nested_deeper_than_python_parses_is_400(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, method: str, suffix: str, body: bytes
) -> None:
    with caplog.at_level(logging.DEBUG):
        response = await http.request(
            method,
            f"/bridge/v1/guilds/111/{suffix}",
            content=body,
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 400, response.text
    assert response.json() == {"message": "the body is not valid JSON", "error": "bad_request"}
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text


def test_a_repository_url_with_a_bad_port_is_refused_with_the_reason() -> None:
    with pytest.raises(RepositoryNameError) as refused:
        parse_repository("https://github.test:abc/a/b", GITHUB_URL)
    assert str(refused.value) == (
        "github.test:abc has an invalid port: give owner/name or the repository's https URL as "
        "GitHub shows it"
    )


@pytest.mark.parametrize("port", ["abc", "99999", "-1"])
async def test_put_with_a_bad_port_is_400(http: httpx.AsyncClient, port: str) -> None:
    response = await http.put(
        "/bridge/v1/guilds/111/config",
        json={"repository": f"https://github.test:{port}/a/b", "actor": "42"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["message"] == (
        f"github.test:{port} has an invalid port: give owner/name or the repository's https URL "
        "as GitHub shows it"
    )


@pytest.fixture
async def world(sqlite_url: str) -> AsyncIterator[Harness]:
    async with harness(sqlite_url) as world:
        yield world


@pytest.mark.parametrize(
    ("payload", "field", "value"),
    [
        ({"installation": {"id": 2**64}}, "installation.id", 2**64),
        ({"repository": {"id": 2**63, "full_name": "o/r"}}, "repository.id", 2**63),
        ({"repository": {"id": -5, "full_name": "o/r"}}, "repository.id", -5),
    ],
)
async def test_a_signed_webhook_with_an_id_beyond_64_bits_is_400(
    world: Harness, payload: dict, field: str, value: int
) -> None:
    body = json.dumps({"zen": "hi", **payload}).encode()
    response = await world.client.post(
        WEBHOOK_PATH,
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "ping",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(body, world.fake.webhook_secret),
        },
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == (
        f"payload `{field}` {value} is not a GitHub id (a positive 64-bit integer)"
    )
    assert world.db(deliveries.queue_stats).pending == 0
