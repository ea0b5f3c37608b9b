"""The resolver cache: which prompt a guild uses for a context, answered from memory.

Snapshots never change, so a resolved answer is cached per (what the guild is served, normalised
context) with no TTL: a push invalidates by switching the guild's active snapshot, after which
the old entries are simply never looked up again (and are dropped once no guild is served from
them, so content of a repository that lost access leaves memory too).

Three small structures, all owned by one event loop:
- the guild map, `guild id -> _Serving` (snapshot, repository, branch, staleness, status),
  loaded from `serving.all_guild_states` at start and again whenever the activation generation
  changes (see `github_app.bridge.invalidation`). Guilds in the same state share one `_Serving`, so
  guilds bound to one repository and branch share one snapshot;
- the response LRU, `(_Serving, context key) -> ServedPrompt` (JSON body bytes + ETag), bounded
  by `size` (RESOLVER_CACHE_SIZE), and a memo from the raw query to its context key so a hit
  skips normalising the query;
- a small LRU of parsed `PromptRepository` objects by snapshot id, loaded once per snapshot on
  the first miss (one database read in a thread).

`lookup` is the hit path: synchronous, no database, no network, no await. `resolve` is the
miss path. Both must be called from the event loop that serves the bridge.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple
from urllib.parse import quote

import anyio.to_thread
from sqlalchemy.orm import Session

from github_app import metrics
from github_app.runtime import Runtime
from github_app.store import branches, previews, serving, snapshots
from github_app.store.models import BindingState
from github_app.store.previews import ActivePreview
from github_app.store.serving import GuildState
from promptrepo import (
    BOT_SUPPLIED_VARIABLES,
    Context,
    ContextError,
    PromptRepository,
    RepositoryError,
    Resolution,
    builtin_default,
    load_repository,
    render,
    resolve,
)

__all__ = [
    "GUILD_ID",
    "Preview",
    "QueryError",
    "ResolverCache",
    "ServedPrompt",
    "build_response",
    "context_for",
]

log = logging.getLogger("guildprompts.bridge.cache")

GUILD_ID = re.compile(r"[0-9]{1,20}")  # a Discord snowflake
MAX_QUERY_ITEMS = 32
REPOSITORIES = 32  # parsed snapshots kept; one per repository and branch in use is plenty
Query = tuple[tuple[str, Any], ...]
_CROSS_LOOP_WAIT = 10.0  # seconds an announcement from another loop waits for the reload


class QueryError(ValueError):
    """A request the bridge cannot answer: bad guild id or context (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class ServedPrompt:
    """A ready answer: the exact response body and its ETag (a hash of the body)."""

    body: bytes
    etag: str
    headers: Mapping[str, str] = field(repr=False)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ServedPrompt:
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode()
        etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
        return cls(data, etag, MappingProxyType({"ETag": etag, "Cache-Control": "no-cache"}))

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


class Preview(NamedTuple):
    """A resolution made for `POST .../test`: the answer, the state and context it used."""

    answer: dict[str, Any]
    state: GuildState | None
    context: Context


@dataclass(frozen=True, slots=True, eq=False)
class _Serving:
    """What a guild is served and how it is going. Interned: equal states are one object, so
    the LRU key hashes by identity (fast) and guilds on one branch share their entries."""

    snapshot_id: int | None
    repository: str | None
    branch: str | None
    commit_sha: str | None
    is_stale: bool
    status_message: str
    bound: bool  # the guild has a live binding (False: built-in defaults, source "default")

    def fields(self) -> tuple[Any, ...]:
        return (
            self.snapshot_id,
            self.repository,
            self.branch,
            self.commit_sha,
            self.is_stale,
            self.status_message,
            self.bound,
        )


UNBOUND = _Serving(
    None,
    None,
    None,
    None,
    False,
    "no prompt repository is bound to this server: built-in defaults",
    False,
)


def serving_of(state: GuildState | None) -> _Serving:
    """The part of a guild's state that shapes its answers (not interned)."""
    if state is None:
        return UNBOUND
    if state.snapshot_id is not None:
        message = state.status_message or f"serving {(state.commit_sha or '')[:7]}"
    elif not state.enabled:
        message = "the binding is disabled: built-in defaults"
    elif state.status_message:
        message = state.status_message
    else:
        message = "not synced yet: built-in defaults until the first sync succeeds"
    return _Serving(
        snapshot_id=state.snapshot_id,
        repository=state.repository_full_name,
        branch=state.effective_branch or state.branch,
        commit_sha=state.commit_sha,
        is_stale=state.is_stale,
        status_message=message,
        bound=True,
    )


def build_response(
    serving_state: _Serving,
    context: Context,
    repository: PromptRepository | None,
    github_url: str,
) -> dict[str, Any]:
    """The pinned JSON answer for one context (issue 5, section 2).

    `content` has the routing variables rendered; `{messages}` and other placeholders without a
    value are left for the bot. `source` is custom (from the repository), default (built-in:
    no binding, or the repository's fallback chain found no file) or fallback (built-in because
    the guild's repository cannot serve right now: no access, not synced, disabled).
    """
    status = serving_state.status_message
    unavailable = serving_state.bound and repository is None
    if serving_state.snapshot_id is not None and repository is None:
        status = "the synced content is not available in this process: built-in defaults"
    try:
        resolution = resolve(repository, context)
    except RepositoryError as exc:  # only for a commit validation accepted: should not happen
        log.error("snapshot %s cannot resolve %s: %s", serving_state.snapshot_id, context.key, exc)
        resolution, unavailable = builtin_default(context), True
        status = f"the chosen prompt cannot be used ({exc}): built-in defaults"
    custom = resolution.source == "custom"
    commit = serving_state.commit_sha if repository is not None else None
    return {
        "content": render(resolution.content, resolution.variables).text,
        "source": "custom" if custom else ("fallback" if unavailable else "default"),
        "file_path": resolution.file_path,
        "tried_paths": list(resolution.tried_paths),
        "route": resolution.route,
        "repository": serving_state.repository,
        "branch": serving_state.branch,
        "commit_sha": commit,
        "schema_version": resolution.schema_version,
        "parameters": _parameters(resolution),
        "description": resolution.description,
        "metadata": resolution.to_dict()["metadata"],
        "github_file_url": _file_url(
            github_url, serving_state.repository, commit, resolution.file_path
        )
        if custom
        else None,
        "is_stale": serving_state.is_stale and repository is not None,
        "status_message": status,
    }


def _parameters(resolution: Resolution) -> dict[str, Any]:
    return resolution.to_dict()["parameters"] if resolution.parameters else {}


def _file_url(
    github_url: str, repository: str | None, sha: str | None, path: str | None
) -> str | None:
    if not (repository and sha and path):
        return None
    return f"{github_url}/{repository}/blob/{sha}/{quote(path, safe='/')}"


def context_for(guild_id: str, query: Query) -> Context:
    """The routing context of a request: the query over the URL's guild.

    The guild always comes from the URL (a `guild` in the query cannot route to another
    guild's files), and variables the bot fills at send time (`messages`, ...) are never
    routing variables, so they neither split the cache nor get rendered here.
    """
    if not isinstance(guild_id, str) or not GUILD_ID.fullmatch(guild_id):
        shown = str(guild_id)[:40]
        raise QueryError(f"invalid guild id {shown!r}: a Discord server id is 1 to 20 digits")
    if len(query) > MAX_QUERY_ITEMS:
        raise QueryError(f"too many context variables (at most {MAX_QUERY_ITEMS})")
    try:
        parsed = Context.from_mapping(dict(query))
    except ContextError as exc:
        raise QueryError(str(exc)) from None
    items = [
        item
        for item in parsed.items
        if item[0] != "guild" and item[0] not in BOT_SUPPLIED_VARIABLES
    ]
    items.append(("guild", guild_id))
    return Context(tuple(sorted(items)), parsed.raw)


def _as_query(query: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Query:
    pairs = query.items() if isinstance(query, Mapping) else query
    return tuple((key, value) for key, value in pairs)


def _load_states(
    session: Session,
) -> tuple[int, dict[str, GuildState], list[ActivePreview]]:
    # Generation first: the states read after it are at least that new, never older.
    generation = branches.current_generation(session)
    return generation, serving.all_guild_states(session), previews.active_previews(session)


def preview_serving(preview: ActivePreview, state: GuildState | None) -> _Serving | None:
    """What a channel previewing a pull request is served: its head, while the guild's binding
    serves the same repository (None: the channel gets the guild's own answers)."""
    if (
        state is None
        or state.repository_id != preview.repository_id
        or not state.enabled
        or state.state != BindingState.ACTIVE
    ):
        return None
    return _Serving(
        snapshot_id=preview.snapshot_id,
        repository=state.repository_full_name,
        branch=f"pull/{preview.pull_number}/head",
        commit_sha=preview.commit_sha,
        is_stale=False,
        status_message=f"previewing pull request #{preview.pull_number} "
        f"({preview.commit_sha[:7]}) in this channel; the rest of the server keeps its branch",
        bound=True,
    )


class ResolverCache:
    """Per-process answers for `GET /bridge/v1/guilds/{id}/prompt`; see the module docstring."""

    def __init__(self, runtime: Runtime, size: int, *, repositories: int = REPOSITORIES) -> None:
        if size <= 0:
            raise ValueError("the resolver cache needs a size above 0")
        self.runtime = runtime
        self.size = size
        self._github_url = runtime.settings.github_url
        self._max_repositories = max(1, repositories)
        self._guilds: dict[str, _Serving] = {}
        self._previews: dict[tuple[str, str], _Serving] = {}  # (guild, channel id) -> preview
        self._preview_guilds: frozenset[str] = frozenset()
        self._interned: dict[tuple[Any, ...], _Serving] = {}
        self._live: frozenset[_Serving] = frozenset({UNBOUND})
        self._live_snapshots: frozenset[int] = frozenset()
        self._entries: OrderedDict[tuple[_Serving, str], ServedPrompt] = OrderedDict()
        self._contexts: dict[tuple[str, Query], tuple[str, Context]] = {}
        self._repositories: OrderedDict[int, PromptRepository] = OrderedDict()
        self._loading: dict[int, asyncio.Future[PromptRepository | None]] = {}
        self._generation = -1
        self._loaded = False
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.repositories_loaded = 0  # snapshot reads from the database, for tests and the bench

    # ---- answering ----------------------------------------------------------------------------

    def lookup(self, guild_id: str, query: Query) -> ServedPrompt | None:
        """The cached answer, or None (then call `resolve`). No I/O, no await.

        `query` is the request's (name, value) pairs as received, as a tuple.
        """
        started = time.perf_counter()
        known = self._contexts.get((guild_id, query))
        if known is None:
            return None
        key = (self._serving_for(guild_id, known[1]), known[0])
        served = self._entries.get(key)
        if served is None:
            return None
        self._entries.move_to_end(key)
        metrics.record_resolve(True, time.perf_counter() - started)
        return served

    async def resolve(
        self, guild_id: str, query: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()
    ) -> ServedPrompt:
        """The answer for a guild and query, computed and cached on a miss.

        Raises `QueryError` for a bad guild id or context, and the store's errors when the
        database is needed (first load, a snapshot not parsed yet) and does not answer.
        """
        started = time.perf_counter()
        raw = _as_query(query)
        if not self._loaded:
            await self.refresh_to(-1)  # first use: one load, however many requests wait on it
        key_text, context = self._context(guild_id, raw)
        retried = False
        while True:
            serving_state = self._serving_for(guild_id, context)
            key = (serving_state, key_text)
            served = self._entries.get(key)
            if served is not None:
                self._entries.move_to_end(key)
                metrics.record_resolve(True, time.perf_counter() - started)
                return served
            repository = None
            if serving_state.snapshot_id is not None:
                repository = await self._repository(serving_state.snapshot_id)
                if repository is None and not retried:
                    retried = True
                    await self.reload()  # purged or replaced meanwhile: look again
                    continue
            break
        served = ServedPrompt.from_body(
            build_response(serving_state, context, repository, self._github_url)
        )
        if serving_state in self._live:  # not switched away while we were resolving
            self._store(key, served)
        metrics.record_resolve(False, time.perf_counter() - started)
        return served

    async def preview(
        self, guild_id: str, query: Mapping[str, Any] | Iterable[tuple[str, Any]]
    ) -> Preview:
        """Resolve from the guild's current state in the database, caching nothing (for
        `POST .../test`)."""
        context = context_for(guild_id, _as_query(query))
        state = await self.runtime.run_db(serving.guild_state, guild_id)
        current = serving_of(state)
        channel = context.get("channel_id")
        if state is not None and channel is not None:  # a channel previewing a pull request
            current = self._previews.get((guild_id, channel), current)
        repository = None
        if current.snapshot_id is not None:
            repository = self._repositories.get(current.snapshot_id)
            if repository is None:
                repository = await self._read_repository(current.snapshot_id)
        answer = build_response(current, context, repository, self._github_url)
        return Preview(answer, state, context)

    def _serving_for(self, guild_id: str, context: Context) -> _Serving:
        """The guild's state, or a channel preview's (the one hook previews need)."""
        found = self._guilds.get(guild_id, UNBOUND)
        if guild_id in self._preview_guilds:
            channel = context.get("channel_id")
            if channel is not None:
                return self._previews.get((guild_id, channel), found)
        return found

    def _context(self, guild_id: str, raw: Query) -> tuple[str, Context]:
        try:
            known = self._contexts.get((guild_id, raw))
        except TypeError:  # a list or mapping as a value: not a context value
            context_for(guild_id, raw)  # raises the QueryError that says which
            raise
        if known is not None:
            return known
        context = context_for(guild_id, raw)
        if len(self._contexts) >= self.size:
            self._contexts.clear()  # a memo: rebuilt on demand, bounded like the entries
        known = (context.key, context)
        self._contexts[(guild_id, raw)] = known
        return known

    def _store(self, key: tuple[_Serving, str], served: ServedPrompt) -> None:
        self._entries[key] = served
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    # ---- parsed snapshots ---------------------------------------------------------------------

    async def _repository(self, snapshot_id: int) -> PromptRepository | None:
        """The parsed snapshot; concurrent misses on one snapshot share a single load."""
        repository = self._repositories.get(snapshot_id)
        if repository is not None:
            self._repositories.move_to_end(snapshot_id)
            return repository
        loading = self._loading.get(snapshot_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load_repository(snapshot_id))
            self._loading[snapshot_id] = loading
            loading.add_done_callback(lambda _done: self._loading.pop(snapshot_id, None))
        return await asyncio.shield(loading)

    async def _load_repository(self, snapshot_id: int) -> PromptRepository | None:
        repository = await self._read_repository(snapshot_id)
        if repository is not None and snapshot_id in self._live_snapshots:
            self._repositories[snapshot_id] = repository
            while len(self._repositories) > self._max_repositories:
                self._repositories.popitem(last=False)
        return repository

    async def _read_repository(self, snapshot_id: int) -> PromptRepository | None:
        files = await self.runtime.run_db(snapshots.snapshot_files, snapshot_id)
        self.repositories_loaded += 1
        if not files:
            return None  # purged since the guild map was loaded
        try:
            return await anyio.to_thread.run_sync(load_repository, files)
        except RepositoryError as exc:
            log.error("active snapshot %s cannot be loaded: %s", snapshot_id, exc)
            return None

    # ---- invalidation -------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """The activation generation the guild map reflects (-1 before the first load)."""
        return self._generation

    async def reload(self) -> None:
        """Load the guild map now."""
        await self.refresh_to(None)

    async def refresh_to(self, generation: int | None) -> None:
        """Reload unless the map already reflects `generation` (None: reload anyway).

        Concurrent calls queue on one lock, so a burst of notifications costs one reload.
        """
        self._loop = asyncio.get_running_loop()
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if generation is not None and self._loaded and self._generation >= generation:
                return
            loaded, states, active = await self.runtime.run_db(_load_states)
            self._apply(loaded, states, active)

    async def check(self) -> bool:
        """The cheap poll: reload when the stored generation differs; True if it did."""
        stored = await self.runtime.run_db(branches.current_generation)
        if self._loaded and stored == self._generation:
            return False
        await self.reload()
        return True

    async def on_activation(self, generation: int) -> None:
        """`runtime.on_activation` listener: switch before the announcing code goes on.

        The announcement may come from another event loop (a worker in another thread); the
        reload then runs on this cache's loop and is awaited from there.
        """
        loop = self._loop
        if loop is None:
            return  # never used yet: the first request loads the current map
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            await self.refresh_to(generation)
            return
        coroutine = self.refresh_to(generation)
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError:
            coroutine.close()
            return  # that loop is closed: nothing serves from this cache any more
        try:
            await asyncio.wait_for(asyncio.wrap_future(future), _CROSS_LOOP_WAIT)
        except TimeoutError:
            log.warning("the resolver cache's loop did not reload within %s s", _CROSS_LOOP_WAIT)

    def _apply(
        self,
        generation: int,
        states: Mapping[str, GuildState],
        active: Iterable[ActivePreview] = (),
    ) -> None:
        interned: dict[tuple[Any, ...], _Serving] = {}

        def intern(fresh: _Serving) -> _Serving:
            fields = fresh.fields()
            shared = interned.get(fields) or self._interned.get(fields) or fresh
            interned[fields] = shared
            return shared

        guilds = {guild_id: intern(serving_of(state)) for guild_id, state in states.items()}
        channels: dict[tuple[str, str], _Serving] = {}
        for preview in active:
            found = preview_serving(preview, states.get(preview.guild_id))
            if found is not None:
                channels[(preview.guild_id, preview.channel_id)] = intern(found)
        self._previews = channels
        self._preview_guilds = frozenset(guild for guild, _ in channels)
        live = set(interned.values())
        live.add(UNBOUND)
        snapshots_live = frozenset(s.snapshot_id for s in live if s.snapshot_id is not None)
        self._guilds, self._interned, self._live = guilds, interned, frozenset(live)
        self._live_snapshots = snapshots_live
        self._generation, self._loaded = generation, True
        for key in [key for key in self._entries if key[0] not in self._live]:
            del self._entries[key]
        for snapshot_id in [s for s in self._repositories if s not in snapshots_live]:
            del self._repositories[snapshot_id]

    # ---- introspection ------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Sizes and counters: what the tests and the bench check."""
        return {
            "generation": self._generation,
            "guilds": len(self._guilds),
            "entries": len(self._entries),
            "repositories": len(self._repositories),
            "repositories_loaded": self.repositories_loaded,
        }
