"""`GET /healthz` (is the process alive?) and `GET /readyz` (should it get traffic?).

Ready means this process can do its job now: the database answers and its schema is the one this
code needs; the App's credentials, when there are any, are accepted by GitHub; no delivery has
waited longer than `stuck_after`; the background tasks this process started still run. Each
check reports its details in the JSON body, and any failing one turns the answer into a 503.

Two situations are deliberately *ready*:
- No App configured (a fresh install): the bridge serves the built-in defaults and `/setup` is
  how the App gets created, so a platform's health check must let traffic in. The body says
  `"app": {"status": "not configured", ...}` with what is missing.
- GitHub unreachable or rate limiting: the bridge keeps serving from memory and the worker
  retries, so taking the process out of rotation would only hurt the bot. The App check says
  `"status": "unverified"`.

GitHub is asked (`GET /app`) at most once per `app_check_ttl` (less often than probes come), and
never for longer than `app_check_timeout`, always in the background: a probe never waits on
GitHub (a slow or unreachable GitHub would fail a 1 s readiness probe). The probe that starts a
check waits at most `app_check_budget` for its answer; until GitHub answers, probes say
`"status": "checking"`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from github_app.auth import AuthConfigError
from github_app.bridge.tokens import DISABLED as BRIDGE_DISABLED
from github_app.github import GitHubError, RateLimited, TransientError
from github_app.logs import redact
from github_app.runtime import Runtime
from github_app.store import deliveries
from github_app.store.errors import StoreError
from github_app.store.migrate import UPGRADE_COMMAND, schema_status

log = logging.getLogger("guildprompts.health")

DEFAULT_STUCK_AFTER = 900.0  # seconds: longer than a delivery's retries with backoff take


def missing_credentials(runtime: Runtime) -> list[str]:
    """The variables a working App still lacks (env or stored by /setup), for logs and /readyz."""
    found = runtime.credentials
    missing = []
    if not found.app_id:
        missing.append("GITHUB_APP_ID")
    if not found.private_key:
        missing.append("GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH")
    if not found.webhook_secrets:
        missing.append("GITHUB_WEBHOOK_SECRET")
    return missing


@dataclass
class _Cached:
    result: dict[str, Any]
    expires: float


class Health:
    """The two probes of one process; `watch` adds a background task whose death means unready."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        stuck_after: float = DEFAULT_STUCK_AFTER,
        app_check_ttl: float = 300.0,
        app_retry_ttl: float = 30.0,
        app_check_timeout: float = 5.0,
        app_check_budget: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self.stuck_after = stuck_after
        self._ttl, self._retry_ttl, self._timeout = app_check_ttl, app_retry_ttl, app_check_timeout
        self._budget = app_check_budget
        self._clock = clock
        self._app: _Cached | None = None
        self._verifying: asyncio.Task[None] | None = None
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    def watch(self, name: str, task: asyncio.Task[Any]) -> None:
        self._tasks[name] = task

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", self.alive, methods=["GET"], name="healthz"),
            Route("/readyz", self.ready, methods=["GET"], name="readyz"),
        ]

    async def alive(self, request: Request) -> JSONResponse:
        """The event loop answers: nothing else is checked (a restart would not fix the rest)."""
        return JSONResponse({"status": "alive"}, headers={"Cache-Control": "no-store"})

    async def ready(self, request: Request) -> JSONResponse:
        checks = await self.checks()
        ready = all(check["ok"] for check in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
            headers={"Cache-Control": "no-store"},
        )

    async def checks(self) -> dict[str, dict[str, Any]]:
        store = await run_in_threadpool(self._store_checks)
        return {
            **store,
            "app": await self._app_check(),
            "bridge": self._bridge_check(),
            "background": self._background_check(),
        }

    def _bridge_check(self) -> dict[str, Any]:
        """Whether a bot can use this process's bridge (a disabled one does not stop webhooks)."""
        if self.runtime.settings.bridge_tokens:
            return {"ok": True, "status": "enabled"}
        return {"ok": True, "status": "disabled", "error": BRIDGE_DISABLED}

    # ---- database, schema, queue (one worker thread) ------------------------------------------

    def _store_checks(self) -> dict[str, dict[str, Any]]:
        database = self.runtime.database
        try:
            status = schema_status(database.engine)
        except StoreError as exc:
            reason = redact(str(exc))
            return {
                "database": {"ok": False, "dialect": database.dialect, "error": reason},
                "migrations": {"ok": False, "error": "the database did not answer"},
                "queue": {"ok": False, "error": "the database did not answer"},
            }
        checks: dict[str, dict[str, Any]] = {
            "database": {"ok": True, "dialect": database.dialect},
            "migrations": {"ok": status.up_to_date, "current": status.current, "head": status.head},
        }
        if not status.up_to_date:
            checks["migrations"]["error"] = (
                f"the schema is not the one this code needs: run `{UPGRADE_COMMAND}`"
                if status.known
                else "the schema is newer than this code: upgrade guildprompts"
            )
            checks["queue"] = {"ok": False, "error": "not checked: the schema is not current"}
            return checks
        try:
            stats = self.runtime.in_session(deliveries.queue_stats)
        except StoreError as exc:
            checks["queue"] = {"ok": False, "error": redact(str(exc))}
            return checks
        age = stats.oldest_pending_age
        stuck = age is not None and age > self.stuck_after
        checks["queue"] = {
            "ok": not stuck,
            "pending": stats.pending,
            "processing": stats.processing,
            "failed": stats.failed,
            "oldest_pending_age": None if age is None else round(age, 1),
            "stuck_after": self.stuck_after,
        }
        if stuck:
            checks["queue"]["error"] = (
                f"the oldest pending delivery has waited {age:.0f} s: is a worker running "
                "(`guildprompts worker`, or `serve` without --no-worker)?"
            )
        return checks

    # ---- the App's credentials ----------------------------------------------------------------

    async def _app_check(self) -> dict[str, Any]:
        if not await self.runtime.refresh_credentials():
            return {
                "ok": True,
                "status": "not configured",
                "setup": "/setup",
                "missing": missing_credentials(self.runtime),
            }
        cached = self._app
        if cached is None or self._clock() >= cached.expires:
            started = self._verifying is None or self._verifying.done()
            verifying = self.verify_in_background()
            if cached is None and started:  # only the probe that asked waits, and briefly
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(verifying), self._budget)
                cached = self._app
        if cached is None:
            return {
                "ok": True,
                "status": "checking",
                "app_id": self.runtime.credentials.app_id,
                "error": "GitHub has not confirmed the credentials yet",
            }
        return cached.result

    def verify_in_background(self) -> asyncio.Task[None]:
        """Ask GitHub about the credentials unless a question is already under way."""
        if self._verifying is None or self._verifying.done():
            self._verifying = asyncio.create_task(self._verify(), name="guildprompts-app-check")
        return self._verifying

    async def _verify(self) -> None:
        try:
            result, ttl = await self._ask_github()
        except Exception as exc:  # never an unretrieved task error; the next probe retries
            log.warning("readyz: the App check failed: %s", redact(str(exc)))
            result, ttl = (
                {
                    "ok": True,
                    "status": "unverified",
                    "app_id": self.runtime.credentials.app_id,
                    "error": f"GitHub did not confirm the credentials: {type(exc).__name__}",
                },
                self._retry_ttl,
            )
        self._app = _Cached(result, self._clock() + ttl)

    async def _ask_github(self) -> tuple[dict[str, Any], float]:
        """GitHub's verdict on the App's JWT, and how long to keep it."""
        app_id = self.runtime.credentials.app_id
        try:
            with anyio.fail_after(self._timeout):
                app = await self.runtime.github.get_app()
        except (TransientError, RateLimited, TimeoutError) as exc:
            detail = "timed out" if isinstance(exc, TimeoutError) else redact(str(exc))
            return (
                {
                    "ok": True,
                    "status": "unverified",
                    "app_id": app_id,
                    "error": f"GitHub did not confirm the credentials: {detail}",
                },
                self._retry_ttl,
            )
        except (GitHubError, AuthConfigError) as exc:
            log.warning("readyz: GitHub refused the App's credentials: %s", exc)
            return (
                {
                    "ok": False,
                    "status": "invalid",
                    "app_id": app_id,
                    "error": f"GitHub refused the App's credentials ({redact(str(exc))}): "
                    "check GITHUB_APP_ID and the private key",
                },
                self._retry_ttl,
            )
        return (
            {
                "ok": True,
                "status": "valid",
                "app_id": app_id,
                "slug": str(app.get("slug") or self.runtime.credentials.slug),
            },
            self._ttl,
        )

    # ---- background tasks ---------------------------------------------------------------------

    def _background_check(self) -> dict[str, Any]:
        states = {}
        for name, task in self._tasks.items():
            if not task.done():
                states[name] = "running"
            elif task.cancelled():
                states[name] = "stopped"
            else:
                states[name] = "failed" if task.exception() is not None else "stopped"
        return {"ok": all(state == "running" for state in states.values()), "tasks": states}
