"""`GET /bridge/v1/stream`: every change of what guilds are served, pushed to bots as it happens.

Server-Sent Events over the resolver cache's guild map (so a bot learns of an activation as soon
as this process does, and the stream costs no query of its own). Events, in order:
- `hello` `{"github_url", "generation", "resumed"}`: once per connection;
- `snapshot` `{"digest", "files": {path: text}, "layers"?: [{"name", "files"}]}`: what a
  guild is served, content-addressed and sent once per connection however many guilds use it,
  always before the first `guild` event that names it. `layers`, present when the repository's
  PATH `extends` bases, holds each base's files (`name` is its `owner/name`) nearest first, in
  the order `promptrepo.load_layers` stacks them; the digest covers every layer;
- `guild` `{"guild_id", "served": {...}, "activated_at", "head_at", "previews"?}`: a guild's
  state (`promptrepo.answer.Served`, its `snapshot` being the digest; null: built-in defaults;
  `bases` the commit of each base, for the links of files that come from one), and `previews`,
  channel id -> state, for its channels previewing a pull request;
- `sync` with `id: <generation>`: everything up to that activation generation has been sent.
  A reconnecting client sends it back as `Last-Event-ID` and gets only the guilds that changed
  since, and no snapshot it already holds (those of its unchanged guilds); when this process no
  longer knows what changed since then, the whole state is sent again;
- a `: heartbeat` comment every STREAM_HEARTBEAT seconds, so proxies keep the connection open.

`?guilds=1,2,3` limits the stream to those guilds (each gets a state, bound or not); without it
every bound guild is sent (any bridge token may read every guild's prompts).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from github_app import metrics
from github_app.bridge.binding_store import Refusal
from github_app.bridge.resolver_cache import GUILD_ID, ResolverCache
from promptrepo.answer import Served

__all__ = ["MAX_GUILDS", "StreamHub"]

log = logging.getLogger("guildprompts.bridge.stream")

MAX_GUILDS = 1000  # guilds one connection may name (more: omit `guilds`, get all)
MISSING = "unavailable"  # the digest of a snapshot this process cannot load: never held


class StreamHub:
    """Serves the stream endpoint from one resolver cache."""

    def __init__(self, cache: ResolverCache, *, heartbeat: float = 15.0) -> None:
        self.cache = cache
        self.heartbeat = heartbeat

    async def endpoint(self, request: Request) -> Response:
        wanted = _guild_list(request.query_params.get("guilds"))
        last = _last_event_id(request.headers.get("last-event-id"))
        await self.cache.refresh_to(-1)  # loaded once; a no-op afterwards
        return StreamingResponse(
            self._events(wanted, last),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _events(
        self, wanted: frozenset[str] | None, last: int | None
    ) -> AsyncIterator[bytes]:
        cache = self.cache
        changes: asyncio.Queue[frozenset[str]] = asyncio.Queue()
        # Subscribed before the state is read: a change meanwhile is sent again, never missed.
        unsubscribe = cache.subscribe(lambda _generation, changed: changes.put_nowait(changed))
        metrics.STREAM_CONNECTIONS.inc()
        try:
            changed = cache.changes_since(last) if last is not None else None
            resumed = changed is not None
            sent: set[str] = set()
            if changed is None:
                first = sorted(wanted) if wanted is not None else sorted(cache.guild_ids())
            else:
                first = sorted(changed & wanted if wanted is not None else changed)
                unchanged = (wanted if wanted is not None else set(cache.guild_ids())) - changed
                sent.update(await self._digests(cache.served(g) for g in unchanged))
            hello = {
                "github_url": cache.runtime.settings.github_url,
                "generation": cache.generation,
                "resumed": resumed,
            }
            yield _event("hello", json.dumps(hello).encode())
            async for chunk in self._send(first, sent, observe=False):
                yield chunk
            while True:
                try:
                    guilds = await asyncio.wait_for(changes.get(), self.heartbeat)
                except TimeoutError:
                    yield b": heartbeat\n\n"
                    continue
                pending = set(guilds)
                while not changes.empty():
                    pending |= changes.get_nowait()
                if wanted is not None:
                    pending &= wanted
                async for chunk in self._send(sorted(pending), sent, observe=True):
                    yield chunk
        finally:
            unsubscribe()
            metrics.STREAM_CONNECTIONS.dec()

    async def _send(
        self, guilds: Iterable[str], sent: set[str], *, observe: bool
    ) -> AsyncIterator[bytes]:
        """The states of `guilds` (snapshots first where new to the client), then `sync`."""
        cache = self.cache
        for guild_id in guilds:
            served = cache.served(guild_id)
            channels = cache.previews_of(guild_id)
            digests: dict[Served, str | None] = {}
            for state in (served, *channels.values()):
                encoded = await self._encoded(state)
                digests[state] = None if state.snapshot is None else (encoded or (MISSING,))[0]
                if encoded is not None and encoded[0] not in sent:
                    sent.add(encoded[0])
                    yield _event("snapshot", encoded[1])
                    freshness = cache.freshness(state)
                    if observe and freshness is not None and freshness.head_at is not None:
                        late = datetime.now(UTC) - _aware(freshness.head_at)
                        metrics.PUSH_TO_STREAM_SECONDS.observe(max(0.0, late.total_seconds()))
            freshness = cache.freshness(served)
            body = {
                "guild_id": guild_id,
                "served": {**served.to_json(), "snapshot": digests[served]},
                "activated_at": _iso(freshness.activated_at if freshness else None),
                "head_at": _iso(freshness.head_at if freshness else None),
            }
            if channels:  # channels previewing a pull request
                body["previews"] = {
                    channel: {**state.to_json(), "snapshot": digests[state]}
                    for channel, state in channels.items()
                }
            yield _event("guild", json.dumps(body, ensure_ascii=False).encode())
        yield _event("sync", str(cache.generation).encode(), event_id=cache.generation)

    async def _encoded(self, served: Served) -> tuple[str, bytes] | None:
        if served.snapshot is None:
            return None
        try:
            return await self.cache.snapshot_event(served.snapshot)
        except Exception as exc:  # the database did not answer: the client falls back
            log.warning("snapshot %s could not be read for the stream: %s", served.snapshot, exc)
            return None

    async def _digests(self, states: Iterable[Served]) -> set[str]:
        """The content digests of these states (what a resuming client already holds)."""
        digests = set()
        for served in set(states):
            encoded = await self._encoded(served)
            if encoded is not None:
                digests.add(encoded[0])
        return digests


def _event(name: str, data: bytes, *, event_id: int | None = None) -> bytes:
    head = f"event: {name}\n".encode()
    if event_id is not None:
        head += f"id: {event_id}\n".encode()
    return head + b"data: " + data + b"\n\n"


def _guild_list(raw: str | None) -> frozenset[str] | None:
    if raw is None:
        return None
    guilds = frozenset(part.strip() for part in raw.split(",") if part.strip())
    bad = next((guild for guild in guilds if not GUILD_ID.fullmatch(guild)), None)
    if bad is not None:
        raise Refusal(
            400,
            "bad_request",
            f"invalid guild id {bad[:40]!r} in guilds: a Discord server id is 1 to 20 digits",
        )
    if len(guilds) > MAX_GUILDS:
        raise Refusal(400, "bad_request", f"at most {MAX_GUILDS} guilds per stream")
    return guilds


def _last_event_id(raw: str | None) -> int | None:
    if raw is None or not raw.strip().isdigit():
        return None  # absent or not ours: start from the whole state
    return int(raw.strip())


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str | None:
    return _aware(moment).isoformat() if moment is not None else None
