"""The bot bridge's HTTP API, everything under `/bridge/v1`: JSON in and out, bearer tokens.

- `GET  /guilds/{id}/prompt?category=&channel=&channel_id=&type=&perspective=&locale=&...`:
  the prompt for a context, from the resolver cache (ETag; `If-None-Match` gets 304). No
  database and no network on a cache hit.
- `GET  /guilds/{id}/config`: the binding (live, or pending) and how its syncs are going.
- `PUT  /guilds/{id}/config` `{"repository", "branch", "token", "actor"}`: ask to bind. The
  request is stored as *pending* beside any live binding (so a failed attempt never replaces a
  working one) and its first sync is queued. A `token` is first used to read the repository and
  the branch: one that cannot is refused (403, 422 for the branch) and nothing is stored. The
  answer waits a few seconds for the outcome:
  200 bound, 202 still syncing, 403 private and the guild not in `allowed_guilds`, 409 App not
  installed (with `install_url`; the request completes by itself once it is) or edited
  concurrently, 422 the commit failed validation (with its diagnostics).
- `DELETE /guilds/{id}/config`, `POST .../refresh` (re-sync from GitHub now), `POST .../test`
  (resolve a context from the current state, caching nothing), `GET .../events` (configuration
  changes and sync problems, once per problem).

Every error is `{"message": ..., "error": <code>}` and says what to do; no response carries a
secret (tokens are stored encrypted and only ever reported as `has_token`). The guild comes from
the URL alone, so a guild only ever reads its own binding's content. The database work behind
these routes (the views, the requests, the decision a PUT waits for) is
`github_app.bridge.binding_store`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
    SimpleUser,
)
from starlette.endpoints import HTTPEndpoint
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from github_app.bridge import pins, previews
from github_app.bridge.binding_store import (
    BindRequest,
    Plan,
    Refusal,
    config_view,
    decide,
    delete_binding,
    guild_events,
    request_binding,
    request_refresh,
)
from github_app.bridge.repository_url import RepositoryNameError, parse_repository
from github_app.bridge.resolver_cache import GUILD_ID, Freshness, QueryError, ResolverCache
from github_app.bridge.stream import StreamHub
from github_app.github import GitHubError
from github_app.logs import register_secret
from github_app.runtime import Runtime
from github_app.store.errors import ConcurrentUpdateError, DatabaseUnavailableError
from github_app.sync.access import try_token
from promptrepo import render

__all__ = ["API_PREFIX", "bridge_routes"]

log = logging.getLogger("guildprompts.bridge.api")

API_PREFIX = "/bridge/v1"
BIND_WAIT = 8.0  # seconds PUT and refresh wait for the sync before answering 202
POLL_INTERVAL = 0.1  # seconds between looks at the store while waiting
PREVIEW_LIMIT = 4000  # characters of a test preview
MAX_BODY = 64 * 1024
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
    Starlette does the plumbing: `AuthenticationMiddleware` with a bearer backend (every path,
    unknown ones too, answers 401 first), `HTTPEndpoint` method dispatch (a wrong method is a
    405 with `Allow`), and exception handlers that turn every error into `{"message", "error"}`.
    """
    api = _BridgeAPI(runtime, cache, wait, poll_interval)
    hub = StreamHub(cache, heartbeat=runtime.settings.stream_heartbeat)
    guild_routes = {
        "prompt": {"GET": api.prompt},
        "config": {"GET": api.get_config, "PUT": api.put_config, "DELETE": api.delete_config},
        "refresh": {"POST": api.refresh},
        "test": {"POST": api.test},
        "events": {"GET": api.events},
    }
    routes: list[BaseRoute] = [
        *(api.route(suffix, handlers) for suffix, handlers in guild_routes.items()),
        *pins.pin_routes(api),
        *previews.preview_routes(api),
        Route("/stream", hub.endpoint, methods=["GET"], name="bridge-stream"),
    ]
    tokens = runtime.settings.bridge_tokens
    middleware = [
        Middleware(
            ExceptionMiddleware,
            handlers={
                Refusal: _refused,
                HTTPException: _http_error,
                DatabaseUnavailableError: _database_unavailable,
                Exception: _internal_error,
            },
        ),
        Middleware(AuthenticationMiddleware, backend=BearerTokens(tokens), on_error=_unauthorized),
    ]
    return [Mount(API_PREFIX, routes=routes, middleware=middleware, name="bridge")]


GuildHandler = Callable[[Request, str], Awaitable[Response]]


def _guild_endpoint(suffix: str, handlers: Mapping[str, GuildHandler]) -> type[HTTPEndpoint]:
    """An `HTTPEndpoint` for `/guilds/{guild_id}/<suffix>`: one method per handler, each given
    the checked guild id."""

    def method(handler: GuildHandler) -> Callable[[HTTPEndpoint, Request], Awaitable[Response]]:
        async def call(self: HTTPEndpoint, request: Request) -> Response:
            return await handler(request, _guild_id(request))

        return call

    name = f"Guild{suffix.title()}Endpoint"
    return type(name, (HTTPEndpoint,), {verb: method(fn) for verb, fn in handlers.items()})


def _guild_id(request: Request) -> str:
    guild_id: str = request.path_params["guild_id"]
    if not GUILD_ID.fullmatch(guild_id):
        raise Refusal(
            400,
            "bad_request",
            f"invalid guild id {guild_id[:40]!r}: a Discord server id is 1 to 20 digits",
        )
    return guild_id


class BearerTokens(AuthenticationBackend):
    """Every bridge request carries one of BRIDGE_TOKENS (compared in constant time)."""

    def __init__(self, tokens: tuple[str, ...]) -> None:
        self._tokens = tuple(token.encode() for token in tokens)

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser]:
        if not self._tokens:
            raise AuthenticationError(
                "the bridge is disabled: BRIDGE_TOKENS is unset on the guildprompts service"
            )
        scheme, _, presented = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise AuthenticationError("missing bearer token: send Authorization: Bearer <token>")
        candidate = presented.strip().encode("utf-8", "replace")
        matched = False
        for token in self._tokens:  # no early exit: timing does not tell which one matched
            matched |= hmac.compare_digest(candidate, token)
        if not matched:
            raise AuthenticationError("invalid bearer token")
        return AuthCredentials(["bridge"]), SimpleUser("bot")


# ---- errors as {"message", "error"} -------------------------------------------------------------


def _unauthorized(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    return _json(
        {"message": str(exc), "error": "unauthorized"},
        401,
        headers={"WWW-Authenticate": 'Bearer realm="guildprompts bridge"'},
    )


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    return _json({"message": exc.message, "error": exc.error, **exc.extra}, exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allowed = headers.get("Allow", "")
        body = {"message": f"use {allowed} here", "error": "method_not_allowed"}
    elif exc.status_code == 404:
        body = {"message": f"no such bridge endpoint: {request.url.path}", "error": "not_found"}
    else:
        body = {"message": str(exc.detail), "error": "bad_request"}
    return _json(body, exc.status_code, headers=headers)


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("bridge %s %s: the database did not answer", request.method, request.url.path)
    return _json(
        {
            "message": "guildprompts' database did not answer; try again shortly",
            "error": "unavailable",
        },
        503,
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("bridge %s %s failed", request.method, request.url.path, exc_info=exc)
    return _json(
        {
            "message": "guildprompts failed to answer this request; the error is in its log",
            "error": "internal",
        },
        500,
    )


class _BridgeAPI:
    def __init__(
        self, runtime: Runtime, cache: ResolverCache, wait: float, poll_interval: float
    ) -> None:
        self.runtime = runtime
        self.cache = cache
        self.wait = max(0.0, wait)
        self.poll_interval = poll_interval
        self.github_url = runtime.settings.github_url

    def route(self, suffix: str, handlers: Mapping[str, GuildHandler]) -> Route:
        """`/guilds/{guild_id}/<suffix>` answered by `handlers` (by HTTP method); the bridge's
        authentication and errors apply (the pin and preview routes use it too)."""
        by_verb = {method.lower(): handler for method, handler in handlers.items()}
        return Route(
            f"/guilds/{{guild_id}}/{suffix}",
            _guild_endpoint(suffix, by_verb),
            name=f"bridge-{suffix}",
        )

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
                raise Refusal(400, "bad_request", str(exc)) from None
        if _matches(request.headers.get("if-none-match"), served.etag):
            return Response(status_code=304, headers=served.headers)
        return Response(served.body, headers=served.headers, media_type="application/json")

    # ---- config -------------------------------------------------------------------------------

    async def get_config(self, request: Request, guild_id: str) -> Response:
        view = await self._view(guild_id)
        if view is None:
            raise _no_binding(guild_id)
        await self.cache.refresh_to(-1)  # loaded once; a no-op afterwards
        served = self.cache.served(guild_id)
        view["freshness"] = _freshness(served.commit_sha, self.cache.freshness(served))
        return _json(view)

    async def _view(self, guild_id: str) -> dict[str, Any] | None:
        return await self.runtime.run_db(config_view, guild_id, self.github_url, self.install_url())

    async def put_config(self, request: Request, guild_id: str) -> Response:
        wanted = _bind_request(await _body(request), self.github_url)
        if wanted.token is not None:
            register_secret(wanted.token)
            await self._try_token(wanted)
        readable = wanted.token is not None or self.runtime.app_configured
        try:
            plan = await self.runtime.run_db(
                request_binding, guild_id, wanted, self.runtime.vault, readable
            )
        except ConcurrentUpdateError as exc:
            raise _conflict(exc) from None
        if plan.generation is not None and plan.state is not None:  # live at once
            await self.cache.apply_guild(plan.generation, plan.state)  # this guild alone
            await self.runtime.announce_activation(plan.generation)  # other processes
            view = await self._view(guild_id)
            if view is None:
                raise _no_binding(guild_id)
            return _json(view)
        if plan.guid is None:
            raise Refusal(
                409,
                "not_installed",
                f"guildprompts has no GitHub App configured yet, so it cannot read "
                f"{plan.full_name}: its operator must finish the setup (/setup). The request "
                "is saved and completes once the App is installed on the repository.",
                install_url=None,
                repository=plan.full_name,
            )
        self.runtime.wake_worker()
        return await self._outcome(guild_id, plan)

    async def _try_token(self, wanted: BindRequest) -> None:
        """A token is stored only once it has read the repository and the branch."""
        try:
            refused = await try_token(
                self.runtime.github, wanted.full_name, wanted.branch, wanted.token or ""
            )
        except GitHubError as exc:
            raise Refusal(
                503,
                "github_unavailable",
                f"GitHub did not answer while checking the token ({exc.status}): try again "
                "in a moment. Nothing was saved.",
            ) from None
        if refused is not None:
            error = "forbidden" if refused.status == 403 else "token_refused"
            raise Refusal(refused.status, error, f"{refused.message}. Nothing was saved.")

    async def delete_config(self, request: Request, guild_id: str) -> Response:
        body = await _body(request, required=False)
        actor = _actor(body)
        expected = _optional_version(body)
        try:
            removed, generation = await self.runtime.run_db(
                delete_binding, guild_id, actor, expected
            )
        except ConcurrentUpdateError as exc:
            raise _conflict(exc) from None
        if not removed:
            raise _no_binding(guild_id)
        await self.runtime.announce_activation(generation)
        return _json({"removed": True, "guild_id": guild_id})

    async def refresh(self, request: Request, guild_id: str) -> Response:
        actor = _actor(await _body(request, required=False))
        plan = await self.runtime.run_db(request_refresh, guild_id, actor)
        if plan is None:
            raise _no_binding(guild_id)
        self.runtime.wake_worker()
        return await self._outcome(guild_id, plan)

    async def _outcome(self, guild_id: str, plan: Plan) -> Response:
        """Wait (bounded) for the queued sync, then say how it went."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while True:
            decided = await self.runtime.run_db(decide, guild_id, plan, self.install_url())
            if decided is not None:
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                pending = await self._view(guild_id) or {}
                pending["message"] = (
                    "saved; the sync is still running: ask for the config again in a moment"
                )
                return _json(pending, 202)
            await asyncio.sleep(min(self.poll_interval, remaining))
        if isinstance(decided, Refusal):
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
            raise Refusal(400, "bad_request", str(exc)) from None
        answer = preview.answer
        content = answer["content"]
        view = await self._view(guild_id)
        return _json(
            {
                **{
                    key: answer[key]
                    for key in (
                        "file_path",
                        "tried_paths",
                        "route",
                        "source",
                        "commit_sha",
                        "repository",
                        "branch",
                        "schema_version",
                        "parameters",
                        "github_file_url",
                        "is_stale",
                        "status_message",
                    )
                },
                "preview": content[:PREVIEW_LIMIT],
                "truncated": len(content) > PREVIEW_LIMIT,
                "length": len(content),
                "unresolved": list(render(content, {}).unresolved),
                "context": preview.context.to_dict(),
                "diagnostics": view["errors"] if view is not None else [],
            }
        )

    async def events(self, request: Request, guild_id: str) -> Response:
        return _json({"events": await self.runtime.run_db(guild_events, guild_id)})


# ---- request bodies ---------------------------------------------------------------------------


def _bind_request(body: Mapping[str, Any], github_url: str) -> BindRequest:
    """The PUT body, checked: a clear 400 for each bad field."""
    try:
        full_name = parse_repository(body.get("repository"), github_url)
    except RepositoryNameError as exc:
        raise Refusal(400, "bad_request", str(exc)) from None
    token = body.get("token")
    if token is not None and (not isinstance(token, str) or not token.strip() or len(token) > 1000):
        raise Refusal(400, "bad_request", "token must be a personal access token or null")
    return BindRequest(
        full_name,
        _branch(body.get("branch")),
        token.strip() if isinstance(token, str) else None,
        _actor(body),
        _optional_version(body),
    )


async def _body(request: Request, *, required: bool = True) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise Refusal(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise Refusal(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
    if not raw.strip():
        if required:
            raise Refusal(400, "bad_request", "send a JSON object as the body")
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python parses
        raise Refusal(400, "bad_request", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Refusal(400, "bad_request", "the body must be a JSON object")
    return body


def _actor(body: Mapping[str, Any]) -> str:
    actor = body.get("actor")
    if isinstance(actor, int) and not isinstance(actor, bool):
        actor = str(actor)
    if not isinstance(actor, str) or not actor.strip() or len(actor.strip()) > 64:
        raise Refusal(
            400,
            "bad_request",
            "actor (the Discord user id making the change, at "
            "most 64 characters) is required: it goes to the audit log",
        )
    return actor.strip()


def _branch(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or len(value) > 255 or _BAD_BRANCH.search(value.strip()):
        shown = str(value)[:60]
        raise Refusal(
            400,
            "bad_request",
            f"{shown!r} is not a branch name; leave it empty to "
            "follow the repository's default branch",
        )
    return value.strip().removeprefix("refs/heads/")


def _optional_version(body: Mapping[str, Any]) -> int | None:
    value = body.get("expected_version")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Refusal(400, "bad_request", "expected_version must be the binding's version")
    return value or None


# ---- small helpers ----------------------------------------------------------------------------


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _freshness(sha: str | None, fresh: Freshness | None) -> dict[str, Any] | None:
    """How fresh what this process serves is: "commit abc1234 live since 14:02:07 UTC, 0.3 s
    after the push" (the push time is GitHub's `pushed_at`, which has whole seconds)."""
    if sha is None or fresh is None or fresh.activated_at is None:
        return None
    live = _utc(fresh.activated_at)
    text = f"commit {sha[:7]} live since {live:%H:%M:%S} UTC"
    after = None
    if fresh.head_at is not None:
        after = max(0.0, (live - _utc(fresh.head_at)).total_seconds())
        text += f", {after:.1f} s after the push"
    return {"live_since": live.isoformat(), "after_push_seconds": after, "text": text}


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _no_binding(guild_id: str) -> Refusal:
    return Refusal(
        404,
        "not_found",
        f"server {guild_id} has no prompt repository: bind one "
        "with PUT .../config (the bot's /prompt-config set)",
    )


def _conflict(exc: ConcurrentUpdateError) -> Refusal:
    return Refusal(409, "conflict", str(exc))


def _matches(header: str | None, etag: str) -> bool:
    """If-None-Match: `*`, one ETag, or a list; weak validators compare equal (RFC 9110)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))
