"""Catching up: reconcile with conditional requests, the redelivery sweep, retention, and the
background tasks starting and stopping together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from github_app.loops import RedeliverySweep, prune, reconcile, run_background
from github_app.store import bindings, deliveries, installations
from github_app.store.models import BranchStatus, utcnow
from tests.fakegithub import FakeGitHub, Webhook
from tests.harness import FULL_NAME, GUILD, VALID, Harness, harness, runtime_for
from tests.store_helpers import save_binding

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(sqlite_url: str) -> AsyncIterator[Harness]:
    async with harness(sqlite_url, REDELIVERY_INTERVAL="60") as world:
        yield world


async def _live(world: Harness) -> str:
    world.bind(GUILD)
    sha = await world.push(VALID)
    await world.drain()
    assert world.state(GUILD).commit_sha == sha
    return sha


def _ref_answers(world: Harness, mark: int) -> list[int]:
    return [r.status for r in world.fake.requests[mark:] if "/git/ref/" in r.path]


# ---- reconcile ---------------------------------------------------------------------------------


async def test_an_unchanged_head_costs_a_free_304(world: Harness) -> None:
    await _live(world)
    remaining: list[int | None] = []
    world.runtime.github = world.fake.github_client(
        on_request=lambda endpoint, status, duration, who, left: remaining.append(left)
    )
    mark = len(world.fake.requests)
    assert await reconcile(world.runtime) == 0  # first look: 200, ETag kept, head known
    assert await reconcile(world.runtime) == 0
    assert await reconcile(world.runtime) == 0
    assert _ref_answers(world, mark) == [200, 304, 304]
    assert remaining[-1] == remaining[-2] == remaining[-3], "a 304 costs no rate limit"
    assert world.db(deliveries.queue_stats).pending == 0


async def test_a_missed_push_is_synced_by_reconcile(world: Harness) -> None:
    await _live(world)
    await reconcile(world.runtime)  # keeps the ETag
    missed = world.fake.push(FULL_NAME, "main", {"prompts/default.md": b"Missed {messages}\n"})
    assert await reconcile(world.runtime) == 1
    assert world.runtime.work_available.is_set()
    await world.drain()
    assert world.state(GUILD).commit_sha == missed
    assert [r["conclusion"] for r in world.check_runs(missed)] == ["success"]
    assert await reconcile(world.runtime) == 0, "synced: nothing queued again"


async def test_a_pending_request_syncs_from_reconcile(world: Harness) -> None:
    sha = world.fake.push(FULL_NAME, "main", VALID)
    world.request_binding(GUILD, repository_id=world.repository_id)
    assert await reconcile(world.runtime) == 1
    await world.drain()
    assert world.state(GUILD).commit_sha == sha


async def test_token_bindings_are_reconciled_with_their_token(world: Harness) -> None:
    sha, _token = world.bind_private_with_token(GUILD, "someone/private-prompts", VALID)
    assert await reconcile(world.runtime) == 1
    await world.drain()
    assert world.state(GUILD).commit_sha == sha


async def test_a_branch_gone_without_a_delivery_is_marked_deleted(world: Harness) -> None:
    sha = await _live(world)
    world.fake.delete_branch(FULL_NAME, "main")
    announced = len(world.announced)
    assert await reconcile(world.runtime) == 1
    await world.drain()
    state = world.state(GUILD)
    assert state.branch_status == BranchStatus.DELETED and state.commit_sha == sha
    assert len(world.announced) > announced
    assert await reconcile(world.runtime) == 0, "known to be gone: nothing queued again"


async def test_a_token_that_lost_access_is_not_taken_for_a_deleted_branch(
    world: Harness,
) -> None:
    fake = world.fake
    sha, token = world.bind_private_with_token(GUILD, "someone/private-prompts", VALID)
    await reconcile(world.runtime)
    await world.drain()
    assert world.state(GUILD).commit_sha == sha
    fake.add_pat(token, repos=[])  # the owner took the token's access away
    assert await reconcile(world.runtime) == 1
    await world.drain()
    state = world.state(GUILD)
    assert state.branch_status != BranchStatus.DELETED
    assert state.snapshot_id is None and "token" in state.status_message
    assert await reconcile(world.runtime) == 0


async def test_without_the_app_reconcile_asks_github_nothing_for_app_repositories(
    sqlite_url: str,
) -> None:
    fake = FakeGitHub()
    runtime = runtime_for(sqlite_url, None)
    try:
        installation_id = fake.add_installation("octo-org")
        runtime.in_session(installations.upsert_installation, installation_id, "octo-org")
        runtime.in_session(
            installations.upsert_repository,
            77,
            FULL_NAME,
            private=True,
            default_branch="main",
            installation_id=installation_id,
        )
        runtime.in_session(
            save_binding,
            GUILD,
            repository_full_name=FULL_NAME,
            repository_id=77,
            branch=None,
            actor="admin",
            expected_version=None,
        )
        assert await reconcile(runtime) == 0
        assert fake.requests == []
    finally:
        await runtime.aclose()


# ---- redelivery sweep --------------------------------------------------------------------------


async def test_the_sweep_redelivers_exactly_the_failed_deliveries_never_stored(
    world: Harness,
) -> None:
    fake = world.fake
    ok = await world.deliver("ping", fake.ping_payload())  # delivered and stored
    assert ok.status_code == 202
    stored_but_timed_out = fake.webhook("ping", fake.ping_payload(), status_code=504)
    await world.post(stored_but_timed_out)  # GitHub gave up waiting, but it was stored
    lost = [
        fake.webhook("push", fake.push_payload(FULL_NAME, "main"), status_code=502),
        fake.webhook("ping", fake.ping_payload(), status_code=503),
    ]
    fake.on_redeliver = lambda hook: _post_status(world, hook)
    sweep = RedeliverySweep(world.runtime)
    asked = await sweep.sweep()
    ids = {d["guid"]: d["id"] for d in fake.deliveries if not d["redelivery"]}
    assert sorted(asked) == sorted(ids[hook.guid] for hook in lost)
    assert [hook.guid for hook in fake.redelivered] == sorted(
        (hook.guid for hook in lost), key=lambda guid: ids[guid]
    )
    for hook in lost:
        assert world.delivery(hook.guid).state == "pending", "GitHub sent it again: stored"
    assert await sweep.sweep() == [], "each GUID is asked for once"


async def test_a_redelivery_that_fails_again_is_not_asked_for_every_sweep(world: Harness) -> None:
    fake = world.fake
    lost = fake.webhook("ping", fake.ping_payload(), status_code=502)
    fake.on_redeliver = lambda hook: 502  # still failing
    sweep = RedeliverySweep(world.runtime)
    assert len(await sweep.sweep()) == 1
    await asyncio.sleep(0)  # the fake records the failed redelivery after answering
    assert await sweep.sweep() == []
    assert [hook.guid for hook in fake.redelivered] == [lost.guid]


# ---- retention and the background tasks ---------------------------------------------------------


async def test_retention_prunes_old_finished_deliveries(world: Harness) -> None:
    old = utcnow() - timedelta(days=40)
    world.db(deliveries.record_delivery, "old-guid", "ping", None, None, None, {}, received_at=old)
    row = world.delivery("old-guid")
    world.db(deliveries.mark_done, row.id, old)
    report = await prune(world.runtime)
    assert report.deliveries == 1
    assert world.db(deliveries.get_delivery, "old-guid") is None


async def test_run_background_works_and_stops_cleanly(sqlite_url: str) -> None:
    async with harness(sqlite_url, RECONCILE_INTERVAL="0.2") as world:
        sha = world.fake.push(FULL_NAME, "main", VALID)
        world.request_binding(GUILD, repository_id=world.repository_id)
        stop = asyncio.Event()
        task = asyncio.create_task(run_background(world.runtime, stop))
        for _ in range(200):
            await asyncio.sleep(0.025)
            if world.db(bindings.get_binding, GUILD) is not None:
                break
        assert world.state(GUILD).commit_sha == sha, "reconcile queued it, the worker ran it"
        stop.set()
        await asyncio.wait_for(task, timeout=3)


async def _post_status(world: Harness, hook: Webhook) -> int:
    return (await world.post(hook)).status_code
