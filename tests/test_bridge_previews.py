"""Trying a pull request in one channel: through the bridge's HTTP API, the client and the
command functions, with pull requests arriving as webhooks from the fake GitHub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot_bridge import commands
from bot_bridge.client import AsyncBridgeClient
from bot_bridge.commands import Caller
from github_app.store import previews, snapshots
from tests.harness import FULL_NAME, PATH_FILE, TOKEN, bridge_world, eventually, prompt_files
from tests.harness import BridgeWorld as World

pytestmark = pytest.mark.anyio

GUILD, OTHER = "111", "222"
TRY, ELSEWHERE = "555", "556"


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    """On SQLite and on PostgreSQL."""
    async with bridge_world(database_url) as world:
        yield world


async def _marker(world: World, channel: str, guild: str = GUILD) -> str:
    answer = await world.prompt(guild, category="meeting", type="brief", channel_id=channel)
    return answer["content"].split()[0]


async def _open_pull_request(world: World, marker: str, action: str = "opened") -> str:
    head = world.push(prompt_files(marker), branch="feature")
    await world.deliver(
        "pull_request", world.fake.pull_request_payload(FULL_NAME, "feature", action=action)
    )

    async def synced() -> bool:
        return world.db(snapshots.find_snapshot, world.repository_id, head) is not None

    await eventually(synced, timeout=15)
    return head


async def _preview(world: World, channel: str = TRY, number: Any = 1, **body: Any) -> Any:
    payload = {"pull_request": number, "channel_id": channel, "actor": "42", **body}
    return await world.http.put(f"/bridge/v1/guilds/{GUILD}/preview", json=payload)


async def test_one_channel_previews_until_the_pull_request_closes(world: World) -> None:
    world.push(prompt_files("main"))
    assert (await world.bind(GUILD)).status_code == 200
    assert (await world.bind(OTHER)).status_code == 200
    head = await _open_pull_request(world, "proposal")

    started = await _preview(world)

    assert started.status_code == 200, started.text
    assert started.json()["head_sha"] == head
    assert await _marker(world, TRY) == "proposal"
    assert await _marker(world, ELSEWHERE) == "main"
    assert await _marker(world, TRY, guild=OTHER) == "main", "another guild is not affected"
    answer = await world.prompt(GUILD, category="meeting", type="brief", channel_id=TRY)
    assert answer["commit_sha"] == head and "pull request #1" in answer["status_message"]
    tried = await world.http.post(
        f"/bridge/v1/guilds/{GUILD}/test", json={"category": "meeting", "channel_id": TRY}
    )
    assert tried.json()["commit_sha"] == head, "/prompt-config test in the channel shows it too"

    # A new push to the pull request: the channel follows its head.
    newer = await _open_pull_request(world, "revised", action="synchronize")

    async def follows() -> bool:
        return await _marker(world, TRY) == "revised"

    await eventually(follows, timeout=15)
    assert newer != head

    await world.deliver(
        "pull_request", world.fake.pull_request_payload(FULL_NAME, "feature", action="closed")
    )

    async def ended() -> bool:
        return await _marker(world, TRY) == "main"

    await eventually(ended, timeout=15)
    assert world.db(previews.guild_previews, GUILD) == []
    closed = await _preview(world)
    assert closed.status_code == 409 and closed.json()["error"] == "closed"


async def test_preview_off_and_bad_requests(world: World) -> None:
    world.push(prompt_files("main"))
    assert (await world.bind(GUILD)).status_code == 200
    await _open_pull_request(world, "proposal")
    assert (await _preview(world)).status_code == 200
    assert (await _preview(world, channel=ELSEWHERE)).status_code == 200
    listed = (await world.http.get(f"/bridge/v1/guilds/{GUILD}/preview")).json()["previews"]
    assert sorted(item["channel_id"] for item in listed) == [TRY, ELSEWHERE]

    off = await world.http.request(
        "DELETE", f"/bridge/v1/guilds/{GUILD}/preview", json={"channel_id": TRY, "actor": "42"}
    )
    assert off.status_code == 200 and off.json()["ended"] == [TRY]
    assert await _marker(world, TRY) == "main" and await _marker(world, ELSEWHERE) == "proposal"

    assert (await _preview(world, number=99)).json()["error"] == "not_found"
    assert (await _preview(world, number="x")).status_code == 400
    assert (await _preview(world, channel="general")).status_code == 400
    assert (await _preview(world, actor="")).status_code == 400
    nothing = await world.http.request(
        "DELETE", f"/bridge/v1/guilds/{GUILD}/preview", json={"channel_id": TRY, "actor": "42"}
    )
    assert nothing.status_code == 404


async def test_an_invalid_head_cannot_be_previewed(world: World) -> None:
    world.push(prompt_files("main"))
    assert (await world.bind(GUILD)).status_code == 200
    head = world.push({"PATH": b"routes: [\n"}, branch="feature")
    await world.deliver("pull_request", world.fake.pull_request_payload(FULL_NAME, "feature"))
    await eventually(
        lambda: _stored(world, head),
        timeout=15,
    )
    refused = await _preview(world)
    assert refused.status_code == 422 and refused.json()["diagnostics"]


async def _stored(world: World, sha: str) -> bool:
    return world.db(snapshots.find_snapshot, world.repository_id, sha) is not None


async def test_a_private_pull_request_follows_the_bindings_access_rule(sqlite_url: str) -> None:
    async with bridge_world(sqlite_url, private=True) as world:
        allowed = PATH_FILE + f'allowed_guilds: ["{GUILD}"]\n'.encode()
        world.push(prompt_files("main", allowed))
        assert (await world.bind(GUILD)).status_code == 200
        head = world.push(prompt_files("secret"), branch="feature")  # lists nobody
        await world.deliver("pull_request", world.fake.pull_request_payload(FULL_NAME, "feature"))
        await eventually(lambda: _stored(world, head), timeout=15)

        refused = await _preview(world)

        assert refused.status_code == 403 and refused.json()["error"] == "no_access"
        assert await _marker(world, TRY) == "main"


async def test_command_functions_preview_through_the_client(world: World) -> None:
    world.push(prompt_files("main"))
    assert (await world.bind(GUILD)).status_code == 200
    await _open_pull_request(world, "proposal")
    client = AsyncBridgeClient("http://bridge.test", TOKEN, transport=world.http._transport)
    manager = Caller(user_id="42", guild_id=GUILD, manage_guild=True, channel_id=TRY)
    async with client:
        denied = await commands.preview_pull_request(client, Caller("43", GUILD), 1)
        assert denied.text == commands.PERMISSION_DENIED
        started = await commands.preview_pull_request(client, manager, 1)
        assert started.text.startswith(f"<#{TRY}> now uses pull request #1")
        assert await _marker(world, TRY) == "proposal"
        missing = await commands.preview_pull_request(client, manager, 7)
        assert "has not seen pull request #7" in missing.text
        off = await commands.preview_pull_request(client, manager, None, off=True)
        assert off.text == f"Preview off: <#{TRY}> use the server's prompts again."
        again = await commands.preview_pull_request(client, manager, None, off=True)
        assert again.text == "No pull request is previewed there."
        assert await _marker(world, TRY) == "main"
