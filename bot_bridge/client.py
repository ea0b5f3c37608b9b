"""The bot's client for the guildprompts bridge: always an answer, fast, even with the service down.

`resolve_prompt` never raises. It keeps the last good answer per (guild, normalised context),
revalidates it with `If-None-Match`, and when the service times out, refuses connections or answers
5xx it serves that answer marked `is_stale`, or else the built-in defaults (`source="fallback"`).
A circuit breaker stops waiting on a failing service: after a failure no request is sent for a
cool-down (doubling up to a ceiling), so while the service stays down every call answers from
memory. The admin calls behind `/prompt-config` raise `BridgeError` with the server's message.

Both clients share one sans-I/O core (`_Core`) that builds requests and interprets responses,
caches and persists; `BridgeClient` and `AsyncBridgeClient` only differ in how they send.
Imports only the standard library, httpx and promptrepo, so a bot needs none of the server; the
result types and their parsing are `bot_bridge.results` (re-exported here and by the package).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType
from typing import Any, Generic, Self, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from bot_bridge.cache_file import CacheFile
from bot_bridge.results import (
    BridgeError,
    BridgeEvent,
    GuildConfig,
    PreviewResult,
    ResolvedPrompt,
    config_from_body,
    config_or_none,
    events_from_body,
    preview_from_body,
    prompt_from_body,
    removed_from_body,
    text_field,
)
from bot_bridge.subscription import LocalState, Subscription
from promptrepo import Context, ContextError, builtin_default, render
from promptrepo.answer import GUILD_ID, routing_context

__all__ = ["AsyncBridgeClient", "BridgeClient"]  # the result types: bot_bridge.results

from .pins import (
    ChannelPreview,
    GuildHistory,
    PinStatus,
    channel_preview_from_body,
    ended_from_body,
    history_from_body,
    pin_status_from_body,
)

logger = logging.getLogger(__name__)

API_PREFIX = "/bridge/v1"
_PROMPT_KEY = "p:"  # cache-file records of HTTP answers: "p:<guild> <context key>"
_T = TypeVar("_T")


# --- the shared core ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    timeout: float
    params: Mapping[str, str] | None = None
    json: Any = None
    headers: Mapping[str, str] | None = None

    def kwargs(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "url": self.path,
            "params": self.params,
            "json": self.json,
            "headers": self.headers,
            "timeout": httpx.Timeout(self.timeout),
        }


@dataclass(frozen=True)
class _Op(Generic[_T]):
    """One call: the request to send (None: answer without I/O) and how to finish it.

    `finish(response, error)` gets exactly one of the two (neither when `request` is None).
    """

    request: _Request | None
    finish: Callable[[httpx.Response | None, BaseException | None], _T]


@dataclass
class _Entry:
    prompt: ResolvedPrompt
    body: dict[str, Any]
    etag: str | None


class _Breaker:
    """Closed until a failure; then open for a cool-down that doubles per failure up to a ceiling.

    When the cool-down ends, one caller probes while the others keep answering from memory.
    Concurrent requests failing together count as one failure, so a burst does not jump straight
    to the longest pause.
    """

    def __init__(
        self,
        cooldown: float,
        max_cooldown: float,
        probe_window: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cooldown, self._max, self._probe_window = cooldown, max_cooldown, probe_window
        self._clock = clock
        self.failures = 0
        self.reason = ""
        self._open_until = 0.0
        self._probing = False

    def allow(self) -> bool:
        now = self._clock()
        if now < self._open_until:
            return False
        if self.failures:
            self._open_until = now + self._probe_window
            self._probing = True
        return True

    def succeeded(self) -> None:
        if self.failures:
            logger.info("guildprompts bridge answers again after %d failure(s)", self.failures)
        self.failures, self.reason, self._open_until, self._probing = 0, "", 0.0, False

    def failed(self, reason: str) -> None:
        if self.failures and not self._probing:
            return  # already open: another request of the same outage reported it
        self._probing = False
        self.failures += 1
        self.reason = reason
        cooldown = min(self._cooldown * 2 ** min(self.failures - 1, 16), self._max)
        self._open_until = self._clock() + cooldown
        logger.warning(
            "guildprompts bridge unavailable (%s); answering from last good answers or defaults "
            "for %.1f s",
            reason,
            cooldown,
        )


class _Core:
    """Everything both clients share: requests, parsing, the last-good cache and the breaker."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float,
        admin_timeout: float,
        cache_path: str | os.PathLike[str] | None,
        max_entries: int,
        cooldown: float,
        max_cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout <= 0 or admin_timeout <= 0:
            raise ValueError("timeouts must be above 0 seconds")
        root = base_url.rstrip("/").removesuffix(API_PREFIX)
        if urlsplit(root).scheme not in {"http", "https"}:
            raise ValueError("base_url must be an http(s) URL of the guildprompts service")
        if token is not None and (not isinstance(token, str) or not token.strip()):
            raise ValueError(
                "the bridge token is empty: pass the token the service accepts (`guildprompts "
                "bridge-token` prints it), or token=None for a service that needs none "
                "(`guildprompts preview`)"
            )
        self.base_url = root
        self.headers = {"Accept": "application/json", "User-Agent": "guildprompts-bot-bridge"}
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token.strip()}"
        self.timeout = timeout
        self.admin_timeout = admin_timeout
        self._breaker = _Breaker(cooldown, max_cooldown, probe_window=timeout + 1.0, clock=clock)
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self.state: LocalState | None = None  # set by a streaming client
        self.file = CacheFile(cache_path, root, self._records) if cache_path is not None else None
        self._loaded: dict[str, Any] = self.file.load() if self.file is not None else {}
        for key, item in self._loaded.items():
            if key.startswith(_PROMPT_KEY):
                entry = _entry_from_file(key, item)
                if entry is not None:
                    self._entries[entry[0]] = entry[1]
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def use_state(self, state: LocalState) -> None:
        """Stream: answer from `state`, restored from the cache file when there is one."""
        self.state = state
        state.restore({k: v for k, v in self._loaded.items() if not k.startswith(_PROMPT_KEY)})
        self._loaded = {}

    # resolve_prompt ------------------------------------------------------------------------------

    def resolve(
        self, guild_id: object, context: Mapping[str, object] | None, variables: dict[str, object]
    ) -> _Op[ResolvedPrompt]:
        guild = str(guild_id)
        try:
            ctx = routing_context(guild, {**(context or {}), **variables}.items())
        except (ContextError, TypeError) as exc:
            logger.warning("resolve_prompt called with an unusable request: %s", exc)
            message = f"invalid request ({exc}); built-in defaults"
            return _Op(None, lambda _r, _e: _fallback(guild, Context(), message))
        key = (guild, ctx.key)
        with self._lock:
            entry = self._entries.get(key)
            allowed = self._breaker.allow()
            reason = self._breaker.reason
        if not allowed:
            return _Op(None, lambda _r, _e: self._degraded(key, ctx, f"{reason}; circuit open"))
        params = {name: value for name, value in ctx.rendering().items() if name != "guild"}
        headers = {"If-None-Match": entry.etag} if entry is not None and entry.etag else None
        request = _Request(
            "GET", f"{API_PREFIX}/guilds/{quote(guild)}/prompt", self.timeout, params, None, headers
        )

        def finish(response: httpx.Response | None, error: BaseException | None) -> ResolvedPrompt:
            try:
                return self._finish_resolve(key, ctx, response, error)
            except Exception:  # a bug here must still not take the bot down
                logger.exception("unexpected error while resolving a prompt")
                return self._degraded(key, ctx, "client error")

        return _Op(request, finish)

    def _finish_resolve(
        self,
        key: tuple[str, str],
        ctx: Context,
        response: httpx.Response | None,
        error: BaseException | None,
    ) -> ResolvedPrompt:
        if response is None:
            reason = _describe(error)
            if isinstance(error, httpx.LocalProtocolError):
                self._warn_once(f"the client's own request is invalid ({error}); check its token")
            with self._lock:
                self._breaker.failed(reason)
            return self._degraded(key, ctx, reason)
        status = response.status_code
        if status >= 500 or status == 429:
            with self._lock:
                self._breaker.failed(f"HTTP {status}")
            return self._degraded(key, ctx, f"HTTP {status}")
        with self._lock:
            self._breaker.succeeded()
            entry = self._entries.get(key)
            if status == 304 and entry is not None:
                entry.prompt = replace(entry.prompt, resolved_at=_now())
                self._entries.move_to_end(key)
                return entry.prompt
        body = _json_object(response) if status == 200 else None
        prompt = prompt_from_body(body, _now()) if body is not None else None
        if prompt is None:
            return self._refused(key, ctx, response)
        self._store(key, _Entry(prompt, body or {}, response.headers.get("ETag")))
        return prompt

    def _refused(
        self, key: tuple[str, str], ctx: Context, response: httpx.Response
    ) -> ResolvedPrompt:
        """The service answered, but not with a prompt (bad token, bad request, bad body)."""
        detail = "the answer is not a prompt" if response.is_success else _error_message(response)
        reason = f"HTTP {response.status_code}: {detail}"
        if response.status_code in (401, 403, 404):
            self._warn_once(
                f"the bridge refused this client ({reason}): check its base_url "
                f"({self.base_url}) and token; answering built-in defaults meanwhile"
            )
        else:
            self._warn_once(f"guildprompts bridge refused a prompt request ({reason})")
        return self._degraded(key, ctx, reason)

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            logger.warning("%s", message)

    def _degraded(self, key: tuple[str, str], ctx: Context, reason: str) -> ResolvedPrompt:
        with self._lock:
            entry = self._entries.get(key)
        streamed = self._streamed(key[0], ctx, reason)
        if streamed is not None and (
            entry is None or streamed.resolved_at >= entry.prompt.resolved_at
        ):
            return streamed  # the newer of the two last good answers
        if entry is not None:
            when = entry.prompt.resolved_at.isoformat(timespec="seconds")
            return replace(
                entry.prompt,
                is_stale=True,
                status_message=f"guildprompts unavailable ({reason}); last good answer from {when}",
            )
        message = f"guildprompts unavailable ({reason}); built-in defaults"
        return _fallback(key[0], ctx, message)

    def _streamed(self, guild: str, ctx: Context, reason: str) -> ResolvedPrompt | None:
        """The answer from the last streamed state (kept or restored), marked stale."""
        state = self.state
        if state is None or state.generation is None:
            return None
        try:
            prompt = state.answer(guild, dict(ctx.items), {})
        except Exception:
            return None
        when = prompt.resolved_at.isoformat(timespec="seconds")
        return replace(
            prompt,
            is_stale=True,
            status_message=f"guildprompts unavailable ({reason}); last streamed state from {when}",
        )

    # the last-good cache and its file ------------------------------------------------------------

    def _store(self, key: tuple[str, str], entry: _Entry) -> None:
        evicted: list[tuple[str, str]] = []
        with self._lock:
            previous = self._entries.get(key)
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                evicted.append(self._entries.popitem(last=False)[0])
            changed = previous is None or previous.etag != entry.etag or previous.body != entry.body
        if self.file is not None:
            if changed:
                self.file.put(_file_key(key), _file_record(entry))
            for old in evicted:
                self.file.put(_file_key(old), None)

    def _records(self) -> dict[str, Any]:
        """Every record the cache file should hold (the writer thread rewrites it from these)."""
        with self._lock:
            records = {_file_key(key): _file_record(entry) for key, entry in self._entries.items()}
        if self.state is not None:
            records.update(self.state.records())
        return records

    # admin calls ---------------------------------------------------------------------------------

    def admin(
        self,
        method: str,
        guild_id: object,
        suffix: str,
        parse: Callable[[str, Any, int], _T],
        body: Any = None,
        on_404: Callable[[], _T] | None = None,
    ) -> _Op[_T]:
        guild = str(guild_id)
        if not GUILD_ID.fullmatch(guild):
            raise ValueError(
                f"invalid guild id {guild[:80]!r}: a Discord server id is 1 to 20 digits"
            )
        path = f"{API_PREFIX}/guilds/{quote(guild)}/{suffix}"
        request = _Request(method, path, self.admin_timeout, json=body)

        def finish(response: httpx.Response | None, error: BaseException | None) -> _T:
            if response is None:
                if isinstance(error, httpx.TimeoutException):
                    raise BridgeError(
                        None, f"guildprompts did not answer within {self.admin_timeout:g} s"
                    ) from error
                if isinstance(error, httpx.HTTPError):
                    raise BridgeError(None, f"guildprompts is unreachable ({_describe(error)})")
                assert error is not None
                raise error
            if response.status_code == 404 and on_404 is not None:
                return on_404()
            if not response.is_success:
                raise BridgeError(
                    response.status_code, _error_message(response), _json_object(response)
                )
            try:
                payload = response.json() if response.content else {}
            except ValueError:
                message = "guildprompts answered with something other than JSON"
                raise BridgeError(response.status_code, message) from None
            return parse(guild, payload, response.status_code)

        return _Op(request, finish)


# --- responses, persisted entries and the fallback ---------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _describe(error: BaseException | None) -> str:
    if isinstance(error, httpx.TimeoutException):
        return "timeout"
    if isinstance(error, httpx.ConnectError):
        return "connection refused or failed"
    return type(error).__name__


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _error_message(response: httpx.Response) -> str:
    body = _json_object(response) or {}
    for key in ("message", "error", "detail"):
        if text_field(body.get(key)):
            return str(body[key])
    return response.reason_phrase or f"HTTP {response.status_code}"


def _file_key(key: tuple[str, str]) -> str:
    return f"{_PROMPT_KEY}{key[0]} {key[1]}"


def _file_record(entry: _Entry) -> dict[str, Any]:
    return {
        "etag": entry.etag,
        "resolved_at": entry.prompt.resolved_at.isoformat(),
        "body": entry.body,
    }


def _entry_from_file(key: str, item: Any) -> tuple[tuple[str, str], _Entry] | None:
    guild, _, context_key = key.removeprefix(_PROMPT_KEY).partition(" ")
    if not isinstance(item, dict) or not isinstance(item.get("body"), dict) or not guild:
        return None
    try:
        resolved_at = datetime.fromisoformat(str(item.get("resolved_at")))
    except ValueError:
        return None
    prompt = prompt_from_body(item["body"], resolved_at)
    if prompt is None:
        return None
    etag = item.get("etag") if isinstance(item.get("etag"), str) else None
    return (guild, context_key), _Entry(prompt, item["body"], etag)


def _fallback(guild: str, ctx: Context, message: str) -> ResolvedPrompt:
    """The built-in default for this context, rendered the way the bridge renders it."""
    try:
        resolution = builtin_default(ctx)
    except Exception:  # a context the defaults cannot route still gets the generic default
        resolution = builtin_default(Context())
    variables = dict(resolution.variables)
    if GUILD_ID.fullmatch(guild):
        variables["guild"] = guild
    return ResolvedPrompt(
        content=render(resolution.content, variables).text,
        source="fallback",
        version=resolution.schema_version,
        commit_sha=None,
        file_path=resolution.file_path,
        tried_paths=tuple(resolution.tried_paths),
        repo_url=None,
        github_file_url=None,
        parameters=MappingProxyType(dict(resolution.parameters or {})),
        is_stale=False,
        resolved_at=_now(),
        route=resolution.route,
        status_message=message,
    )


# --- the two clients: same API, only the transport call differs ---------------------------------


class _ClientBase:
    """Constructor and the per-call request descriptions shared by both clients."""

    _http_class: type[httpx.Client] | type[httpx.AsyncClient]

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = 2.0,
        admin_timeout: float = 15.0,
        cache_path: str | os.PathLike[str] | None = None,
        max_entries: int = 4096,
        cooldown: float = 5.0,
        max_cooldown: float = 30.0,
        transport: Any = None,
        stream: bool = False,
        guilds: Iterable[object] | None = None,
        stream_transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`token`: one of the service's BRIDGE_TOKENS (`guildprompts bridge-token` prints
        it); None sends no Authorization header (for `guildprompts preview`); empty is an
        error. `timeout` bounds every resolve (connect and each read); admin calls get
        `admin_timeout` because binding or refreshing waits for a sync. `cache_path` persists
        last good answers (and the streamed state), written off the caller's thread;
        `cooldown`/`max_cooldown` bound the circuit breaker's pause, measured with `clock`;
        `transport` is an httpx transport (tests use `httpx.MockTransport`).

        `stream=True` subscribes to `GET /bridge/v1/stream` in a background thread (for
        `guilds`, or every guild) and answers `resolve_prompt` from that state in process, with
        no network call; while the stream is down it revalidates over HTTP as without it.
        `stream_transport` is the (blocking) httpx transport of that subscription."""
        self._core = _Core(
            base_url,
            token,
            timeout=timeout,
            admin_timeout=admin_timeout,
            cache_path=cache_path,
            max_entries=max_entries,
            cooldown=cooldown,
            max_cooldown=max_cooldown,
            clock=clock,
        )
        self._http = self._http_class(
            base_url=self._core.base_url, headers=self._core.headers, transport=transport
        )
        self._state: LocalState | None = None
        self._subscription: Subscription | None = None
        if stream:
            file = self._core.file
            self._state = LocalState(persist=file.put if file is not None else None)
            self._core.use_state(self._state)
            self._subscription = Subscription(
                self._core.base_url,
                self._core.headers,
                self._state,
                guilds=guilds,
                transport=stream_transport,
            )
            self._subscription.start()

    def _local(
        self, guild_id: object, context: Mapping[str, object] | None, variables: dict[str, object]
    ) -> ResolvedPrompt | None:
        """The streamed answer while the stream is live; None: ask over HTTP."""
        state = self._state
        if state is None or not state.live:
            return None
        try:
            return state.answer(guild_id, context, variables)
        except (ValueError, TypeError):
            return None  # an unusable request: the HTTP path answers it with defaults
        except Exception:
            logger.exception("resolving from the streamed state failed; asking over HTTP")
            return None

    def wait_for_stream(self, timeout: float = 10.0) -> bool:
        """Block until the streamed state is live (start-up, tests); False on timeout or
        without `stream=True`."""
        return self._subscription is not None and self._subscription.wait_live(timeout)

    def stream_stats(self) -> dict[str, Any]:
        """The streamed state: live, generation, guilds, snapshots, push-to-bot seconds."""
        return self._state.stats() if self._state is not None else {"live": False}

    def _shutdown(self) -> None:
        """Stop the subscription and write what is pending to the cache file (blocking)."""
        if self._subscription is not None:
            self._subscription.stop()
        if self._core.file is not None:
            self._core.file.close()

    def __repr__(self) -> str:  # never the token
        return f"{type(self).__name__}({self._core.base_url!r})"

    def _get_config(self, guild_id: object) -> _Op[GuildConfig | None]:
        return self._core.admin("GET", guild_id, "config", config_or_none, on_404=lambda: None)

    def _set_config(
        self, guild_id: object, repository: str, branch: str | None, token: str | None, actor: str
    ) -> _Op[GuildConfig]:
        body = {"repository": repository, "branch": branch, "token": token, "actor": actor}
        return self._core.admin("PUT", guild_id, "config", config_from_body, body)

    def _remove_config(self, guild_id: object, actor: str) -> _Op[bool]:
        body = {"actor": actor}
        return self._core.admin(
            "DELETE", guild_id, "config", removed_from_body, body, lambda: False
        )

    def _refresh(self, guild_id: object, actor: str) -> _Op[GuildConfig]:
        return self._core.admin("POST", guild_id, "refresh", config_from_body, {"actor": actor})

    def _test(self, guild_id: object, context: Mapping[str, object] | None) -> _Op[PreviewResult]:
        body = {key: value for key, value in (context or {}).items() if value is not None}
        return self._core.admin("POST", guild_id, "test", preview_from_body, body)

    def _events(self, guild_id: object) -> _Op[list[BridgeEvent]]:
        return self._core.admin("GET", guild_id, "events", events_from_body)

    def _pin(self, guild_id: object, sha: str, actor: str) -> _Op[PinStatus]:
        body = {"sha": sha, "actor": actor}
        return self._core.admin("PUT", guild_id, "pin", pin_status_from_body, body)

    def _unpin(self, guild_id: object, actor: str) -> _Op[PinStatus]:
        body = {"actor": actor}
        return self._core.admin("DELETE", guild_id, "pin", pin_status_from_body, body)

    def _rollback(self, guild_id: object, actor: str) -> _Op[PinStatus]:
        body = {"actor": actor}
        return self._core.admin("POST", guild_id, "rollback", pin_status_from_body, body)

    def _preview(
        self, guild_id: object, pull_request: int, channel_id: object, actor: str
    ) -> _Op[ChannelPreview]:
        body = {"pull_request": pull_request, "channel_id": str(channel_id), "actor": actor}
        return self._core.admin("PUT", guild_id, "preview", channel_preview_from_body, body)

    def _preview_off(self, guild_id: object, channel_id: object, actor: str) -> _Op[list[str]]:
        body: dict[str, Any] = {"actor": actor}
        if channel_id is not None:
            body["channel_id"] = str(channel_id)
        return self._core.admin(
            "DELETE", guild_id, "preview", ended_from_body, body, on_404=lambda: []
        )

    def _history(self, guild_id: object, limit: int) -> _Op[GuildHistory]:
        return self._core.admin("GET", guild_id, f"history?limit={int(limit)}", history_from_body)


def _locales(locale: object, guild_locale: object) -> dict[str, str]:
    """Discord's locales as context values (`discord.Locale` prints as its tag, `pt-BR`)."""
    given = {"locale": locale, "guild_locale": guild_locale}
    return {key: str(value) for key, value in given.items() if value is not None}


class BridgeClient(_ClientBase):
    """Blocking client; safe to share between threads."""

    _http_class = httpx.Client
    _http: httpx.Client

    def _run(self, op: _Op[_T]) -> _T:
        if op.request is None:
            return op.finish(None, None)
        try:
            response = self._http.request(**op.request.kwargs())
        except Exception as exc:
            return op.finish(None, exc)
        return op.finish(response, None)

    def resolve_prompt(
        self,
        guild_id: object,
        context: Mapping[str, object] | None = None,
        *,
        locale: object = None,
        guild_locale: object = None,
        **variables: object,
    ) -> ResolvedPrompt:
        """The prompt for this guild and context; never raises.

        `locale`/`guild_locale`: Discord's `interaction.locale` and `interaction.guild_locale`.
        """
        variables.update(_locales(locale, guild_locale))
        local = self._local(guild_id, context, variables)
        if local is not None:
            return local
        return self._run(self._core.resolve(guild_id, context, variables))

    def get_config(self, guild_id: object) -> GuildConfig | None:
        """The guild's binding, or None when it has none."""
        return self._run(self._get_config(guild_id))

    def set_config(
        self,
        guild_id: object,
        repository: str,
        branch: str | None = None,
        token: str | None = None,
        *,
        actor: str,
    ) -> GuildConfig:
        return self._run(self._set_config(guild_id, repository, branch, token, actor))

    def remove_config(self, guild_id: object, *, actor: str) -> bool:
        """True when a binding was removed, False when there was none."""
        return self._run(self._remove_config(guild_id, actor))

    def refresh(self, guild_id: object, *, actor: str) -> GuildConfig:
        return self._run(self._refresh(guild_id, actor))

    def test(self, guild_id: object, context: Mapping[str, object] | None = None) -> PreviewResult:
        return self._run(self._test(guild_id, context))

    def events(self, guild_id: object) -> list[BridgeEvent]:
        return self._run(self._events(guild_id))

    def pin(self, guild_id: object, sha: str, *, actor: str) -> PinStatus:
        """Serve commit `sha` (7+ hex characters) until `unpin`."""
        return self._run(self._pin(guild_id, sha, actor))

    def unpin(self, guild_id: object, *, actor: str) -> PinStatus:
        return self._run(self._unpin(guild_id, actor))

    def rollback(self, guild_id: object, *, actor: str) -> PinStatus:
        """Pin the commit the guild served before the current one."""
        return self._run(self._rollback(guild_id, actor))

    def history(self, guild_id: object, *, limit: int = 20) -> GuildHistory:
        return self._run(self._history(guild_id, limit))

    def preview(
        self, guild_id: object, pull_request: int, channel_id: object, *, actor: str
    ) -> ChannelPreview:
        """Resolve `channel_id` from the pull request's head until it closes or preview_off."""
        return self._run(self._preview(guild_id, pull_request, channel_id, actor))

    def preview_off(self, guild_id: object, channel_id: object = None, *, actor: str) -> list[str]:
        """End the preview in a channel (None: every channel); the channels ended."""
        return self._run(self._preview_off(guild_id, channel_id, actor))

    def close(self) -> None:
        self._shutdown()
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncBridgeClient(_ClientBase):
    """asyncio (or trio) client with the same API as `BridgeClient`, every call awaitable."""

    _http_class = httpx.AsyncClient
    _http: httpx.AsyncClient

    async def _run(self, op: _Op[_T]) -> _T:
        if op.request is None:
            return op.finish(None, None)
        try:
            response = await self._http.request(**op.request.kwargs())
        except Exception as exc:
            return op.finish(None, exc)
        return op.finish(response, None)

    async def resolve_prompt(
        self,
        guild_id: object,
        context: Mapping[str, object] | None = None,
        *,
        locale: object = None,
        guild_locale: object = None,
        **variables: object,
    ) -> ResolvedPrompt:
        """The prompt for this guild and context; never raises.

        `locale`/`guild_locale`: Discord's `interaction.locale` and `interaction.guild_locale`.
        """
        variables.update(_locales(locale, guild_locale))
        local = self._local(guild_id, context, variables)
        if local is not None:
            return local
        return await self._run(self._core.resolve(guild_id, context, variables))

    async def get_config(self, guild_id: object) -> GuildConfig | None:
        """The guild's binding, or None when it has none."""
        return await self._run(self._get_config(guild_id))

    async def set_config(
        self,
        guild_id: object,
        repository: str,
        branch: str | None = None,
        token: str | None = None,
        *,
        actor: str,
    ) -> GuildConfig:
        return await self._run(self._set_config(guild_id, repository, branch, token, actor))

    async def remove_config(self, guild_id: object, *, actor: str) -> bool:
        """True when a binding was removed, False when there was none."""
        return await self._run(self._remove_config(guild_id, actor))

    async def refresh(self, guild_id: object, *, actor: str) -> GuildConfig:
        return await self._run(self._refresh(guild_id, actor))

    async def test(
        self, guild_id: object, context: Mapping[str, object] | None = None
    ) -> PreviewResult:
        return await self._run(self._test(guild_id, context))

    async def events(self, guild_id: object) -> list[BridgeEvent]:
        return await self._run(self._events(guild_id))

    async def pin(self, guild_id: object, sha: str, *, actor: str) -> PinStatus:
        """Serve commit `sha` (7+ hex characters) until `unpin`."""
        return await self._run(self._pin(guild_id, sha, actor))

    async def unpin(self, guild_id: object, *, actor: str) -> PinStatus:
        return await self._run(self._unpin(guild_id, actor))

    async def rollback(self, guild_id: object, *, actor: str) -> PinStatus:
        """Pin the commit the guild served before the current one."""
        return await self._run(self._rollback(guild_id, actor))

    async def history(self, guild_id: object, *, limit: int = 20) -> GuildHistory:
        return await self._run(self._history(guild_id, limit))

    async def preview(
        self, guild_id: object, pull_request: int, channel_id: object, *, actor: str
    ) -> ChannelPreview:
        """Resolve `channel_id` from the pull request's head until it closes or preview_off."""
        return await self._run(self._preview(guild_id, pull_request, channel_id, actor))

    async def preview_off(
        self, guild_id: object, channel_id: object = None, *, actor: str
    ) -> list[str]:
        """End the preview in a channel (None: every channel); the channels ended."""
        return await self._run(self._preview_off(guild_id, channel_id, actor))

    async def aclose(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio): the stop blocks briefly
            self._shutdown()
        else:
            await asyncio.to_thread(self._shutdown)  # joins threads: never on the loop
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
