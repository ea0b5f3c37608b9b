"""`extends` through the App: webhooks into intake, the real worker, the fake GitHub.

A guild repository (`octo-org/prompts`) extends a base pack (`guildprompts/base-pack`, the
repository's `examples/base`) with one override, locale variants and a routing test
(`examples/guild`). What a guild serves is the pair (its commit, the base's commit): a push to
the base re-checks and re-activates the guild repository, a breaking one leaves it on its last
good pair with a status naming the base commit, and a file the base locks is refused with an
annotation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from github_app.loops import reconcile
from github_app.store import installations, layers, serving, snapshots
from github_app.store.models import BindingState, BranchStatus
from github_app.sync import SyncRequest, sync
from github_app.worker import Worker
from promptrepo import Layer, files_from_directory, load_layers
from promptrepo.layers import OWN
from tests.harness import EXAMPLES, GUILD, OTHER_GUILD, Harness, harness

pytestmark = pytest.mark.anyio
BASE = "guildprompts/base-pack"


def example(name: str) -> dict[str, bytes]:
    return dict(files_from_directory(EXAMPLES / name))


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[Harness]:
    """The guild repository (public, App installed) bound to GUILD; the base pack public, on
    its own installation; nothing synced yet."""
    async with harness(database_url, private=False) as h:
        base_installation = h.fake.add_installation("guildprompts")
        h.fake.add_repo(BASE, private=False, installation=base_installation)
        h.fake.push(BASE, "main", example("base"))
        response = await h.deliver("installation", h.fake.installation_payload(base_installation))
        assert response.status_code == 202
        await h.drain()
        h.bind(GUILD)
        yield h


async def push_base(h: Harness, files: Mapping[str, Any]) -> str:
    sha = h.fake.push(BASE, "main", dict(files))
    response = await h.deliver("push", h.fake.push_payload(BASE, "main"))
    assert response.status_code == 202, response.text
    await h.drain()
    return sha


async def served_files(h: Harness, guild: str = GUILD) -> tuple[Any, dict[str, str]]:
    """The guild's state and, for each prompt path, which layer serves it (what resolves)."""
    state = h.state(guild)
    assert state.snapshot_id is not None, state.status_message
    own = h.db(snapshots.snapshot_files, state.snapshot_id)
    below = [
        Layer(layer.name, h.db(snapshots.snapshot_files, layer.snapshot_id))
        for layer in state.layers
    ]
    repository = load_layers([Layer(OWN, own), *below])
    paths = ["prompts/meeting.md", "prompts/fr/meeting.md", "prompts/discussion.md"]
    paths.append("prompts/moderation.md")
    owners = {path: repository.layer_of(path) or "own" for path in paths}
    return state, owners


async def test_a_guild_serves_the_base_where_it_has_no_file_and_its_own_where_it_has(
    world: Harness,
) -> None:
    sha = await world.push(example("guild"))
    await world.drain()
    state, owners = await served_files(world)
    assert state.commit_sha == sha
    base_sha = world.fake.head(BASE, "main")
    assert [(layer.name, layer.commit_sha) for layer in state.layers] == [(BASE, base_sha)]
    assert owners["prompts/meeting.md"] == "own"  # the override
    assert owners["prompts/fr/meeting.md"] == "own"
    assert owners["prompts/discussion.md"] == BASE  # only in the base
    assert owners["prompts/moderation.md"] == BASE
    assert state.branch_status == BranchStatus.OK
    assert f"{BASE}@{base_sha[:7]}" in state.status_message
    runs = world.check_runs(sha)
    assert runs and runs[-1]["conclusion"] == "success"
    assert f"{BASE}@{base_sha[:7]}" in runs[-1]["output"]["summary"]


async def test_a_base_push_reactivates_the_guild_repository_with_a_check_run_naming_it(
    world: Harness,
) -> None:
    sha = await world.push(example("guild"))
    await world.drain()
    runs_before = len(world.check_runs(sha))
    files = example("base")
    files["prompts/discussion.md"] = files["prompts/discussion.md"] + b"\nSecond edition.\n"
    base_sha = await push_base(world, files)
    state = world.state()
    assert state.commit_sha == sha  # the guild's own commit is unchanged
    assert [layer.commit_sha for layer in state.layers] == [base_sha]
    assert f"{BASE}@{base_sha[:7]}" in state.status_message
    runs = world.check_runs(sha)
    assert len(runs) == runs_before + 1, "the base push posts a check run on the guild's head"
    assert runs[-1]["conclusion"] == "success"
    assert f"{BASE}@{base_sha[:7]}" in runs[-1]["output"]["summary"]


async def test_a_breaking_base_push_keeps_the_last_good_pair_and_names_the_base_commit(
    world: Harness,
) -> None:
    sha = await world.push(example("guild"))
    await world.drain()
    good_base = world.fake.head(BASE, "main")
    # The base stays valid on its own, but no longer says what the guild's routing tests expect.
    files = example("base")
    safety = files["partials/safety.md"].replace(b"Never repeat personal data", b"Quote freely")
    assert safety != files["partials/safety.md"]
    files["partials/safety.md"] = safety
    bad_base = await push_base(world, files)
    base_branch = world.db(layers.base_state, BASE, "main")
    assert base_branch.commit_sha == bad_base, "the base itself is valid and live"
    state = world.state()
    assert state.commit_sha == sha
    assert [layer.commit_sha for layer in state.layers] == [good_base], "last good pair kept"
    assert state.branch_status == BranchStatus.REJECTED
    assert f"{BASE}@{bad_base[:7]}" in state.status_message
    assert f"{BASE}@{good_base[:7]}" in state.status_message
    runs = world.check_runs(sha)
    assert runs[-1]["conclusion"] == "failure"
    assert f"{BASE}@{bad_base[:7]}" in runs[-1]["output"]["summary"]


async def test_a_file_the_base_locks_is_rejected_with_an_annotation(world: Harness) -> None:
    good = await world.push(example("guild"))
    await world.drain()
    files = example("guild")
    files["prompts/moderation.md"] = b"Be lenient.\n{messages}\n"
    bad = await world.push(files)
    await world.drain()
    state = world.state()
    assert state.commit_sha == good
    assert state.branch_status == BranchStatus.REJECTED
    run = world.check_runs(bad)[-1]
    assert run["conclusion"] == "failure"
    notes = [n for n in run["annotations"] if n["path"] == "prompts/moderation.md"]
    assert notes and notes[0]["title"] == "file-locked"
    assert f"locked by {BASE}" in notes[0]["message"]


async def test_a_private_base_serves_only_the_guilds_its_path_allows(world: Harness) -> None:
    world.fake.update_repo(BASE, private=True)
    response = await world.deliver("repository", world.fake.repository_payload(BASE, "privatized"))
    assert response.status_code == 202
    await world.drain()
    files = example("base")
    files["PATH"] = files["PATH"] + f'allowed_guilds: ["{GUILD}"]\n'.encode()
    await push_base(world, files)
    world.bind(OTHER_GUILD)
    await world.push(example("guild"))
    await world.drain()
    assert world.state(GUILD).state == BindingState.ACTIVE
    other = world.state(OTHER_GUILD)
    assert other.state == BindingState.NO_ACCESS
    assert other.snapshot_id is None
    assert BASE in other.status_message and OTHER_GUILD in other.status_message


async def test_a_base_nobody_can_read_is_reported_and_tried_again_on_the_next_push(
    world: Harness,
) -> None:
    files = example("guild")
    files["PATH"] = files["PATH"].replace(BASE.encode(), b"someone/secret-pack")
    sha = await world.push(files)
    await world.drain()
    state = world.state()
    assert state.snapshot_id is None
    assert state.branch_status == BranchStatus.REJECTED
    assert "someone/secret-pack@main" in state.status_message
    diagnostics = [d for d in state.diagnostics if d["code"] == "base-missing"]
    assert (
        diagnostics
        and "guildprompts cannot read someone/secret-pack@main" in diagnostics[0]["hint"]
    )
    runs = world.check_runs(sha)
    assert [run["conclusion"] for run in runs] == ["neutral", "failure"]  # waited, then failed
    world.fake.add_repo("someone/secret-pack", private=False)  # it exists now, and is public
    world.fake.push("someone/secret-pack", "main", example("base"))
    await world.push({**files, "prompts/extra.md": b"Ours.\n"})
    await world.drain()
    assert world.state().branch_status == BranchStatus.OK, world.state().status_message


async def test_extending_a_base_that_extends_back_is_a_cycle(world: Harness) -> None:
    await world.push(example("guild"))
    await world.drain()
    files = example("base")
    files["PATH"] = files["PATH"] + b"extends: octo-org/prompts@main\n"
    await push_base(world, files)
    base_branch = world.db(layers.base_state, BASE, "main")
    assert base_branch.status == BranchStatus.REJECTED
    assert world.state().layers, "the guild keeps its last good pair"
    stored = world.db(installations.repository_by_name, BASE)
    assert stored is not None
    assert world.db(serving.is_tracked, stored.id, "main"), "a base is tracked: its pushes sync"


async def test_a_base_made_private_stops_serving_the_guilds_it_does_not_allow_at_once(
    world: Harness,
) -> None:
    files = example("base")
    files["PATH"] = files["PATH"] + f'allowed_guilds: ["{GUILD}"]\n'.encode()
    await push_base(world, files)
    world.bind(OTHER_GUILD)
    await world.push(example("guild"))
    await world.drain()
    assert world.state(OTHER_GUILD).snapshot_id is not None, "a public base serves everyone"
    world.fake.update_repo(BASE, private=True)
    response = await world.deliver("repository", world.fake.repository_payload(BASE, "privatized"))
    assert response.status_code == 202
    assert await Worker(world.runtime, worker_id="one").run_once()  # the event alone
    other = world.state(OTHER_GUILD)
    assert other.snapshot_id is None and BASE in other.status_message
    assert world.state(GUILD).snapshot_id is not None
    await world.drain()  # the re-check queued by the event agrees
    assert world.state(OTHER_GUILD).snapshot_id is None
    assert world.state(GUILD).snapshot_id is not None
    world.fake.update_repo(BASE, private=False)
    await world.deliver("repository", world.fake.repository_payload(BASE, "publicized"))
    await world.drain()
    assert world.state(OTHER_GUILD).snapshot_id is not None, "served again once public"


async def test_a_base_moving_while_a_commit_is_composed_is_not_missed(
    world: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guild repository's first commit is composed over the base's commit A; the base then
    goes live at B before that commit concludes. No rebase can be queued for it yet (the base
    does not know it as a dependent), so its conclusion must see B and compose again."""
    from github_app.sync.flow import _Run

    await push_base(world, example("base"))  # the base is read and live at A
    files = example("base")
    files["prompts/discussion.md"] += b"\nSecond edition.\n"
    moved: list[str] = []
    compose_once = _Run._validated

    async def base_moves_meanwhile(self: _Run, *args: Any, **kwargs: Any) -> Any:
        commit = await compose_once(self, *args, **kwargs)
        if self.request.full_name == world.full_name and not moved:
            moved.append(world.fake.push(BASE, "main", dict(files)))
            stored = world.db(installations.repository_by_name, BASE)
            await sync(world.runtime, SyncRequest(stored.id, BASE, "main", None, "reconcile"))
        return commit

    monkeypatch.setattr(_Run, "_validated", base_moves_meanwhile)
    await world.push(example("guild"))
    await world.drain()
    assert moved
    state = world.state()
    assert [layer.commit_sha for layer in state.layers] == moved, "composed again over B"


async def test_a_base_followed_at_a_tag_is_read_there_and_moves_with_it(world: Harness) -> None:
    world.fake.tag(BASE, "v1", "main", message="the first pack")  # an annotated tag
    files = example("guild")
    files["PATH"] = files["PATH"].replace(b"@main", b"@v1")
    await world.push(files)
    await world.drain()
    state = world.state()
    v1 = world.fake.tagged(BASE, "v1")
    assert [(layer.ref, layer.commit_sha) for layer in state.layers] == [("v1", v1)]
    changed = example("base")
    changed["prompts/discussion.md"] += b"\nSecond edition.\n"
    world.fake.push(BASE, "main", changed)
    world.fake.tag(BASE, "v1", "main", message="the second pack")  # moved, and pushed
    response = await world.deliver("push", world.fake.push_payload(BASE, "refs/tags/v1"))
    assert response.status_code == 202
    await world.drain()
    moved = world.fake.tagged(BASE, "v1")
    assert moved != v1
    assert [layer.commit_sha for layer in world.state().layers] == [moved]
    world.fake.tag(BASE, "v1", v1)  # moved back without a webhook: the reconcile loop sees it
    assert await reconcile(world.runtime) >= 1
    await world.drain()
    assert [layer.commit_sha for layer in world.state().layers] == [v1]


async def test_a_private_base_without_the_app_is_read_and_served_through_a_guilds_token(
    database_url: str,
) -> None:
    async with harness(database_url, private=False) as world:
        world.fake.add_repo(BASE, private=True)  # the App is not installed on the base
        base_sha = world.fake.push(BASE, "main", example("base"))
        token = world.fake.add_pat(repos=[BASE])
        world.bind(GUILD, token=token)
        world.bind(OTHER_GUILD)
        await world.push(example("guild"))
        await world.drain()
        served = world.state(GUILD)
        assert [layer.commit_sha for layer in served.layers] == [base_sha], served.status_message
        other = world.state(OTHER_GUILD)
        assert other.snapshot_id is None and other.state == BindingState.NO_ACCESS
        assert f'add "{OTHER_GUILD}" to allowed_guilds' in other.status_message
        world.fake.revoke_pat(token)  # no webhook says so: the next re-check finds out
        world.fake.push(BASE, "main", {**example("base"), "prompts/extra.md": b"More.\n"})
        assert await reconcile(world.runtime) == 0, "the base cannot be read any more"
        await world.push({**example("guild"), "prompts/extra.md": b"Ours.\n"})
        await world.drain()
        assert world.state(GUILD).snapshot_id is None, "a revoked token serves nothing"


async def test_a_private_base_the_app_is_uninstalled_from_stops_being_served_at_once(
    database_url: str,
) -> None:
    async with harness(database_url, private=False) as world:
        base_installation = world.fake.add_installation("guildprompts")
        world.fake.add_repo(BASE, private=True, installation=base_installation)
        files = example("base")
        files["PATH"] += f'allowed_guilds: ["{GUILD}"]\n'.encode()
        world.fake.push(BASE, "main", files)
        payload = world.fake.installation_payload(base_installation)
        assert (await world.deliver("installation", payload)).status_code == 202
        world.bind(GUILD)
        await world.push(example("guild"))
        await world.drain()
        assert world.state().layers, world.state().status_message
        deleted = world.fake.installation_payload(base_installation, "deleted")
        world.fake.delete_installation(base_installation)
        assert (await world.deliver("installation", deleted)).status_code == 202
        assert await Worker(world.runtime, worker_id="one").run_once()  # the event alone
        state = world.state()
        assert state.snapshot_id is None and state.state == BindingState.NO_ACCESS
        assert f"the base {BASE} cannot be read any more" in state.status_message
        await world.push({**example("guild"), "prompts/extra.md": b"Ours.\n"})
        await world.drain()
        state = world.state()
        assert state.snapshot_id is None and BASE in state.status_message
