"""The web app of `guildprompts serve`: every route, and the background work its lifespan runs.

Routes: `POST /api/github/webhooks` (intake), `/bridge/v1/...` (the bot's API), `/setup...` (App
creation by manifest), `/metrics`, `/healthz`, `/readyz` and a small landing page at `/`.

The lifespan starts the resolver cache's invalidation listener and, with `run_worker`, the
worker and its loops (`github_app.loops.run_background`); on shutdown it asks them to stop,
waits a bounded time, and closes the runtime. A background task that dies is logged at once and
makes `/readyz` fail, instead of leaving a process that looks fine but never learns of pushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Iterable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from github_app import metrics
from github_app.bridge.invalidation import listen
from github_app.bridge.resolver_cache import ResolverCache
from github_app.bridge.routes import bridge_routes
from github_app.bridge.tokens import DISABLED, generated_token_file
from github_app.health import Health, missing_credentials
from github_app.intake import webhook_route
from github_app.loops import run_background
from github_app.pages import escape, page
from github_app.runtime import Runtime, save_app_credentials
from github_app.setup import SetupConfig, setup_routes
from github_app.store import branches, deliveries, serving, setup_states
from github_app.webhook_proxy import forward

log = logging.getLogger("guildprompts.web")

SHUTDOWN_GRACE = 10.0  # seconds background tasks get to finish after being asked to stop


def create_app(runtime: Runtime, *, run_worker: bool = True) -> Starlette:
    """The Starlette app over one runtime; the app owns it from here and closes it on shutdown."""
    cache = ResolverCache(runtime, runtime.settings.resolver_cache_size)
    health = Health(runtime)
    routes: list[BaseRoute] = [
        Route("/", partial(_landing, runtime), methods=["GET"], name="landing"),
        webhook_route(runtime),
        *bridge_routes(runtime, cache),
        *setup_routes(_setup_config(runtime)),
        Route("/metrics", _metrics, methods=["GET"], name="metrics"),
        *health.routes(),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        work: dict[str, Coroutine[Any, Any, Any]] = {"invalidation": listen(runtime, cache, stop)}
        if run_worker:
            work["worker"] = run_background(runtime, stop, worker=True)
        if runtime.settings.webhook_proxy_url:
            work["webhook proxy"] = forward(runtime.settings.webhook_proxy_url, app, stop)
        metrics.set_queue_probe(partial(_queue_probe, runtime))
        metrics.set_snapshot_probe(partial(_snapshot_probe, runtime))
        tasks = [_start(name, coroutine, health) for name, coroutine in work.items()]
        log.info(
            "guildprompts is serving (%s; worker %s)",
            runtime.database.display_url,
            "in this process" if run_worker else "in another process",
        )
        try:
            yield
        finally:
            stop.set()
            await _finish(tasks)
            metrics.set_queue_probe(None)
            metrics.set_snapshot_probe(None)
            await runtime.aclose()

    return Starlette(routes=routes, lifespan=lifespan)


def _setup_config(runtime: Runtime) -> SetupConfig:
    settings = runtime.settings
    in_database = settings.app_credentials_store == "database"
    return SetupConfig(
        convert=runtime.github.convert_manifest,
        github_url=settings.github_url,
        public_url=settings.public_url,
        save_credentials=partial(_save_credentials, runtime) if in_database else None,
        env_file=None if in_database else ".env",
        is_configured=runtime.refresh_credentials,
        states=_DatabaseStates(runtime),
        webhook_url=settings.webhook_proxy_url,
    )


async def _save_credentials(runtime: Runtime, values: dict[str, str]) -> None:
    """Store the new App's credentials and use them in this process at once (the others read
    them at their next request: `Runtime.refresh_credentials`)."""
    await anyio.to_thread.run_sync(save_app_credentials, runtime.database, runtime.vault, values)
    runtime.expect_credentials()
    await runtime.refresh_credentials()


@dataclass(frozen=True)
class _DatabaseStates:
    """/setup's states in the database: any web process can finish the flow."""

    runtime: Runtime
    ttl: timedelta = timedelta(minutes=10)

    def issue(self) -> str:
        return self.runtime.in_session(setup_states.issue_state, self.ttl)

    def consume(self, state: str) -> bool:
        return self.runtime.in_session(setup_states.consume_state, state)


# ---- background tasks ------------------------------------------------------------------------


def _start(name: str, coroutine: Coroutine[Any, Any, Any], health: Health) -> asyncio.Task[Any]:
    task = asyncio.create_task(coroutine, name=f"guildprompts-{name}")
    task.add_done_callback(partial(_report_end, name))
    health.watch(name, task)
    return task


def _report_end(name: str, task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "background task %s stopped with an error; /readyz now fails",
            name,
            exc_info=task.exception(),
        )


async def _finish(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Wait for the tasks that were asked to stop; cancel those still running after the grace."""
    pending = [task for task in tasks if not task.done()]
    if not pending:
        return
    _, late = await asyncio.wait(pending, timeout=SHUTDOWN_GRACE)
    for task in late:
        log.warning(
            "background task %s did not stop within %s s: cancelled",
            task.get_name(),
            SHUTDOWN_GRACE,
        )
        task.cancel()
    if late:
        await asyncio.wait(late, timeout=SHUTDOWN_GRACE)


# ---- /metrics ---------------------------------------------------------------------------------


async def _metrics(request: Request) -> Response:
    """The exposition; the store probes query the database, so it is built off the event loop."""
    body, content_type = await run_in_threadpool(metrics.render_latest)
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})


def _queue_probe(runtime: Runtime) -> metrics.QueueDepth:
    stats = runtime.in_session(deliveries.queue_stats)
    return metrics.QueueDepth(stats.pending, stats.oldest_pending_age or 0.0)


def _snapshot_probe(runtime: Runtime) -> list[metrics.SnapshotAge]:
    return runtime.in_session(_active_snapshots)


def _active_snapshots(session: Any) -> list[metrics.SnapshotAge]:
    """Every tracked branch with an active snapshot, and when that snapshot became active."""
    ages = []
    for target in serving.tracked_targets(session):
        branch = branches.get_branch(session, target.repository_id, target.branch)
        if branch is not None and branch.active_snapshot_id and branch.activated_at:
            ages.append(
                metrics.SnapshotAge(
                    target.full_name, target.branch, branch.activated_at.timestamp()
                )
            )
    return ages


# ---- / ----------------------------------------------------------------------------------------


async def _landing(runtime: Runtime, request: Request) -> HTMLResponse:
    """Where a person opening the service's address lands: what it is, and what to do next."""
    if await runtime.refresh_credentials():
        slug = runtime.credentials.slug
        github = runtime.settings.github_url
        install = (
            f'<p><a href="{escape(github)}/apps/{escape(slug)}/installations/new">Install the '
            f"App <b>{escape(slug)}</b></a> on your prompt repositories, then connect a "
            "guild from Discord with <code>/prompt-config set owner/repository</code>.</p>"
            if slug
            else ""
        )
        state = f"<p>The GitHub App is configured.</p>{install}"
    else:
        missing = ", ".join(missing_credentials(runtime))
        state = (
            f"<p>No GitHub App is configured yet (missing: {escape(missing)}). "
            '<a href="/setup">Create it from its manifest</a>: GitHub asks you to confirm '
            "and guildprompts stores its credentials itself.</p>"
        )
    settings = runtime.settings
    if not settings.bridge_tokens:
        bridge = f'<p class="warn" id="bridge">The bot bridge is off: {escape(DISABLED)}.</p>'
    elif generated_token_file(settings) is not None:
        bridge = (
            '<p id="bridge">The bot bridge answers at <code>/bridge/v1</code> with the token '
            f"generated into <code>{escape(settings.bridge_token_file)}</code> "
            "(<code>guildprompts bridge-token</code> prints it); guilds without a repository get "
            "the built-in default prompts.</p>"
        )
    else:
        bridge = (
            '<p id="bridge">The bot bridge answers at <code>/bridge/v1</code> with a token from '
            "<code>BRIDGE_TOKENS</code>; guilds without a repository get the built-in default "
            "prompts.</p>"
        )
    body = f"""<p>Keeps a Discord community's summarization prompts in a GitHub repository.</p>
{state}
{bridge}
<p><a href="/readyz">Readiness</a> · <a href="/metrics">Metrics</a></p>"""
    return page("guildprompts", body)
