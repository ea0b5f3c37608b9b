"""Problem alerts: the watcher against a MockTransport-backed client, the store, the command."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot_bridge import AsyncBridgeClient
from bot_bridge.alerts import (
    Alert,
    AlertStore,
    AlertWatcher,
    alert_text,
    is_problem,
    problem_key,
    set_alert_channel,
)
from bot_bridge.commands import GUILD_ONLY, PERMISSION_DENIED, Caller
from bot_bridge.results import events_from_body

pytestmark = pytest.mark.anyio

GUILD = "111"
CHANNEL = "555"
BAD, GOOD = "abc1234" + "0" * 33, "9f8e7d6" + "1" * 33
CHANGE = {
    "at": "2024-05-01T10:00:00+00:00",
    "actor": "999",
    "action": "binding.set",
    "before": None,
    "after": {"repository": "octo-org/prompts"},
    "kind": "change",
}


def rejected(last_at: str = "2024-05-02T10:00:00+00:00", sha: str = BAD, count: int = 1) -> dict:
    return {
        "at": "2024-05-02T09:00:00+00:00",
        "actor": "guildprompts",
        "action": "sync.rejected",
        "before": None,
        "kind": "problem",
        "count": count,
        "last_at": last_at,
        "after": {
            "repository": "octo-org/prompts",
            "branch": "main",
            "commit_sha": sha,
            "trigger": "push",
            "message": f"serving 9f8e7d6, {sha[:7]} rejected: 3 errors",
        },
    }


ACCESS_LOST = {
    "at": None,
    "actor": "guildprompts",
    "action": "access.lost",
    "before": None,
    "kind": "problem",
    "count": 1,
    "last_at": None,
    "after": {"repository": "octo-org/prompts", "message": "the App was uninstalled"},
}


def config(outcome: str = "rejected", state: str = "active") -> dict:
    return {
        "guild_id": GUILD,
        "repository": "octo-org/prompts",
        "branch": "main",
        "enabled": True,
        "state": state,
        "last_sync_outcome": outcome,
        "active_sha": GOOD,
        "latest_sha": BAD,
        "errors": [
            {"path": "PATH", "line": 3, "severity": "error", "code": "E1", "message": "bad route"}
        ]
        * 3,
    }


class Bridge:
    """The events and config endpoints of one guild; `fail` makes every answer a 503."""

    def __init__(self) -> None:
        self.events: list[dict] = [CHANGE]
        self.config: dict | None = config()
        self.fail = False
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.fail:
            return httpx.Response(503, json={"message": "database down"})
        if request.url.path.endswith("/events"):
            return httpx.Response(200, json={"events": self.events})
        if self.config is None:
            return httpx.Response(404, json={"message": "no binding", "error": "not_found"})
        return httpx.Response(200, json=self.config)


class Channel:
    def __init__(self) -> None:
        self.posted: list[Alert] = []
        self.broken = False

    async def __call__(self, alert: Alert) -> None:
        if self.broken:
            raise PermissionError("Missing Permissions")
        self.posted.append(alert)


@pytest.fixture
def bridge() -> Bridge:
    return Bridge()


@pytest.fixture
async def client(bridge: Bridge) -> AsyncIterator[AsyncBridgeClient]:
    async with AsyncBridgeClient(
        "http://bridge.test", "t", transport=httpx.MockTransport(bridge)
    ) as client:
        yield client


@pytest.fixture
def store() -> AlertStore:
    store = AlertStore()
    store.set_channel(GUILD, CHANNEL)
    return store


def parse(*events: dict) -> list:
    return events_from_body(GUILD, {"events": list(events)}, 200)


def test_only_problems_count_and_their_key_is_outcome_and_commit() -> None:
    change, problem, lost = parse(CHANGE, rejected(), ACCESS_LOST)
    assert not is_problem(change) and is_problem(problem) and is_problem(lost)
    assert problem_key(problem) == f"sync.rejected:{BAD}"
    assert problem_key(lost) == "access.lost:octo-org/prompts"
    assert problem_key(parse(rejected(last_at="later", count=4))[0]) == problem_key(problem)


def test_the_messages_say_what_happened_and_what_to_do() -> None:
    from bot_bridge.results import config_from_body

    (problem,) = parse(rejected())
    text = alert_text(problem, config_from_body(GUILD, config(), 200))
    assert text.startswith(
        "guildprompts: commit `abc1234` on **octo-org/prompts**@main was rejected (3 errors); "
        "still serving `9f8e7d6`."
    )
    assert "/prompt-config status" in text and "rejected: 3 errors" in text
    (lost,) = parse(ACCESS_LOST)
    text = alert_text(lost)
    assert "lost access to **octo-org/prompts**" in text and "built-in defaults" in text
    assert "Install the guildprompts GitHub App" in text and "uninstalled" in text
    (again,) = parse(rejected(count=5))
    assert "(seen 5 times)" in alert_text(again)


async def test_a_problem_is_announced_once(
    client: AsyncBridgeClient, bridge: Bridge, store: AlertStore
) -> None:
    watcher, channel = AlertWatcher(client, store), Channel()
    assert await watcher.tick(channel) == []  # only a configuration change: nothing to say
    bridge.events = [rejected(), CHANGE]
    (alert,) = await watcher.tick(channel)
    assert (alert.guild_id, alert.channel_id, alert.key) == (GUILD, CHANNEL, f"sync.rejected:{BAD}")
    assert "was rejected (3 errors)" in alert.text
    bridge.events = [rejected(last_at="2024-05-02T11:00:00+00:00", count=2), CHANGE]  # a retry
    assert await watcher.tick(channel) == []
    assert await watcher.tick(channel) == []
    assert channel.posted == [alert]


async def test_a_problem_that_cleared_and_came_back_is_announced_again(
    client: AsyncBridgeClient, bridge: Bridge, store: AlertStore
) -> None:
    watcher, channel = AlertWatcher(client, store), Channel()
    bridge.events = [rejected()]
    assert len(await watcher.tick(channel)) == 1
    bridge.config = config(outcome="ok")  # fixed: the same event is still listed, as history
    assert await watcher.tick(channel) == []
    bridge.config = config()  # the same commit rejected again, seen later
    bridge.events = [rejected(last_at="2024-05-03T10:00:00+00:00", count=2)]
    assert [alert.key for alert in await watcher.tick(channel)] == [f"sync.rejected:{BAD}"]
    assert await watcher.tick(channel) == []

    bridge.config = config(state="no_access")
    bridge.events = [ACCESS_LOST, *bridge.events]
    (lost,) = await watcher.tick(channel)
    assert lost.key == "access.lost:octo-org/prompts"
    bridge.events, bridge.config = bridge.events[1:], config(outcome="ok")  # access restored
    assert await watcher.tick(channel) == []
    bridge.events, bridge.config = [ACCESS_LOST, *bridge.events], config(state="no_access")
    assert [alert.key for alert in await watcher.tick(channel)] == [lost.key]
    assert len(channel.posted) == 4


async def test_history_and_healthy_bindings_post_nothing(
    client: AsyncBridgeClient, bridge: Bridge, store: AlertStore
) -> None:
    watcher, channel = AlertWatcher(client, store), Channel()
    older = rejected(sha="c" * 40, last_at="2024-04-01T00:00:00+00:00")
    bridge.config = config(outcome="ok")
    bridge.events = [rejected(), older]
    assert await watcher.tick(channel) == []  # all fixed already
    bridge.config = None  # no binding at all
    assert await watcher.tick(channel) == []
    store.set_channel(GUILD, None)
    store.set_channel(GUILD, CHANNEL)  # watched afresh: only the newest problem is current
    bridge.config = config()
    assert [alert.key for alert in await watcher.tick(channel)] == [f"sync.rejected:{BAD}"]


async def test_errors_never_stop_the_watcher(
    client: AsyncBridgeClient, bridge: Bridge, store: AlertStore, caplog: pytest.LogCaptureFixture
) -> None:
    watcher, channel = AlertWatcher(client, store), Channel()
    bridge.events, bridge.fail = [rejected()], True
    assert await watcher.tick(channel) == []
    assert "did not answer" in caplog.text and "database down" in caplog.text
    bridge.fail, channel.broken = False, True
    assert await watcher.tick(channel) == []  # the channel refused: still due
    assert "could not post the alert" in caplog.text
    channel.broken = False
    assert len(await watcher.tick(channel)) == 1


async def test_the_loop_ticks_until_stopped(
    client: AsyncBridgeClient, bridge: Bridge, store: AlertStore
) -> None:
    bridge.fail = True
    watcher, stop = AlertWatcher(client, store, interval=0.01), asyncio.Event()
    task = asyncio.create_task(watcher.run(Channel(), stop))
    await asyncio.sleep(0.1)
    assert not task.done() and bridge.requests >= 3  # several failed ticks, still running
    stop.set()
    await asyncio.wait_for(task, 1)
    with pytest.raises(ValueError, match="positive"):
        AlertWatcher(client, store, interval=0)


async def test_a_restart_does_not_repost(
    client: AsyncBridgeClient, bridge: Bridge, tmp_path: Path
) -> None:
    path = tmp_path / "alerts.json"
    first = AlertStore(path)
    first.set_channel(GUILD, CHANNEL)
    bridge.events = [rejected()]
    assert len(await AlertWatcher(client, first).tick(Channel())) == 1
    saved = json.loads(path.read_text())
    assert saved["format"] == "guildprompts-alerts/1" and saved["channels"] == {GUILD: CHANNEL}

    again = AlertStore(path)
    assert again.channels() == {GUILD: CHANNEL}
    assert again.announced(GUILD) == first.announced(GUILD)
    assert await AlertWatcher(client, again).tick(Channel()) == []


def test_an_unreadable_store_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "alerts.json"
    path.write_text("{not json")
    store = AlertStore(path)
    assert store.channels() == {} and "ignoring the alert store" in caplog.text
    store.set_channel(GUILD, CHANNEL)
    assert AlertStore(path).channel(GUILD) == CHANNEL


async def test_the_alerts_command() -> None:
    store = AlertStore()
    admin = Caller(user_id="1", guild_id=GUILD, manage_guild=True)
    member = Caller(user_id="2", guild_id=GUILD)
    manager = Caller(user_id="3", guild_id=GUILD, role_ids=frozenset({"77"}))
    assert "Alerts are off" in (await set_alert_channel(store, member)).text
    assert (await set_alert_channel(store, member, CHANNEL)).text == PERMISSION_DENIED
    assert store.channel(GUILD) is None
    reply = await set_alert_channel(store, admin, CHANNEL)
    assert reply.ephemeral and f"<#{CHANNEL}>" in reply.text and store.channel(GUILD) == CHANNEL
    assert f"<#{CHANNEL}>" in (await set_alert_channel(store, member)).text
    assert (await set_alert_channel(store, member, off=True)).text == PERMISSION_DENIED
    reply = await set_alert_channel(store, manager, off=True, manager_roles=[77])
    assert "turned off" in reply.text and store.channel(GUILD) is None
    direct = Caller(user_id="1", guild_id=None, administrator=True)
    assert (await set_alert_channel(store, direct, CHANNEL)).text == GUILD_ONLY
