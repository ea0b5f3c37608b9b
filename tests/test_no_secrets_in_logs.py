"""No secret reaches a log line: a realistic flow at debug level, its whole output searched.

The flow: the App created through /setup (the fake GitHub issues a new key, webhook secret and
client secret), a restart, installation tokens minted for a private repository's sync, a
guild bound with a personal access token, bridge calls with the bot's token (and a wrong one),
signed and forged webhooks, a push served end to end. Every secret used anywhere in it must be
absent from every captured line, in both log formats.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from github_app.logs import configure_logging
from tests.fakegithub import FakeGitHub
from tests.harness import TOKEN as BRIDGE_TOKEN
from tests.harness import ManifestForm, bearer, make_runtime, make_settings, served, wait_for

INSTALLED_REPO = "octo-org/private-prompts"
PAT_REPO = "someone/own-prompts"
PATH_FILE = """version: v2
routes:
  global_default: prompts/default.md
allowed_guilds: ["111"]
"""


@pytest.fixture
def captured(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """Everything logged at debug level through the service's own handler, in one format."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    stream = io.StringIO()
    configure_logging(request.param, "debug", stream=stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


def create_app_through_setup(client: httpx.Client, fake: FakeGitHub) -> None:
    form = ManifestForm()
    form.feed(client.get("/setup").text)
    state = parse_qs(urlsplit(form.action).query)["state"][0]
    code = fake.add_manifest_code(form.manifest)
    assert client.get("/setup/callback", params={"code": code, "state": "wrong"}).status_code == 400
    done = client.get("/setup/callback", params={"code": code, "state": state})
    assert done.status_code == 200, done.text


def prompt_content(client: httpx.Client, guild: str) -> str:
    answer = client.get(
        f"/bridge/v1/guilds/{guild}/prompt", params={"category": "meeting"}, headers=bearer()
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body["content"] if body["source"] == "custom" else ""


@pytest.mark.parametrize("captured", ["text", "json"], indirect=True)
def test_a_full_flow_logs_no_secret(captured: io.StringIO, sqlite_url: str) -> None:
    fake = FakeGitHub()
    settings = make_settings(sqlite_url)
    with served(make_runtime(settings, fake), run_worker=False) as client:
        create_app_through_setup(client, fake)

    installation = fake.add_installation("octo-org")
    fake.add_repo(INSTALLED_REPO, private=True, installation=installation)
    fake.push(INSTALLED_REPO, "main", {"PATH": PATH_FILE, "prompts/default.md": "One {messages}"})
    fake.add_repo(PAT_REPO, private=True)
    fake.push(PAT_REPO, "main", {"PATH": PATH_FILE, "prompts/default.md": "Mine {messages}"})
    pat = fake.add_pat(repos=[PAT_REPO])

    with served(make_runtime(settings, fake)) as client:
        for guild, repository, token in (("111", INSTALLED_REPO, None), ("222", PAT_REPO, pat)):
            bound = client.put(
                f"/bridge/v1/guilds/{guild}/config",
                headers=bearer(),
                json={
                    "repository": repository,
                    "branch": None,
                    "token": token,
                    "actor": "42",
                },
            )
            assert bound.status_code in (200, 202), bound.text
        wait_for(lambda: prompt_content(client, "111").startswith("One"), what="guild 111")
        wait_for(lambda: prompt_content(client, "222").startswith("Mine"), what="guild 222")
        wrong = client.get(
            "/bridge/v1/guilds/111/prompt", headers={"Authorization": "Bearer not-the-bridge-token"}
        )
        assert wrong.status_code == 401

        fake.push(INSTALLED_REPO, "main", {"prompts/default.md": "Two {messages}"})
        hook = fake.webhook("push", fake.push_payload(INSTALLED_REPO, "main"))
        forged = fake.webhook("push", hook.payload, secret="forged-secret-value")
        assert (
            client.post(
                "/api/github/webhooks", content=forged.body, headers=forged.headers
            ).status_code
            == 401
        )
        assert (
            client.post("/api/github/webhooks", content=hook.body, headers=hook.headers).status_code
            == 202
        )
        wait_for(lambda: prompt_content(client, "111").startswith("Two"), what="the push")
        assert client.get("/readyz").json()["checks"]["app"]["status"] == "valid"

    log = captured.getvalue()
    # The capture saw the flow (so an empty log cannot pass): setup, webhooks, syncs.
    assert "GitHub App" in log and hook.guid in log
    assert log.count("\n") > 50
    minted = [secret for secret in fake.issued_secrets() if secret.startswith("ghs_")]
    assert minted, "no installation token was minted"
    secrets = [*fake.issued_secrets(), BRIDGE_TOKEN, *settings.encryption_keys, pat]
    for secret in secrets:
        for piece in {secret.strip(), *(line.strip() for line in secret.splitlines())}:
            if len(piece) >= 8 and not piece.startswith("-----"):
                assert piece not in log, f"a secret ({piece[:4]}...) reached the log"
