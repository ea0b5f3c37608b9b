"""The bot's client and `/prompt-config` commands against the real app served on loopback.

`github_app.web.create_app` runs under uvicorn in a thread (its lifespan starts the cache's
listener and the worker), the fake GitHub answers the worker in-process, and the client talks
HTTP to it, so every JSON shape is the one the server really sends.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from bot_bridge import commands
from bot_bridge.client import AsyncBridgeClient, BridgeClient
from bot_bridge.results import BridgeError
from github_app.runtime import Runtime
from github_app.web import create_app
from tests.fakegithub import FakeGitHub, serve_on_loopback
from tests.harness import (
    FULL_NAME,
    GITHUB_URL,
    PATH_FILE,
    TOKEN,
    Store,
    bridge_runtime,
    make_runtime,
    make_settings,
    prompt_files,
)

GUILD, OTHER = "111", "222"


class Recording(httpx.HTTPTransport):
    """A real transport that remembers the status of every answer."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.statuses.append(response.status_code)
        return response


@contextmanager
def service(runtime: Runtime) -> Iterator[str]:
    """The whole app (bridge, intake, worker) on a loopback port; its base URL."""
    with serve_on_loopback(create_app(runtime, run_worker=True), lifespan="on") as url:
        yield url


def announce(runtime: Runtime) -> None:
    """What a worker does after committing: tell the serving process at once."""
    asyncio.run(runtime.announce_activation(Store(runtime).generation()))


def test_the_client_gets_the_pinned_answer_and_revalidates(sqlite_url: str) -> None:
    runtime = bridge_runtime(sqlite_url)
    store = Store(runtime)
    store.repository()
    sha = store.commit(1, prompt_files("live"))
    store.bind(GUILD)
    recording = Recording()
    with service(runtime) as url, BridgeClient(url, TOKEN, transport=recording) as client:
        first = client.resolve_prompt(
            GUILD, {"category": "Meeting", "summary_type": "brief"}, channel="ops"
        )
        second = client.resolve_prompt(  # the same values, given the other way
            GUILD, {"category": "Meeting", "type": "brief", "channel": "ops"}
        )
        store.commit(1, prompt_files("pushed"))
        announce(runtime)
        third = client.resolve_prompt(GUILD, category="meeting", type="brief", channel="ops")

    assert first.content == "live brief meeting in #ops: {messages} {unknown_thing}\n"
    assert (first.source, first.version, first.commit_sha) == ("custom", "v2", sha)
    assert first.file_path == "prompts/meeting/brief.md" and first.route == "by_type"
    assert first.repo_url == f"{GITHUB_URL}/{FULL_NAME}"
    assert first.github_file_url == f"{GITHUB_URL}/{FULL_NAME}/blob/{sha}/prompts/meeting/brief.md"
    assert dict(first.parameters) == {"max_tokens": 300} and first.is_stale is False
    assert (first.repository, first.branch) == (FULL_NAME, "main")
    assert second.content == first.content and second.resolved_at >= first.resolved_at
    assert third.content.startswith("pushed")
    assert recording.statuses == [200, 304, 200]


def test_a_wrong_token_gets_the_defaults_and_admin_calls_say_why(sqlite_url: str) -> None:
    runtime = bridge_runtime(sqlite_url)
    with service(runtime) as url, BridgeClient(url, "not-the-token") as client:
        prompt = client.resolve_prompt(GUILD, category="meeting")
        with pytest.raises(BridgeError) as refused:
            client.get_config(GUILD)
    assert prompt.source == "fallback" and "401" in (prompt.status_message or "")
    assert refused.value.status_code == 401 and "invalid bearer token" in refused.value.message


def test_the_client_answers_from_memory_while_the_service_is_down(sqlite_url: str) -> None:
    runtime = bridge_runtime(sqlite_url)
    store = Store(runtime)
    store.repository()
    store.commit(1, prompt_files("live"))
    store.bind(GUILD)
    timeout = 0.5
    with service(runtime) as url:
        client = BridgeClient(url, TOKEN, timeout=timeout, cooldown=30)
        good = client.resolve_prompt(GUILD, category="meeting")
    # The service is stopped: the first call learns it, the next ones do not wait at all.
    with client:
        started = time.perf_counter()
        stale = client.resolve_prompt(GUILD, category="meeting")
        first_call = time.perf_counter() - started
        unknown = client.resolve_prompt(GUILD, category="moderation")
        durations = []
        for _ in range(200):
            started = time.perf_counter()
            client.resolve_prompt(GUILD, category="meeting")
            durations.append(time.perf_counter() - started)

    assert stale.content == good.content and stale.is_stale is True
    assert unknown.source == "fallback" and unknown.content
    assert first_call < timeout
    assert statistics.median(durations) < 0.001
    assert max(durations) < timeout  # never the full timeout again while it stays down


def test_a_hung_service_costs_one_timeout(sqlite_url: str, tmp_path: Path) -> None:
    """A service that accepts connections and never answers: the first call waits its timeout,
    no more. The bot restarts in between, warm from the answers it saved to a file."""
    runtime = bridge_runtime(sqlite_url)
    store = Store(runtime)
    store.repository()
    store.commit(1, prompt_files("live"))
    store.bind(GUILD)
    saved = tmp_path / "bridge-cache.json"
    timeout = 0.3
    with _silent_listener() as hung_url:
        # The cache file is keyed by the service's address: the bot knows it as `hung_url`.
        forward = Forward()
        with (
            service(runtime) as url,
            BridgeClient(hung_url, TOKEN, cache_path=saved, transport=forward) as client,
        ):
            forward.target = httpx.URL(url)
            good = client.resolve_prompt(GUILD, category="meeting")
        with BridgeClient(
            hung_url, TOKEN, timeout=timeout, cooldown=30, cache_path=saved
        ) as client:
            started = time.perf_counter()
            stale = client.resolve_prompt(GUILD, category="meeting")
            first_call = time.perf_counter() - started
            later = []
            for _ in range(50):
                started = time.perf_counter()
                again = client.resolve_prompt(GUILD, category="meeting")
                later.append(time.perf_counter() - started)
    assert stale.content == again.content == good.content and again.is_stale
    assert timeout <= first_call < timeout + 0.5
    assert statistics.median(later) < 0.001 and max(later) < timeout


class Forward(httpx.HTTPTransport):
    """Sends every request to `target` instead of the address the client was given."""

    target = httpx.URL("http://127.0.0.1:9")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host=self.target.host, port=self.target.port)
        return super().handle_request(request)


@contextmanager
def _silent_listener() -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)  # connections complete in the backlog; nothing ever reads them
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


# ---- admin calls and commands through the real service, with the worker --------------------


def fake_world(
    sqlite_url: str, *, private: bool = False, installed: bool = True
) -> tuple[FakeGitHub, Runtime]:
    fake = FakeGitHub()
    installation = fake.add_installation("octo-org") if installed else None
    fake.add_repo(FULL_NAME, private=private, installation=installation)
    settings = make_settings(sqlite_url, fake, GITHUB_URL=GITHUB_URL, RECONCILE_INTERVAL="3600")
    return fake, make_runtime(settings, fake)


def test_binding_status_preview_events_and_removal_through_the_client(sqlite_url: str) -> None:
    fake, runtime = fake_world(sqlite_url)
    sha = fake.push(FULL_NAME, "main", prompt_files("bound"))
    with service(runtime) as url, BridgeClient(url, TOKEN) as client:
        assert client.get_config(GUILD) is None
        config = client.set_config(GUILD, f"{GITHUB_URL}/{FULL_NAME}.git", actor="42")
        status = client.get_config(GUILD)
        prompt = client.resolve_prompt(GUILD, category="meeting")
        preview = client.test(GUILD, {"category": "meeting", "type": "brief"})
        events = client.events(GUILD)
        assert client.remove_config(GUILD, actor="43") is True
        after = client.resolve_prompt(GUILD, category="meeting")
        assert client.remove_config(GUILD, actor="43") is False
        assert client.get_config(GUILD) is None

    assert not config.in_progress and config.active_sha == sha and config.state == "active"
    assert status is not None and status.repository == FULL_NAME and status.set_by
    assert status.last_sync_outcome == "ok" and status.repo_url == f"{GITHUB_URL}/{FULL_NAME}"
    assert [d.code for d in status.errors] == ["placeholder-unknown"]
    assert prompt.content.startswith("bound") and prompt.commit_sha == sha
    assert preview.file_path == "prompts/meeting/brief.md" and preview.commit_sha == sha
    assert preview.preview.startswith("bound brief meeting")
    assert [d.code for d in preview.diagnostics] == ["placeholder-unknown"]
    assert {event.action for event in events} >= {"binding.request", "binding.promote"}
    assert after.source == "default"


@pytest.mark.anyio
async def test_command_replies_for_each_refusal(sqlite_url: str) -> None:
    fake, runtime = fake_world(sqlite_url, private=True)
    allowed = PATH_FILE + f'allowed_guilds: ["{GUILD}"]\n'.encode()
    fake.push(FULL_NAME, "main", prompt_files("private", allowed))
    fake.add_repo("octo-org/elsewhere", private=False)
    admin = {"administrator": True, "user_id": "42"}
    with service(runtime) as url:
        async with AsyncBridgeClient(url, TOKEN) as client:
            bound = await commands.set_binding(
                client, commands.Caller(guild_id=GUILD, **admin), FULL_NAME
            )
            refused = await commands.set_binding(
                client, commands.Caller(guild_id=OTHER, **admin), FULL_NAME
            )
            uninstalled = await commands.set_binding(
                client, commands.Caller(guild_id=OTHER, **admin), "octo-org/elsewhere"
            )
            foreign = await commands.set_binding(
                client, commands.Caller(guild_id=OTHER, **admin), "https://gitlab.com/a/b"
            )
            status = await commands.show_status(
                client, commands.Caller(guild_id=OTHER, user_id="7")
            )

    assert bound.text.startswith("Prompt repository set.") and "Serving commit" in bound.text
    assert f'- "{OTHER}"' in refused.text and "allowed_guilds" in refused.text
    assert f"{GITHUB_URL}/apps/{fake.app_slug}/installations/new" in uninstalled.text
    assert "only repositories on github.test" in foreign.text
    assert "Pending" in status.text and "octo-org/elsewhere" in status.text


def test_description_and_metadata_reach_the_bot(sqlite_url: str) -> None:
    runtime = bridge_runtime(sqlite_url)
    store = Store(runtime)
    store.repository()
    files = {
        **prompt_files("live"),
        "prompts/meeting/brief.md": b"---\ndescription: Short meeting notes.\n"
        b"metadata: {owner: community-team, reviewed: 2024-05-01}\n---\nNotes: {messages}\n",
    }
    store.commit(1, files)
    store.bind(GUILD)
    with service(runtime) as url, BridgeClient(url, TOKEN) as client:
        custom = client.resolve_prompt(GUILD, category="meeting", type="brief")
        builtin = client.resolve_prompt("999", category="meeting")
    assert custom.description == "Short meeting notes."
    assert dict(custom.metadata) == {"owner": "community-team", "reviewed": "2024-05-01"}
    assert builtin.description == "Built-in meeting prompt"
    assert dict(builtin.metadata) == {"builtin": "meeting"}
