"""The worker: claim stored deliveries one at a time, run their handlers, record the outcome.

At-least-once: a delivery is claimed with a lease (PostgreSQL hands rows out with
`FOR UPDATE SKIP LOCKED`, so several workers on one database never get the same one); a
worker that dies leaves the lease to expire and another claim picks the delivery up again.
Handlers are idempotent, so running one twice is harmless.

Outcomes: done; retried later with exponential backoff and jitter (never sooner than GitHub's
`Retry-After` / rate-limit reset) while attempts remain; failed with its error, for operators,
after `MAX_ATTEMPTS`, or at once when retrying cannot help (GitHub refused the request itself,
the stored payload is unreadable).

The worker sleeps on `runtime.work_available`, which intake and producers set after storing
work, so an in-process worker starts at once; a short poll covers work stored by other
processes and deliveries whose backoff ended.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from github_app import metrics
from github_app.github import GitHubError, RateLimited, Unauthorized
from github_app.handlers import HandlerContext, router
from github_app.logs import log_context, redact
from github_app.runtime import Runtime
from github_app.store import deliveries
from github_app.store.errors import NotFoundError, StoreError
from github_app.store.models import DeliveryRow, utcnow
from github_app.webhooks import Delivery, Router

log = logging.getLogger("guildprompts.worker")

POLL_INTERVAL = 0.5  # seconds between looks at the queue when nobody wakes the worker
BACKOFF_BASE = 2.0  # seconds before the second attempt, doubling after each failure
BACKOFF_MAX = 600.0
_ERROR_MAX = 2000  # characters of an error kept on the delivery


class _Permanent(Exception):
    """Retrying cannot help (the stored payload is not JSON, ...)."""


class Worker:
    """Processes deliveries from the queue of `runtime.database` until told to stop.

    `clock` (aware UTC datetimes) lets tests move time for backoff and lease expiry.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        worker_id: str | None = None,
        handlers: Router = router,
        lease: timedelta = deliveries.DEFAULT_LEASE,
        poll_interval: float = POLL_INTERVAL,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.runtime = runtime
        self.worker_id = worker_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.handlers = handlers
        self.lease = lease
        self.poll_interval = poll_interval
        self.clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        """Process deliveries until `stop` is set (the delivery in hand is finished first)."""
        log.info("worker %s started", self.worker_id)
        failures = 0
        while not stop.is_set():
            self.runtime.work_available.clear()  # before looking: a later wake-up is not lost
            try:
                processed = await self.run_once()
                failures = 0
            except StoreError as exc:
                failures += 1
                log.warning("worker %s cannot reach the queue: %s", self.worker_id, exc)
                processed = False
            except Exception:
                failures += 1
                log.exception("worker %s hit an unexpected error; it keeps going", self.worker_id)
                processed = False
            if not processed:
                await self._idle(stop, self.poll_interval * min(2**failures, 20))
        log.info("worker %s stopped", self.worker_id)

    async def run_once(self) -> bool:
        """Claim and process one due delivery; False when none is due."""
        row = await self.runtime.run_db(
            deliveries.claim_next, self.worker_id, self.clock(), lease=self.lease
        )
        if row is None:
            return False
        await self._process(row)
        return True

    async def _idle(self, stop: asyncio.Event, timeout: float) -> None:
        waits = [
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(self.runtime.work_available.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    async def _process(self, row: DeliveryRow) -> None:
        started = time.monotonic()
        try:
            delivery = _delivery(row)
        except _Permanent as exc:
            await self._fail(row, str(exc), started)
            return
        context = HandlerContext(self.runtime, row.id, row.received_at, row.attempts)
        fields = {
            "delivery_id": row.guid,
            "installation": delivery.installation_id,
            "repository": delivery.repository or delivery.payload.get("full_name"),
        }
        with log_context(**fields):
            try:
                handled = await self.handlers.dispatch(delivery, context)
            except Exception as exc:
                await self._after_error(row, exc, started)
                return
            await self._finish(row, started, handled)

    async def _finish(self, row: DeliveryRow, started: float, handled: int) -> None:
        try:
            await self.runtime.run_db(deliveries.mark_done, row.id, self.clock())
        except NotFoundError:
            log.warning("delivery %s vanished while it was processed (pruned?)", row.guid)
        elapsed = time.monotonic() - started
        metrics.observe_processing(row.event, elapsed, "processed")
        log.info(
            "%s %s in %.0f ms",
            _name(row),
            "processed" if handled else "has no handler",
            elapsed * 1000,
        )

    async def _after_error(self, row: DeliveryRow, exc: Exception, started: float) -> None:
        error = _describe(exc)
        if not _retryable(exc):
            log.error(
                "%s failed and retrying cannot help: %s",
                _name(row),
                error,
                exc_info=not isinstance(exc, GitHubError),
            )
            await self._fail(row, error, started)
            return
        if row.attempts >= self.runtime.settings.max_attempts:
            log.error(
                "%s failed %d times, giving up: %s",
                _name(row),
                row.attempts,
                error,
                exc_info=not isinstance(exc, GitHubError | StoreError),
            )
            await self._fail(row, f"gave up after {row.attempts} attempts: {error}", started)
            return
        delay = backoff(row.attempts, getattr(exc, "retry_after", None))
        log.warning(
            "%s failed (attempt %d of %d), retrying in %.0f s: %s",
            _name(row),
            row.attempts,
            self.runtime.settings.max_attempts,
            delay,
            error,
        )
        await self.runtime.run_db(
            deliveries.mark_retry, row.id, error, self.clock() + timedelta(seconds=delay)
        )
        metrics.observe_processing(row.event, time.monotonic() - started, "retried")

    async def _fail(self, row: DeliveryRow, error: str, started: float) -> None:
        await self.runtime.run_db(deliveries.mark_failed, row.id, error[:_ERROR_MAX], self.clock())
        metrics.observe_processing(row.event, time.monotonic() - started, "failed")


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before retrying after failed attempt number `attempt` (1 = the first).

    Exponential with jitter (each wait drawn from the upper half of its doubling step, as the
    GitHub client's retries do), capped; never before GitHub said to come back.
    """
    step = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** max(attempt - 1, 0))
    delay = step * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, float(retry_after))
    return delay


def _retryable(exc: Exception) -> bool:
    """Transient until proven otherwise; GitHub refusing the request itself (4xx) is not."""
    if isinstance(exc, _Permanent):
        return False
    if isinstance(exc, GitHubError) and not isinstance(exc, RateLimited | Unauthorized):
        return exc.status == 0 or exc.status >= 500
    return True


def _delivery(row: DeliveryRow) -> Delivery:
    try:
        payload = json.loads(row.payload)
    except (ValueError, UnicodeDecodeError):
        raise _Permanent("the stored payload is not JSON") from None
    if not isinstance(payload, dict):
        raise _Permanent("the stored payload is not a JSON object")
    return Delivery.from_payload(row.guid, row.event, payload)


def _describe(exc: Exception) -> str:
    text = str(exc).strip()
    return redact(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _name(row: DeliveryRow) -> str:
    event = f"{row.event}.{row.action}" if row.action else row.event
    return f"delivery {row.guid} ({event})"
