"""Sync against the fake GitHub: last known good, ordering, idempotence, API cost, the tree's
traps (oversized blobs, symlinks, truncated listings), pending bindings and lost access."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from github_app import metrics
from github_app.github import TransientError
from github_app.store import audit, bindings, branches, snapshots
from github_app.store.models import BindingState, BranchStatus
from github_app.sync import SyncRequest
from tests.fakegithub import Submodule, Symlink, blob_sha
from tests.harness import BROKEN_PATH, GUILD, ROUTES, T0, World, open_world
from tests.harness import OTHER_GUILD as OTHER
from tests.harness import VALID_FOR_GUILD as VALID

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(sqlite_url: str) -> AsyncIterator[World]:
    async with open_world(sqlite_url) as world:
        yield world


def _push_to_live_count() -> float:
    return metrics.REGISTRY.get_sample_value("guildprompts_push_to_live_seconds_count") or 0.0


async def test_valid_push_activates_and_the_guild_is_served(world: World) -> None:
    world.bind(GUILD)
    assert world.state(GUILD).snapshot_id is None  # built-in defaults until a good commit
    observed = _push_to_live_count()
    sha = world.push(VALID)

    outcome = await world.sync(sha, received_at=T0)

    assert outcome.activated and outcome.valid
    assert outcome.files_fetched == 3
    state = world.state(GUILD)
    assert (state.snapshot_id, state.commit_sha) == (outcome.snapshot_id, sha)
    assert state.branch_status == BranchStatus.OK
    assert state.status_message == f"serving {sha[:7]}"
    assert world.announced  # the cache was told after the commit
    assert world.announced[-1] == world.db(branches.current_generation)
    assert _push_to_live_count() == observed + 1
    files = world.db(snapshots.snapshot_files, outcome.snapshot_id)
    assert files == {path: content for path, content in VALID.items()}
    log = world.db(audit.recent_syncs, world.repository_id)[0]
    assert (log.outcome, log.trigger, log.commit_sha) == ("activated", "push", sha)
    assert (log.files_fetched, log.api_calls) == (3, outcome.api_calls)


async def test_a_broken_push_keeps_the_last_known_good_snapshot(world: World) -> None:
    world.bind(GUILD)
    good = world.push(VALID)
    first = await world.sync(good)
    broken = world.push({"PATH": BROKEN_PATH})

    outcome = await world.sync(broken)

    assert outcome.valid is False and not outcome.activated
    assert [d.code for d in outcome.diagnostics if d.severity == "error"] == ["path-syntax"]
    state = world.state(GUILD)
    assert state.snapshot_id == first.snapshot_id and state.commit_sha == good
    assert state.branch_status == BranchStatus.REJECTED
    assert state.status_message == f"serving {good[:7]}, {broken[:7]} rejected: 1 error"
    assert state.diagnostics[0]["code"] == "path-syntax" and not state.is_stale
    assert outcome.message == state.status_message
    # The rejected commit is stored (for its check run) but never served.
    snapshot = world.db(snapshots.find_snapshot, world.repository_id, broken)
    assert snapshot is not None and snapshot.valid is False


async def test_a_rejected_first_commit_serves_the_defaults(world: World) -> None:
    world.bind(GUILD)
    outcome = await world.sync(world.push({"PATH": BROKEN_PATH}))
    state = world.state(GUILD)
    assert state.snapshot_id is None
    assert outcome.message == state.status_message
    assert state.status_message.startswith("serving the built-in defaults, ")


async def test_an_older_head_never_activates(world: World) -> None:
    world.bind(GUILD)
    old = world.push(VALID)
    new = world.push({"prompts/default.md": b"Newer {messages}\n"})
    newer = await world.sync(new, head_at=T0 + timedelta(minutes=2))
    late = await world.sync(old, head_at=T0 + timedelta(minutes=1))  # a slow, older delivery

    assert newer.activated
    assert late.valid and not late.activated
    assert "older" in late.message
    state = world.state(GUILD)
    assert state.commit_sha == new and state.latest_sha == new
    assert state.status_message == f"serving {new[:7]}"


async def test_a_redelivered_push_is_a_no_op(world: World) -> None:
    world.bind(GUILD)
    sha = world.push(VALID)
    first = await world.sync(sha)
    generation = world.db(branches.current_generation)
    mark = len(world.fake.requests)

    again = await world.sync(sha)

    assert (again.snapshot_id, again.valid, again.activated) == (first.snapshot_id, True, False)
    assert again.api_calls == 0 and again.files_fetched == 0
    assert world.requests_since(mark) == []  # no tree, no blob, no second check run
    assert world.db(branches.current_generation) == generation
    assert len(world.fake.check_runs_for(world.full_name, sha)) == 1
    assert world.state(GUILD).commit_sha == sha


async def test_a_push_costs_at_most_k_plus_4_requests(world: World) -> None:
    files = dict(VALID)
    files.update({f"prompts/library/entry-{i:03}.md": f"Entry {i}\n".encode() for i in range(297)})
    assert len(files) == 300
    first = await world.sync(world.push(files))
    assert first.files_fetched == 300
    assert world.fake.count("/tarball/") == 1, "300 new files come as one archive"
    changed = {
        "prompts/default.md": b"Changed {messages}\n",
        "prompts/library/entry-007.md": b"Changed entry\n",
    }
    sha = world.push(changed)
    mark = len(world.fake.requests)

    outcome = await world.sync(sha)

    sent = world.requests_since(mark)
    assert len(sent) <= len(changed) + 4
    assert sorted(sent) == sorted(
        [
            "GET /repositories/{repository_id}/git/trees/{sha}",
            "GET /repositories/{repository_id}/git/blobs/{sha}",
            "GET /repositories/{repository_id}/git/blobs/{sha}",
            "POST /repositories/{repository_id}/check-runs",
            "PATCH /repositories/{repository_id}/check-runs/{check_run_id}",
        ]
    )
    assert outcome.activated and outcome.files_fetched == 2
    assert outcome.api_calls == len(sent)

    # Blobs are fetched once: one more changed file, one more download.
    single = world.push({"prompts/library/entry-100.md": b"Again\n"})
    mark = len(world.fake.requests)
    outcome = await world.sync(single)
    assert outcome.files_fetched == 1
    assert world.fake.count(r"/git/blobs/", method="GET") == 2 + 1
    assert world.fake.count(r"/git/blobs/" + blob_sha(b"Again\n")) == 1


async def test_blobs_are_never_fetched_twice_across_branches(world: World) -> None:
    await world.sync(world.push(VALID))
    feature = world.push(
        {"prompts/meeting/brief.md": b"Feature brief {messages}\n"}, branch="feature"
    )
    outcome = await world.sync(feature, branch="feature", activate=False)
    assert outcome.files_fetched == 1 and outcome.valid and not outcome.activated


async def test_blob_downloads_are_bounded_by_sync_concurrency(sqlite_url: str) -> None:
    async with open_world(sqlite_url, env={"SYNC_CONCURRENCY": "3"}) as world:
        in_flight = peak = 0
        download = world.runtime.github.get_blob

        async def counted(*args: Any, **kwargs: Any) -> bytes:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await asyncio.sleep(0.001)
                return await download(*args, **kwargs)
            finally:
                in_flight -= 1

        world.runtime.github.get_blob = counted  # type: ignore[method-assign]
        files = {**VALID, **{f"prompts/library/n{i}.md": f"{i}\n".encode() for i in range(20)}}
        outcome = await world.sync(world.push(files))
        assert outcome.files_fetched == 23 and peak == 3


async def test_an_oversized_blob_is_refused_without_download(sqlite_url: str) -> None:
    async with open_world(sqlite_url, env={"MAX_PROMPT_FILE_SIZE": "1000"}) as world:
        world.bind(GUILD)
        big = b"x" * 2000 + b"\n"
        sha = world.push({**VALID, "prompts/meeting/brief.md": big})

        outcome = await world.sync(sha)

        assert world.fake.count(r"/git/blobs/" + blob_sha(big)) == 0
        assert outcome.valid is False and not outcome.activated
        refused = [d for d in outcome.diagnostics if d.code == "file-too-large"]
        assert [(d.path, d.severity) for d in refused] == [("prompts/meeting/brief.md", "error")]
        assert "2001 bytes" in refused[0].message


async def test_symlinks_and_submodules_are_never_followed(world: World) -> None:
    sha = world.push(
        {
            **VALID,
            "prompts/meeting/detailed.md": Symlink("../../etc/passwd"),
            "prompts/vendor": Submodule(),
        }
    )

    outcome = await world.sync(sha)

    found = {(d.code, d.path, d.severity) for d in outcome.diagnostics}
    assert ("symlink-ignored", "prompts/meeting/detailed.md", "warning") in found
    assert ("submodule-ignored", "prompts/vendor", "warning") in found
    assert outcome.valid and outcome.activated  # warnings only: the rest is served
    files = world.db(snapshots.snapshot_files, outcome.snapshot_id)
    assert "prompts/meeting/detailed.md" not in files
    assert world.fake.count(r"/git/blobs/" + blob_sha(b"../../etc/passwd")) == 0


async def test_a_directory_with_its_own_path_is_another_repository(world: World) -> None:
    pack = {"base/PATH": b"prompts/default.md\n", "base/prompts/default.md": b"Base\n"}
    outcome = await world.sync(world.push({**VALID, **pack}))
    assert outcome.activated
    assert not any(d.path.startswith("base/") for d in outcome.diagnostics)
    assert set(world.db(snapshots.snapshot_files, outcome.snapshot_id)) == set(VALID)
    assert world.fake.count(r"/git/blobs/" + blob_sha(b"Base\n")) == 0


async def test_a_truncated_tree_is_walked(world: World) -> None:
    files = {
        **VALID,
        **{
            f"prompts/{c}/{t}.md": f"{c} {t}\n".encode()
            for c in ("discussion", "moderation")
            for t in ("brief", "detailed")
        },
    }
    world.fake.tree_limit = 4  # GitHub truncates long recursive listings
    outcome = await world.sync(world.push(files))
    assert outcome.activated
    assert set(world.db(snapshots.snapshot_files, outcome.snapshot_id)) == set(files)
    assert world.fake.count(r"/git/trees/") > 1


async def test_a_branch_head_is_resolved_when_no_sha_is_given(world: World) -> None:
    world.bind(GUILD)
    sha = world.push(VALID)
    outcome = await world.sync(None, trigger="reconcile", head_at=None)
    assert outcome.sha == sha and outcome.activated
    mark = len(world.fake.requests)
    again = await world.sync(None, trigger="reconcile", head_at=None)
    assert again.sha == sha and not again.activated
    assert world.requests_since(mark) == ["GET /repositories/{repository_id}/git/ref/{ref:path}"]
    assert world.fake.requests[-1].status == 304  # the stored ETag made it free


async def test_a_deleted_branch_keeps_the_last_known_good(world: World) -> None:
    world.bind(GUILD, branch="release")
    sha = world.push(VALID, branch="release")
    await world.sync(sha, branch="release")
    world.fake.delete_branch(world.full_name, "release")

    outcome = await world.sync(None, branch="release", trigger="reconcile")

    assert outcome.valid is None and not outcome.activated
    state = world.state(GUILD)
    assert state.commit_sha == sha and state.branch_status == BranchStatus.DELETED
    assert state.status_message == f"branch release no longer exists on GitHub: serving {sha[:7]}"
    assert state.is_stale


async def test_an_untracked_branch_without_path_costs_one_request(world: World) -> None:
    sha = world.push({"README.md": b"not prompts\n", "docs/guide.md": b"guide\n"}, branch="docs")
    mark = len(world.fake.requests)
    outcome = await world.sync(sha, branch="docs", activate=False)
    assert outcome.snapshot_id is None and outcome.valid is None
    assert world.requests_since(mark) == ["GET /repositories/{repository_id}/git/trees/{sha}"]
    assert world.fake.check_runs_for(world.full_name, sha) == []


async def test_pending_binding_on_a_public_repository_is_promoted(sqlite_url: str) -> None:
    async with open_world(sqlite_url, private=False) as world:
        world.request_binding(GUILD)
        outcome = await world.sync(world.push(VALID), trigger="bind")
        assert world.pending(GUILD) is None
        state = world.state(GUILD)
        assert state.state == BindingState.ACTIVE and state.snapshot_id == outcome.snapshot_id
        assert world.announced


async def test_pending_binding_on_a_private_repository_needs_allowed_guilds(world: World) -> None:
    world.request_binding(GUILD)
    world.request_binding(OTHER)

    await world.sync(world.push(VALID), trigger="bind")

    assert world.pending(GUILD) is None and world.state(GUILD).snapshot_id is not None
    waiting = world.pending(OTHER)
    assert waiting is not None
    assert waiting.status_message == (
        f'this repository is private: add "{OTHER}" to allowed_guilds in PATH'
    )
    assert world.db(bindings.get_binding, OTHER) is None


async def test_pending_binding_waits_for_a_valid_commit(world: World) -> None:
    world.request_binding(GUILD)
    sha = world.push({"PATH": BROKEN_PATH})
    await world.sync(sha, trigger="bind")
    waiting = world.pending(GUILD)
    assert waiting is not None
    assert waiting.status_message.startswith(f"waiting for a valid commit on main: {sha[:7]}")
    assert "PATH:2" in waiting.status_message


async def test_a_guild_removed_from_allowed_guilds_loses_access(world: World) -> None:
    world.request_binding(GUILD)
    await world.sync(world.push(VALID), trigger="bind")
    assert world.state(GUILD).snapshot_id is not None

    await world.sync(world.push({"PATH": ROUTES}))  # the owner removed the guild

    state = world.state(GUILD)
    assert state.state == BindingState.NO_ACCESS and state.snapshot_id is None
    assert state.status_message == (
        f'this repository is private: add "{GUILD}" to allowed_guilds in PATH'
    )


async def test_a_push_leaves_guilds_on_other_branches_alone(world: World) -> None:
    world.bind(GUILD)
    world.bind(OTHER, branch="release")
    release_path = ROUTES + f'allowed_guilds: ["{OTHER}"]\n'.encode()
    release = await world.sync(
        world.push({**VALID, "PATH": release_path}, branch="release"), branch="release"
    )
    assert world.state(OTHER).snapshot_id == release.snapshot_id

    main = await world.sync(world.push(VALID))  # lists GUILD only

    assert main.activated and world.state(GUILD).snapshot_id == main.snapshot_id
    other = world.state(OTHER)
    assert other.state == BindingState.ACTIVE and other.snapshot_id == release.snapshot_id


async def test_a_guild_token_reads_a_repository_without_the_app(sqlite_url: str) -> None:
    async with open_world(sqlite_url, installed=False) as world:
        token = world.fake.add_pat(repos=[world.full_name])
        world.request_binding(GUILD, token=token)
        sha = world.push(VALID)

        outcome = await world.sync(sha, trigger="bind")

        assert outcome.activated and world.pending(GUILD) is None
        assert world.state(GUILD).snapshot_id == outcome.snapshot_id
        assert world.fake.check_runs_for(world.full_name) == []  # checks need the App


async def test_a_private_repository_nobody_can_read_says_so(sqlite_url: str) -> None:
    async with open_world(sqlite_url, installed=False) as world:
        world.request_binding(GUILD)
        outcome = await world.sync(world.push(VALID), trigger="bind")
        assert outcome.snapshot_id is None and outcome.api_calls == 0
        assert "install the GitHub App" in outcome.message
        assert world.pending(GUILD).status_message == outcome.message


async def test_a_lost_installation_is_reported_not_raised(world: World) -> None:
    world.bind(GUILD)
    world.bind(OTHER, token=world.fake.add_pat(repos=[world.full_name]))
    good = await world.sync(world.push(VALID))
    world.fake.delete_installation(world.installation_id)  # its cached token dies with it

    outcome = await world.sync(world.push({"prompts/default.md": b"New {messages}\n"}))

    assert outcome.snapshot_id is None and not outcome.activated
    assert "cannot read octo-org/prompts any more" in outcome.message
    state = world.state(GUILD)
    assert state.state == BindingState.NO_ACCESS and state.snapshot_id is None
    assert state.status_message == outcome.message
    # A guild with its own token is not affected by the App's lost installation.
    other = world.state(OTHER)
    assert other.state == BindingState.ACTIVE and other.snapshot_id == good.snapshot_id
    log = world.db(audit.recent_syncs, world.repository_id)[0]
    assert log.outcome == "no_access"


async def test_a_refused_token_is_reported(sqlite_url: str) -> None:
    async with open_world(sqlite_url, installed=False) as world:
        world.request_binding(GUILD, token="github_pat_" + "x" * 40)  # revoked, or never valid
        outcome = await world.sync(world.push(VALID), trigger="bind")
        assert outcome.snapshot_id is None
        assert "personal access token for octo-org/prompts was refused" in outcome.message
        assert world.pending(GUILD).status_message == outcome.message


async def test_a_deleted_path_file_costs_no_download(world: World) -> None:
    world.bind(GUILD)
    good = world.push(VALID)
    await world.sync(good)
    gone = world.push({"prompts/new.md": b"New\n"}, remove=["PATH"])
    outcome = await world.sync(gone)
    assert outcome.files_fetched == 0 and outcome.valid is False
    assert [d.code for d in outcome.diagnostics] == ["path-missing"]
    assert world.state(GUILD).commit_sha == good


async def test_transient_errors_propagate_for_a_later_retry(world: World) -> None:
    world.bind(GUILD)
    sha = world.push(VALID)
    world.fake.fail_next(r"/git/trees/", status=502, times=4)  # every attempt of the client

    with pytest.raises(TransientError):
        await world.sync(sha)

    assert world.state(GUILD).snapshot_id is None
    assert world.db(audit.recent_syncs, world.repository_id)[0].outcome == "failed"
    retried = await world.sync(sha)  # the worker's retry
    assert retried.activated


async def test_bad_requests_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="unknown sync trigger"):
        SyncRequest(repository_id=1, full_name="o/r", branch="main", sha=None, trigger="cron")
    with pytest.raises(ValueError, match="not a commit sha"):
        SyncRequest(repository_id=1, full_name="o/r", branch="main", sha="main", trigger="push")
    with_token = SyncRequest(
        repository_id=1,
        full_name="o/r",
        branch=None,
        sha=None,
        trigger="bind",
        token="a-personal-access-token",
    )
    assert "a-personal-access-token" not in repr(with_token)  # requests get logged


@pytest.mark.postgres
async def test_last_known_good_on_postgresql(postgres_url: str) -> None:
    async with open_world(postgres_url) as world:
        world.bind(GUILD)
        good = world.push(VALID)
        first = await world.sync(good)
        broken = world.push({"PATH": BROKEN_PATH})
        second = await world.sync(broken)
        again = await world.sync(broken)

        assert first.activated and not second.activated and not again.activated
        state = world.state(GUILD)
        assert state.snapshot_id == first.snapshot_id
        assert state.status_message == f"serving {good[:7]}, {broken[:7]} rejected: 1 error"
        assert len(world.fake.check_runs_for(world.full_name, broken)) == 1


async def test_activation_does_not_wait_for_the_check_run(world: World) -> None:
    """The check run's creation runs beside the blob downloads: a slow check-runs endpoint
    delays the check run, not what guilds are served."""
    world.bind(GUILD)
    sha = world.push(VALID)
    world.fake.hang_seconds = 1.0
    world.fake.hang_next(r"/check-runs$", method="POST")
    activated_at: list[float] = []
    loop = asyncio.get_running_loop()
    unsubscribe = world.runtime.on_activation(lambda _generation: activated_at.append(loop.time()))
    started = loop.time()
    try:
        outcome = await world.sync(sha)
    finally:
        unsubscribe()
    finished = loop.time()

    assert outcome.activated
    assert activated_at and activated_at[0] - started < 0.5  # not behind the 1 s check run
    assert finished - started >= 1.0  # the check run was still created and completed
    assert [run["status"] for run in world.check_runs(sha)] == ["completed"]
