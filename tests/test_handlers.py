"""Handlers end to end: a webhook through intake, the worker, the sync, into what guilds are
served, against the fake GitHub; routing checked with GitHub's real payload examples."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from github_app.handlers import router
from github_app.handlers.common import head_time
from github_app.store import bindings, branches, deliveries, installations
from github_app.store.models import BindingState, BranchStatus
from github_app.sync.jobs import enqueue_sync
from tests.harness import (
    BROKEN_PATH,
    FULL_NAME,
    GUILD,
    OTHER_GUILD,
    VALID,
    Harness,
    fixture_payload,
    harness,
    runtime_for,
)
from tests.store_helpers import failed_deliveries

pytestmark = pytest.mark.anyio

VALID_PATH_V2 = VALID["PATH"] + b"# a comment\n"


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[Harness]:
    """Each flow runs on SQLite and on PostgreSQL."""
    async with harness(database_url) as world:
        yield world


async def _live(world: Harness, files: dict[str, Any] | None = None) -> str:
    """Bind GUILD to main and make `files` (VALID) live there; returns the commit."""
    world.bind()
    sha = await world.push(files or VALID)
    await world.drain()
    assert world.state().commit_sha == sha
    return sha


# ---- routing ---------------------------------------------------------------------------------

ROUTED = [
    ("check_run", "rerequested"),
    ("check_suite", "requested"),
    ("check_suite", "rerequested"),
    ("delete", "payload"),
    ("github_app_authorization", "revoked"),
    ("installation", "created"),
    ("installation", "deleted"),
    ("installation", "suspend"),
    ("installation_repositories", "added"),
    ("installation_repositories", "removed"),
    ("ping", "with-app_id"),
    ("pull_request", "opened"),
    ("pull_request", "reopened"),
    ("pull_request", "synchronize"),
    ("push", "payload"),
    ("repository", "renamed"),
    ("repository", "transferred"),
]


@pytest.mark.parametrize(("event", "name"), ROUTED)
def test_every_example_event_has_a_handler(event: str, name: str) -> None:
    payload = fixture_payload(event, name if name == "payload" else f"{name}.payload")
    assert router.handlers_for(event, payload.get("action")), (event, name)


def test_actions_nobody_needs_have_no_handler() -> None:
    payload = fixture_payload("check_run", "requested_action.payload")
    assert router.handlers_for("check_run", payload["action"]) == []


def _example_world(world: Harness) -> None:
    """Installations and repositories with the ids GitHub's payload examples use."""
    fake = world.fake
    for installation_id, account in (
        (1, "github"),
        (2, "octocat"),
        (957387, "Codertocat"),
        (16598467, "octo-suspended"),
    ):
        fake.add_installation(account, installation_id=installation_id)
    fake.add_repo(
        "Codertocat/Hello-World",
        repo_id=186853002,
        installation=957387,
        private=False,
        default_branch="master",
    )
    fake.add_repo("octocat/Hello-World", repo_id=1296269, installation=2, private=False)
    fake.add_repo("Octocoders/Hello-World", repo_id=186853261, installation=1, private=False)
    fake.add_repo("github/hello-world", repo_id=526, installation=1, private=False)


async def test_real_payload_examples_are_processed_without_failure(world: Harness) -> None:
    _example_world(world)
    order = [
        ("installation", "created.payload"),
        ("installation_repositories", "added.payload"),
        ("ping", "with-app_id.payload"),
        ("push", "payload"),
        ("push", "with-installation.payload"),
        ("delete", "payload"),
        ("repository", "renamed.payload"),
        ("repository", "transferred.payload"),
        ("pull_request", "opened.payload"),
        ("check_suite", "requested.payload"),
        ("check_run", "rerequested.payload"),
        ("github_app_authorization", "revoked.payload"),
        ("installation", "suspend.payload"),
        ("installation_repositories", "removed.payload"),
        ("installation", "deleted.payload"),
    ]
    for event, name in order:
        response = await world.deliver(event, fixture_payload(event, name))
        assert response.status_code == 202, (event, name, response.text)
        await world.drain()
    stats = world.db(deliveries.queue_stats)
    failed = [(d.event, d.last_error) for d in world.db(failed_deliveries)]
    assert (stats.pending, stats.processing, failed) == (0, 0, [])
    # installation created stored the installation and its repository with its default branch
    assert world.db(installations.get_installation, 957387) is not None
    codertocat = world.db(installations.get_repository, 186853002)
    assert codertocat is not None and codertocat.default_branch == "master"
    # renamed: the id is the key, the name follows the payload
    renamed = world.db(installations.get_repository, 186853261)
    assert renamed is not None and renamed.full_name == "Octocoders/Hello-World"
    # deleted removed installation 2; suspend marked 16598467
    assert world.db(installations.get_installation, 2) is None
    suspended = world.db(installations.get_installation, 16598467)
    assert suspended is not None and suspended.suspended


# ---- push -----------------------------------------------------------------------------------


def test_head_time_orders_pushes_by_pushed_at_then_arrival() -> None:
    received = datetime(2026, 1, 1, 12, 0, 0, 300000, tzinfo=UTC)
    pushed = int(datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp())
    first = head_time({"repository": {"pushed_at": pushed}}, received)
    second = head_time({"repository": {"pushed_at": pushed}}, received + timedelta(seconds=0.4))
    assert first < second < datetime(2026, 1, 1, 12, 0, 1, tzinfo=UTC), "same second: arrival"
    late = head_time({"repository": {"pushed_at": pushed}}, received + timedelta(days=1))
    newer = head_time({"repository": {"pushed_at": pushed + 1}}, received)
    assert late < newer, "a redelivered old push stays older than the next push"
    iso = head_time({"repository": {"pushed_at": "2026-01-01T12:00:00Z"}}, received)
    assert iso == first
    assert head_time({}, received) == received


async def test_push_to_tracked_branch_goes_live_with_a_check_run(world: Harness) -> None:
    sha = await _live(world)
    state = world.state()
    assert state.snapshot_id is not None and state.branch_status == BranchStatus.OK
    runs = world.check_runs(sha)
    assert [(r["name"], r["conclusion"]) for r in runs] == [("guildprompts", "success")]
    assert world.announced, "the cache of this process was told"


async def test_broken_push_keeps_the_last_good_commit(world: Harness) -> None:
    good = await _live(world)
    bad = await world.push({"PATH": BROKEN_PATH})
    await world.drain()
    state = world.state()
    assert state.commit_sha == good
    assert state.branch_status == BranchStatus.REJECTED
    assert f"serving {good[:7]}, {bad[:7]} rejected" in state.status_message
    assert [r["conclusion"] for r in world.check_runs(bad)] == ["failure"]


async def test_pushes_to_one_branch_coalesce(world: Harness) -> None:
    world.bind()
    first = await world.push(VALID)
    second = await world.push({"prompts/default.md": b"Newer {messages}\n"})
    mark = len(world.fake.requests)
    await world.drain()
    assert world.state().commit_sha == second
    assert world.check_runs(first) == [], "the superseded push was not synced on its own"
    trees = [r.path for r in world.fake.requests[mark:] if "/git/trees/" in r.path]
    # The head once; `first` only as the base of the check run's routing diff (its `before`).
    assert sorted(path.rsplit("/", 1)[-1].split("?")[0] for path in trees) == sorted(
        [second, first]
    )


async def test_tag_push_costs_nothing(world: Harness) -> None:
    await _live(world)
    payload = world.fake.push_payload(FULL_NAME, "main")
    payload["ref"] = "refs/tags/v1.0"
    mark = len(world.fake.requests)
    await world.deliver("push", payload)
    assert await world.drain() == 1
    assert world.requests_since(mark) == []


async def test_untracked_branch_is_checked_only_when_path_is_in_the_commit(
    world: Harness,
) -> None:
    live = await _live(world)
    touched = await world.push({"PATH": VALID_PATH_V2}, branch="feature")
    await world.drain()
    assert [r["conclusion"] for r in world.check_runs(touched)] == ["success"]
    assert world.state().commit_sha == live, "an untracked branch never becomes live"
    # A new branch whose commits leave PATH alone: nothing fetched, check_suite checks it.
    # (GitHub lists each commit's changes against its parent; the fake's first push of a
    # branch lists every file, so the commit's real change is written in.)
    untouched = world.fake.push(FULL_NAME, "fresh", {"prompts/other.md": b"Other {messages}\n"})
    payload = world.fake.push_payload(FULL_NAME, "fresh")
    payload["commits"][0].update(added=["prompts/other.md"], modified=[], removed=[])
    mark = len(world.fake.requests)
    await world.deliver("push", payload)
    await world.drain()
    assert world.requests_since(mark) == [] and world.check_runs(untouched) == []
    await world.deliver("check_suite", world.fake.check_suite_payload(FULL_NAME, "fresh"))
    await world.drain()
    assert [r["conclusion"] for r in world.check_runs(untouched)] == ["success"]


async def test_untracked_push_not_touching_path_is_checked_when_before_had_it(
    world: Harness,
) -> None:
    await _live(world)
    base = await world.push({"PATH": VALID_PATH_V2}, branch="feature")
    await world.drain()
    assert world.check_runs(base)
    following = await world.push({"prompts/default.md": b"Changed {messages}\n"}, branch="feature")
    await world.drain()
    assert [r["conclusion"] for r in world.check_runs(following)] == ["success"]


async def test_untracked_push_removing_path_gets_no_check_run(world: Harness) -> None:
    await _live(world)
    await world.push({"PATH": VALID_PATH_V2}, branch="feature")
    await world.drain()
    mark = len(world.fake.requests)
    removed = await world.push({}, branch="feature", remove=["PATH"])
    await world.drain()
    assert world.check_runs(removed) == [] and world.requests_since(mark) == []


async def test_deleted_branch_keeps_serving_with_a_status(world: Harness) -> None:
    sha = await _live(world)
    world.fake.delete_branch(FULL_NAME, "main")
    await world.deliver("push", world.fake.push_payload(FULL_NAME, "main"))
    await world.deliver("delete", world.fake.delete_payload(FULL_NAME, "main"))
    mark = len(world.fake.requests)
    assert await world.drain() == 2
    state = world.state()
    assert state.commit_sha == sha and state.branch_status == BranchStatus.DELETED
    assert state.is_stale and "deleted" in state.status_message and sha[:7] in state.status_message
    assert world.requests_since(mark) == []


# ---- check runs on demand -------------------------------------------------------------------


async def test_pull_request_gets_one_check_run_per_head(world: Harness) -> None:
    await _live(world)
    head = world.fake.push(FULL_NAME, "feature", {"prompts/default.md": b"PR {messages}\n"})
    await world.deliver("pull_request", world.fake.pull_request_payload(FULL_NAME, "feature"))
    await world.drain()
    assert [r["conclusion"] for r in world.check_runs(head)] == ["success"]
    reopened = world.fake.pull_request_payload(FULL_NAME, "feature", action="reopened")
    await world.deliver("pull_request", reopened)
    await world.deliver("check_suite", world.fake.check_suite_payload(FULL_NAME, "feature"))
    await world.drain()
    assert len(world.check_runs(head)) == 1, "a checked commit is not checked again"


async def test_rerequests_post_a_new_check_run(world: Harness) -> None:
    sha = await _live(world)
    [run] = world.check_runs(sha)
    await world.deliver("check_run", world.fake.check_run_payload(run["id"]))
    await world.drain()
    suite = world.fake.check_suite_payload(FULL_NAME, "main", action="rerequested")
    await world.deliver("check_suite", suite)
    await world.drain()
    assert [r["conclusion"] for r in world.check_runs(sha)] == ["success"] * 3
    assert world.state().commit_sha == sha


# ---- lifecycle ------------------------------------------------------------------------------


async def test_uninstall_purges_and_reinstall_syncs_by_itself(world: Harness) -> None:
    sha = await _live(world)
    world.request_binding(OTHER_GUILD, repository_id=world.repository_id)
    announced = len(world.announced)
    world.fake.delete_installation(world.installation_id)
    payload = {
        "action": "deleted",
        "installation": {"id": world.installation_id, "account": {"login": "octo-org", "id": 1}},
    }
    await world.deliver("installation", payload)
    await world.drain()
    state = world.state()
    assert state.snapshot_id is None and state.state == BindingState.NO_ACCESS
    assert "uninstalled" in state.status_message
    assert world.db(branches.get_branch, world.repository_id, "main") is None, "content purged"
    assert len(world.announced) > announced
    # Installed again: the live binding and the pending request come back without anyone asking.
    new_id = world.fake.add_installation("octo-org")
    world.fake.update_repo(FULL_NAME, installation=new_id)
    await world.deliver("installation", world.fake.installation_payload(new_id))
    await world.drain()
    assert world.state().commit_sha == sha and world.state().state == BindingState.ACTIVE
    assert world.state(OTHER_GUILD).commit_sha == sha, "the pending request went live"
    assert world.db(bindings.get_pending, OTHER_GUILD) is None


async def test_suspend_purges_and_unsuspend_restores(world: Harness) -> None:
    sha = await _live(world)
    world.fake.suspend_installation(world.installation_id)
    await world.deliver(
        "installation", world.fake.installation_payload(world.installation_id, "suspend")
    )
    await world.drain()
    assert world.state().snapshot_id is None and "suspended" in world.state().status_message
    world.fake.suspend_installation(world.installation_id, False)
    await world.deliver(
        "installation", world.fake.installation_payload(world.installation_id, "unsuspend")
    )
    await world.drain()
    assert world.state().commit_sha == sha


async def test_repository_removed_and_added_again(world: Harness) -> None:
    sha = await _live(world)
    removed = world.fake.installation_repositories_payload(
        world.installation_id, removed=[FULL_NAME]
    )
    world.fake.update_repo(FULL_NAME, installation=None)
    await world.deliver("installation_repositories", removed)
    await world.drain()
    state = world.state()
    assert state.snapshot_id is None and "removed from" in state.status_message
    world.fake.update_repo(FULL_NAME, installation=world.installation_id)
    added = world.fake.installation_repositories_payload(world.installation_id, added=[FULL_NAME])
    await world.deliver("installation_repositories", added)
    await world.drain()
    assert world.state().commit_sha == sha


async def test_an_added_repository_github_does_not_show_is_skipped(world: Harness) -> None:
    stranger = world.fake.add_repo("stranger/prompts")  # not in the installation after all
    payload = world.fake.installation_repositories_payload(
        world.installation_id, added=["stranger/prompts"]
    )
    await world.deliver("installation_repositories", payload)
    await world.drain()
    assert world.db(installations.get_repository, stranger) is None
    assert world.db(deliveries.queue_stats).failed == 0


async def test_repository_deleted_purges(world: Harness) -> None:
    await _live(world)
    payload = world.fake.repository_payload(FULL_NAME, "deleted")
    await world.deliver("repository", payload)
    await world.drain()
    state = world.state()
    assert state.snapshot_id is None and "deleted on GitHub" in state.status_message


async def test_rename_transfer_and_visibility_update_the_repository(world: Harness) -> None:
    await _live(world)
    world.fake.update_repo(FULL_NAME, new_full_name="octo-org/renamed")
    await world.deliver(
        "repository",
        world.fake.repository_payload(
            "octo-org/renamed", "renamed", changes={"repository": {"name": {"from": "prompts"}}}
        ),
    )
    world.fake.update_repo("octo-org/renamed", private=False)
    await world.deliver(
        "repository", world.fake.repository_payload("octo-org/renamed", "publicized")
    )
    await world.drain()
    stored = world.db(installations.get_repository, world.repository_id)
    assert stored is not None and (stored.full_name, stored.private) == ("octo-org/renamed", False)
    assert world.state().repository_full_name == "octo-org/renamed"
    assert world.state().snapshot_id is not None, "a rename does not interrupt serving"


async def test_new_default_branch_is_followed(world: Harness) -> None:
    await _live(world)
    develop = world.fake.push(FULL_NAME, "develop", {"prompts/default.md": b"Dev {messages}\n"})
    world.fake.update_repo(FULL_NAME, default_branch="develop")
    payload = world.fake.repository_payload(
        FULL_NAME, "edited", changes={"default_branch": {"from": "main"}}
    )
    await world.deliver("repository", payload)
    await world.drain()
    state = world.state()
    assert state.effective_branch == "develop" and state.commit_sha == develop


async def test_ping_and_authorization_revoked_are_done(world: Harness) -> None:
    await world.deliver("ping", world.fake.ping_payload())
    await world.deliver("github_app_authorization", world.fake.app_authorization_payload())
    assert await world.drain() == 2
    assert world.db(deliveries.queue_stats).failed == 0


# ---- internal sync jobs ----------------------------------------------------------------------


async def test_sync_job_discovers_a_repository_known_by_name(sqlite_url: str) -> None:
    async with harness(sqlite_url) as world:
        fake = world.fake
        other = fake.add_installation("elsewhere")
        fake.add_repo("elsewhere/prompts", installation=other)
        fake.push("elsewhere/prompts", "main", VALID)
        world.request_binding(GUILD, full_name="elsewhere/prompts")
        world.db(enqueue_sync, full_name="elsewhere/prompts", trigger="bind", guild_id=GUILD)
        await world.drain()
        state = world.state(GUILD)
        assert state.repository_full_name == "elsewhere/prompts"
        assert state.commit_sha == fake.head("elsewhere/prompts", "main")


async def test_sync_job_without_access_leaves_the_request_waiting(world: Harness) -> None:
    world.fake.add_repo("stranger/prompts")  # the App is not installed there
    world.request_binding(GUILD, full_name="stranger/prompts")
    world.db(enqueue_sync, full_name="stranger/prompts", trigger="bind", guild_id=GUILD)
    await world.drain()
    pending = world.db(bindings.get_pending, GUILD)
    assert pending is not None and "waiting for the guildprompts App" in pending.status_message
    assert world.db(deliveries.queue_stats).failed == 0


async def test_reconcile_job_checks_a_missed_push(world: Harness) -> None:
    await _live(world)
    missed = world.fake.push(FULL_NAME, "main", {"prompts/default.md": b"Missed {messages}\n"})
    world.db(
        enqueue_sync,
        full_name=FULL_NAME,
        repository_id=world.repository_id,
        branch="main",
        sha=missed,
        trigger="reconcile",
    )
    await world.drain()
    assert world.state().commit_sha == missed
    assert [r["conclusion"] for r in world.check_runs(missed)] == ["success"]


async def test_a_malformed_sync_job_is_dropped_not_retried(world: Harness) -> None:
    world.db(
        deliveries.record_delivery,
        "sync:broken",
        "guildprompts.sync",
        None,
        None,
        None,
        {"full_name": "no-slash", "trigger": "bind"},
    )
    assert await world.drain() == 1
    assert world.delivery("sync:broken").state == "done"


def test_enqueue_sync_refuses_what_the_worker_could_not_run(sqlite_url: str) -> None:
    runtime = runtime_for(sqlite_url, None)
    try:
        with pytest.raises(ValueError, match="trigger"):
            runtime.in_session(enqueue_sync, full_name="a/b", trigger="push")
        with pytest.raises(ValueError, match="owner/name"):
            runtime.in_session(enqueue_sync, full_name="nope", trigger="bind")
        guid = runtime.in_session(enqueue_sync, full_name="a/b", trigger="refresh", guild_id=GUILD)
        row = runtime.in_session(deliveries.get_delivery, guid)
        assert guid.startswith("sync:") and row is not None
        assert json.loads(row.payload) == {
            "repository_id": None,
            "full_name": "a/b",
            "branch": None,
            "sha": None,
            "trigger": "refresh",
            "guild_id": GUILD,
        }
    finally:
        runtime.database.dispose()
