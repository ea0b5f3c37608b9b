"""Every process's cache learns of an activation within a second, by each available path.

Two runtimes on one database stand for two processes: an activation committed through one is
seen by the cache of the other. The generation poll is set far above a second wherever the test
is about a push path (NOTIFY, Redis, in-process), so only that path can explain the timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from github_app.bridge.invalidation import (
    listen,
    listen_for_work,
    publish_activations,
    worker_poll_interval,
)
from github_app.bridge.resolver_cache import ResolverCache
from github_app.runtime import Runtime
from github_app.sync.jobs import enqueue_sync
from tests.harness import Store, bridge_runtime, eventually, prompt_files

pytestmark = pytest.mark.anyio

GUILD = "111"
QUERY = (("category", "meeting"),)
SLOW_POLL = "60"
LIMIT = 1.0  # seconds: the bound for every process to learn of an activation


@contextlib.asynccontextmanager
async def process(database_url: str, **env: str) -> AsyncIterator[tuple[Runtime, ResolverCache]]:
    """One "process": a runtime and its cache, with the invalidation listener running."""
    runtime = bridge_runtime(database_url, **env)
    cache = ResolverCache(runtime, 100)
    stop = asyncio.Event()
    task = asyncio.create_task(listen(runtime, cache, stop))
    try:
        await eventually(lambda: _loaded(cache))
        yield runtime, cache
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await runtime.aclose()


async def _loaded(cache: ResolverCache) -> bool:
    return cache.generation >= 0


async def content(cache: ResolverCache) -> str:
    return str((await cache.resolve(GUILD, QUERY)).json()["content"])


async def seen_within(cache: ResolverCache, marker: str, started: float) -> float:
    """Seconds from `started` until `cache` serves `marker` (fails past the limit)."""
    await eventually(lambda: _serves(cache, marker), timeout=LIMIT + 0.5, interval=0.01)
    return time.monotonic() - started


async def _serves(cache: ResolverCache, marker: str) -> bool:
    return (await content(cache)).startswith(marker)


def seed(store: Store) -> None:
    store.repository()
    store.commit(1, prompt_files("v1"))
    store.bind(GUILD)


async def activation_is_seen(first: Runtime, second: ResolverCache) -> float:
    """Activate v2 through `first`'s database connection; how long until `second` serves it."""
    assert (await content(second)).startswith("v1")
    started = time.monotonic()
    Store(first, pushes=10).commit(1, prompt_files("v2"))
    return await seen_within(second, "v2", started)


async def test_sqlite_processes_learn_through_the_generation_poll(sqlite_url: str) -> None:
    async with process(sqlite_url) as (writer, _), process(sqlite_url) as (_, reader):
        seed(Store(writer))
        await reader.check()
        elapsed = await activation_is_seen(writer, reader)
    assert elapsed < LIMIT


async def test_in_process_announcement_switches_before_it_returns(sqlite_url: str) -> None:
    async with process(sqlite_url, GENERATION_POLL_INTERVAL=SLOW_POLL) as (runtime, cache):
        store = Store(runtime)
        seed(store)
        await cache.reload()
        assert (await content(cache)).startswith("v1")
        Store(runtime, pushes=10).commit(1, prompt_files("v2"))
        assert (await content(cache)).startswith("v1")  # nobody said anything yet

        await runtime.announce_activation(store.generation())

        assert cache.lookup(GUILD, QUERY) is None
        assert (await content(cache)).startswith("v2")


async def test_an_announcement_from_another_event_loop_is_awaited(sqlite_url: str) -> None:
    async with process(sqlite_url, GENERATION_POLL_INTERVAL=SLOW_POLL) as (runtime, cache):
        store = Store(runtime)
        seed(store)
        await cache.reload()
        Store(runtime, pushes=10).commit(1, prompt_files("v2"))
        generation = store.generation()

        # A worker running its own loop in a thread announces; the cache reloads on its loop.
        await asyncio.to_thread(asyncio.run, runtime.announce_activation(generation))

        assert cache.generation == generation


@pytest.mark.postgres
async def test_postgresql_notify_reaches_other_processes(postgres_url: str) -> None:
    async with (
        process(postgres_url, GENERATION_POLL_INTERVAL=SLOW_POLL) as (writer, _),
        process(postgres_url, GENERATION_POLL_INTERVAL=SLOW_POLL) as (_, reader),
    ):
        store = Store(writer)
        seed(store)
        await reader.check()
        elapsed = await activation_is_seen(writer, reader)
    assert elapsed < LIMIT


@pytest.mark.postgres
async def test_postgresql_listener_reconnects(postgres_url: str) -> None:
    async with (
        process(postgres_url, GENERATION_POLL_INTERVAL=SLOW_POLL) as (writer, _),
        process(postgres_url, GENERATION_POLL_INTERVAL=SLOW_POLL) as (_, reader),
    ):
        seed(Store(writer))
        await reader.check()
        killed = await asyncio.to_thread(_terminate_listeners, postgres_url)
        assert killed >= 2  # each process's LISTEN connection
        started = time.monotonic()
        Store(writer, pushes=10).commit(1, prompt_files("v2"))
        # Reconnecting takes the first backoff step; the check after it catches up.
        await eventually(lambda: _serves(reader, "v2"), timeout=5)
    assert time.monotonic() - started < 5


def _terminate_listeners(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query ILIKE 'LISTEN %'"
                )
            ).all()
            return len(rows)
    finally:
        engine.dispose()


@pytest.mark.redis
async def test_redis_pub_sub_reaches_other_processes(sqlite_url: str, redis_url: str) -> None:
    env = {"GENERATION_POLL_INTERVAL": SLOW_POLL, "REDIS_URL": redis_url}
    async with process(sqlite_url, **env) as (writer, _), process(sqlite_url, **env) as (_, reader):
        store = Store(writer)
        seed(store)
        await writer.announce_activation(store.generation())
        await eventually(lambda: _serves(reader, "v1"), timeout=LIMIT)
        started = time.monotonic()
        Store(writer, pushes=10).commit(1, prompt_files("v2"))
        await writer.announce_activation(store.generation())  # what a worker does after commit
        elapsed = await seen_within(reader, "v2", started)
    assert elapsed < LIMIT


@pytest.mark.redis
async def test_a_worker_process_publishes_without_a_cache(sqlite_url: str, redis_url: str) -> None:
    env = {"GENERATION_POLL_INTERVAL": SLOW_POLL, "REDIS_URL": redis_url}
    worker = bridge_runtime(sqlite_url, **env)
    stop = asyncio.Event()
    publisher = asyncio.create_task(publish_activations(worker, stop))
    try:
        async with process(sqlite_url, **env) as (_, reader):
            seed(Store(worker))
            await reader.check()
            await asyncio.sleep(0.1)  # the reader's subscription is in place
            started = time.monotonic()
            store = Store(worker, pushes=10)
            store.commit(1, prompt_files("v2"))
            await worker.announce_activation(store.generation())
            elapsed = await seen_within(reader, "v2", started)
    finally:
        stop.set()
        await asyncio.wait_for(publisher, 5)
        await worker.aclose()
    assert elapsed < LIMIT


async def test_an_unreachable_redis_leaves_the_poll_working(
    sqlite_url: str, caplog: pytest.LogCaptureFixture, free_tcp_port: int
) -> None:
    caplog.set_level(logging.WARNING, logger="guildprompts.bridge.invalidation")
    env: dict[str, Any] = {"REDIS_URL": f"redis://127.0.0.1:{free_tcp_port}/0"}
    async with process(sqlite_url, **env) as (writer, _), process(sqlite_url, **env) as (_, reader):
        seed(Store(writer))
        await reader.check()
        await asyncio.sleep(1.0)  # several failed reconnections
        elapsed = await activation_is_seen(writer, reader)
    assert elapsed < LIMIT
    failures = [r for r in caplog.records if "Redis SUBSCRIBE failed" in r.getMessage()]
    assert len(failures) == 2  # once per process, not once per retry


# ---- waking the worker of another process -------------------------------------------------------


@pytest.mark.postgres
async def test_new_work_wakes_the_worker_of_another_process(postgres_url: str) -> None:
    worker_side = bridge_runtime(postgres_url)
    producer = bridge_runtime(postgres_url)
    stop = asyncio.Event()
    task = asyncio.create_task(listen_for_work(worker_side, stop))
    try:
        await eventually(worker_side.work_available.wait)  # set once listening
        worker_side.work_available.clear()
        started = time.monotonic()
        await producer.run_db(enqueue_sync, full_name="octo-org/prompts", trigger="refresh")
        await asyncio.wait_for(worker_side.work_available.wait(), 2)
        assert time.monotonic() - started < 0.2  # NOTIFY at commit, not the 0.5 s poll
        assert worker_poll_interval(worker_side) == 0.5
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await worker_side.aclose()
        await producer.aclose()


async def test_on_sqlite_the_short_polls_are_the_wake_up(sqlite_url: str) -> None:
    runtime = bridge_runtime(sqlite_url)
    try:
        assert worker_poll_interval(runtime) == 0.05
        async with process(sqlite_url, GENERATION_POLL_INTERVAL=SLOW_POLL) as (_, cache):
            store = Store(bridge_runtime(sqlite_url))
            seed(store)
            before = cache.generation
            # Written by "another process" (no announcement here): the 50 ms poll finds it.
            started = time.monotonic()
            while cache.generation <= before and time.monotonic() - started < 1:
                await asyncio.sleep(0.01)
            assert time.monotonic() - started < 0.5
    finally:
        await runtime.aclose()
