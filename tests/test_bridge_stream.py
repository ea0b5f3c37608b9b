"""`GET /bridge/v1/stream` and the streaming client, against the real app on loopback.

The service runs under uvicorn in a thread (`create_app`, lifespan on: the invalidation
listener polls the generation every 50 ms here); states are written straight into the store
(`tests.harness.Store`), as a sync would. The client counts its HTTP requests through its
transport, so "no network per resolve" is checked, not assumed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from bot_bridge import AsyncBridgeClient, BridgeClient
from github_app.bridge.binding_store import delete_binding
from github_app.runtime import Runtime
from github_app.store import branches, previews
from github_app.store.models import BranchStatus
from github_app.web import create_app
from tests.fakegithub import serve_on_loopback
from tests.harness import TOKEN, Store, bridge_runtime, prompt_files, wait_for

GUILD, OTHER, UNBOUND_GUILD = "111", "222", "333"
CONTEXTS: list[dict[str, str]] = [
    {},
    {"category": "meeting"},
    {"category": "meeting", "type": "brief", "channel": "standup"},
    {"category": "discussion", "perspective": "developer"},
    {"category": "moderation", "messages": "left for the bot"},
    {"category": "Meeting", "type": "brief", "channel": "Stand-Up"},  # rendered as given
]


class Counting(httpx.HTTPTransport):
    """A real transport that counts the requests the client's HTTP path sends."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return super().handle_request(request)


@pytest.fixture
def runtime(sqlite_url: str) -> Runtime:
    return bridge_runtime(sqlite_url, GENERATION_POLL_INTERVAL="0.05", STREAM_HEARTBEAT="0.2")


@contextmanager
def service(runtime: Runtime) -> Iterator[str]:
    with serve_on_loopback(create_app(runtime, run_worker=False), lifespan="on") as url:
        yield url


@contextmanager
def opened_stream(url: str) -> Iterator[httpx.Response]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with (
        httpx.Client(base_url=url, timeout=10) as http,
        http.stream("GET", "/bridge/v1/stream", headers=headers) as response,
    ):
        yield response


def read_events(lines: Iterator[str], until: str = "sync") -> list[tuple[str, Any, str]]:
    """(event, data, id) up to and including the first `until` event (comments included)."""
    events: list[tuple[str, Any, str]] = []
    name, data, event_id = "message", "", ""
    for line in lines:
        if line.startswith(":"):
            events.append(("comment", line, ""))
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            data = line[6:]
        elif not line and data:
            events.append((name, json.loads(data), event_id))
            if name == until:
                return events
            name, data, event_id = "message", "", ""
    return events


def comparable(prompt: Any) -> dict[str, Any]:
    values = {field.name: getattr(prompt, field.name) for field in fields(prompt)}
    values.pop("resolved_at")
    values["parameters"] = dict(prompt.parameters)
    return values


# ---- the endpoint -------------------------------------------------------------------------------


def test_state_at_connect_sends_each_snapshot_once(runtime: Runtime) -> None:
    store = Store(runtime)
    sha = store.bound(GUILD)
    store.bind(OTHER)
    with service(runtime) as url, opened_stream(url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = read_events(response.iter_lines())
    names = [name for name, _, _ in events]
    assert names == ["hello", "snapshot", "guild", "guild", "sync"]
    snapshot = events[1][1]
    assert "prompts/meeting/brief.md" in snapshot["files"]
    states = {data["guild_id"]: data for name, data, _ in events if name == "guild"}
    assert set(states) == {GUILD, OTHER}
    for state in states.values():
        assert state["served"]["snapshot"] == snapshot["digest"]
        assert state["served"]["commit_sha"] == sha and state["activated_at"]
    assert events[-1][2] == str(events[0][1]["generation"])


def test_a_guild_list_gets_unbound_guilds_too_and_bad_ids_are_refused(runtime: Runtime) -> None:
    Store(runtime).bound(GUILD)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with service(runtime) as url, httpx.Client(base_url=url, timeout=10) as http:
        with http.stream(
            "GET", "/bridge/v1/stream", params={"guilds": UNBOUND_GUILD}, headers=headers
        ) as response:
            lines = response.iter_lines()
            events = read_events(lines)
        bad = http.get("/bridge/v1/stream", params={"guilds": "1,x"}, headers=headers)
        anonymous = http.get("/bridge/v1/stream")
        wrong_method = http.post("/bridge/v1/stream", headers=headers)
    assert [name for name, _, _ in events] == ["hello", "guild", "sync"]
    assert events[1][1]["guild_id"] == UNBOUND_GUILD
    assert events[1][1]["served"]["bound"] is False
    assert bad.status_code == 400 and bad.json()["error"] == "bad_request"
    assert "'x'" in bad.json()["message"]
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"


def test_changes_arrive_and_a_resume_sends_only_what_the_client_lacks(runtime: Runtime) -> None:
    store = Store(runtime)
    store.bound(GUILD)
    store.repository("octo-org/other", 2)
    store.commit(2, prompt_files("other"))
    store.bind(OTHER, "octo-org/other", 2)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with service(runtime) as url, httpx.Client(base_url=url, timeout=10) as http:
        with http.stream("GET", "/bridge/v1/stream", headers=headers) as response:
            lines = response.iter_lines()
            first = read_events(lines)
            store.commit(1, prompt_files("v2"))
            changed = read_events(lines)
        last_id = changed[-1][2]
        store.commit(1, prompt_files("v3"))
        time.sleep(0.3)  # the service learns of it while the client is away
        with http.stream(
            "GET", "/bridge/v1/stream", headers={**headers, "Last-Event-ID": last_id}
        ) as response:
            lines = response.iter_lines()
            resumed = read_events(lines)
    assert sum(name == "snapshot" for name, _, _ in first) == 2
    changed = [event for event in changed if event[0] != "comment"]
    assert [name for name, _, _ in changed] == ["snapshot", "guild", "sync"]
    assert "v2" in changed[0][1]["files"]["prompts/meeting/brief.md"]
    assert changed[1][1]["guild_id"] == GUILD
    assert resumed[0][0] == "hello" and resumed[0][1]["resumed"] is True
    # Only GUILD changed: its new snapshot comes, OTHER's (held) does not.
    assert [name for name, _, _ in resumed] == ["hello", "snapshot", "guild", "sync"]
    assert "v3" in resumed[1][1]["files"]["prompts/meeting/brief.md"]
    assert int(resumed[-1][2]) > int(last_id)


def test_heartbeats_keep_an_idle_stream_talking(runtime: Runtime) -> None:
    with service(runtime) as url, opened_stream(url) as response:
        lines = response.iter_lines()
        read_events(lines)
        assert next(lines) == ": heartbeat"  # STREAM_HEARTBEAT is 0.2 s here


# ---- the streaming client -----------------------------------------------------------------------


def test_the_streaming_client_answers_like_the_service_without_asking_it(
    runtime: Runtime,
) -> None:
    store = Store(runtime)
    store.bound(GUILD)
    store.branch_status(
        1, BranchStatus.ERROR, "syncing failed: GitHub unreachable"
    )  # stale but serving
    store.bind(OTHER)
    counting = Counting()
    with service(runtime) as url:
        with BridgeClient(url, TOKEN) as plain:
            expected = {
                (guild, json.dumps(context)): plain.resolve_prompt(guild, context)
                for guild in (GUILD, OTHER, UNBOUND_GUILD)
                for context in CONTEXTS
            }
        with BridgeClient(url, TOKEN, stream=True, transport=counting) as client:
            assert client.wait_for_stream(10)
            for _ in range(3):
                for (guild, context), answer in expected.items():
                    local = client.resolve_prompt(guild, json.loads(context))
                    assert comparable(local) == comparable(answer), (guild, context)
    assert expected[(GUILD, "{}")].is_stale and expected[(GUILD, "{}")].source == "custom"
    assert counting.paths == []  # not one HTTP request: everything came from the stream


def test_a_push_reaches_the_streaming_client(runtime: Runtime) -> None:
    store = Store(runtime)
    store.bound(GUILD)
    counting = Counting()
    with (
        service(runtime) as url,
        BridgeClient(url, TOKEN, stream=True, transport=counting) as client,
    ):
        assert client.wait_for_stream(10)
        assert client.resolve_prompt(GUILD, category="meeting").content.startswith("v1")
        sha = store.commit(1, prompt_files("v2"))
        answer = wait_for(
            lambda: (a := client.resolve_prompt(GUILD, category="meeting")).commit_sha == sha and a,
            what="the new commit over the stream",
        )
        assert answer.content.startswith("v2")
        store.db(delete_binding, GUILD, "42", None)
        unbound = wait_for(
            lambda: (
                (a := client.resolve_prompt(GUILD, category="meeting")).source == "default" and a
            ),
            what="the removed binding over the stream",
        )
        assert unbound.repository is None
    assert counting.paths == []


def test_stream_down_falls_back_to_http_then_to_the_streamed_state(
    runtime: Runtime, tmp_path: Path
) -> None:
    store = Store(runtime)
    store.bound(GUILD, "live")
    saved = tmp_path / "bridge-cache.json"
    with service(runtime) as url:
        with BridgeClient(url, TOKEN, stream=True, cache_path=saved) as client:
            assert client.wait_for_stream(10)
            good = client.resolve_prompt(GUILD, category="meeting")
        # Warm restart while the service is up: HTTP answers until the stream is live.
        counting = Counting()
        with BridgeClient(url, TOKEN, stream=True, cache_path=saved, transport=counting) as client:
            client.resolve_prompt(GUILD, category="meeting")
            assert client.wait_for_stream(10)
            assert comparable(client.resolve_prompt(GUILD, category="meeting")) == comparable(good)
    # The service is gone: the restarted bot answers from the streamed state it saved.
    with BridgeClient(url, TOKEN, stream=True, cache_path=saved, timeout=0.5) as client:
        down = client.resolve_prompt(GUILD, category="meeting")
    assert down.content == good.content and down.is_stale
    assert down.commit_sha == good.commit_sha
    assert down.status_message and "last streamed state" in down.status_message


@pytest.mark.anyio
async def test_the_async_client_streams_too(runtime: Runtime) -> None:
    Store(runtime).bound(GUILD)
    with service(runtime) as url:
        async with AsyncBridgeClient(url, TOKEN, stream=True) as client:
            assert await anyio.to_thread.run_sync(client.wait_for_stream, 10)
            answer = await client.resolve_prompt(GUILD, category="meeting")
            stats = client.stream_stats()
    assert answer.content.startswith("v1") and answer.source == "custom"
    assert stats["live"] is True and stats["guilds"] == 1 and stats["snapshots"] == 1


# ---- freshness ----------------------------------------------------------------------------------


def test_get_config_says_how_fresh_the_served_commit_is(runtime: Runtime) -> None:
    sha = Store(runtime).bound(GUILD)
    with service(runtime) as url, BridgeClient(url, TOKEN) as client:
        config = client.get_config(GUILD)
    assert config is not None and config.freshness is not None
    assert config.freshness.startswith(f"commit {sha[:7]} live since ")
    assert config.freshness.endswith(" s after the push")
    fresh = config.raw["freshness"]
    assert fresh["after_push_seconds"] >= 0 and fresh["live_since"].endswith("+00:00")


def test_a_channel_previewing_a_pull_request_streams_too(runtime: Runtime) -> None:
    store = Store(runtime)
    store.bound(GUILD, "main")
    head = store.commit(1, prompt_files("proposal"), branch="feature")

    def preview(session: Any) -> None:
        previews.record_pull_request(session, 1, 7, head, open_=True)
        previews.set_preview(session, GUILD, "555", 1, 7, actor="42")
        branches.bump_generation(session)

    store.db(preview)
    counting = Counting()
    trying = {"category": "meeting", "type": "brief", "channel_id": "555"}
    elsewhere = {**trying, "channel_id": "556"}
    with service(runtime) as url:
        with BridgeClient(url, TOKEN) as plain:
            expected = [plain.resolve_prompt(GUILD, query) for query in (trying, elsewhere)]
        with BridgeClient(url, TOKEN, stream=True, transport=counting) as client:
            assert client.wait_for_stream(10)
            local = [client.resolve_prompt(GUILD, query) for query in (trying, elsewhere)]
    assert expected[0].commit_sha == head and expected[0].content.startswith("proposal")
    assert expected[1].content.startswith("main")
    assert [comparable(a) for a in local] == [comparable(a) for a in expected]
    assert counting.paths == []
