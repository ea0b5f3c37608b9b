"""A guild whose repository `extends` a base: the bridge serves the pair (its commit, the base's).

States are written straight into the store (`tests.harness.Store`), as a sync would write them:
`guildprompts/base-pack` holds examples/base, `octo-org/prompts` holds examples/guild (whose PATH
says `extends: guildprompts/base-pack@main`), and the guild's branch is activated with the base
commit as its layer. Everything is then read through the public surfaces: `GET .../prompt`,
`PUT .../pin`, `GET /bridge/v1/stream` and the streaming client.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from bot_bridge import AsyncBridgeClient, BridgeClient, commands
from github_app.runtime import Runtime
from github_app.store import branches, previews, snapshots
from github_app.store.layers import ServedLayer
from github_app.store.models import GuildPin
from github_app.web import create_app
from promptrepo import files_from_directory
from tests.fakegithub import serve_on_loopback
from tests.harness import (
    EXAMPLES,
    FULL_NAME,
    GITHUB_URL,
    TOKEN,
    Store,
    bridge_runtime,
    bridge_world,
    eventually,
    running_bridge,
    wait_for,
)
from tests.test_bridge_stream import Counting, comparable, opened_stream, read_events

GUILD, OTHER = "111", "222"
BASE, BASE_ID, COPY_ID = "guildprompts/base-pack", 2, 3
BASE_FILES = files_from_directory(EXAMPLES / "base")
GUILD_FILES = files_from_directory(EXAMPLES / "guild")
NEW_DISCUSSION = b"---\ndescription: v2\n---\nv2 of the base: the threads of #{channel_name}.\n"
# (context, the file that answers, whether it comes from the base)
EXPECTED: list[tuple[dict[str, str], str, bool]] = [
    ({"category": "meeting"}, "prompts/meeting.md", False),  # the guild's override
    ({"category": "discussion"}, "prompts/discussion.md", True),  # only the base has it
    ({"category": "meeting", "locale": "fr-CA"}, "prompts/fr/meeting.md", False),
    ({"category": "discussion", "locale": "pt-BR"}, "prompts/pt-br/discussion.md", False),
    ({"category": "discussion", "locale": "fr"}, "prompts/discussion.md", True),
    ({"category": "moderation", "locale": "fr"}, "prompts/moderation.md", True),
    ({}, "prompts/default.md", True),
]


def url(repository: str, sha: str, path: str) -> str:
    return f"{GITHUB_URL}/{repository}/blob/{sha}/{path}"


class Layered:
    """The base repository and the guild's, in one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.repository(FULL_NAME, 1)
        store.repository(BASE, BASE_ID)
        self.base_sha = store.commit(BASE_ID, BASE_FILES)
        self.guild_sha = self.commit(1, GUILD_FILES)

    def commit(self, repository_id: int, files: dict[str, bytes]) -> str:
        """A guild commit, served over the base's active commit."""
        sha = self.store.commit(repository_id, files)
        self.serve(repository_id, sha, self.base_sha)
        return sha

    def push_base(self, files: dict[str, bytes]) -> str:
        """A new base commit; the guild's branch is re-activated over it (as a sync would)."""
        self.base_sha = self.store.commit(BASE_ID, files)
        self.serve(1, self.guild_sha, self.base_sha)
        return self.base_sha

    def serve(self, repository_id: int, sha: str, base_sha: str) -> None:
        def write(session: Any) -> None:
            own = snapshots.find_snapshot(session, repository_id, sha)
            base = snapshots.find_snapshot(session, BASE_ID, base_sha)
            layer = ServedLayer(BASE, "main", BASE_ID, base_sha, base.id, private=False)
            branches.activate(session, repository_id, "main", own.id, layers=(layer,), valid=True)

        self.store.db(write)


@pytest.fixture
def layered(store: Store) -> Layered:
    world = Layered(store)
    store.bind(GUILD)
    return world


async def prompt(http: httpx.AsyncClient, guild: str, query: dict[str, str]) -> dict[str, Any]:
    response = await http.get(f"/bridge/v1/guilds/{guild}/prompt", params=query)
    assert response.status_code == 200, response.text
    return dict(response.json())


# ---- GET .../prompt ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_guild_serves_its_own_files_over_its_base(
    runtime: Runtime, layered: Layered
) -> None:
    async with running_bridge(runtime) as (http, _cache):
        answers = [await prompt(http, GUILD, query) for query, _, _ in EXPECTED]

    for (query, path, from_base), body in zip(EXPECTED, answers, strict=True):
        assert body["source"] == "custom" and body["file_path"] == path, query
        assert body["repository"] == FULL_NAME and body["commit_sha"] == layered.guild_sha
        if from_base:
            assert body["github_file_url"] == url(BASE, layered.base_sha, path), query
        else:
            assert body["github_file_url"] == url(FULL_NAME, layered.guild_sha, path), query
    meeting, discussion, french, brazilian = answers[:4]
    assert '"owner: task (deadline)"' in meeting["content"]
    assert discussion["content"].startswith("Summarise the discussion in #{channel_name}")
    assert french["content"].startswith("Rédige en français")
    assert brazilian["content"].startswith("Resuma em português do Brasil")
    assert "Never repeat personal data" in answers[5]["content"], "the base's locked partial"


@pytest.mark.anyio
async def test_a_new_base_commit_switches_the_answer_at_once(
    runtime: Runtime, layered: Layered
) -> None:
    discussion = {"category": "discussion"}
    async with running_bridge(runtime) as (http, cache):
        before = await prompt(http, GUILD, discussion)
        meeting = await prompt(http, GUILD, {"category": "meeting"})
        new_base = layered.push_base({**BASE_FILES, "prompts/discussion.md": NEW_DISCUSSION})
        await cache.check()  # the map switches to the new pair: no entry of the old one serves
        after = await prompt(http, GUILD, discussion)
        meeting_after = await prompt(http, GUILD, {"category": "meeting"})

    assert before["content"].startswith("Summarise the discussion")
    assert after["content"] == "v2 of the base: the threads of #{channel_name}.\n"
    assert after["github_file_url"] == url(BASE, new_base, "prompts/discussion.md")
    assert after["commit_sha"] == before["commit_sha"] == layered.guild_sha
    assert meeting_after["content"] == meeting["content"], "the guild's own file is unchanged"


@pytest.mark.anyio
async def test_a_pull_request_preview_and_the_test_path_use_the_bases_too(
    runtime: Runtime, layered: Layered, store: Store
) -> None:
    proposal = {**GUILD_FILES, "prompts/meeting.md": b"proposed meeting notes\n"}
    head = store.commit(1, proposal, branch="feature")

    def preview(session: Any) -> None:
        previews.record_pull_request(session, 1, 7, head, open_=True)
        previews.set_preview(session, GUILD, "555", 1, 7, actor="42")
        branches.bump_generation(session)

    store.db(preview)
    in_channel = {"channel_id": "555"}
    async with running_bridge(runtime) as (http, _cache):
        meeting = await prompt(http, GUILD, {"category": "meeting", **in_channel})
        discussion = await prompt(http, GUILD, {"category": "discussion", **in_channel})
        tested = await http.post(
            f"/bridge/v1/guilds/{GUILD}/test", json={"category": "discussion", "locale": "fr"}
        )

    assert meeting["content"] == "proposed meeting notes\n" and meeting["commit_sha"] == head
    assert discussion["github_file_url"] == url(BASE, layered.base_sha, "prompts/discussion.md")
    assert discussion["content"].startswith("Summarise the discussion")
    assert tested.status_code == 200, tested.text
    test = tested.json()
    assert test["file_path"] == "prompts/discussion.md" and test["source"] == "custom"
    assert test["preview"].startswith("Summarise the discussion")
    assert test["github_file_url"] == url(BASE, layered.base_sha, "prompts/discussion.md")


# ---- pins ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_pin_keeps_its_base_when_the_branch_moves_to_a_new_one(
    runtime: Runtime, layered: Layered
) -> None:
    discussion = {"category": "discussion"}
    old_base = layered.base_sha
    label = f"{BASE}@{old_base[:7]}"
    async with running_bridge(runtime) as (http, cache):
        client = AsyncBridgeClient("http://bridge.test", TOKEN, transport=http._transport)
        manager = commands.Caller(user_id="42", guild_id=GUILD, manage_guild=True)
        async with client:
            pinned = await commands.pin_commit(client, manager, layered.guild_sha[:7])
            layered.push_base({**BASE_FILES, "prompts/discussion.md": NEW_DISCUSSION})
            await cache.check()
            held = await prompt(http, GUILD, discussion)
            unpinned = await commands.unpin_commit(client, manager)
            await cache.check()
            followed = await prompt(http, GUILD, discussion)

    assert f"Serving commit `{layered.guild_sha[:7]}` (with `{label}`)" in pinned.text
    assert held["content"].startswith("Summarise the discussion"), "the pin kept the old base"
    assert held["github_file_url"] == url(BASE, old_base, "prompts/discussion.md")
    assert f"(with `{BASE}@{layered.base_sha[:7]}`)" in unpinned.text
    assert followed["content"].startswith("v2 of the base")


@pytest.mark.anyio
async def test_pinning_another_commit_takes_the_bases_the_branch_has_now(
    runtime: Runtime, layered: Layered, store: Store
) -> None:
    first = layered.guild_sha
    layered.push_base({**BASE_FILES, "prompts/discussion.md": NEW_DISCUSSION})
    layered.guild_sha = layered.commit(1, {**GUILD_FILES, "prompts/extra.md": b"extra\n"})
    async with running_bridge(runtime) as (http, _cache):
        asked = {"sha": first, "actor": "42"}
        response = await http.put(f"/bridge/v1/guilds/{GUILD}/pin", json=asked)
        assert response.status_code == 200, response.text
        held = await prompt(http, GUILD, {"category": "discussion"})

    assert response.json()["bases"] == [f"{BASE}@{layered.base_sha[:7]}"]
    pin = store.db(lambda session: session.get(GuildPin, GUILD))
    assert [layer["commit_sha"] for layer in pin.layers] == [layered.base_sha]
    assert held["commit_sha"] == first and held["content"].startswith("v2 of the base")


# ---- the stream and the streaming client ---------------------------------------------------------


@pytest.fixture
def fast_runtime(sqlite_url: str) -> Runtime:
    return bridge_runtime(sqlite_url, GENERATION_POLL_INTERVAL="0.05", STREAM_HEARTBEAT="0.2")


@contextmanager
def service(runtime: Runtime) -> Iterator[str]:
    with serve_on_loopback(create_app(runtime, run_worker=False), lifespan="on") as address:
        yield address


def test_the_stream_sends_the_layers_once_for_equal_content(fast_runtime: Runtime) -> None:
    store = Store(fast_runtime)
    layered = Layered(store)
    store.bind(GUILD)
    store.repository("octo-org/copy", COPY_ID)  # the same files on the same base: one snapshot
    layered.commit(COPY_ID, GUILD_FILES)
    store.bind(OTHER, "octo-org/copy", COPY_ID)
    with service(fast_runtime) as address, opened_stream(address) as response:
        events = read_events(response.iter_lines())

    assert [name for name, _, _ in events] == ["hello", "snapshot", "guild", "guild", "sync"]
    snapshot = events[1][1]
    assert set(snapshot["files"]) == set(GUILD_FILES)
    assert [layer["name"] for layer in snapshot["layers"]] == [BASE]
    assert snapshot["layers"][0]["files"]["prompts/discussion.md"].startswith("---\n")
    states = {data["guild_id"]: data["served"] for name, data, _ in events if name == "guild"}
    assert {served["snapshot"] for served in states.values()} == {snapshot["digest"]}
    assert states[GUILD]["bases"] == [{"name": BASE, "commit_sha": layered.base_sha}]


def test_the_streaming_client_answers_like_the_service(fast_runtime: Runtime) -> None:
    store = Store(fast_runtime)
    layered = Layered(store)
    old_base = layered.base_sha
    store.bind(GUILD)
    counting = Counting()
    queries = [query for query, _, _ in EXPECTED]
    with service(fast_runtime) as address:
        with BridgeClient(address, TOKEN) as plain:
            expected = [plain.resolve_prompt(GUILD, query) for query in queries]
        with BridgeClient(address, TOKEN, stream=True, transport=counting) as client:
            assert client.wait_for_stream(10)
            local = [client.resolve_prompt(GUILD, query) for query in queries]
            new_base = layered.push_base({**BASE_FILES, "prompts/discussion.md": NEW_DISCUSSION})
            moved = wait_for(
                lambda: (
                    (a := client.resolve_prompt(GUILD, category="discussion")).content.startswith(
                        "v2 of the base"
                    )
                    and a
                ),
                what="the new base commit over the stream",
            )
        with BridgeClient(address, TOKEN) as plain:
            served = plain.resolve_prompt(GUILD, category="discussion")

    assert [comparable(a) for a in local] == [comparable(a) for a in expected]
    assert expected[1].github_file_url == url(BASE, old_base, "prompts/discussion.md")
    assert moved.github_file_url == url(BASE, new_base, "prompts/discussion.md")
    assert comparable(moved) == comparable(served)
    assert counting.paths == [], "every answer came from the stream"


def test_a_saved_layered_snapshot_restores(fast_runtime: Runtime, tmp_path: Any) -> None:
    store = Store(fast_runtime)
    Layered(store)
    store.bind(GUILD)
    saved = tmp_path / "bridge-cache.json"
    with (
        service(fast_runtime) as address,
        BridgeClient(address, TOKEN, stream=True, cache_path=saved) as client,
    ):
        assert client.wait_for_stream(10)
        good = client.resolve_prompt(GUILD, category="discussion")
    # The service is gone: the restarted bot answers from the layers it saved.
    with BridgeClient(address, TOKEN, stream=True, cache_path=saved, timeout=0.5) as client:
        down = client.resolve_prompt(GUILD, category="discussion")
    assert good.file_path == "prompts/discussion.md" and good.source == "custom"
    assert (down.content, down.github_file_url) == (good.content, good.github_file_url)
    assert down.commit_sha == good.commit_sha and down.is_stale


# ---- through the App -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_through_the_app_a_base_push_changes_the_answer(sqlite_url: str) -> None:
    async with bridge_world(sqlite_url) as world:
        installation = world.fake.add_installation("guildprompts")
        world.fake.add_repo(BASE, private=False, installation=installation)
        first_base = world.fake.push(BASE, "main", BASE_FILES)
        await world.deliver("installation", world.fake.installation_payload(installation))
        sha = world.push(GUILD_FILES)
        bound = await world.bind(GUILD)
        assert bound.status_code == 200, bound.text  # once its base is read (no 422)

        async def from_base(base_sha: str) -> dict[str, Any] | None:
            body = await world.prompt(GUILD, category="discussion")
            wanted = url(BASE, base_sha, "prompts/discussion.md")
            return body if body["github_file_url"] == wanted else None

        before = await eventually(lambda: from_base(first_base), timeout=15)
        world.fake.push(BASE, "main", {**BASE_FILES, "prompts/discussion.md": NEW_DISCUSSION})
        await world.deliver("push", world.fake.push_payload(BASE, "main"))
        after = await eventually(lambda: from_base(world.fake.head(BASE, "main")), timeout=15)
        meeting = await world.prompt(GUILD, category="meeting")
        config = (await world.http.get(f"/bridge/v1/guilds/{GUILD}/config")).json()

    assert config["active_sha"] == sha
    assert [(b["repository"], b["ref"], b["commit_sha"]) for b in config["bases"]] == [
        (BASE, "main", world.fake.head(BASE, "main"))
    ]

    assert before["content"].startswith("Summarise the discussion")
    assert after["content"].startswith("v2 of the base") and after["commit_sha"] == sha
    assert meeting["github_file_url"] == url(FULL_NAME, sha, "prompts/meeting.md")
