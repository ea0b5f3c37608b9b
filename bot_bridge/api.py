"""The bot bridge's HTTP API, everything under `/bridge/v1`: JSON in and out, bearer tokens.

- `GET  /guilds/{id}/prompt?category=&channel=&channel_id=&type=&perspective=&...`: the prompt
  for a context, from the resolver cache (ETag; `If-None-Match` gets 304). No database and no
  network on a cache hit.
- `GET  /guilds/{id}/config`: the binding (live, or pending) and how its syncs are going.
- `PUT  /guilds/{id}/config` `{"repository", "branch", "token", "actor"}`: ask to bind. The
  request is stored as *pending* beside any live binding (so a failed attempt never replaces a
  working one) and its first sync is queued; the answer waits a few seconds for the outcome:
  200 bound, 202 still syncing, 403 private and the guild not in `allowed_guilds`, 409 App not
  installed (with `install_url`; the request completes by itself once it is) or edited
  concurrently, 422 the commit failed validation (with its diagnostics).
- `DELETE /guilds/{id}/config`, `POST .../refresh` (re-sync from GitHub now), `POST .../test`
  (resolve a context from the current state, caching nothing), `GET .../events` (configuration
  changes and sync problems, once per problem).

Every error is `{"message": ..., "error": <code>}` and says what to do; no response carries a
secret (tokens are stored encrypted and only ever reported as `has_token`). The guild comes from
the URL alone, so a guild only ever reads its own binding's content.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import Receive, Scope, Send

from bot_bridge.cache import GUILD_ID, QueryError, ResolverCache
from bot_bridge.repository_url import RepositoryNameError, parse_repository
from github_app import jobs
from github_app.logs import register_secret
from github_app.runtime import Runtime
from github_app.secrets import Vault
from github_app.store import (
    audit,
    bindings,
    branches,
    deliveries,
    installations,
    serving,
    snapshots,
)
from github_app.store.errors import ConcurrentUpdateError, DatabaseUnavailableError
from github_app.store.models import DeliveryState, PendingBinding, Repository
from github_app.store.serving import GuildState
from promptrepo import RepositoryError, load_repository, render

__all__ = ["API_PREFIX", "bridge_routes"]

log = logging.getLogger("guildprompts.bridge.api")

API_PREFIX = "/bridge/v1"
BIND_WAIT = 8.0  # seconds PUT and refresh wait for the sync before answering 202
POLL_INTERVAL = 0.1  # seconds between looks at the store while waiting
PREVIEW_LIMIT = 4000  # characters of a test preview
MAX_BODY = 64 * 1024
EVENTS_LIMIT = 50
PROBLEM_OUTCOMES = frozenset({"rejected", "no_access", "failed", "gone"})
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_FINISHED = frozenset({DeliveryState.DONE.value, DeliveryState.FAILED.value})
# Git's ref-name rules, enough to refuse what GitHub would never accept as a branch name.
_BAD_BRANCH = re.compile(r"(^[-/.])|(\.\.)|(@\{)|([\x00-\x20~^:?*\[\\\x7f])|([/.]$)|(\.lock$)|//")


def bridge_routes(
    runtime: Runtime,
    cache: ResolverCache,
    *,
    wait: float = BIND_WAIT,
    poll_interval: float = POLL_INTERVAL,
) -> list[BaseRoute]:
    """Everything under `/bridge/v1`, for the web app's route list.

    `wait` bounds how long PUT and refresh wait for the sync they queued (0: answer 202 at once).
    """
    api = _BridgeAPI(runtime, cache, wait, poll_interval)
    router = Router(
        routes=[
            api.route("prompt", {"GET": api.prompt}),
            api.route("config", {"GET": api.get_config, "PUT": api.put_config,
                                 "DELETE": api.delete_config}),
            api.route("refresh", {"POST": api.refresh}),
            api.route("test", {"POST": api.test}),
            api.route("events", {"GET": api.events}),
        ],
        default=api.not_found,
    )
    return [Mount(API_PREFIX, app=router, name="bridge")]


class _Refusal(Exception):
    """An answer other than success, raised from deep inside a handler."""

    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.extra = status, error, message, extra

    def response(self) -> JSONResponse:
        return _json({"message": self.message, "error": self.error, **self.extra}, self.status)


Handler = Callable[[Request, str], Awaitable[Response]]


class _BridgeAPI:
    def __init__(self, runtime: Runtime, cache: ResolverCache, wait: float,
                 poll_interval: float) -> None:
        self.runtime = runtime
        self.cache = cache
        self.wait = max(0.0, wait)
        self.poll_interval = poll_interval
        self.github_url = runtime.settings.github_url
        self._tokens = tuple(token.encode() for token in runtime.settings.bridge_tokens)

    # ---- plumbing -----------------------------------------------------------------------------

    def route(self, suffix: str, handlers: Mapping[str, Handler]) -> Route:
        """`/guilds/{guild_id}/<suffix>` for every method, so that authentication comes first
        and a wrong method is a JSON 405 like every other answer."""
        return Route(f"/guilds/{{guild_id}}/{suffix}", self.endpoint(handlers),
                     methods=_METHODS, name=f"bridge-{suffix}")

    def endpoint(self, handlers: Mapping[str, Handler]) -> Callable[[Request], Awaitable[Response]]:
        """Authentication, method and guild id checks, and errors as JSON, around handlers."""
        allowed = ", ".join(handlers)

        async def endpoint(request: Request) -> Response:
            denied = self._deny(request)
            if denied is not None:
                return denied
            handler = handlers.get(request.method)
            if handler is None:
                return _json({"message": f"use {allowed} here", "error": "method_not_allowed"},
                             405, headers={"Allow": allowed})
            guild_id = request.path_params["guild_id"]
            try:
                if not GUILD_ID.fullmatch(guild_id):
                    raise _Refusal(400, "bad_request", f"invalid guild id {guild_id[:40]!r}: a "
                                   "Discord server id is 1 to 20 digits")
                return await handler(request, guild_id)
            except _Refusal as refusal:
                return refusal.response()
            except DatabaseUnavailableError:
                log.warning("bridge %s %s: the database did not answer", request.method,
                            request.url.path)
                return _json({"message": "guildprompts' database did not answer; try again "
                              "shortly", "error": "unavailable"}, 503)
            except Exception:
                log.exception("bridge %s %s failed", request.method, request.url.path)
                return _json({"message": "guildprompts failed to answer this request; the "
                              "error is in its log", "error": "internal"}, 500)

        return endpoint

    async def not_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = self._deny(request) or _json(
            {"message": f"no such bridge endpoint: {request.url.path}", "error": "not_found"}, 404
        )
        await response(scope, receive, send)

    def _deny(self, request: Request) -> JSONResponse | None:
        """401 unless the request carries one of BRIDGE_TOKENS (compared in constant time)."""
        if not self._tokens:
            return _unauthorized("the bridge is disabled: BRIDGE_TOKENS is unset on the "
                                 "guildprompts service")
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return _unauthorized("missing bearer token: send Authorization: Bearer <token>")
        candidate = presented.strip().encode("utf-8", "replace")
        matched = False
        for token in self._tokens:  # no early exit: timing does not tell which one matched
            matched |= hmac.compare_digest(candidate, token)
        return None if matched else _unauthorized("invalid bearer token")

    def install_url(self) -> str | None:
        slug = self.runtime.credentials.slug or self.runtime.settings.github_app_slug
        return f"{self.github_url}/apps/{slug}/installations/new" if slug else None

    # ---- GET prompt ---------------------------------------------------------------------------

    async def prompt(self, request: Request, guild_id: str) -> Response:
        query = tuple(request.query_params.multi_items())
        served = self.cache.lookup(guild_id, query)
        if served is None:
            try:
                served = await self.cache.resolve(guild_id, query)
            except QueryError as exc:
                raise _Refusal(400, "bad_request", str(exc)) from None
        if _matches(request.headers.get("if-none-match"), served.etag):
            return Response(status_code=304, headers=served.headers)
        return Response(served.body, headers=served.headers, media_type="application/json")

    # ---- config -------------------------------------------------------------------------------

    async def get_config(self, request: Request, guild_id: str) -> Response:
        view = await self._view(guild_id)
        if view is None:
            raise _no_binding(guild_id)
        return _json(view)

    async def _view(self, guild_id: str) -> dict[str, Any] | None:
        return await self.runtime.run_db(_config_view, guild_id, self.github_url,
                                         self.install_url())

    async def put_config(self, request: Request, guild_id: str) -> Response:
        wanted = _BindRequest.parse(await _body(request), self.github_url)
        if wanted.token is not None:
            register_secret(wanted.token)
        readable = wanted.token is not None or self.runtime.app_configured
        try:
            plan = await self.runtime.run_db(_request_binding, guild_id, wanted,
                                             self.runtime.vault, readable)
        except ConcurrentUpdateError as exc:
            raise _conflict(exc) from None
        if plan.guid is None:
            raise _Refusal(
                409, "not_installed",
                f"guildprompts has no GitHub App configured yet, so it cannot read "
                f"{plan.full_name}: its operator must finish the setup (/setup). The request "
                "is saved and completes once the App is installed on the repository.",
                install_url=None, repository=plan.full_name,
            )
        self.runtime.wake_worker()
        return await self._outcome(guild_id, plan)

    async def delete_config(self, request: Request, guild_id: str) -> Response:
        body = await _body(request, required=False)
        actor = _actor(body)
        expected = _optional_version(body)
        try:
            removed, generation = await self.runtime.run_db(_delete, guild_id, actor, expected)
        except ConcurrentUpdateError as exc:
            raise _conflict(exc) from None
        if not removed:
            raise _no_binding(guild_id)
        await self.runtime.announce_activation(generation)
        return _json({"removed": True, "guild_id": guild_id})

    async def refresh(self, request: Request, guild_id: str) -> Response:
        actor = _actor(await _body(request, required=False))
        plan = await self.runtime.run_db(_request_refresh, guild_id, actor)
        if plan is None:
            raise _no_binding(guild_id)
        self.runtime.wake_worker()
        return await self._outcome(guild_id, plan)

    async def _outcome(self, guild_id: str, plan: _Plan) -> Response:
        """Wait (bounded) for the queued sync, then say how it went."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while True:
            decided = await self.runtime.run_db(_decide, guild_id, plan, self.install_url())
            if decided is not None:
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                view = await self._view(guild_id) or {}
                view["message"] = "saved; the sync is still running: ask for the config again " \
                    "in a moment"
                return _json(view, 202)
            await asyncio.sleep(min(self.poll_interval, remaining))
        if isinstance(decided, _Refusal):
            raise decided
        await self.cache.check()  # this process serves the new binding from now on
        view = await self._view(guild_id)
        if view is None:
            raise _no_binding(guild_id)
        return _json(view)

    # ---- test and events ----------------------------------------------------------------------

    async def test(self, request: Request, guild_id: str) -> Response:
        body = await _body(request, required=False)
        try:
            preview = await self.cache.preview(guild_id, body)
        except QueryError as exc:
            raise _Refusal(400, "bad_request", str(exc)) from None
        answer = preview.answer
        content = answer["content"]
        view = await self._view(guild_id)
        return _json({
            **{key: answer[key] for key in (
                "file_path", "tried_paths", "route", "source", "commit_sha", "repository",
                "branch", "schema_version", "parameters", "github_file_url", "is_stale",
                "status_message")},
            "preview": content[:PREVIEW_LIMIT],
            "truncated": len(content) > PREVIEW_LIMIT,
            "length": len(content),
            "unresolved": list(render(content, {}).unresolved),
            "context": preview.context.to_dict(),
            "diagnostics": view["errors"] if view is not None else [],
        })

    async def events(self, request: Request, guild_id: str) -> Response:
        return _json({"events": await self.runtime.run_db(_events, guild_id)})


# ---- request bodies ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _BindRequest:
    full_name: str
    branch: str | None
    token: str | None
    actor: str
    expected_version: int | None

    @classmethod
    def parse(cls, body: Mapping[str, Any], github_url: str) -> _BindRequest:
        try:
            full_name = parse_repository(body.get("repository"), github_url)
        except RepositoryNameError as exc:
            raise _Refusal(400, "bad_request", str(exc)) from None
        token = body.get("token")
        if token is not None and (not isinstance(token, str) or not token.strip()
                                  or len(token) > 1000):
            raise _Refusal(400, "bad_request", "token must be a personal access token or null")
        return cls(full_name, _branch(body.get("branch")),
                   token.strip() if isinstance(token, str) else None, _actor(body),
                   _optional_version(body))


async def _body(request: Request, *, required: bool = True) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise _Refusal(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise _Refusal(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
    if not raw.strip():
        if required:
            raise _Refusal(400, "bad_request", "send a JSON object as the body")
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise _Refusal(400, "bad_request", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _Refusal(400, "bad_request", "the body must be a JSON object")
    return body


def _actor(body: Mapping[str, Any]) -> str:
    actor = body.get("actor")
    if isinstance(actor, int) and not isinstance(actor, bool):
        actor = str(actor)
    if not isinstance(actor, str) or not actor.strip() or len(actor.strip()) > 64:
        raise _Refusal(400, "bad_request", "actor (the Discord user id making the change, at "
                       "most 64 characters) is required: it goes to the audit log")
    return actor.strip()


def _branch(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or len(value) > 255 or _BAD_BRANCH.search(value.strip()):
        shown = str(value)[:60]
        raise _Refusal(400, "bad_request", f"{shown!r} is not a branch name; leave it empty to "
                       "follow the repository's default branch")
    return value.strip().removeprefix("refs/heads/")


def _optional_version(body: Mapping[str, Any]) -> int | None:
    value = body.get("expected_version")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Refusal(400, "bad_request", "expected_version must be the binding's version")
    return value or None


# ---- database work (each function runs in a thread, in one transaction) -----------------------


@dataclass(frozen=True)
class _Plan:
    """A queued sync the answer waits for, and how to recognise the request it serves."""

    guid: str | None
    full_name: str
    branch: str | None
    pending_set_at: datetime | None  # None: a refresh of the live binding


def _request_binding(
    session: Session, guild_id: str, wanted: _BindRequest, vault: Vault, readable: bool
) -> _Plan:
    live = bindings.get_binding(session, guild_id)
    version = wanted.expected_version
    if version is None and live is not None:
        version = live.version
    repository = installations.repository_by_name(session, wanted.full_name)
    full_name = repository.full_name if repository is not None else wanted.full_name
    repository_id = repository.id if repository is not None else None
    pending = bindings.save_pending(
        session, guild_id, repository_full_name=full_name, repository_id=repository_id,
        branch=wanted.branch, actor=wanted.actor, expected_version=version, token=wanted.token,
        vault=vault,
        status_message="first sync queued" if readable else "waiting for the GitHub App",
    )
    guid = None
    if readable:  # the handler asks GitHub how to read it, catching installations we missed
        guid = jobs.enqueue_sync(session, full_name=full_name, repository_id=repository_id,
                                 branch=wanted.branch, trigger="bind", guild_id=guild_id)
    return _Plan(guid, full_name, wanted.branch, pending.set_at)


def _request_refresh(session: Session, guild_id: str, actor: str) -> _Plan | None:
    pending = bindings.get_pending(session, guild_id)
    target = pending or bindings.get_binding(session, guild_id)
    if target is None:
        return None
    audit.record_audit(session, actor, guild_id, "binding.refresh", None,
                       {"repository": target.repository_full_name, "branch": target.branch})
    guid = jobs.enqueue_sync(session, full_name=target.repository_full_name,
                             repository_id=target.repository_id, branch=target.branch,
                             trigger="refresh", guild_id=guild_id)
    return _Plan(guid, target.repository_full_name, target.branch,
                 pending.set_at if pending is not None else None)


def _delete(
    session: Session, guild_id: str, actor: str, expected_version: int | None
) -> tuple[bool, int]:
    removed = bindings.delete_binding(session, guild_id, actor=actor,
                                      expected_version=expected_version)
    return removed, branches.current_generation(session)


def _decide(session: Session, guild_id: str, plan: _Plan,
            install_url: str | None) -> _Refusal | bool | None:
    """True: done (show the config); a refusal; None: the sync has not finished yet."""
    delivery = deliveries.get_delivery(session, plan.guid) if plan.guid else None
    running = delivery is not None and delivery.state not in _FINISHED
    if plan.pending_set_at is None:  # a refresh of the live binding: done when the sync is
        return None if running else True
    pending = bindings.get_pending(session, guild_id)
    if pending is None or pending.set_at != plan.pending_set_at:
        live = bindings.get_binding(session, guild_id)
        if pending is None and live is not None and _same_target(live, plan):
            return True  # promoted
        return _Refusal(409, "conflict", "the binding of this server was changed by someone "
                        "else meanwhile: look at it with the config and try again if needed")
    if running:
        return None
    return _why_pending(session, guild_id, pending, delivery, install_url)


def _why_pending(
    session: Session, guild_id: str, pending: PendingBinding,
    delivery: Any, install_url: str | None,
) -> _Refusal:
    """The sync finished and the request is still pending: find out why, from the facts."""
    live = bindings.get_binding(session, guild_id)
    if pending.base_version != (live.version if live is not None else 0):
        return _Refusal(409, "conflict", "the binding of this server was changed by someone "
                        "else since this request was made: make the request again")
    repository = _pending_repository(session, pending)
    has_token = pending.token_ciphertext is not None
    if repository is None or not (has_token or installations.has_app_access(session,
                                                                              repository.id)):
        name = repository.full_name if repository is not None else pending.repository_full_name
        where = f"Install it here, choosing {name}: {install_url}" if install_url else \
            "Ask the guildprompts operator for the App's install link."
        return _Refusal(409, "not_installed",
                        f"the guildprompts GitHub App is not installed on {name} (or cannot see "
                        f"it). {where} The request is saved and completes by itself once the "
                        "App is installed.", install_url=install_url, repository=name)
    branch = pending.branch or repository.default_branch
    tracked = branches.get_branch(session, repository.id, branch)
    latest = None
    if tracked is not None and tracked.latest_sha:
        latest = snapshots.find_snapshot(session, repository.id, tracked.latest_sha)
    if latest is not None and not latest.valid:
        diagnostics = list(latest.diagnostics)
        return _Refusal(422, "invalid",
                        pending.status_message or f"commit {latest.commit_sha[:7]} on {branch} "
                        "failed validation", errors=diagnostics, diagnostics=diagnostics,
                        commit_sha=latest.commit_sha)
    if latest is not None and repository.private and not has_token \
            and guild_id not in _allowed_guilds(session, latest.id):
        line = f'allowed_guilds: ["{guild_id}"]'
        return _Refusal(403, "forbidden",
                        f"{repository.full_name} is private and its PATH file does not allow "
                        f"this server. Add this to PATH (or add the id to the existing list), "
                        f"push, then set the repository again: {line}",
                        allowed_guilds_entry=guild_id, path_snippet=line)
    reason = _last_sync_message(session, repository.id, branch, pending.set_at)
    failed = delivery is not None and delivery.state == DeliveryState.FAILED.value
    if failed:
        reason = f"the first sync failed: {delivery.last_error or reason or 'see the log'}"
    reason = reason or pending.status_message or \
        f"the first sync of {repository.full_name}@{branch} did not complete"
    if reason != pending.status_message:  # `GET .../config` shows it from now on
        bindings.set_pending_status(session, guild_id, reason[:2000])
    return _Refusal(502 if failed else 422, "sync_failed" if failed else "not_synced", reason)


def _last_sync_message(
    session: Session, repository_id: int, branch: str, since: datetime
) -> str | None:
    """What the latest sync of the branch since the request said (e.g. the branch is gone)."""
    for entry in audit.recent_syncs(session, repository_id, limit=20):
        if entry.at < since:
            return None
        if entry.branch == branch and entry.message:
            return entry.message
    return None


def _same_target(live: Any, plan: _Plan) -> bool:
    return (live.repository_full_name.lower() == plan.full_name.lower()
            and live.branch == plan.branch)


def _pending_repository(session: Session, pending: PendingBinding) -> Repository | None:
    if pending.repository_id is not None:
        return installations.get_repository(session, pending.repository_id)
    return installations.repository_by_name(session, pending.repository_full_name)


def _allowed_guilds(session: Session, snapshot_id: int) -> tuple[str, ...]:
    try:
        return load_repository(snapshots.snapshot_files(session, snapshot_id)).allowed_guilds
    except RepositoryError:
        return ()


def _config_view(
    session: Session, guild_id: str, github_url: str, install_url: str | None
) -> dict[str, Any] | None:
    """What `GET .../config` shows: the live binding (else the pending request) and its syncs."""
    state = serving.guild_state(session, guild_id)
    pending = bindings.get_pending(session, guild_id)
    if state is None and pending is None:
        return None
    if state is not None:
        view = _live_view(state, github_url)
        if not state.installed and not state.has_token:
            view["install_url"] = install_url
    else:
        assert pending is not None
        view = _pending_view(session, pending, github_url, install_url)
    request = None
    if state is not None and pending is not None:
        requested = _pending_view(session, pending, github_url, install_url)
        request = {key: requested[key] for key in (
            "repository", "branch", "status_message", "set_by", "set_at", "has_token",
            "install_url", "last_sync_outcome", "errors")}
    return {"guild_id": guild_id, **view, "pending": request}


def _live_view(state: GuildState, github_url: str) -> dict[str, Any]:
    return {
        "repository": state.repository_full_name,
        "branch": state.branch,
        "effective_branch": state.effective_branch,
        "enabled": state.enabled,
        "state": state.state,
        "last_sync_outcome": state.branch_status or "pending",
        "status_message": state.status_message,
        "active_sha": state.commit_sha,
        "latest_sha": state.latest_sha,
        "last_sync_at": _iso(state.last_sync_at),
        "activated_at": _iso(state.activated_at),
        "errors": list(state.diagnostics),
        "is_stale": state.is_stale,
        "last_error": state.last_error,
        "set_by": state.set_by,
        "set_at": _iso(state.set_at),
        "repo_url": f"{github_url}/{state.repository_full_name}",
        "private": state.private,
        "installed": state.installed,
        "has_token": state.has_token,
        "version": state.version,
        "install_url": None,
    }


def _pending_view(
    session: Session, pending: PendingBinding, github_url: str, install_url: str | None
) -> dict[str, Any]:
    repository = _pending_repository(session, pending)
    branch = pending.branch or (repository.default_branch if repository is not None else None)
    tracked = None
    if repository is not None and branch is not None:
        tracked = branches.get_branch(session, repository.id, branch)
    installed = repository is not None and installations.has_app_access(session, repository.id)
    has_token = pending.token_ciphertext is not None
    return {
        "repository": pending.repository_full_name,
        "branch": pending.branch,
        "effective_branch": branch,
        "enabled": True,
        "state": "pending",
        "last_sync_outcome": tracked.status if tracked is not None else "pending",
        "status_message": pending.status_message or "waiting for the first sync",
        "active_sha": None,
        "latest_sha": tracked.latest_sha if tracked is not None else None,
        "last_sync_at": _iso(tracked.last_sync_at) if tracked is not None else None,
        "activated_at": None,
        "errors": list(tracked.diagnostics) if tracked is not None else [],
        "is_stale": False,
        "last_error": None,
        "set_by": pending.set_by,
        "set_at": _iso(pending.set_at),
        "repo_url": f"{github_url}/{pending.repository_full_name}",
        "private": repository.private if repository is not None else None,
        "installed": installed,
        "has_token": has_token,
        "version": None,
        "install_url": None if installed or has_token else install_url,
    }


def _events(session: Session, guild_id: str) -> list[dict[str, Any]]:
    """Configuration changes (audit log) and sync problems, newest first.

    A problem is reported once however many times it recurred (retries, reconcile passes):
    syncs are grouped by (outcome, commit), with a count and the last time seen.
    """
    found: list[dict[str, Any]] = [
        {"at": _iso(entry.at), "actor": entry.actor, "action": entry.action,
         "before": entry.before, "after": entry.after, "kind": "change"}
        for entry in audit.audit_entries(session, guild_id, limit=EVENTS_LIMIT)
    ]
    state = serving.guild_state(session, guild_id)
    pending = bindings.get_pending(session, guild_id)
    followed: dict[tuple[int, str], str] = {}
    if state is not None and state.repository_id is not None and state.effective_branch:
        followed[(state.repository_id, state.effective_branch)] = state.repository_full_name
    if pending is not None:
        repository = _pending_repository(session, pending)
        if repository is not None:
            branch = pending.branch or repository.default_branch
            followed[(repository.id, branch)] = repository.full_name
    problems: dict[tuple[str, str | None], dict[str, Any]] = {}
    for (repository_id, branch), full_name in followed.items():
        for entry in reversed(audit.recent_syncs(session, repository_id, limit=200)):
            if entry.outcome not in PROBLEM_OUTCOMES or entry.branch not in (branch, None):
                continue
            key = (entry.outcome, entry.commit_sha)
            if key in problems:
                problems[key]["count"] += 1
                problems[key]["last_at"] = _iso(entry.at)
                continue
            problems[key] = {
                "at": _iso(entry.at), "actor": "guildprompts", "action": f"sync.{entry.outcome}",
                "before": None, "kind": "problem", "count": 1, "last_at": _iso(entry.at),
                "after": {"repository": full_name, "branch": entry.branch,
                          "commit_sha": entry.commit_sha, "trigger": entry.trigger,
                          "message": entry.message},
            }
    found.extend(problems.values())
    found.sort(key=lambda event: event["at"] or "", reverse=True)
    if state is not None and state.state == "no_access" \
            and not any(outcome == "no_access" for outcome, _sha in problems):
        found.insert(0, {"at": None, "actor": "guildprompts", "action": "access.lost",
                         "before": None, "kind": "problem", "count": 1, "last_at": None,
                         "after": {"repository": state.repository_full_name,
                                   "message": state.status_message}})
    return found[:EVENTS_LIMIT]


# ---- small helpers ----------------------------------------------------------------------------


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _unauthorized(message: str) -> JSONResponse:
    return _json({"message": message, "error": "unauthorized"}, 401,
                 headers={"WWW-Authenticate": 'Bearer realm="guildprompts bridge"'})


def _no_binding(guild_id: str) -> _Refusal:
    return _Refusal(404, "not_found", f"server {guild_id} has no prompt repository: bind one "
                    "with PUT .../config (the bot's /prompt-config set)")


def _conflict(exc: ConcurrentUpdateError) -> _Refusal:
    return _Refusal(409, "conflict", str(exc))


def _matches(header: str | None, etag: str) -> bool:
    """If-None-Match: `*`, one ETag, or a list; weak validators compare equal (RFC 9110)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
