"""Intake: verified, stored before acknowledged, once per GUID, never GitHub, nothing unverified
kept or logged."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from github_app import metrics
from github_app.intake import WEBHOOK_PATH
from github_app.store import deliveries
from github_app.store.db import Database
from github_app.webhooks import MAX_PAYLOAD_BYTES
from tests.fakegithub import FakeGitHub, sign
from tests.harness import WEBHOOK_FIXTURES as FIXTURES
from tests.harness import Harness, harness, intake_app, runtime_for

pytestmark = pytest.mark.anyio

EXAMPLES = sorted(FIXTURES.glob("*/*.json"))
MARKER = "unverified-marker-7c1e"


@pytest.fixture
async def world(sqlite_url: str) -> AsyncIterator[Harness]:
    async with harness(sqlite_url) as world:
        world.fake.requests.clear()
        yield world


def _headers(body: bytes, secret: str, event: str = "push", guid: str | None = None) -> dict:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": guid or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret),
    }


def _stored(world: Harness) -> int:
    return world.db(deliveries.queue_stats).pending


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_real_examples_are_stored_then_acknowledged(world: Harness, example: Path) -> None:
    event = example.parent.name
    body = example.read_bytes()
    guid = str(uuid.uuid4())
    response = await world.client.post(
        WEBHOOK_PATH, content=body, headers=_headers(body, world.fake.webhook_secret, event, guid)
    )
    assert (response.status_code, response.json()) == (202, {"delivery_id": guid})
    row = world.delivery(guid)
    payload = json.loads(body)
    assert (row.event, row.action, row.state) == (event, payload.get("action"), "pending")
    assert row.payload == body, "the exact bytes received are kept"
    assert row.ref == (payload["ref"] if event == "push" else None)
    assert row.installation_id == (payload.get("installation") or {}).get("id")
    assert world.runtime.work_available.is_set(), "the worker was woken"
    assert world.fake.requests == [], "intake never calls GitHub"


async def test_duplicate_guid_is_acknowledged_and_processed_once(world: Harness) -> None:
    hook = world.fake.webhook("ping", world.fake.ping_payload())
    first = await world.post(hook)
    assert first.status_code == 202
    assert await world.drain() == 1
    again = await world.post(hook)
    assert again.status_code == 200 and again.json() == {
        "delivery_id": hook.guid,
        "duplicate": True,
    }
    assert await world.drain() == 0
    assert world.delivery(hook.guid).state == "done"


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"X-GitHub-Event": None}, 400, "missing X-GitHub-Event"),
        ({"X-GitHub-Delivery": None}, 400, "missing X-GitHub-Delivery"),
        ({"X-Hub-Signature-256": None}, 401, "missing X-Hub-Signature-256"),
        ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, 401, "signature does not match"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json"),
        ({"X-GitHub-Event": "guildprompts.sync"}, 400, "not a GitHub event"),
    ],
)
async def test_refused_requests_are_neither_stored_nor_logged(
    world: Harness, caplog: pytest.LogCaptureFixture, change: dict, status: int, message: str
) -> None:
    body = json.dumps({"zen": MARKER, "repository": {"full_name": MARKER}}).encode()
    headers = _headers(body, world.fake.webhook_secret, event="ping")
    for name, value in change.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    with caplog.at_level(logging.DEBUG):
        response = await world.client.post(WEBHOOK_PATH, content=body, headers=headers)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert _stored(world) == 0
    assert MARKER not in caplog.text


async def test_a_body_that_is_not_json_is_415(world: Harness) -> None:
    body = b"payload=%7B%7D"
    headers = _headers(body, world.fake.webhook_secret)
    headers["Content-Type"] = "application/json"
    response = await world.client.post(WEBHOOK_PATH, content=body, headers=headers)
    assert response.status_code == 415 and _stored(world) == 0


async def test_an_old_secret_still_verifies_during_rotation(sqlite_url: str) -> None:
    fake = FakeGitHub()
    runtime = runtime_for(
        sqlite_url, fake, GITHUB_WEBHOOK_SECRET=f"new-secret-0123456789,{fake.webhook_secret}"
    )
    try:
        async with _client(runtime) as client:
            body = json.dumps(fake.ping_payload()).encode()
            response = await client.post(
                WEBHOOK_PATH, content=body, headers=_headers(body, fake.webhook_secret, "ping")
            )
            assert response.status_code == 202
    finally:
        await runtime.aclose()


async def test_oversized_payloads_are_413_before_being_read(world: Harness) -> None:
    declared = {"Content-Length": str(MAX_PAYLOAD_BYTES + 1)}
    headers = {**_headers(b"{}", world.fake.webhook_secret), **declared}
    response = await world.client.post(WEBHOOK_PATH, content=b"{}", headers=headers)
    assert response.status_code == 413
    big = b'{"pad": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}'

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the stream is counted
        for start in range(0, len(big), 1 << 20):
            yield big[start : start + (1 << 20)]

    response = await world.client.post(
        WEBHOOK_PATH, content=chunks(), headers=_headers(big, world.fake.webhook_secret)
    )
    assert response.status_code == 413 and _stored(world) == 0


async def test_not_configured_answers_503_with_the_way_out(sqlite_url: str) -> None:
    runtime = runtime_for(sqlite_url, None)
    try:
        async with _client(runtime) as client:
            body = b"{}"
            response = await client.post(
                WEBHOOK_PATH, content=body, headers=_headers(body, "whatever-secret")
            )
        assert response.status_code == 503
        assert response.json() == {"error": "App not configured: open /setup"}
    finally:
        await runtime.aclose()


async def test_a_database_that_refuses_writes_gets_503_and_nothing_is_processed(
    world: Harness, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    writable = world.runtime.database
    world.runtime.database = Database(f"sqlite:///file:{path}?mode=ro&uri=true")
    rejected = metrics.DELIVERIES.labels("ping", "rejected")._value.get()
    try:
        hook = world.fake.webhook("ping", {**world.fake.ping_payload(), "zen": MARKER})
        with caplog.at_level(logging.INFO):
            response = await world.post(hook)
        assert response.status_code == 503
        assert "could not be stored" in response.json()["error"]
        assert MARKER not in caplog.text, "the payload is not quoted in the error log"
        assert metrics.DELIVERIES.labels("ping", "rejected")._value.get() == rejected + 1
    finally:
        world.runtime.database.dispose()
        world.runtime.database = writable
    assert await world.drain() == 0
    assert world.db(deliveries.get_delivery, hook.guid) is None
    # GitHub's redelivery (same GUID) is stored once the database is back.
    assert (await world.post(hook)).status_code == 202


def _client(runtime: object) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=intake_app(runtime))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://guildprompts.test")
