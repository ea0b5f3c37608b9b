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
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from github_app.bridge.tokens import with_bridge_tokens
from github_app.logs import REDACTED, configure_logging, redact
from github_app.secrets import load_vault
from github_app.settings import Settings
from tests.fakegithub import FakeGitHub
from tests.harness import TOKEN as BRIDGE_TOKEN
from tests.harness import bearer, make_runtime, make_settings, served, setup_form, wait_for

INSTALLED_REPO = "octo-org/private-prompts"
PAT_REPO = "someone/own-prompts"
PATH_FILE = """version: v2
routes:
  global_default: prompts/default.md
allowed_guilds: ["111"]
"""


class Captured(io.StringIO):
    """The service handler's output, and `raw`: each line (level, logger, message) before
    redaction touched it."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[str] = []


class _Raw(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(f"{record.levelname} {record.name}: {record.getMessage()}")


@pytest.fixture
def captured(request: pytest.FixtureRequest) -> Iterator[Captured]:
    """Everything logged at debug level through the service's own handler, in one format."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    stream = Captured()
    root.handlers.insert(0, _Raw(stream.raw))  # runs before the redacting handler's filter
    configure_logging(request.param, "debug", stream=stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


def create_app_through_setup(client: httpx.Client, fake: FakeGitHub) -> str:
    form = setup_form(client)
    state = parse_qs(urlsplit(form.action).query)["state"][0]
    code = fake.add_manifest_code(form.manifest)
    assert client.get("/setup/callback", params={"code": code, "state": "wrong"}).status_code == 400
    done = client.get("/setup/callback", params={"code": code, "state": state})
    assert done.status_code == 200, done.text
    return code


def prompt_content(client: httpx.Client, guild: str) -> str:
    answer = client.get(
        f"/bridge/v1/guilds/{guild}/prompt", params={"category": "meeting"}, headers=bearer()
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body["content"] if body["source"] == "custom" else ""


@pytest.mark.parametrize("captured", ["text", "json"], indirect=True)
def test_a_full_flow_logs_no_secret(captured: Captured, sqlite_url: str, tmp_path: Path) -> None:
    # A first run generates the encryption key and the bridge token, and says where.
    first_run = Settings.from_env(
        {
            "DATABASE_URL": sqlite_url,
            "ENCRYPTION_KEY_FILE": str(tmp_path / "key"),
            "BRIDGE_TOKEN_FILE": str(tmp_path / "bridge-token"),
        },
        env_file=None,
    )
    load_vault(first_run)
    generated = [with_bridge_tokens(first_run).bridge_tokens[0], (tmp_path / "key").read_text()]
    fake = FakeGitHub()
    settings = make_settings(sqlite_url)
    with served(make_runtime(settings, fake), run_worker=False) as client:
        code = create_app_through_setup(client, fake)

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
        wait_for(
            lambda: client.get("/readyz").json()["checks"]["app"]["status"] == "valid",
            what="the App check",
        )

    log = captured.getvalue()
    # The capture saw the flow (so an empty log cannot pass): setup, webhooks, syncs.
    assert "GitHub App" in log and hook.guid in log
    assert log.count("\n") > 50
    minted = [secret for secret in fake.issued_secrets() if secret.startswith("ghs_")]
    assert minted, "no installation token was minted"
    secrets = [*fake.issued_secrets(), BRIDGE_TOKEN, *settings.encryption_keys, pat, *generated]
    for secret in secrets:
        for piece in {secret.strip(), *(line.strip() for line in secret.splitlines())}:
            if len(piece) >= 8 and not piece.startswith("-----"):
                assert piece not in log, f"a secret ({piece[:4]}...) reached the log"
    # Redaction masks secrets and nothing else: a masked logger name or ordinary word would
    # garble the lines people read. Each line as logged, with the flow's secrets replaced by
    # hand, must come out of the redaction unchanged.
    known = sorted({*secrets, code}, key=len, reverse=True)
    assert len(captured.raw) > 50
    for message in captured.raw:
        for secret in known:
            message = message.replace(secret, REDACTED)
        assert redact(message) == message, f"masked where no secret was: {message[:300]}"
