"""GitHub's less friendly documented answers, through the App: a renamed repository's 301, an
empty repository's 409, installations too large for any page cap, repositories too large for one
request per file, and a sync that would eat the installation's rate limit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import insert

from github_app.store import bindings, branches, deliveries, installations, snapshots
from github_app.store.models import Repository
from github_app.sync.messages import EMPTY_REPOSITORY
from tests.harness import (
    FULL_NAME,
    GUILD,
    BridgeWorld,
    World,
    bridge_world,
    eventually,
    harness,
    open_world,
    prompt_files,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(sqlite_url: str) -> AsyncIterator[BridgeWorld]:
    async with bridge_world(sqlite_url) as world:
        yield world


async def _config(world: BridgeWorld) -> dict[str, Any]:
    return json.loads((await world.http.get(f"/bridge/v1/guilds/{GUILD}/config")).text)


# ---- 301: renamed and transferred repositories ----------------------------------------------


async def test_binding_by_a_former_name_follows_the_redirect(world: BridgeWorld) -> None:
    # a repository the store has never seen, renamed on GitHub before the guild binds it by
    # the name it knows
    repository_id = world.fake.add_repo(
        "octo-org/old-name", installation=world.installation_id, private=False
    )
    sha = world.fake.push("octo-org/old-name", "main", dict(prompt_files("moved")))
    world.fake.update_repo("octo-org/old-name", new_full_name="new-owner/prompts-renamed")

    response = await world.bind(GUILD, "octo-org/old-name")

    assert response.status_code == 200, response.text
    assert response.json()["active_sha"] == sha
    assert world.db(bindings.get_binding, GUILD).repository_id == repository_id
    stored = world.db(installations.get_repository, repository_id)
    assert stored is not None and stored.full_name == "new-owner/prompts-renamed"
    assert any(r.status == 301 for r in world.fake.requests), "GitHub's answer to an old name"
    assert not [r for r in world.fake.requests if r.status >= 400 and "tokens" not in r.path]


async def test_a_renamed_repository_is_not_found_by_someone_who_cannot_read_it(
    sqlite_url: str,
) -> None:
    async with open_world(sqlite_url) as world:
        world.fake.update_repo(FULL_NAME, new_full_name="octo-org/secret")
        async with world.fake.github_client() as anonymous:
            with pytest.raises(Exception, match="404"):
                await anonymous.get_repository("octo-org/prompts")
        async with world.fake.github_client() as app:
            data = await app.get_repository(
                "octo-org/prompts", installation_id=world.installation_id
            )
            assert (data["id"], data["full_name"]) == (world.repository_id, "octo-org/secret")
            installation = await app.get_repo_installation("octo-org/prompts")
            assert installation is not None and installation["id"] == world.installation_id


# ---- 409: empty repositories ----------------------------------------------------------------


async def test_an_empty_repository_waits_for_its_first_push(world: BridgeWorld) -> None:
    world.fake.add_repo("octo-org/empty", installation=world.installation_id, private=False)

    response = await world.bind(GUILD, "octo-org/empty")

    assert response.status_code == 422, response.text
    assert response.json()["message"] == EMPTY_REPOSITORY
    assert any(r.status == 409 for r in world.fake.requests), "GitHub's answer to an empty one"
    assert world.db(deliveries.queue_stats).failed == 0, "an empty repository is no failure"

    sha = world.fake.push("octo-org/empty", "main", dict(prompt_files("first")))
    await world.deliver("push", world.fake.push_payload("octo-org/empty", "main"))
    await eventually(lambda: _live(world, sha), timeout=10)


async def _live(world: BridgeWorld, sha: str) -> bool | None:
    return (await _config(world)).get("active_sha") == sha or None


# ---- pagination without caps ----------------------------------------------------------------


async def test_an_installation_of_10050_repositories_keeps_the_last_one(sqlite_url: str) -> None:
    async with harness(sqlite_url, private=False) as world:
        names = [f"octo-org/r{number:05}" for number in range(10_050)]
        ids = [world.fake.add_repo(name, installation=world.installation_id) for name in names]
        # known from earlier events (written in bulk here: one by one it takes half a minute)
        world.db(_store_repositories, world.installation_id, dict(zip(ids, names, strict=True)))
        # the bound repository is listed last, past any page cap (the fake lists in order)
        world.fake.repos[world.repository_id] = world.fake.repos.pop(world.repository_id)
        world.bind(GUILD)
        await world.push(prompt_files("kept"))
        await world.drain()
        mark = len(world.fake.requests)

        payload = world.fake.installation_payload(world.installation_id, "new_permissions_accepted")
        assert (await world.deliver("installation", payload)).status_code == 202
        await world.drain()

        pages = [r for r in world.fake.requests[mark:] if r.path == "/installation/repositories"]
        assert len(pages) == 101, "every page of 100 is read"
        last = json.loads(pages[-1].answer)["repositories"]
        assert last[-1]["id"] == world.repository_id
        stored = world.db(installations.get_repository, world.repository_id)
        assert stored is not None and stored.installation_id == world.installation_id
        assert world.state().commit_sha is not None


def _store_repositories(session: Any, installation_id: int, names: dict[int, str]) -> None:
    rows = [
        {
            "id": rid,
            "full_name": name,
            "private": True,
            "default_branch": "main",
            "installation_id": installation_id,
        }
        for rid, name in names.items()
    ]
    session.execute(insert(Repository), rows)


# ---- cost independent of repository size ----------------------------------------------------


async def test_a_20000_file_repository_syncs_in_at_most_5_requests(sqlite_url: str) -> None:
    async with harness(sqlite_url, private=False) as world:
        files = dict(prompt_files("big"))
        files.update(
            {f"prompts/bulk/p{n:05}.md": f"prompt {n}: {{messages}}\n" for n in range(20_000)}
        )
        world.bind(GUILD)
        mark = len(world.fake.requests)

        sha = await world.push(files)
        await world.drain()

        api = [r for r in world.fake.requests[mark:] if r.endpoint != "GET codeload"]
        assert world.state().commit_sha == sha
        assert len(api) <= 5, [r.endpoint for r in api]
        assert any("tarball" in r.path for r in api)


async def test_a_small_change_still_downloads_only_its_blobs(sqlite_url: str) -> None:
    async with harness(sqlite_url, private=False) as world:
        world.bind(GUILD)
        files = dict(prompt_files("one"))
        files.update({f"prompts/bulk/p{n:03}.md": f"prompt {n}\n" for n in range(120)})
        await world.push(files)
        await world.drain()
        mark = len(world.fake.requests)

        sha = await world.push({"prompts/bulk/p001.md": "changed\n"})
        await world.drain()

        endpoints = world.requests_since(mark)
        assert world.state().commit_sha == sha
        assert not any("tarball" in e for e in endpoints)
        assert sum("/git/blobs/" in e for e in endpoints) == 1


async def test_a_sync_waits_rather_than_eat_the_rate_limit(sqlite_url: str) -> None:
    async with harness(sqlite_url, private=False, ARCHIVE_THRESHOLD="1000") as world:
        world.bind(GUILD)
        world.fake.rate_limit = 40  # a nearly spent hour: the next sync needs more than half
        files = dict(prompt_files("many"))
        files.update({f"prompts/bulk/p{n:03}.md": f"prompt {n}\n" for n in range(60)})
        World.push(world, files)  # on the fake only: the webhook is posted below
        hook = world.fake.webhook("push", world.fake.push_payload(world.full_name, "main"))
        assert (await world.post(hook)).status_code == 202
        await world.drain()

        tracked = world.db(branches.get_branch, world.repository_id, "main")
        assert tracked is not None and "waiting for GitHub's rate limit" in tracked.status_message
        assert world.delivery(hook.guid).state != "failed"
        assert world.fake.count("/git/blobs/") == 0


async def test_the_archive_path_snapshots_exactly_the_commit(sqlite_url: str) -> None:
    async with harness(sqlite_url, private=False, ARCHIVE_THRESHOLD="2") as world:
        world.bind(GUILD)
        files = prompt_files("archive")
        sha = await world.push(files)
        await world.drain()
        assert world.state().commit_sha == sha
        assert world.fake.count("/tarball/") == 1 and world.fake.count("/git/blobs/") == 0
        stored = world.db(snapshots.snapshot_files, world.state().snapshot_id)
        assert stored == {path: content for path, content in files.items()}
