"""How every process's resolver cache learns of an activation within a second.

Activation bumps the store's generation counter in the same transaction. Processes learn of it
by up to three paths, none of them a query per request:
- in-process: `runtime.announce_activation` (called by a worker or the bridge API after its
  commit) reaches `cache.on_activation` at once, before the announcing code goes on;
- push: PostgreSQL LISTEN on `guildprompts_activation` (the store's bump sends the NOTIFY, at
  commit, from whichever process committed), or, when REDIS_URL is set, Redis pub/sub on
  `guildprompts:activation`, where every process publishes the generations it announces;
- poll: one tiny query every GENERATION_POLL_INTERVAL reading the generation, the backstop for
  lost notifications. On SQLite without Redis it is the only path, so it runs every
  SQLITE_POLL (50 ms: one read of a local file) and the bots' streams hear of an activation by
  a worker in another process within that.
Push connections are reopened after any loss (with capped backoff), and the cache checks the
generation after each reconnect, so nothing published during the gap is missed for long.

The worker is woken the same way: storing work (`deliveries.record_delivery`: webhooks, sync
jobs of binds, refreshes and reconciles) NOTIFYs `guildprompts_work` on PostgreSQL and
`listen_for_work` wakes the worker of another process at commit; on SQLite the worker polls
the queue every SQLITE_POLL (`worker_poll_interval`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.engine import URL

from github_app.bridge.resolver_cache import ResolverCache
from github_app.runtime import Runtime
from github_app.store.branches import ACTIVATION_CHANNEL
from github_app.store.deliveries import WORK_CHANNEL

__all__ = [
    "ACTIVATION_CHANNEL",
    "REDIS_CHANNEL",
    "WORK_CHANNEL",
    "listen",
    "listen_for_work",
    "publish_activations",
    "worker_poll_interval",
]

log = logging.getLogger("guildprompts.bridge.invalidation")

REDIS_CHANNEL = "guildprompts:activation"
NOTIFY_WAIT = 0.5  # seconds a push listener waits for a message before looking at `stop`
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
CONNECT_TIMEOUT = 5
SQLITE_POLL = 0.05  # seconds between generation (and queue) checks on SQLite
WORKER_POLL = 0.5  # seconds between queue checks where NOTIFY wakes the worker


async def listen(runtime: Runtime, cache: ResolverCache, stop: asyncio.Event) -> None:
    """Keep `cache` current until `stop` is set (the web app's lifespan runs this)."""
    unsubscribe = runtime.on_activation(cache.on_activation)
    redis_url = runtime.settings.redis_url
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_poll(runtime, cache, stop))
            if redis_url:
                group.create_task(publish_activations(runtime, stop))
                group.create_task(_redis(redis_url, cache, stop))
            elif runtime.database.dialect == "postgresql":
                group.create_task(_postgres(runtime.database.engine.url, cache, stop))
    finally:
        unsubscribe()


async def publish_activations(runtime: Runtime, stop: asyncio.Event) -> None:
    """Publish every generation this process announces on Redis, until `stop` is set.

    `listen` runs it when REDIS_URL is set; a process without a bridge (`guildprompts worker`)
    runs it itself so the web processes hear of its activations at once.
    """
    import redis.asyncio as aioredis  # the optional `redis` extra: only needed with REDIS_URL
    from redis.exceptions import RedisError

    url = runtime.settings.redis_url
    client = aioredis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    loop = asyncio.get_running_loop()

    async def publish(generation: int) -> None:
        try:
            await client.publish(REDIS_CHANNEL, str(generation))
        except (RedisError, OSError) as exc:
            log.warning(
                "could not publish generation %s on Redis (%s); other processes see it "
                "at their next generation check",
                generation,
                exc,
            )

    def announce(generation: int) -> Awaitable[None] | None:
        if _running_loop() is loop:
            return publish(generation)
        # Announced from another event loop: the client belongs to this one. A closed loop
        # means this part of the process is gone; nothing to publish from.
        coroutine = publish(generation)
        try:
            asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError:
            coroutine.close()
        return None

    unsubscribe = runtime.on_activation(announce)
    try:
        await stop.wait()
    finally:
        unsubscribe()
        await client.aclose()


# ---- the three paths ------------------------------------------------------------------------


async def _poll(runtime: Runtime, cache: ResolverCache, stop: asyncio.Event) -> None:
    """The backstop: read the generation, reload the guild map when it moved."""
    interval = runtime.settings.generation_poll_interval
    if runtime.database.dialect == "sqlite" and not runtime.settings.redis_url:
        interval = min(interval, SQLITE_POLL)  # the only path: keep it short
    outage = _Outage("the generation check")
    while True:
        try:
            await cache.check()
            outage.ended()
        except Exception as exc:  # keep serving what is cached; say so once per outage
            outage.began(exc)
        if await _stopped(stop, interval):
            return


async def _postgres(url: URL, cache: ResolverCache, stop: asyncio.Event) -> None:
    """LISTEN on the activation channel; every NOTIFY carries the new generation."""

    async def notified(payload: str | None) -> None:
        if payload is None:
            await cache.check()  # catch up on anything committed while not listening
        else:
            await cache.refresh_to(_generation(payload))

    await _listen_postgres(url, ACTIVATION_CHANNEL, notified, "PostgreSQL LISTEN", stop)


async def _listen_postgres(
    url: URL,
    channel: str,
    notified: Callable[[str | None], Awaitable[None]],
    what: str,
    stop: asyncio.Event,
) -> None:
    """LISTEN on `channel` until `stop`, reconnecting after any loss: `notified(payload)` per
    NOTIFY, and `notified(None)` after each (re)connection."""
    import psycopg  # the `postgres` extra, present wherever DATABASE_URL is PostgreSQL

    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    outage = _Outage(what)
    backoff = _Backoff()
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT
            ) as connection:
                await connection.execute(f"LISTEN {channel}")
                outage.ended()
                backoff.reset()
                await notified(None)
                while not stop.is_set():
                    async for notice in connection.notifies(timeout=NOTIFY_WAIT):
                        await notified(notice.payload)
        except Exception as exc:  # connection lost or refused: reconnect, never give up
            outage.began(exc)
        if await _stopped(stop, backoff.next()):
            return


async def _redis(url: str, cache: ResolverCache, stop: asyncio.Event) -> None:
    """SUBSCRIBE to the activation channel (REDIS_URL set)."""
    import redis.asyncio as aioredis

    outage = _Outage("Redis SUBSCRIBE")
    backoff = _Backoff()
    while not stop.is_set():
        client = aioredis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT, health_check_interval=10
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(REDIS_CHANNEL)
            outage.ended()
            backoff.reset()
            await cache.check()
            while not stop.is_set():
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=NOTIFY_WAIT
                )
                if message is not None and message.get("type") == "message":
                    await cache.refresh_to(_generation(message.get("data")))
        except Exception as exc:  # connection lost or refused: reconnect, never give up
            outage.began(exc)
        finally:
            await _quietly(pubsub.aclose())
            await _quietly(client.aclose())
        if await _stopped(stop, backoff.next()):
            return


# ---- waking the worker ----------------------------------------------------------------------


def worker_poll_interval(runtime: Runtime) -> float:
    """How often a worker looks at the queue unwoken: short where nothing can wake it."""
    return WORKER_POLL if runtime.database.dialect == "postgresql" else SQLITE_POLL


async def listen_for_work(runtime: Runtime, stop: asyncio.Event) -> None:
    """LISTEN on the work channel and wake this process's worker (PostgreSQL only)."""
    if runtime.database.dialect != "postgresql":
        return

    async def notified(_payload: str | None) -> None:
        runtime.wake_worker()  # also after (re)connecting: work stored while not listening

    url = runtime.database.engine.url
    await _listen_postgres(url, WORK_CHANNEL, notified, "PostgreSQL LISTEN for work", stop)


# ---- small pieces ---------------------------------------------------------------------------


def _generation(payload: Any) -> int | None:
    """The generation a message carries; None (reload anyway) when it is not a number."""
    if isinstance(payload, bytes):
        payload = payload.decode("ascii", "replace")
    try:
        return int(str(payload).strip())
    except ValueError:
        return None


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True as soon as `stop` is set."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _quietly(closing: Awaitable[Any]) -> None:
    try:
        await closing
    except Exception as exc:  # closing a broken connection may fail; nothing to do about it
        log.debug("closing a push connection failed: %s", exc)


class _Backoff:
    """Waits between reconnections: 0.5 s, doubling, at most 30 s; reset once connected."""

    def __init__(self) -> None:
        self._next = BACKOFF_FIRST

    def next(self) -> float:
        wait, self._next = self._next, min(self._next * 2, BACKOFF_MAX)
        return wait

    def reset(self) -> None:
        self._next = BACKOFF_FIRST


class _Outage:
    """Logs an outage once when it begins and once when it ends, not at every retry."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failing = False

    def began(self, exc: Exception) -> None:
        if not self.failing:
            log.warning(
                "%s failed (%s: %s); retrying, the generation check covers meanwhile",
                self.what,
                type(exc).__name__,
                exc,
            )
        self.failing = True

    def ended(self) -> None:
        if self.failing:
            log.info("%s works again", self.what)
        self.failing = False
