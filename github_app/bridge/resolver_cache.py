"""The resolver cache: which prompt a guild uses for a context, answered from memory.

Snapshots never change, so a resolved answer is cached per (what the guild is served, normalised
context) with no TTL: a push invalidates by switching the guild's active snapshot, after which
the old entries are simply never looked up again (and are dropped once no guild is served from
them, so content of a repository that lost access leaves memory too).

What a guild is served is keyed by its serving key (`store.layers.serving_key`): the snapshot id,
or `own+base+...` when its PATH `extends` bases, so a push to a base (a new key) switches every
guild built on it the same way. Everything below that says "snapshot" is per serving key.

Memory scales with repositories, not guilds:
- the guild map, `guild id -> Served` (promptrepo.answer), loaded from `serving.all_guild_states`
  at start and again whenever the activation generation changes (see
  `github_app.bridge.invalidation`). Equal states are interned, so guilds bound to one branch
  share one `Served`;
- the answer LRU, `(Served, context key) -> ServedPrompt` (JSON body bytes + ETag), bounded by
  `size` (RESOLVER_CACHE_SIZE). When no file of a snapshot names the `guild` variable, the key
  leaves the guild out, so every guild on that snapshot shares one answer per context;
- parsed snapshots (`LoadedSnapshot`: the `PromptRepository`, plus the content digest and the
  encoded files the stream sends) in an LRU bounded in bytes (SNAPSHOT_CACHE_BYTES), loaded once
  per serving key on the first miss (one database read of every layer, parsed in a thread).

`lookup` is the hit path: synchronous, no database, no network, no await. `resolve` is the
miss path. Both must be called from the event loop that serves the bridge. Listeners
(`subscribe`) hear of every change of the guild map with the guilds it changed: the stream
(`github_app.bridge.stream`) forwards them to bots.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple

import anyio.to_thread
from sqlalchemy.orm import Session

from github_app import metrics
from github_app.runtime import Runtime
from github_app.store import branches, layers, previews, serving, snapshots
from github_app.store.models import BindingState
from github_app.store.previews import ActivePreview
from github_app.store.serving import GuildState
from promptrepo import (
    Context,
    ContextError,
    Layer,
    PromptRepository,
    RepositoryError,
    load_layers,
    load_repository,
)
from promptrepo.answer import (
    GUILD_ID,
    UNBOUND,
    Served,
    build_answer,
    routing_context,
    uses_guild,
    without_guild,
)
from promptrepo.layers import OWN

__all__ = [
    "GUILD_ID",
    "LoadedSnapshot",
    "Preview",
    "QueryError",
    "ResolverCache",
    "ServedPrompt",
    "context_for",
    "serving_of",
]

log = logging.getLogger("guildprompts.bridge.cache")

SNAPSHOT_BYTES = 256 * 1024 * 1024  # default byte budget of parsed snapshots
CHANGE_LOG = 256  # generations whose changed guilds are remembered (stream resumes)
Query = tuple[tuple[str, Any], ...]
Key = int | str  # a serving key: snapshot id, or "own+base+..." (store.layers.serving_key)
Files = Mapping[str, bytes]
_CROSS_LOOP_WAIT = 10.0  # seconds an announcement from another loop waits for the reload
_PARSED_OVERHEAD = 3  # a parsed snapshot takes about this many times its files' bytes


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


@dataclass(frozen=True, slots=True, eq=False)
class LoadedSnapshot:
    """One parsed serving key (a snapshot and its bases), ready to resolve from."""

    key: Key
    repository: PromptRepository
    guild_dependent: bool  # a file names the `guild` variable: answers differ per guild
    size: int  # bytes it is accounted for in the LRU


class Preview(NamedTuple):
    """A resolution made for `POST .../test`: the answer, the state and context it used."""

    answer: dict[str, Any]
    state: GuildState | None
    context: Context


@dataclass(frozen=True, slots=True)
class Freshness:
    """When a branch's active commit went live, and when it had become the branch head."""

    activated_at: datetime | None
    head_at: datetime | None


def serving_of(state: GuildState | None) -> Served:
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
    return Served(
        snapshot=state.serving_key,
        repository=state.repository_full_name,
        branch=state.effective_branch or state.branch,
        commit_sha=state.commit_sha,
        is_stale=state.is_stale,
        status_message=message,
        bound=True,
        bases=_bases(state.layers) if state.snapshot_id is not None else (),
    )


def _bases(served: layers.Layers) -> tuple[tuple[str, str], ...]:
    return tuple((layer.name, layer.commit_sha) for layer in served)


def context_for(guild_id: str, query: Query) -> Context:
    """The routing context of a request (`promptrepo.answer.routing_context`), or QueryError."""
    try:
        return routing_context(guild_id, query)
    except (ContextError, TypeError) as exc:
        raise QueryError(str(exc)) from None


def _as_query(query: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Query:
    pairs = query.items() if isinstance(query, Mapping) else query
    return tuple((key, value) for key, value in pairs)


def _load_states(
    session: Session,
) -> tuple[int, dict[str, GuildState], list[ActivePreview]]:
    # Generation first: the states read after it are at least that new, never older.
    generation = branches.current_generation(session)
    return generation, serving.all_guild_states(session), previews.active_previews(session)


def preview_serving(preview: ActivePreview, state: GuildState | None) -> Served | None:
    """What a channel previewing a pull request is served: its head over the bases the guild
    is served with, while the guild's binding serves the same repository (None: the channel
    gets the guild's own answers)."""
    if (
        state is None
        or state.repository_id != preview.repository_id
        or not state.enabled
        or state.state != BindingState.ACTIVE
    ):
        return None
    return Served(
        snapshot=layers.serving_key(preview.snapshot_id, state.layers),
        repository=state.repository_full_name,
        branch=f"pull/{preview.pull_number}/head",
        commit_sha=preview.commit_sha,
        is_stale=False,
        status_message=f"previewing pull request #{preview.pull_number} "
        f"({preview.commit_sha[:7]}) in this channel; the rest of the server keeps its branch",
        bound=True,
        bases=_bases(state.layers),
    )


def _read_layers(session: Session, key: Key) -> list[Layer] | None:
    """Every layer of a serving key in one transaction: its own snapshot's files, then each
    base's, named `owner/name` (None when one of them is gone: purged)."""
    ids = layers.snapshot_ids(key)
    names = layers.layer_names(session, ids[1:])
    found = [Layer(OWN, snapshots.snapshot_files(session, ids[0]))]
    for snapshot_id in ids[1:]:
        files = snapshots.snapshot_files(session, snapshot_id)
        if snapshot_id not in names or not files:
            return None
        found.append(Layer(names[snapshot_id], files))
    return found if found[0].files else None


def _loaded(key: Key, stack: list[Layer]) -> LoadedSnapshot:
    """Parse a serving key's layers (runs in a thread)."""
    raw = sum(len(content) for layer in stack for content in layer.files.values())
    return LoadedSnapshot(
        key=key,
        repository=load_layers(stack) if len(stack) > 1 else load_repository(stack[0].files),
        guild_dependent=any(uses_guild(layer.files) for layer in stack),
        size=raw * _PARSED_OVERHEAD + 4096,
    )


def _encoded(stack: list[Layer]) -> tuple[str, bytes]:
    """A serving key as the stream sends it: its content digest and the `snapshot` event's
    JSON, `{"digest", "files": {path: text}, "layers"?: [{"name", "files"}]}` (runs in a
    thread). Equal layers, equal digest, whatever the snapshots' ids. Every part is hashed
    with its length, so no content can pass for another split into files or layers."""
    digest = hashlib.blake2b(digest_size=16)

    def part(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "big") + data)

    def texts(files: Files) -> dict[str, str]:
        part(str(len(files)).encode())
        for path in sorted(files):
            part(path.encode())
            part(files[path])
        return {path: files[path].decode("utf-8", "replace") for path in sorted(files)}

    own = texts(stack[0].files)
    bases = []
    for layer in stack[1:]:
        part(layer.name.encode())
        bases.append({"name": layer.name, "files": texts(layer.files)})
    body: dict[str, Any] = {"digest": digest.hexdigest(), "files": own}
    if bases:
        body["layers"] = bases
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return body["digest"], data


def _with_guild(context: Context, guild_id: str) -> Context:
    return Context(tuple(sorted((*context.items, ("guild", guild_id)))), context.raw)


Listener = Callable[[int, frozenset[str]], None]


class ResolverCache:
    """Per-process answers for `GET /bridge/v1/guilds/{id}/prompt`; see the module docstring."""

    def __init__(self, runtime: Runtime, size: int, *, snapshot_bytes: int | None = None) -> None:
        if size <= 0:
            raise ValueError("the resolver cache needs a size above 0")
        self.runtime = runtime
        self.size = size
        self._github_url = runtime.settings.github_url
        budget = snapshot_bytes or getattr(runtime.settings, "snapshot_cache_bytes", 0)
        self._snapshot_budget = max(1, budget or SNAPSHOT_BYTES)
        self._guilds: dict[str, Served] = {}
        self._previews: dict[tuple[str, str], Served] = {}  # (guild, channel id) -> preview
        self._preview_guilds: frozenset[str] = frozenset()
        self._interned: dict[Served, Served] = {}
        self._live: frozenset[Served] = frozenset({UNBOUND})
        self._live_snapshots: frozenset[Key] = frozenset()
        self._entries: OrderedDict[tuple[Served, str], ServedPrompt] = OrderedDict()
        # raw query -> (its context key without the guild, that context): the same for all guilds
        self._contexts: dict[Query, tuple[str, Context]] = {}
        self._snapshots: OrderedDict[Key, LoadedSnapshot] = OrderedDict()
        self._snapshot_bytes = 0
        self._dependence_known: set[Key] = set()  # live keys parsed at least once
        self._guild_dependent: set[Key] = set()  # ... and whose answers depend on the guild
        self._encoded: OrderedDict[Key, tuple[str, bytes]] = OrderedDict()  # for the stream
        self._encoded_bytes = 0
        self._loading: dict[Key, asyncio.Future[LoadedSnapshot | None]] = {}
        self._freshness: dict[Key, Freshness] = {}
        self._changes: deque[tuple[int, frozenset[str]]] = deque()
        self._changes_floor = 0  # the changes after this generation are all in `_changes`
        self._listeners: list[Listener] = []
        self._generation = -1
        self._loaded = False
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.repositories_loaded = 0  # snapshot reads from the database, for tests and the bench

    # ---- answering ----------------------------------------------------------------------------

    def lookup(self, guild_id: str, query: Query) -> ServedPrompt | None:
        """The cached answer, or None (then call `resolve`). No I/O, no await.

        `query` is the request's (name, value) pairs as received, as a tuple; `guild_id` must
        have been checked (`GUILD_ID`).
        """
        started = time.perf_counter()
        known = self._contexts.get(query)
        if known is None:
            return None
        served_state = self._serving_for(guild_id, known[1])
        key_id = served_state.snapshot
        if key_id is not None and key_id not in self._dependence_known:
            return None
        key = (served_state, self._key_text(served_state, known, guild_id))
        answer = self._entries.get(key)
        if answer is None:
            return None
        self._entries.move_to_end(key)
        metrics.record_resolve(True, time.perf_counter() - started)
        return answer

    def _key_text(self, served_state: Served, known: tuple[str, Context], guild_id: str) -> str:
        """Guilds on a snapshot whose files never name `guild` share their answers."""
        if served_state.snapshot is not None and served_state.snapshot in self._guild_dependent:
            return _with_guild(known[1], guild_id).key
        return known[0]

    async def resolve(
        self, guild_id: str, query: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()
    ) -> ServedPrompt:
        """The answer for a guild and query, computed and cached on a miss.

        Raises `QueryError` for a bad guild id or context, and the store's errors when the
        database is needed (first load, a snapshot not parsed yet) and does not answer.
        """
        started = time.perf_counter()
        raw = _as_query(query)
        known = self._context(guild_id, raw)
        if not self._loaded:
            await self.refresh_to(-1)  # first use: one load, however many requests wait on it
        retried = False
        while True:
            served_state = self._serving_for(guild_id, known[1])
            key_id = served_state.snapshot
            loaded = None
            if key_id is not None and key_id not in self._dependence_known:
                loaded = await self.snapshot(key_id)
            key = (served_state, self._key_text(served_state, known, guild_id))
            answer = self._entries.get(key)
            if answer is not None:
                self._entries.move_to_end(key)
                metrics.record_resolve(True, time.perf_counter() - started)
                return answer
            if key_id is not None and loaded is None:
                loaded = await self.snapshot(key_id)
            if key_id is not None and loaded is None and not retried:
                retried = True
                await self.reload()  # purged or replaced meanwhile: look again
                continue
            break
        repository = loaded.repository if loaded is not None else None
        context = _with_guild(known[1], guild_id)
        answer = ServedPrompt.from_body(
            build_answer(served_state, context, repository, self._github_url).to_json()
        )
        if served_state in self._live:  # not switched away while we were resolving
            self._store(key, answer)
        metrics.record_resolve(False, time.perf_counter() - started)
        return answer

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
        if current.snapshot is not None:
            loaded = self._snapshots.get(current.snapshot)
            if loaded is None:
                loaded = await self._read_snapshot(current.snapshot)
            repository = loaded.repository if loaded is not None else None
        answer = build_answer(current, context, repository, self._github_url).to_json()
        return Preview(answer, state, context)

    def _serving_for(self, guild_id: str, context: Context) -> Served:
        """The guild's state, or a channel preview's (the one hook previews need)."""
        found = self._guilds.get(guild_id, UNBOUND)
        if guild_id in self._preview_guilds:
            channel = context.get("channel_id")
            if channel is not None:
                return self._previews.get((guild_id, channel), found)
        return found

    def previews_of(self, guild_id: str) -> dict[str, Served]:
        """The guild's channels previewing a pull request: channel id -> what they are served."""
        if guild_id not in self._preview_guilds:
            return {}
        return {channel: s for (guild, channel), s in self._previews.items() if guild == guild_id}

    def _context(self, guild_id: str, raw: Query) -> tuple[str, Context]:
        """The query's context without the guild (memoised per raw query), after checking
        the guild id and the query (QueryError)."""
        if not isinstance(guild_id, str) or not GUILD_ID.fullmatch(guild_id):
            context_for(guild_id, raw)  # raises the QueryError that says why
        try:
            known = self._contexts.get(raw)
        except TypeError:  # a list or mapping as a value: not a context value
            context_for(guild_id, raw)  # raises the QueryError that says which
            raise
        if known is not None:
            return known
        context = without_guild(context_for(guild_id, raw))
        if len(self._contexts) >= self.size:
            self._contexts.clear()  # a memo: rebuilt on demand, bounded like the entries
        known = (context.key, context)
        self._contexts[raw] = known
        return known

    def _store(self, key: tuple[Served, str], answer: ServedPrompt) -> None:
        self._entries[key] = answer
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    # ---- parsed snapshots ---------------------------------------------------------------------

    async def snapshot(self, key: Key) -> LoadedSnapshot | None:
        """The parsed serving key; concurrent misses on one key share a single load."""
        loaded = self._snapshots.get(key)
        if loaded is not None:
            self._snapshots.move_to_end(key)
            return loaded
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._load_snapshot(key))
            self._loading[key] = loading
            loading.add_done_callback(lambda _done: self._loading.pop(key, None))
        return await asyncio.shield(loading)

    async def _load_snapshot(self, key: Key) -> LoadedSnapshot | None:
        loaded = await self._read_snapshot(key)
        if loaded is not None and key in self._live_snapshots:
            self._keep(loaded)
        return loaded

    def _keep(self, loaded: LoadedSnapshot) -> None:
        previous = self._snapshots.pop(loaded.key, None)
        if previous is not None:
            self._snapshot_bytes -= previous.size
        self._snapshots[loaded.key] = loaded
        self._snapshot_bytes += loaded.size
        self._dependence_known.add(loaded.key)
        if loaded.guild_dependent:
            self._guild_dependent.add(loaded.key)
        while self._snapshot_bytes > self._snapshot_budget and len(self._snapshots) > 1:
            self._forget(next(iter(self._snapshots)))

    def _forget(self, key: Key) -> None:
        dropped = self._snapshots.pop(key, None)
        if dropped is not None:
            self._snapshot_bytes -= dropped.size

    async def _read_snapshot(self, key: Key) -> LoadedSnapshot | None:
        stack = await self.runtime.run_db(_read_layers, key)
        self.repositories_loaded += 1
        if stack is None:
            return None  # purged since the guild map was loaded
        try:
            return await anyio.to_thread.run_sync(_loaded, key, stack)
        except RepositoryError as exc:
            log.error("active snapshot %s cannot be loaded: %s", key, exc)
            return None

    async def snapshot_event(self, key: Key) -> tuple[str, bytes] | None:
        """A serving key as the stream sends it (digest, the `snapshot` event's JSON); None
        once purged. Kept in a small LRU (an eighth of the snapshot budget): a new commit is
        read once for every connected bot."""
        encoded = self._encoded.get(key)
        if encoded is not None:
            self._encoded.move_to_end(key)
            return encoded
        stack = await self.runtime.run_db(_read_layers, key)
        if stack is None:
            return None
        encoded = await anyio.to_thread.run_sync(_encoded, stack)
        if key in self._live_snapshots and key not in self._encoded:
            self._encoded[key] = encoded
            self._encoded_bytes += len(encoded[1])
            while self._encoded_bytes > self._snapshot_budget // 8 and len(self._encoded) > 1:
                self._encoded_bytes -= len(self._encoded.popitem(last=False)[1][1])
        return encoded

    # ---- the guild map, for the stream --------------------------------------------------------

    def served(self, guild_id: str) -> Served:
        """What the guild is served now (UNBOUND without a binding)."""
        return self._guilds.get(guild_id, UNBOUND)

    def guild_ids(self) -> list[str]:
        """Every guild with a binding in the current map."""
        return list(self._guilds)

    def freshness(self, served_state: Served) -> Freshness | None:
        """When the served commit went live (None for the built-in defaults)."""
        if served_state.snapshot is None:
            return None
        return self._freshness.get(served_state.snapshot)

    def changes_since(self, generation: int) -> frozenset[str] | None:
        """Guilds whose state changed after `generation`; None when that is no longer known
        (too old, or from before this process loaded its map)."""
        if not self._loaded or generation > self._generation:
            return None
        if generation == self._generation:
            return frozenset()
        if generation < self._changes_floor:
            return None
        changed: set[str] = set()
        for at, guilds in self._changes:
            if at > generation:
                changed.update(guilds)
        return frozenset(changed)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(generation, changed guild ids)` after every change of the map."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

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

    async def apply_guild(self, generation: int, state: GuildState) -> None:
        """One guild changed, in the transaction that made `generation`: when the map is at
        the generation just before, update that guild alone (no full reload); otherwise
        reload up to `generation`."""
        self._loop = asyncio.get_running_loop()
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._loaded or self._generation != generation - 1:
                loaded, states, active = await self.runtime.run_db(_load_states)
                self._apply(loaded, states, active)
                return
            self._apply_one(generation, state)

    def _apply_one(self, generation: int, state: GuildState) -> None:
        """`_apply` for one guild: what a state that no guild uses any more keeps in memory
        goes at the next full reload."""
        fresh = serving_of(state)
        shared = self._interned.get(fresh) or fresh
        self._interned[shared] = shared
        changed = self._guilds.get(state.guild_id, UNBOUND) != shared
        self._guilds[state.guild_id] = shared
        self._live = self._live | {shared}
        key = state.serving_key
        if key is not None:
            self._live_snapshots = self._live_snapshots | {key}
            self._freshness[key] = Freshness(state.activated_at, state.head_at)
        self._generation = generation
        self._record(generation, frozenset({state.guild_id}) if changed else frozenset())

    def _apply(
        self,
        generation: int,
        states: Mapping[str, GuildState],
        active: Iterable[ActivePreview] = (),
    ) -> None:
        interned: dict[Served, Served] = {}

        def intern(fresh: Served) -> Served:
            shared = interned.get(fresh) or self._interned.get(fresh) or fresh
            interned[shared] = shared
            return shared

        guilds: dict[str, Served] = {}
        freshness: dict[Key, Freshness] = {}
        for guild_id, state in states.items():
            guilds[guild_id] = intern(serving_of(state))
            if state.serving_key is not None:
                freshness[state.serving_key] = Freshness(state.activated_at, state.head_at)
        channels: dict[tuple[str, str], Served] = {}
        for preview in active:
            found = preview_serving(preview, states.get(preview.guild_id))
            if found is not None:
                channels[(preview.guild_id, preview.channel_id)] = intern(found)
        previous, previous_channels = self._guilds, self._previews
        changed = frozenset(
            guild
            for guild in previous.keys() | guilds.keys()
            if previous.get(guild, UNBOUND) != guilds.get(guild, UNBOUND)
        ) | frozenset(
            key[0]
            for key in previous_channels.keys() | channels.keys()
            if previous_channels.get(key) != channels.get(key)
        )
        self._previews = channels
        self._preview_guilds = frozenset(guild for guild, _ in channels)
        live = set(interned)
        live.add(UNBOUND)
        snapshots_live = frozenset(s.snapshot for s in live if s.snapshot is not None)
        self._guilds, self._interned, self._live = guilds, interned, frozenset(live)
        self._live_snapshots, self._freshness = snapshots_live, freshness
        was_loaded = self._loaded
        self._generation, self._loaded = generation, True
        for key in [key for key in self._entries if key[0] not in self._live]:
            del self._entries[key]
        for gone in [s for s in self._snapshots if s not in snapshots_live]:
            self._forget(gone)
        for gone in [s for s in self._encoded if s not in snapshots_live]:
            self._encoded_bytes -= len(self._encoded.pop(gone)[1])
        self._guild_dependent &= snapshots_live
        self._dependence_known &= snapshots_live
        if not was_loaded:
            self._changes.clear()
            self._changes_floor = generation
        self._record(generation, changed, remember=was_loaded)

    def _record(self, generation: int, changed: frozenset[str], *, remember: bool = True) -> None:
        """Remember which guilds changed at `generation` (for resumes) and tell listeners."""
        if remember:
            self._changes.append((generation, changed))
            if len(self._changes) > CHANGE_LOG:
                self._changes_floor = self._changes.popleft()[0]
        for listener in list(self._listeners):
            try:
                listener(generation, changed)
            except Exception:  # a broken listener must not stop the cache from switching
                log.exception("a resolver cache listener failed")

    # ---- introspection ------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Sizes and counters: what the tests and the bench check."""
        return {
            "generation": self._generation,
            "guilds": len(self._guilds),
            "entries": len(self._entries),
            "repositories": len(self._snapshots),
            "repositories_loaded": self.repositories_loaded,
            "snapshot_bytes": self._snapshot_bytes,
            "stream_bytes": self._encoded_bytes,
        }
