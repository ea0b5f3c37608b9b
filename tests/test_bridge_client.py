"""The bot's bridge client: answers from the service, from last good, or from built-in defaults.

A small fake of the documented bridge API (httpx.MockTransport) drives the happy paths and the
failure switches; a closed port and a loopback socket that never answers show real timeouts.
"""

from __future__ import annotations

import hashlib
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot_bridge import AsyncBridgeClient, BridgeClient, BridgeError
from promptrepo import builtin_default

TOKEN = "bridge-token-s3cr3t"
GUILD = "111"
SHA = "0123456789abcdef0123456789abcdef01234567"
BASE = "http://bridge.test"


class FakeBridge:
    """The bridge's JSON shapes (issue 5, section 2), plus switches to make it fail."""

    def __init__(self) -> None:
        self.version = 1
        self.failure: str | None = None  # None | "refuse" | "timeout" | "503" | "garbage"
        self.requests: list[httpx.Request] = []
        self.admin: dict[tuple[str, str], tuple[int, Any]] = {}

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.failure == "refuse":
            raise httpx.ConnectError("connection refused", request=request)
        if self.failure == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if self.failure == "503":
            return httpx.Response(503, json={"message": "database unavailable"})
        if self.failure == "garbage":
            return httpx.Response(200, text="<html>proxy error</html>")
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"message": "missing or invalid bearer token"})
        parts = request.url.path.split("/")  # ['', 'bridge', 'v1', 'guilds', id, rest...]
        if parts[5] == "prompt":
            return self.prompt(parts[4], request)
        status, body = self.admin.get((request.method, parts[5]), (404, {"message": "no route"}))
        return httpx.Response(status, json=body)

    def prompt(self, guild: str, request: httpx.Request) -> httpx.Response:
        query = dict(request.url.params)
        body = {
            "content": f"v{self.version} prompt for {guild}: {json.dumps(query, sort_keys=True)}",
            "source": "custom",
            "file_path": "prompts/meeting.md",
            "tried_paths": ["prompts/meeting/brief.md", "prompts/meeting.md"],
            "route": "by_category",
            "repository": "octo-org/prompts",
            "branch": "main",
            "commit_sha": SHA,
            "schema_version": "v2",
            "parameters": {"max_tokens": 800},
            "github_file_url": f"https://github.com/octo-org/prompts/blob/{SHA}/prompts/meeting.md",
            "is_stale": False,
            "status_message": "serving 0123456",
        }
        etag = '"' + hashlib.sha256(json.dumps(body).encode()).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            return httpx.Response(304, headers={"ETag": etag})
        return httpx.Response(200, json=body, headers={"ETag": etag})

    def prompt_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/prompt")]


@pytest.fixture
def bridge() -> FakeBridge:
    return FakeBridge()


def make_client(bridge: FakeBridge, **options: Any) -> BridgeClient:
    return BridgeClient(BASE, TOKEN, transport=httpx.MockTransport(bridge.handler), **options)


# --- answers from the service -------------------------------------------------------------------


def test_resolve_returns_every_field_of_the_answer(bridge: FakeBridge) -> None:
    with make_client(bridge) as client:
        prompt = client.resolve_prompt(
            GUILD, {"category": "Meeting", "summary_type": "brief"}, perspective="neutral"
        )
    assert prompt.content.startswith("v1 prompt for 111")
    assert (prompt.source, prompt.version, prompt.commit_sha) == ("custom", "v2", SHA)
    assert prompt.file_path == "prompts/meeting.md"
    assert prompt.tried_paths == ("prompts/meeting/brief.md", "prompts/meeting.md")
    assert prompt.repo_url == "https://github.com/octo-org/prompts"
    assert prompt.github_file_url is not None and SHA in prompt.github_file_url
    assert dict(prompt.parameters) == {"max_tokens": 800}
    assert (prompt.route, prompt.branch, prompt.repository) == (
        "by_category",
        "main",
        "octo-org/prompts",
    )
    assert prompt.is_stale is False
    assert abs(time.time() - prompt.resolved_at.timestamp()) < 60
    request = bridge.requests[0]
    assert request.url.path == f"/bridge/v1/guilds/{GUILD}/prompt"
    # Aliases under their canonical name, values as given: the service normalises them for
    # routing and renders them as given, as a streaming client does locally.
    assert dict(request.url.params) == {
        "category": "Meeting",
        "type": "brief",
        "perspective": "neutral",
    }
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_discord_locales_go_to_the_service_as_one_locale(bridge: FakeBridge) -> None:
    class Locale:  # what discord.Locale does: prints as its tag
        def __str__(self) -> str:
            return "pt-BR"

    with make_client(bridge) as client:
        client.resolve_prompt(GUILD, {"category": "meeting"}, locale=Locale(), guild_locale="fr")
        client.resolve_prompt(GUILD, category="meeting", locale=None, guild_locale="pt_BR")
        client.resolve_prompt(GUILD, category="meeting", guild_locale=None)
    sent = [dict(request.url.params) for request in bridge.requests]
    assert sent == [  # in its usual casing: the service routes it lower-case, renders it so
        {"category": "meeting", "locale": "pt-BR"},
        {"category": "meeting", "locale": "pt-BR"},
        {"category": "meeting"},
    ]


def test_parameters_cannot_be_changed_through_an_answer(bridge: FakeBridge) -> None:
    with make_client(bridge) as client:
        prompt = client.resolve_prompt(GUILD, {"category": "meeting"})
        with pytest.raises(TypeError):
            prompt.parameters["max_tokens"] = 1  # type: ignore[index]


def test_revalidation_with_if_none_match_and_304(bridge: FakeBridge) -> None:
    with make_client(bridge) as client:
        first = client.resolve_prompt(GUILD, category="meeting")
        second = client.resolve_prompt(GUILD, category="meeting")
        assert second.content == first.content and not second.is_stale
        assert second.resolved_at >= first.resolved_at
        assert "If-None-Match" not in bridge.requests[0].headers
        assert bridge.requests[1].headers["If-None-Match"].startswith('"')
        bridge.version = 2  # a push switched what the bridge serves
        third = client.resolve_prompt(GUILD, category="meeting")
    assert third.content.startswith("v2 prompt")


def test_a_guild_in_the_context_is_the_urls_guild(bridge: FakeBridge) -> None:
    with make_client(bridge) as client:
        client.resolve_prompt(GUILD, {"guild_id": "222", "category": "meeting"})
        client.resolve_prompt(GUILD, category="meeting")
    assert "guild" not in bridge.requests[0].url.params
    assert "If-None-Match" in bridge.requests[1].headers  # one cache entry for both


def test_base_url_may_include_the_api_prefix(bridge: FakeBridge) -> None:
    transport = httpx.MockTransport(bridge.handler)
    with BridgeClient(BASE + "/bridge/v1/", TOKEN, transport=transport) as client:
        assert client.resolve_prompt(GUILD).source == "custom"
    assert bridge.requests[0].url.path == f"/bridge/v1/guilds/{GUILD}/prompt"


# --- never raising: last good, then defaults ----------------------------------------------------


@pytest.mark.parametrize("failure", ["refuse", "timeout", "503"])
def test_service_failures_answer_last_good_or_defaults(bridge: FakeBridge, failure: str) -> None:
    with make_client(bridge) as client:
        good = client.resolve_prompt(GUILD, category="meeting")
        bridge.failure = failure
        stale = client.resolve_prompt(GUILD, category="meeting")
        unknown = client.resolve_prompt(GUILD, category="moderation")
    assert stale.is_stale and stale.content == good.content and stale.commit_sha == SHA
    assert stale.resolved_at == good.resolved_at  # its age stays visible
    assert stale.status_message and "last good" in stale.status_message
    assert unknown.source == "fallback" and not unknown.is_stale
    assert unknown.content.startswith(builtin_default({"category": "moderation"}).content[:40])
    assert "{messages}" in unknown.content  # bot-supplied placeholders stay for the bot


def test_the_fallback_renders_routing_variables(bridge: FakeBridge) -> None:
    bridge.failure = "refuse"
    with make_client(bridge) as client:
        prompt = client.resolve_prompt(GUILD, category="meeting", channel="standup")
    template = builtin_default({"category": "meeting"}).content
    assert prompt.content.startswith(template.split("{", 1)[0])
    assert prompt.commit_sha is None and prompt.repo_url is None


def test_breaker_stops_calling_a_failing_service_and_answers_in_under_a_millisecond(
    bridge: FakeBridge,
) -> None:
    with make_client(bridge) as client:
        client.resolve_prompt(GUILD, category="meeting")
        bridge.failure = "timeout"
        client.resolve_prompt(GUILD, category="meeting")
        sent = len(bridge.requests)
        durations = []
        for _ in range(200):
            started = time.perf_counter()
            answer = client.resolve_prompt(GUILD, category="meeting")
            durations.append(time.perf_counter() - started)
            assert answer.is_stale
    assert len(bridge.requests) == sent  # nobody waited on the service again
    assert statistics.median(durations) < 0.001


class Clock:
    """A monotonic clock the test moves by hand: the breaker's pauses without real sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_probes_after_a_cool_down_that_doubles(bridge: FakeBridge) -> None:
    clock = Clock()
    with make_client(bridge, cooldown=0.1, max_cooldown=1.0, clock=clock) as client:
        bridge.failure = "503"
        client.resolve_prompt(GUILD)  # failure 1: 0.1 s pause
        clock.now += 0.09
        client.resolve_prompt(GUILD)
        assert len(bridge.requests) == 1  # cooling down
        clock.now += 0.02
        client.resolve_prompt(GUILD)  # the probe, failure 2: 0.2 s pause
        assert len(bridge.requests) == 2
        clock.now += 0.13
        client.resolve_prompt(GUILD)
        assert len(bridge.requests) == 2  # still cooling down
        clock.now += 0.08
        bridge.failure = None
        recovered = client.resolve_prompt(GUILD)
        assert recovered.source == "custom" and len(bridge.requests) == 3
        client.resolve_prompt(GUILD)
        assert len(bridge.requests) == 4  # closed again: every call asks the service


def test_the_pause_stops_doubling_at_its_ceiling(bridge: FakeBridge) -> None:
    clock = Clock()
    with make_client(bridge, cooldown=1.0, max_cooldown=4.0, clock=clock) as client:
        bridge.failure = "503"
        for pause in (1.0, 2.0, 4.0, 4.0, 4.0):
            client.resolve_prompt(GUILD)  # a probe that fails: the next pause
            sent = len(bridge.requests)
            clock.now += pause - 0.01
            client.resolve_prompt(GUILD)
            assert len(bridge.requests) == sent, pause
            clock.now += 0.01
    assert len(bridge.requests) == 5


@pytest.mark.anyio
async def test_a_burst_of_concurrent_failures_counts_as_one() -> None:
    sent: list[httpx.Request] = []
    clock = Clock()

    async def slow_failure(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        await anyio.sleep(0)  # let the other requests start before this one fails
        raise httpx.ReadTimeout("timed out", request=request)

    transport = httpx.MockTransport(slow_failure)
    async with AsyncBridgeClient(
        BASE, TOKEN, transport=transport, cooldown=0.1, clock=clock
    ) as client:
        async with anyio.create_task_group() as group:
            for category in ("meeting", "discussion", "moderation", "support", "general"):
                group.start_soon(client.resolve_prompt, GUILD, {"category": category})
        assert len(sent) == 5
        clock.now += 0.15  # one failure: the first 0.1 s pause, not 0.1 * 2**4
        await client.resolve_prompt(GUILD)
    assert len(sent) == 6


def test_refusals_by_the_service_fall_back_without_opening_the_breaker(bridge: FakeBridge) -> None:
    with BridgeClient(BASE, "wrong", transport=httpx.MockTransport(bridge.handler)) as client:
        first = client.resolve_prompt(GUILD, category="meeting")
        client.resolve_prompt(GUILD, category="meeting")
    assert first.source == "fallback"
    assert first.status_message and "401" in first.status_message
    assert "wrong" not in first.status_message
    assert len(bridge.requests) == 2


def test_an_answer_that_is_not_a_prompt_falls_back(bridge: FakeBridge) -> None:
    bridge.failure = "garbage"
    with make_client(bridge) as client:
        assert client.resolve_prompt(GUILD).source == "fallback"


def test_unusable_requests_answer_defaults_without_a_request(bridge: FakeBridge) -> None:
    with make_client(bridge) as client:
        bad_guild = client.resolve_prompt("../../admin", category="meeting")
        bad_key = client.resolve_prompt(GUILD, {"bad key!": "x"})
        bad_value = client.resolve_prompt(GUILD, {"category": object()})
    for answer in (bad_guild, bad_key, bad_value):
        assert answer.source == "fallback"
        assert answer.status_message and "invalid request" in answer.status_message
    assert bridge.requests == []


def test_memory_is_bounded(bridge: FakeBridge) -> None:
    with make_client(bridge, max_entries=2) as client:
        for category in ("meeting", "discussion", "moderation"):
            client.resolve_prompt(GUILD, category=category)
        bridge.failure = "refuse"
        assert client.resolve_prompt(GUILD, category="moderation").is_stale
        assert client.resolve_prompt(GUILD, category="meeting").source == "fallback"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    status=st.sampled_from([200, 204, 301, 304, 400, 401, 403, 404, 429, 500, 502, 503]),
    body=st.one_of(
        st.none(),
        st.text(max_size=30),
        st.dictionaries(
            st.sampled_from(["content", "source", "tried_paths", "parameters", "is_stale"]),
            st.one_of(st.none(), st.integers(), st.text(max_size=10), st.lists(st.integers())),
        ),
    ),
    context=st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=8), st.integers())),
)
def test_resolve_never_raises_whatever_the_service_answers(
    status: int, body: Any, context: dict[str, Any]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status)
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers={"ETag": body[:5]})
        return httpx.Response(status, json=body)

    with BridgeClient(BASE, TOKEN, transport=httpx.MockTransport(handler)) as client:
        answer = client.resolve_prompt(GUILD, context)
        again = client.resolve_prompt(GUILD, context)
    assert isinstance(answer.content, str) and isinstance(again.content, str)
    if answer.source == "fallback":
        assert answer.status_message  # every fallback says why


# --- real sockets: a closed port and a server that never answers --------------------------------


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """Accepts connections (the kernel's backlog) and never answers a byte."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_closed_port_answers_defaults_at_once(closed_port_url: str) -> None:
    with BridgeClient(closed_port_url, TOKEN, timeout=2.0) as client:
        started = time.perf_counter()
        answer = client.resolve_prompt(GUILD, category="meeting")
        elapsed = time.perf_counter() - started
    assert answer.source == "fallback"
    assert elapsed < 1.0


def test_hanging_service_costs_one_timeout_then_answers_from_memory(
    bridge: FakeBridge, hanging_url: str, tmp_path: Path
) -> None:
    cache = tmp_path / "prompts.json"
    transport = httpx.MockTransport(bridge.handler)
    with BridgeClient(hanging_url, TOKEN, transport=transport, cache_path=cache) as warm:
        good = warm.resolve_prompt(GUILD, category="meeting")
    # The bot restarts while the service hangs: it starts warm from the file.
    with BridgeClient(hanging_url, TOKEN, timeout=0.3, cache_path=cache) as client:
        started = time.perf_counter()
        first = client.resolve_prompt(GUILD, category="meeting")
        first_elapsed = time.perf_counter() - started
        started = time.perf_counter()
        later = [client.resolve_prompt(GUILD, category="meeting") for _ in range(100)]
        later_elapsed = (time.perf_counter() - started) / 100
    assert 0.25 < first_elapsed < 1.5
    assert first.is_stale and first.content == good.content
    assert all(answer.is_stale for answer in later)
    assert later_elapsed < 0.001


@pytest.mark.anyio
async def test_async_client_with_a_hanging_service(hanging_url: str) -> None:
    async with AsyncBridgeClient(hanging_url, TOKEN, timeout=0.3) as client:
        started = time.perf_counter()
        answer = await client.resolve_prompt(GUILD, category="discussion")
        assert 0.25 < time.perf_counter() - started < 1.5
        started = time.perf_counter()
        again = await client.resolve_prompt(GUILD, category="discussion")
        assert time.perf_counter() - started < 0.01
    assert answer.source == again.source == "fallback"
    assert answer.status_message and "timeout" in answer.status_message


# --- persistence --------------------------------------------------------------------------------


def cache_records(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cache file's header and its records (last write of each key wins)."""
    lines = path.read_text().splitlines()
    records: dict[str, Any] = {}
    for line in lines[1:]:
        item = json.loads(line)
        if item["v"] is None:
            records.pop(item["k"], None)
        else:
            records[item["k"]] = item["v"]
    return json.loads(lines[0]), records


def test_answers_persist_to_a_journal_keyed_by_the_service(
    bridge: FakeBridge, tmp_path: Path
) -> None:
    cache = tmp_path / "state" / "prompts.json"
    with make_client(bridge, cache_path=cache) as client:
        client.resolve_prompt(GUILD, category="meeting")
        client.resolve_prompt(GUILD, category="meeting")  # 304: nothing new to write
        client.resolve_prompt("222", category="discussion")
    header, records = cache_records(cache)
    assert header == {"format": "guildprompts-bridge-cache/2", "base_url": BASE}
    assert set(records) == {
        f"p:{GUILD} category=meeting&guild={GUILD}",
        "p:222 category=discussion&guild=222",
    }
    assert sorted(p.name for p in cache.parent.iterdir()) == ["prompts.json"]  # no temp files
    assert TOKEN not in cache.read_text()
    assert cache.stat().st_mode & 0o777 == 0o600


def test_writes_are_batched_off_the_callers_thread(bridge: FakeBridge, tmp_path: Path) -> None:
    cache = tmp_path / "prompts.json"
    with make_client(bridge, cache_path=cache) as client:
        for channel in range(300):
            client.resolve_prompt(GUILD, category="meeting", channel=f"c{channel}")
        file = client._core.file
        assert file is not None and file.flush()
        batches = file.writes
    _, records = cache_records(cache)
    assert len(records) == 300
    assert batches < 30  # a burst is written in a few appends, not one rewrite per answer


def test_a_file_written_for_another_service_is_not_served(
    bridge: FakeBridge, tmp_path: Path
) -> None:
    cache = tmp_path / "prompts.json"
    with make_client(bridge, cache_path=cache) as client:
        client.resolve_prompt(GUILD, category="meeting")
    bridge.failure = "refuse"
    other = "http://preview.test"
    with BridgeClient(
        other, TOKEN, transport=httpx.MockTransport(bridge.handler), cache_path=cache
    ) as client:
        answer = client.resolve_prompt(GUILD, category="meeting")
    assert answer.source == "fallback" and not answer.is_stale
    assert cache_records(cache)[0]["base_url"] == BASE  # left alone: nothing to write yet


def test_an_empty_token_is_refused_and_none_sends_no_header(bridge: FakeBridge) -> None:
    with pytest.raises(ValueError, match="bridge token is empty"):
        BridgeClient(BASE, "")
    with pytest.raises(ValueError, match="bridge token is empty"):
        AsyncBridgeClient(BASE, "  ")
    with BridgeClient(BASE, None, transport=httpx.MockTransport(bridge.handler)) as client:
        client.resolve_prompt(GUILD)
    assert "Authorization" not in bridge.requests[-1].headers


def test_a_misconfigured_client_warns_once(
    bridge: FakeBridge, caplog: pytest.LogCaptureFixture
) -> None:
    with BridgeClient(BASE, "wrong", transport=httpx.MockTransport(bridge.handler)) as client:
        answers = [client.resolve_prompt(GUILD, category="meeting") for _ in range(5)]
    assert {answer.source for answer in answers} == {"fallback"}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "check its base_url (http://bridge.test) and token" in warnings[0]


def test_a_restarted_client_revalidates_what_it_loaded(bridge: FakeBridge, tmp_path: Path) -> None:
    cache = tmp_path / "prompts.json"
    with make_client(bridge, cache_path=cache) as client:
        client.resolve_prompt(GUILD, category="meeting")
    with make_client(bridge, cache_path=cache) as restarted:
        answer = restarted.resolve_prompt(GUILD, category="meeting")
    assert "If-None-Match" in bridge.requests[-1].headers
    assert answer.source == "custom" and not answer.is_stale


@pytest.mark.parametrize("content", ["{not json", '{"format": "other"}', '{"format": "x"', "[]"])
def test_an_unreadable_cache_file_means_a_cold_start(
    bridge: FakeBridge, tmp_path: Path, content: str
) -> None:
    cache = tmp_path / "prompts.json"
    cache.write_text(content)
    bridge.failure = "refuse"
    with make_client(bridge, cache_path=cache) as client:
        assert client.resolve_prompt(GUILD, category="meeting").source == "fallback"


def test_an_unwritable_cache_path_never_breaks_resolving(
    bridge: FakeBridge, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with make_client(bridge, cache_path=blocker / "prompts.json") as client:
        assert client.resolve_prompt(GUILD, category="meeting").source == "custom"


# --- admin calls: typed results, or BridgeError with the server's message -----------------------

CONFIG = {
    "guild_id": GUILD,
    "repository": "octo-org/prompts",
    "branch": None,
    "enabled": True,
    "state": "active",
    "last_sync_outcome": "rejected",
    "status_message": "serving 0123456, 89abcde rejected",
    "active_sha": SHA,
    "latest_sha": "89abcdef" * 5,
    "last_sync_at": "2024-05-01T10:00:00+00:00",
    "errors": [
        {
            "path": "PATH",
            "line": 3,
            "column": 5,
            "severity": "error",
            "code": "path-syntax",
            "message": "bad indentation",
            "hint": "indent with spaces",
        },
    ],
    "set_by": "999",
    "set_at": "2024-05-01T09:00:00+00:00",
}


def test_get_config_parses_the_binding_and_its_errors(bridge: FakeBridge) -> None:
    bridge.admin[("GET", "config")] = (200, CONFIG)
    with make_client(bridge) as client:
        config = client.get_config(GUILD)
    assert config is not None
    assert (config.repository, config.branch, config.active_sha) == ("octo-org/prompts", None, SHA)
    assert (config.state, config.last_sync_outcome) == ("active", "rejected")
    (error,) = config.errors
    assert (error.path, error.line, error.code, error.hint) == (
        "PATH",
        3,
        "path-syntax",
        "indent with spaces",
    )
    assert config.set_by == "999" and not config.in_progress


def test_get_config_of_an_unbound_guild_is_none(bridge: FakeBridge) -> None:
    with make_client(bridge) as client:
        assert client.get_config(GUILD) is None  # 404
        bridge.admin[("GET", "config")] = (200, {"repository": None})
        assert client.get_config(GUILD) is None


def test_set_config_sends_the_documented_body(bridge: FakeBridge) -> None:
    bridge.admin[("PUT", "config")] = (202, {**CONFIG, "last_sync_outcome": "pending"})
    with make_client(bridge) as client:
        config = client.set_config(
            GUILD, "https://github.com/octo-org/prompts.git", "main", actor="999"
        )
    assert config.in_progress
    sent = bridge.requests[-1]
    assert (sent.method, sent.url.path) == ("PUT", f"/bridge/v1/guilds/{GUILD}/config")
    assert json.loads(sent.content) == {
        "repository": "https://github.com/octo-org/prompts.git",
        "branch": "main",
        "token": None,
        "actor": "999",
    }


def test_set_config_refusals_carry_status_message_and_install_url(bridge: FakeBridge) -> None:
    install = "https://github.com/apps/guildprompts/installations/new"
    with make_client(bridge) as client:
        bridge.admin[("PUT", "config")] = (
            409,
            {"message": "App not installed", "install_url": install},
        )
        with pytest.raises(BridgeError) as conflict:
            client.set_config(GUILD, "octo-org/prompts", token="ghp_personal", actor="999")
        bridge.admin[("PUT", "config")] = (403, {"message": 'add "111" to allowed_guilds'})
        with pytest.raises(BridgeError) as forbidden:
            client.set_config(GUILD, "octo-org/private", actor="999")
    assert (conflict.value.status_code, conflict.value.install_url) == (409, install)
    assert "ghp_personal" not in str(conflict.value)
    assert forbidden.value.status_code == 403 and "allowed_guilds" in forbidden.value.message


def test_admin_calls_raise_when_the_service_is_unreachable(bridge: FakeBridge) -> None:
    bridge.failure = "refuse"
    with make_client(bridge) as client:
        with pytest.raises(BridgeError) as caught:
            client.get_config(GUILD)
        bridge.failure = "timeout"
        with pytest.raises(BridgeError, match="did not answer"):
            client.refresh(GUILD, actor="999")
    assert caught.value.unreachable and caught.value.status_code is None
    assert TOKEN not in caught.value.message


def test_remove_refresh_test_and_events(bridge: FakeBridge) -> None:
    bridge.admin[("DELETE", "config")] = (200, {"removed": True})
    bridge.admin[("POST", "refresh")] = (200, {**CONFIG, "last_sync_outcome": "ok", "errors": []})
    bridge.admin[("POST", "test")] = (
        200,
        {
            "file_path": "prompts/meeting.md",
            "tried_paths": ["a.md", "prompts/meeting.md"],
            "route": "by_category",
            "source": "custom",
            "commit_sha": SHA,
            "preview": "Summarise {messages}",
            "diagnostics": [],
        },
    )
    bridge.admin[("GET", "events")] = (
        200,
        {
            "events": [
                {
                    "at": "2024-05-01T09:00:00+00:00",
                    "actor": "999",
                    "action": "set",
                    "before": None,
                    "after": {"repository": "octo-org/prompts"},
                }
            ]
        },
    )
    with make_client(bridge) as client:
        assert client.remove_config(GUILD, actor="999") is True
        assert json.loads(bridge.requests[-1].content) == {"actor": "999"}
        assert client.refresh(GUILD, actor="999").last_sync_outcome == "ok"
        preview = client.test(GUILD, {"category": "meeting", "type": None})
        assert json.loads(bridge.requests[-1].content) == {"category": "meeting"}
        (event,) = client.events(GUILD)
        del bridge.admin[("DELETE", "config")]
        assert client.remove_config(GUILD, actor="999") is False  # 404: nothing bound
    assert (preview.file_path, preview.preview) == ("prompts/meeting.md", "Summarise {messages}")
    assert preview.tried_paths == ("a.md", "prompts/meeting.md")
    assert (event.actor, event.action, event.after) == (
        "999",
        "set",
        {"repository": "octo-org/prompts"},
    )


def test_admin_calls_refuse_an_unusable_guild_id(bridge: FakeBridge) -> None:
    with make_client(bridge) as client, pytest.raises(ValueError, match="invalid guild id"):
        client.get_config("1/../2")


def test_the_token_never_shows_in_repr(bridge: FakeBridge) -> None:
    with make_client(bridge) as client:
        assert TOKEN not in repr(client)


# --- the async client shares the core -----------------------------------------------------------


@pytest.mark.anyio
async def test_async_client_has_the_same_behaviour(bridge: FakeBridge) -> None:
    bridge.admin[("GET", "config")] = (200, CONFIG)
    transport = httpx.MockTransport(bridge.handler)
    async with AsyncBridgeClient(BASE, TOKEN, transport=transport) as client:
        good = await client.resolve_prompt(GUILD, category="meeting")
        again = await client.resolve_prompt(GUILD, category="meeting")
        assert again.content == good.content
        assert "If-None-Match" in bridge.requests[-1].headers
        config = await client.get_config(GUILD)
        assert config is not None and config.active_sha == SHA
        bridge.failure = "503"
        stale = await client.resolve_prompt(GUILD, category="meeting")
        fallback = await client.resolve_prompt(GUILD, category="discussion")
        with pytest.raises(BridgeError) as caught:
            await client.get_config(GUILD)
    assert stale.is_stale and stale.content == good.content
    assert fallback.source == "fallback"
    assert caught.value.status_code == 503 and caught.value.message == "database unavailable"


def test_the_client_needs_none_of_the_servers_dependencies() -> None:
    code = (
        "import sys, bot_bridge, bot_bridge.commands\n"
        "heavy = ('sqlalchemy', 'starlette', 'uvicorn', 'github_app', 'discord', 'psycopg')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith(heavy)}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.anyio
async def test_the_async_client_never_writes_its_file_on_the_event_loop(
    bridge: FakeBridge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import threading

    writers: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        writers.append(threading.current_thread().name)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    cache = tmp_path / "prompts.json"
    transport = httpx.MockTransport(bridge.handler)
    async with AsyncBridgeClient(BASE, TOKEN, transport=transport, cache_path=cache) as client:
        for channel in range(20):
            await client.resolve_prompt(GUILD, category="meeting", channel=f"c{channel}")
        loop_thread = threading.current_thread().name
    assert writers and loop_thread not in writers
    assert set(writers) == {"guildprompts-cache-file"}
    assert len(cache_records(cache)[1]) == 20


def test_the_journal_is_rewritten_when_mostly_superseded(
    bridge: FakeBridge, tmp_path: Path
) -> None:
    cache = tmp_path / "prompts.json"
    with make_client(bridge, cache_path=cache, max_entries=10) as client:
        file = client._core.file
        assert file is not None
        for channel in range(400):  # 390 evictions: the journal would hold 800 lines
            client.resolve_prompt(GUILD, category="meeting", channel=f"c{channel}")
            if channel % 50 == 0:
                file.flush()
    lines = cache.read_text().splitlines()
    _, records = cache_records(cache)
    assert len(records) == 10
    assert len(lines) - 1 <= 2 * 10 + 256 + 50  # compacted, not 800 lines
    with make_client(bridge, cache_path=cache) as restarted:
        bridge.failure = "refuse"
        answer = restarted.resolve_prompt(GUILD, category="meeting", channel="c399")
    assert answer.is_stale and answer.source == "custom"
