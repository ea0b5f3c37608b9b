"""Pin, unpin, roll back and history through the bridge's HTTP API, with a worker and the fake
GitHub behind it: what a guild is served follows its pin, whatever the branch does meanwhile."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot_bridge import commands
from bot_bridge.client import AsyncBridgeClient
from bot_bridge.commands import Caller
from github_app.store import deliveries, pins
from tests.harness import FULL_NAME, PATH_FILE, TOKEN, bridge_world, eventually, prompt_files
from tests.harness import BridgeWorld as World

pytestmark = pytest.mark.anyio

GUILD, OTHER = "111", "222"


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    """On SQLite and on PostgreSQL."""
    async with bridge_world(database_url) as world:
        yield world


async def _marker(world: World, guild: str = GUILD) -> str:
    return (await world.prompt(guild, category="meeting", type="brief"))["content"].split()[0]


async def _idle(world: World) -> None:
    """No delivery or sync job left: what follows is not raced by the setup's own syncs."""

    async def idle() -> bool:
        stats = world.db(deliveries.queue_stats)
        return stats.pending == 0 and stats.processing == 0

    await eventually(idle, timeout=15)


async def _push_and_wait(world: World, marker: str) -> str:
    await _idle(world)
    # Pushed "later" than any sync that saw the previous head as `now` (bind, access restored).
    world.fake.clock.advance(5)
    sha = await world.pushed(prompt_files(marker))

    async def live() -> bool:
        return await _marker(world) == marker

    await eventually(live, timeout=15)
    return sha


async def _pin(world: World, sha: str, guild: str = GUILD, **body: Any) -> Any:
    return await world.http.put(
        f"/bridge/v1/guilds/{guild}/pin", json={"sha": sha, "actor": "42", **body}
    )


async def test_pin_holds_through_a_push_and_unpin_serves_the_branch_head(world: World) -> None:
    first = world.push(prompt_files("first"))
    assert (await world.bind(GUILD)).status_code == 200
    assert (await world.bind(OTHER)).status_code == 200
    second = await _push_and_wait(world, "second")

    pinned = await _pin(world, first[:7])

    assert pinned.status_code == 200, pinned.text
    body = pinned.json()
    assert body["active_sha"] == first and body["branch_sha"] == second
    assert body["pinned"]["sha"] == first and body["pinned"]["pinned_by"] == "42"
    assert f"pinned to {first[:7]}" in body["status_message"]
    assert f"has {second[:7]} meanwhile" in body["status_message"]
    assert await _marker(world) == "first"
    assert await _marker(world, OTHER) == "second", "only the pinned guild is affected"

    third = world.push(prompt_files("third"))
    world.fake.clock.advance(5)
    await world.deliver("push", world.fake.push_payload(FULL_NAME, "main"))

    async def other_moved() -> bool:
        return await _marker(world, OTHER) == "third"

    await eventually(other_moved, timeout=15)
    assert await _marker(world) == "first", "a push while pinned changes nothing for the guild"
    config = (await world.http.get(f"/bridge/v1/guilds/{GUILD}/config")).json()
    assert config["pinned"]["branch_sha"] == third and config["active_sha"] == first

    unpinned = await world.http.request(
        "DELETE", f"/bridge/v1/guilds/{GUILD}/pin", json={"actor": "42"}
    )
    assert unpinned.status_code == 200, unpinned.text
    assert unpinned.json()["pinned"] is None and unpinned.json()["active_sha"] == third
    assert await _marker(world) == "third"
    again = await world.http.request(
        "DELETE", f"/bridge/v1/guilds/{GUILD}/pin", json={"actor": "42"}
    )
    assert again.status_code == 404 and again.json()["error"] == "not_pinned"


async def test_history_and_rollback(world: World) -> None:
    first = world.push(prompt_files("first"))
    assert (await world.bind(GUILD)).status_code == 200
    second = await _push_and_wait(world, "second")

    rolled = await world.http.post(f"/bridge/v1/guilds/{GUILD}/rollback", json={"actor": "7"})

    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["active_sha"] == first and rolled.json()["pinned"]["sha"] == first
    assert await _marker(world) == "first"
    history = (await world.http.get(f"/bridge/v1/guilds/{GUILD}/history")).json()
    rows = [(a["commit_sha"], a["trigger"], a["pinned"]) for a in history["activations"]]
    assert rows == [(first, "rollback", True), (second, "push", False), (first, "bind", False)]
    assert history["activations"][1]["pushed_by"] == "octocat"
    assert history["activations"][0]["actor"] == "7"
    assert history["pinned"]["sha"] == first and history["branch_sha"] == second
    limited = await world.http.get(f"/bridge/v1/guilds/{GUILD}/history", params={"limit": 1})
    assert len(limited.json()["activations"]) == 1


async def test_rollback_without_an_earlier_commit_is_a_conflict(world: World) -> None:
    world.push(prompt_files("only"))
    assert (await world.bind(GUILD)).status_code == 200
    answer = await world.http.post(f"/bridge/v1/guilds/{GUILD}/rollback", json={"actor": "7"})
    assert answer.status_code == 409 and answer.json()["error"] == "no_previous"


async def test_a_commit_never_synced_is_synced_on_demand_without_going_live(
    world: World,
) -> None:
    world.push(prompt_files("first"))
    assert (await world.bind(GUILD)).status_code == 200
    side = world.push(prompt_files("side"), branch="experiment")

    pinned = await _pin(world, side)

    assert pinned.status_code == 200, pinned.text
    assert await _marker(world) == "side"
    assert pinned.json()["branch_sha"] != side, "the branch did not move"


async def test_bad_pins_get_clear_errors(world: World) -> None:
    world.push(prompt_files("first"))
    assert (await world.bind(GUILD)).status_code == 200
    broken = world.push({"PATH": b"routes: [\n"}, branch="broken")
    missing = "e" * 40

    assert (await _pin(world, "xyz")).status_code == 400
    assert (await _pin(world, "abcdef1")).json()["error"] == "not_found"
    gone = await _pin(world, missing)
    assert gone.status_code == 404 and "could not be synced" in gone.json()["message"]
    invalid = await _pin(world, broken)
    assert invalid.status_code == 422 and invalid.json()["diagnostics"]
    assert (await _pin(world, broken, actor="")).status_code == 400
    assert (await _pin(world, broken, guild="999")).status_code == 404
    assert world.db(pins.get_pin, GUILD) is None


async def test_a_private_repository_pin_follows_the_commits_allowed_guilds(
    sqlite_url: str,
) -> None:
    async with bridge_world(sqlite_url, private=True) as world:
        old = world.push(prompt_files("old"))  # lists nobody
        allowed = PATH_FILE + f'allowed_guilds: ["{GUILD}"]\n'.encode()
        world.push(prompt_files("new", allowed))
        assert (await world.bind(GUILD)).status_code == 200

        refused = await _pin(world, old)

        assert refused.status_code == 403 and refused.json()["error"] == "no_access"
        assert await _marker(world) == "new"


async def test_unbinding_forgets_the_pin(world: World) -> None:
    first = world.push(prompt_files("first"))
    assert (await world.bind(GUILD)).status_code == 200
    await _push_and_wait(world, "second")
    assert (await _pin(world, first)).status_code == 200
    removed = await world.http.request(
        "DELETE", f"/bridge/v1/guilds/{GUILD}/config", json={"actor": "42"}
    )
    assert removed.status_code == 200
    assert world.db(pins.get_pin, GUILD) is None
    assert (await world.bind(GUILD)).status_code == 200
    assert await _marker(world) == "second"


# ---- the client and the /prompt-config command functions, against the running bridge ---------


async def test_commands_pin_unpin_rollback_history_through_the_client(world: World) -> None:
    first = world.push(prompt_files("first"))
    assert (await world.bind(GUILD)).status_code == 200
    second = await _push_and_wait(world, "second")
    client = AsyncBridgeClient("http://bridge.test", TOKEN, transport=world.http._transport)
    manager = Caller(user_id="42", guild_id=GUILD, manage_guild=True)
    member = Caller(user_id="43", guild_id=GUILD)
    async with client:
        status = await client.pin(GUILD, first[:8], actor="42")
        assert (status.pinned_sha, status.branch_sha) == (first, second)
        assert (await client.unpin(GUILD, actor="42")).pinned_sha is None

        for run in (
            commands.pin_commit(client, member, first),
            commands.unpin_commit(client, member),
            commands.rollback_commit(client, member),
            commands.show_history(client, member),
        ):
            assert (await run).text == commands.PERMISSION_DENIED

        pinned = await commands.pin_commit(client, manager, first[:7])
        assert pinned.text.startswith("Pinned.") and f"`{first[:7]}`" in pinned.text
        assert f"The branch has `{second[:7]}` meanwhile." in pinned.text
        assert await _marker(world) == "first"
        unknown = await commands.pin_commit(client, manager, "abcdef0")
        assert "no synced commit" in unknown.text and "starts with abcdef0" in unknown.text

        unpinned = await commands.unpin_commit(client, manager)
        assert f"serving commit `{second[:7]}`" in unpinned.text
        assert "not pinned" in (await commands.unpin_commit(client, manager)).text

        rolled = await commands.rollback_commit(client, manager)
        assert rolled.text.startswith("Rolled back.") and f"`{first[:7]}`" in rolled.text
        history = await commands.show_history(client, manager)
        lines = history.text.splitlines()
        assert lines[1] == f"Pinned to `{first[:7]}`; `/prompt-config unpin` follows the branch."
        assert lines[2].startswith(f"• `{first[:7]}` ") and "rollback by <@42> (pinned)" in lines[2]
        assert any("push pushed by octocat" in line for line in lines)
        assert (await client.history(GUILD, limit=2)).activations[0].trigger == "rollback"
