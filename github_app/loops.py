"""Background work besides the worker: catching up on what webhooks missed, and pruning.

- Reconcile (every RECONCILE_INTERVAL s): each followed branch's head is read with a
  conditional request (ETag: a 304 costs no rate limit); a new head, or a head that cannot be
  read any more, queues a `guildprompts.sync` (trigger reconcile), which records what
  happened. This is also what keeps branches read with a guild's personal access token
  current, since no webhook comes for them; and since no webhook says a token was revoked,
  the tokens of guilds served only through them are tried on every pass, also when the
  branch itself could not be read (the token read with may be the revoked one).
- Redelivery sweep (every REDELIVERY_INTERVAL s): GitHub's log of the App's recent deliveries is
  read back to the sweep horizon (an hour, or three intervals; a day on the first sweep after
  start, to cover downtime); each failed delivery whose GUID is not in the `deliveries` table
  is redelivered, once per GUID per horizon. GitHub then POSTs it again to intake.
- Retention (every 6 hours): `store.retention.prune` with RETENTION_DAYS.

Producers only: syncing happens in the worker. Each loop logs its errors and keeps going; work
needing the App is skipped while the App is not configured. The loops run once per deployment:
only in the process holding `store.leadership` (a PostgreSQL advisory lock; SQLite's one
process), checked every LEADERSHIP_INTERVAL s, so another process takes over when it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import anyio.to_thread

from github_app.bridge.invalidation import listen_for_work, worker_poll_interval
from github_app.github import (
    GitHubError,
    InstallationUnavailable,
    NotFound,
    NotModified,
)
from github_app.runtime import Runtime
from github_app.store import bindings, branches, deliveries, retention, serving
from github_app.store.errors import StoreError
from github_app.store.leadership import Leadership
from github_app.store.models import BranchStatus, utcnow
from github_app.store.serving import TrackedTarget
from github_app.sync.access import is_access_problem
from github_app.sync.jobs import enqueue_sync
from github_app.sync.records import served_by_token
from github_app.worker import Worker

log = logging.getLogger("guildprompts.loops")

RETENTION_INTERVAL = 6 * 3600.0
LEADERSHIP_INTERVAL = 5.0
RECONCILE_CONCURRENCY = 8
SWEEP_HORIZON = timedelta(hours=1)  # how far back each sweep looks (at least 3 intervals)
STARTUP_SWEEP_HORIZON = timedelta(hours=24)  # the first sweep also covers a day of downtime


# ---- reconcile -------------------------------------------------------------------------------


async def reconcile(runtime: Runtime) -> int:
    """Check every followed branch's head once; returns how many syncs were queued."""
    targets = await runtime.run_db(serving.tracked_targets)
    if not await runtime.refresh_credentials():
        targets = [target for target in targets if target.installation_id is None]
    limit = asyncio.Semaphore(RECONCILE_CONCURRENCY)

    async def check(target: TrackedTarget) -> bool:
        async with limit:
            return await _reconcile_target(runtime, target)

    queued = sum(await asyncio.gather(*(check(target) for target in targets)))
    if queued:
        runtime.wake_worker()
    return queued


async def _reconcile_target(runtime: Runtime, target: TrackedTarget) -> bool:
    """One branch: True when a sync was queued."""
    token = None
    if target.installation_id is None:
        token = await runtime.run_db(bindings.repository_token, runtime.vault, target.repository_id)
        if token is None:  # a base nobody bound: a token of a guild built on it
            token = await runtime.run_db(
                bindings.base_token, runtime.vault, target.full_name, target.branch
            )
        if token is None and target.private:
            return False
    where = f"{target.full_name}@{target.branch}"
    try:
        if target.kind == "tags":  # a base following a tag
            found = await runtime.github.get_ref_head(
                target.repository_id,
                target.branch,
                kind="tags",
                etag=target.etag,
                installation_id=target.installation_id,
                token=token,
            )
            head = found if isinstance(found, NotModified) else (found.sha, found.etag)
        else:
            head = await runtime.github.get_branch_head(
                target.repository_id,
                target.branch,
                etag=target.etag,
                installation_id=target.installation_id,
                token=token,
            )
    except InstallationUnavailable:
        log.info("reconcile: %s: the installation is gone; its events purge it", where)
        return False
    except NotFound:
        if await runtime.run_db(_branch_missing, target):
            log.info(
                "reconcile: %s is not readable on GitHub: sync queued to find out why "
                "(branch deleted, or access lost)",
                where,
            )
            return True
        return await _check_tokens(runtime, target, where)
    except GitHubError as exc:
        if not is_access_problem(exc):
            log.warning("reconcile: cannot read the head of %s: %s", where, exc)
            return False
        # The credential read with (a guild's token, when the App is not installed) is
        # refused: the guilds served through a token must still be checked, one by one.
        log.info("reconcile: cannot read the head of %s: %s", where, exc)
        return await _check_tokens(runtime, target, where)
    if not isinstance(head, NotModified):
        sha, _etag = head
        if await runtime.run_db(_record_head, target, sha):
            log.info("reconcile: %s moved to %s without a delivery: sync queued", where, sha[:7])
            return True
    return await _check_tokens(runtime, target, where)


async def _check_tokens(runtime: Runtime, target: TrackedTarget, where: str) -> bool:
    """Guilds served only through their own token: try each token on the branch (no webhook
    says one was revoked); one refused queues a sync, which stops serving its guilds."""
    served = await runtime.run_db(
        served_by_token, runtime.vault, target.repository_id, target.branch
    )
    for token in sorted(set(served.values())):
        try:
            await runtime.github.get_branch_head(target.repository_id, target.branch, token=token)
        except GitHubError as exc:
            if not is_access_problem(exc):
                log.warning("reconcile: cannot try a guild's token on %s: %s", where, exc)
                continue
            await runtime.run_db(_queue_recheck, target)
            log.info("reconcile: a guild's token cannot read %s any more: sync queued", where)
            return True
    return False


def _queue_recheck(session: Any, target: TrackedTarget, sha: str | None = None) -> None:
    """A reconcile sync of the branch (`sha` None: whatever its head is then)."""
    enqueue_sync(
        session,
        full_name=target.full_name,
        repository_id=target.repository_id,
        branch=target.branch,
        sha=sha,
        trigger="reconcile",
    )


def _record_head(session: Any, target: TrackedTarget, sha: str) -> bool:
    """Queue a sync when the head is not the one last concluded. The ETag is not kept here: it
    is stored with the head a sync concludes, so a 304 always means "nothing new"."""
    if sha == target.latest_sha:
        return False
    _queue_recheck(session, target, sha)
    return True


def _branch_missing(session: Any, target: TrackedTarget) -> bool:
    """The head answered 404: the sync tells a deleted branch from lost access and says so in
    the statuses. Once it has (deleted or error), the 404 is not news: nothing is queued."""
    tracked = branches.get_branch(session, target.repository_id, target.branch)
    if tracked is not None and tracked.status in (BranchStatus.DELETED, BranchStatus.ERROR):
        return False
    _queue_recheck(session, target)
    return True


# ---- redelivery sweep --------------------------------------------------------------------------


class RedeliverySweep:
    """Asks GitHub to redeliver what failed and never reached the database.

    It remembers which GUIDs it asked for, so a delivery that fails again is not asked for on
    every sweep (the redelivery shows in GitHub's log; a person can retry it from there).
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        horizon: timedelta = SWEEP_HORIZON,
        startup_horizon: timedelta = STARTUP_SWEEP_HORIZON,
    ) -> None:
        self.runtime = runtime
        self.horizon = max(horizon, timedelta(seconds=3 * runtime.settings.redelivery_interval))
        self.startup_horizon = max(startup_horizon, self.horizon)
        self._asked: dict[str, datetime] = {}
        self._swept_once = False

    async def sweep(self, now: datetime | None = None) -> list[int]:
        """One sweep; returns the ids of the deliveries GitHub was asked to send again."""
        now = now or utcnow()
        horizon = self.horizon if self._swept_once else self.startup_horizon
        since = now - horizon
        self._asked = {guid: at for guid, at in self._asked.items() if at >= since}
        logged = await self.runtime.github.list_hook_deliveries(since=since)
        self._swept_once = True
        candidates = _failed(logged, set(self._asked))
        stored = await self.runtime.run_db(_stored_guids, [guid for _, guid in candidates])
        redelivered = []
        for delivery_id, guid in candidates:
            if guid in stored:
                continue  # GitHub gave up waiting, but intake had stored it
            try:
                await self.runtime.github.redeliver(delivery_id)
            except GitHubError as exc:
                log.warning("redelivery of %s refused by GitHub: %s", guid, exc)
                continue
            self._asked[guid] = now
            redelivered.append(delivery_id)
        if redelivered:
            log.info("asked GitHub to redeliver %d failed deliveries", len(redelivered))
        return redelivered


def _failed(logged: list[dict[str, Any]], skip: set[str]) -> list[tuple[int, str]]:
    """(delivery id, GUID) of the newest attempt of each GUID that never succeeded.

    GitHub's log lists every attempt (redeliveries share the GUID), newest first.
    """
    attempts: dict[str, list[dict[str, Any]]] = {}
    for item in logged:
        guid = item.get("guid")
        if isinstance(guid, str) and guid and guid not in skip:
            attempts.setdefault(guid, []).append(item)
    chosen = []
    for guid, items in attempts.items():
        if any(_succeeded(item) for item in items):
            continue
        newest = max(items, key=lambda item: item.get("id") or 0)
        if isinstance(newest.get("id"), int):
            chosen.append((newest["id"], guid))
    return sorted(chosen)


def _stored_guids(session: Any, guids: list[str]) -> set[str]:
    """Which of these GUIDs intake stored (checked one by one: there are few failures, while
    the table may hold a great many recent deliveries)."""
    return {guid for guid in guids if deliveries.get_delivery(session, guid) is not None}


def _succeeded(item: dict[str, Any]) -> bool:
    status = item.get("status_code")
    return isinstance(status, int) and 200 <= status < 300


# ---- retention -------------------------------------------------------------------------------


async def prune(runtime: Runtime) -> retention.PruneReport:
    report = await runtime.run_db(retention.prune, timedelta(days=runtime.settings.retention_days))
    log.info(
        "retention: pruned %d deliveries, %d sync logs, %d check runs, %d snapshots, %d blobs",
        report.deliveries,
        report.sync_logs,
        report.check_runs,
        report.snapshots,
        report.blobs,
    )
    return report


# ---- running them ----------------------------------------------------------------------------


async def run_background(runtime: Runtime, stop: asyncio.Event, *, worker: bool = True) -> None:
    """The worker (optionally) and, while this process leads, every loop, until `stop` is set;
    then they finish cleanly."""
    sweep = RedeliverySweep(runtime)
    settings = runtime.settings
    leading = asyncio.Event()
    tasks = [
        asyncio.create_task(_lead(runtime, stop, leading)),
        asyncio.create_task(
            _every(
                settings.reconcile_interval,
                stop,
                "reconcile",
                lambda: reconcile(runtime),
                leading=leading,
            )
        ),
        asyncio.create_task(
            _every(
                settings.redelivery_interval,
                stop,
                "redelivery sweep",
                sweep.sweep,
                when=lambda: runtime.app_configured,
                leading=leading,
            )
        ),
        asyncio.create_task(
            _every(RETENTION_INTERVAL, stop, "retention", lambda: prune(runtime), leading=leading)
        ),
    ]
    if worker:
        poll = worker_poll_interval(runtime)
        for _slot in range(runtime.settings.worker_concurrency):
            tasks.append(asyncio.create_task(Worker(runtime, poll_interval=poll).run(stop)))
        tasks.append(asyncio.create_task(listen_for_work(runtime, stop)))
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _lead(runtime: Runtime, stop: asyncio.Event, leading: asyncio.Event) -> None:
    """Keep `leading` set while this process holds the loops' lock; release it at the end."""
    leadership = Leadership(runtime.database)
    try:
        while not stop.is_set():
            try:
                holds = await anyio.to_thread.run_sync(leadership.holds)
            except Exception as exc:
                log.warning("cannot tell whether this process runs the loops: %s", exc)
                holds = False
            if holds:
                leading.set()
            else:
                leading.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=LEADERSHIP_INTERVAL)
    finally:
        leading.clear()
        await anyio.to_thread.run_sync(leadership.release)


async def _every(
    interval: float,
    stop: asyncio.Event,
    name: str,
    action: Callable[[], Awaitable[Any]],
    *,
    when: Callable[[], bool] = lambda: True,
    leading: asyncio.Event | None = None,
) -> None:
    """Run `action` now and then every `interval` seconds until `stop` (skipped while `when()`
    is false, and waiting while this process does not lead); errors are logged and the loop
    goes on."""
    while not stop.is_set():
        if leading is not None and not leading.is_set():
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(leading.wait())]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waits:
                waiter.cancel()
            continue
        if when():
            try:
                await action()
            except (StoreError, GitHubError) as exc:
                log.warning("%s failed, next try in %.0f s: %s", name, interval, exc)
            except Exception:
                log.exception("%s failed, next try in %.0f s", name, interval)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
