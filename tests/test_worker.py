"""The worker: retries with backoff then fails with the error, recovers crashed claims, wakes at
once, and never hands one delivery to two workers on PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from github_app import metrics
from github_app.github import GitHubError, RateLimited, TransientError
from github_app.handlers import HandlerContext
from github_app.logs import current_context
from github_app.runtime import Runtime
from github_app.store import deliveries
from github_app.store.models import DeliveryRow as Row
from github_app.webhooks import Delivery, Router
from github_app.worker import Worker, backoff
from tests.fakegithub import FakeGitHub
from tests.harness import GUILD, VALID, drain, harness, runtime_for
from tests.store_helpers import failed_deliveries

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _store(
    runtime: Runtime,
    event: str = "test",
    payload: dict | None = None,
    guid: str | None = None,
    at: datetime = T0,
) -> str:
    guid = guid or f"guid-{time.monotonic_ns()}"
    runtime.in_session(
        deliveries.record_delivery,
        guid,
        event,
        None,
        None,
        None,
        payload or {"repository": {"full_name": "octo-org/prompts", "id": 7}},
        received_at=at,
    )
    return guid


def _failing(error: Exception, calls: list[str]) -> Router:
    router = Router()

    @router.register("test")
    async def handler(delivery: Delivery, ctx: HandlerContext) -> None:
        calls.append(delivery.guid)
        raise error

    return router


@pytest.fixture
def runtime(sqlite_url: str) -> Any:
    runtime = runtime_for(sqlite_url, None, MAX_ATTEMPTS="3")
    yield runtime
    runtime.database.dispose()


async def test_transient_failures_back_off_then_fail_with_the_error(runtime: Runtime) -> None:
    calls: list[str] = []
    clock = Clock()
    worker = Worker(
        runtime,
        handlers=_failing(TransientError(502, "GET /x: 502 Bad Gateway"), calls),
        clock=clock,
    )
    guid = _store(runtime)
    assert await worker.run_once()
    row = runtime.in_session(deliveries.get_delivery, guid)
    assert row is not None and (row.state, row.attempts) == ("pending", 1)
    assert "502 Bad Gateway" in (row.last_error or "")
    wait = (row.next_attempt_at - clock()).total_seconds()
    assert 1.0 <= wait <= 2.0, "first backoff: 2 s with jitter"
    assert not await worker.run_once(), "not due before its backoff ends"
    clock.advance(wait)
    assert await worker.run_once()
    second = runtime.in_session(deliveries.get_delivery, guid)
    assert second is not None
    assert 2.0 <= (second.next_attempt_at - clock()).total_seconds() <= 4.0, "doubles"
    clock.advance(10)
    assert await worker.run_once()
    failed = runtime.in_session(deliveries.get_delivery, guid)
    assert failed is not None and (failed.state, failed.attempts) == ("failed", 3)
    assert failed.last_error.startswith("gave up after 3 attempts: TransientError")
    assert calls == [guid] * 3
    assert [d.guid for d in runtime.in_session(failed_deliveries)] == [guid]


async def test_rate_limits_are_waited_for(runtime: Runtime) -> None:
    clock = Clock()
    error = RateLimited(403, "API rate limit exceeded", retry_after=900)
    worker = Worker(runtime, handlers=_failing(error, []), clock=clock)
    guid = _store(runtime)
    await worker.run_once()
    row = runtime.in_session(deliveries.get_delivery, guid)
    assert row is not None and row.state == "pending"
    assert (row.next_attempt_at - clock()).total_seconds() >= 900


async def test_errors_retrying_cannot_fix_fail_at_once(runtime: Runtime) -> None:
    calls: list[str] = []
    error = GitHubError(422, "POST /repos/{owner}/{repo}/check-runs: 422 Invalid request")
    guid = _store(runtime)
    await Worker(runtime, handlers=_failing(error, calls)).run_once()
    row = runtime.in_session(deliveries.get_delivery, guid)
    assert row is not None and (row.state, row.attempts) == ("failed", 1)
    assert "422 Invalid request" in row.last_error


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    assert all(1 <= backoff(1) <= 2 for _ in range(50))
    assert all(8 <= backoff(4) <= 16 for _ in range(50))
    assert backoff(30) <= 600
    assert backoff(1, retry_after=120) >= 120


async def test_a_crashed_claim_is_run_again_after_its_lease(runtime: Runtime) -> None:
    guid = _store(runtime)
    crashed = runtime.in_session(
        deliveries.claim_next, "crashed-worker", T0, lease=timedelta(minutes=5)
    )
    assert crashed is not None and crashed.guid == guid  # ... and that worker died here
    seen: list[tuple[str, int]] = []
    router = Router()

    @router.register("test")
    def handler(delivery: Delivery, ctx: HandlerContext) -> None:
        seen.append((delivery.guid, ctx.attempt))

    clock = Clock(T0 + timedelta(minutes=4))
    worker = Worker(runtime, handlers=router, clock=clock)
    assert not await worker.run_once(), "the lease still holds"
    clock.advance(120)
    assert await worker.run_once()
    assert seen == [(guid, 2)]
    row = runtime.in_session(deliveries.get_delivery, guid)
    assert row is not None and row.state == "done"


async def test_handlers_run_inside_the_delivery_log_context(runtime: Runtime) -> None:
    contexts: list[dict[str, str]] = []
    router = Router()

    @router.register("test")
    async def handler(delivery: Delivery, ctx: HandlerContext) -> None:
        contexts.append(current_context())

    payload = {"installation": {"id": 42}, "repository": {"id": 7, "full_name": "o/r"}}
    guid = _store(runtime, payload=payload)
    processed = metrics.PROCESSING_SECONDS.labels("other", "processed")._sum.get()
    await Worker(runtime, handlers=router).run_once()
    assert contexts == [{"delivery_id": guid, "installation": "42", "repository": "o/r"}]
    assert metrics.PROCESSING_SECONDS.labels("other", "processed")._sum.get() > processed


async def test_an_unreadable_payload_fails_without_a_handler(runtime: Runtime) -> None:
    guid = _store(runtime)
    row = runtime.in_session(deliveries.get_delivery, guid)
    assert row is not None

    def corrupt(session: Session) -> None:
        session.execute(update(Row).where(Row.id == row.id).values(payload=b"\xff not json"))

    runtime.in_session(corrupt)
    await Worker(runtime, handlers=_failing(AssertionError("never called"), [])).run_once()
    failed = runtime.in_session(deliveries.get_delivery, guid)
    assert failed is not None and failed.state == "failed" and "not JSON" in failed.last_error


async def test_the_worker_starts_at_once_when_woken_and_stops_when_asked(
    sqlite_url: str,
) -> None:
    async with harness(sqlite_url) as world:
        world.bind(GUILD)
        stop = asyncio.Event()
        worker = Worker(world.runtime, poll_interval=30)  # only a wake-up can start it soon
        task = asyncio.create_task(worker.run(stop))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        sha = await world.push(VALID)
        while world.state(GUILD).commit_sha != sha and time.monotonic() - started < 5:
            await asyncio.sleep(0.02)
        assert world.state(GUILD).commit_sha == sha
        assert time.monotonic() - started < 2
        stop.set()
        await asyncio.wait_for(task, timeout=2)


async def test_sync_failures_are_retried_by_the_worker(sqlite_url: str) -> None:
    async with harness(sqlite_url) as world:
        world.bind(GUILD)
        world.fake.fail_next(r"/git/trees/", status=502, times=4)  # every in-request retry
        sha = await world.push(VALID)
        clock = Clock(datetime.now(UTC))
        worker = Worker(world.runtime, clock=clock)
        assert await drain(world.runtime, worker=worker) == 1
        row = world.db(failed_deliveries)
        pending = world.db(deliveries.queue_stats).pending
        assert row == [] and pending == 1, "a GitHub 5xx is retried later"
        clock.advance(60)
        assert await drain(world.runtime, worker=worker) == 1
        assert world.state(GUILD).commit_sha == sha


@pytest.mark.postgres
def test_two_workers_on_postgresql_never_share_a_delivery(postgres_url: str) -> None:
    fake = FakeGitHub()
    runtimes = [runtime_for(postgres_url, fake) for _ in range(2)]
    handled: list[tuple[str, str]] = []
    lock = threading.Lock()
    router = Router()

    @router.register("test")
    async def handler(delivery: Delivery, ctx: HandlerContext) -> None:
        await asyncio.sleep(0.002)
        with lock:
            handled.append((delivery.guid, threading.current_thread().name))

    guids = [_store(runtimes[0], guid=f"g-{i}") for i in range(60)]
    barrier = threading.Barrier(2)

    def work(runtime: Runtime, name: str) -> None:
        async def main() -> None:
            barrier.wait()
            await drain(runtime, worker=Worker(runtime, worker_id=name, handlers=router))

        asyncio.run(main())

    threads = [
        threading.Thread(target=work, args=(rt, f"w{i}"), name=f"w{i}")
        for i, rt in enumerate(runtimes)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        done = [guid for guid, _ in handled]
        assert sorted(done) == sorted(guids), "every delivery handled exactly once"
        assert {worker for _, worker in handled} == {"w0", "w1"}, "both workers took some"
        stats = runtimes[0].in_session(deliveries.queue_stats)
        assert (stats.pending, stats.processing) == (0, 0)
    finally:
        for runtime in runtimes:
            runtime.database.dispose()
