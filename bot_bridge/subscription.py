"""The bot's side of `GET /bridge/v1/stream`: the served state kept locally, prompts resolved here.

`LocalState` holds what the stream sent (guild states, parsed snapshots by content digest) and
answers `resolve_prompt` with promptrepo, building exactly the answer the service's
`GET .../prompt` would (`promptrepo.answer.build_answer`): no network per call. Answers are
memoised per (guild, arguments as given) and checked against the guild's current state by
identity, so a repeated call costs two dict lookups; guilds on one snapshot share answers.

`Subscription` keeps the stream open in a daemon thread (for both clients: an asyncio bot's
loop never runs the parsing), resuming with `Last-Event-ID` and reconnecting with capped
backoff. The state is *live* only between a completed `sync` and the next disconnection; when
it is not, the client revalidates over HTTP as without streaming.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from bot_bridge.results import ResolvedPrompt, prompt_from_answer
from promptrepo import (
    Context,
    Layer,
    PromptRepository,
    RepositoryError,
    load_layers,
    load_repository,
)
from promptrepo.answer import (
    UNBOUND,
    Served,
    build_answer,
    routing_context,
    uses_guild,
    without_guild,
)
from promptrepo.layers import OWN

__all__ = ["LocalState", "Subscription"]

logger = logging.getLogger("bot_bridge.client")

STREAM_PATH = "/bridge/v1/stream"
MAX_MEMO = 1 << 17  # memoised (guild, arguments) -> answer entries before the memo restarts
Persist = Callable[[str, Any], None]


class LocalState:
    """What the stream has told this process; see the module docstring. Written by one thread
    (the subscription), read lock-free by any."""

    def __init__(self, persist: Persist | None = None) -> None:
        self.github_url = ""
        self.generation: int | None = None
        self.live = False
        self.synced_at: datetime | None = None
        self._persist = persist
        self._keep_files = persist is not None
        self._snapshots: dict[str, PromptRepository | None] = {}
        self._files: dict[str, dict[str, Any]] = {}  # digest -> the snapshot event, to persist
        self._dependent: set[str] = set()
        self._guilds: dict[str, Served] = {}
        self._previews: dict[str, dict[str, Served]] = {}  # guild -> channel id -> preview
        self._freshness: dict[str, tuple[str | None, str | None]] = {}
        self._interned: dict[Served, Served] = {UNBOUND: UNBOUND}
        self._memo: dict[Any, tuple[str, str | None, Served, ResolvedPrompt]] = {}
        self._shared: dict[tuple[Served, str], ResolvedPrompt] = {}
        self._seen: set[str] | None = None  # guilds sent since a full (not resumed) state began
        self.push_to_bot: deque[float] = deque(maxlen=1000)  # seconds, push -> applied here

    # ---- answering ----------------------------------------------------------------------------

    def answer(
        self,
        guild_id: object,
        context: Mapping[str, object] | None,
        variables: Mapping[str, object],
    ) -> ResolvedPrompt:
        """The answer from local state (live or not). Raises ValueError for an unusable request."""
        try:
            key: Any = (
                guild_id,
                tuple(context.items()) if context else (),
                tuple(variables.items()) if variables else (),
            )
            hit = self._memo.get(key)
        except TypeError:  # an unhashable value: compute (and refuse) below
            key, hit = None, None
        if hit is not None and self._served(hit[0], hit[1]) is hit[2]:
            return hit[3]
        guild = str(guild_id)
        ctx = routing_context(guild, {**(context or {}), **variables}.items())
        channel = ctx.get("channel_id")
        served = self._served(guild, channel)
        prompt = self._shared_answer(served, ctx)
        if key is not None:
            if len(self._memo) >= MAX_MEMO:
                self._memo.clear()
            self._memo[key] = (guild, channel, served, prompt)
        return prompt

    def _served(self, guild: str, channel: str | None) -> Served:
        """The guild's state, or its channel's while that channel previews a pull request."""
        served = self._guilds.get(guild, UNBOUND)
        if channel is not None and guild in self._previews:
            return self._previews[guild].get(channel, served)
        return served

    def _shared_answer(self, served: Served, ctx: Context) -> ResolvedPrompt:
        digest = served.snapshot if isinstance(served.snapshot, str) else None
        text = ctx.key if digest in self._dependent else without_guild(ctx).key
        shared = self._shared.get((served, text))
        if shared is None:
            repository = self._snapshots.get(digest) if digest is not None else None
            answer = build_answer(served, ctx, repository, self.github_url)
            shared = prompt_from_answer(answer, self.synced_at or _now())
            self._shared[(served, text)] = shared
        return shared

    def freshness(self, guild_id: str) -> tuple[str | None, str | None]:
        """(activated_at, head_at) of the guild's commit, as ISO text, when known."""
        return self._freshness.get(guild_id, (None, None))

    def stats(self) -> dict[str, Any]:
        latencies = sorted(self.push_to_bot)
        return {
            "live": self.live,
            "generation": self.generation,
            "guilds": len(self._guilds),
            "snapshots": len(self._snapshots),
            "answers": len(self._shared),
            "push_to_bot_last": self.push_to_bot[-1] if self.push_to_bot else None,
            "push_to_bot_median": latencies[len(latencies) // 2] if latencies else None,
        }

    # ---- applying the stream ------------------------------------------------------------------

    def apply(self, event: str, data: str) -> None:
        """One event from the stream; malformed ones are logged and skipped."""
        try:
            body = json.loads(data) if data else None
        except ValueError:
            logger.warning("ignoring a malformed %s event from the guildprompts stream", event)
            return
        if event == "hello" and isinstance(body, dict):
            self.live = False
            if isinstance(body.get("github_url"), str):
                self.github_url = body["github_url"]
            self._seen = None if body.get("resumed") is True else set()
        elif event == "snapshot" and isinstance(body, dict):
            self._add_snapshot(body)
        elif event == "guild" and isinstance(body, dict):
            self._set_guild(body)
        elif event == "sync" and isinstance(body, int):
            self._synced(body)

    def _add_snapshot(self, body: Mapping[str, Any]) -> None:
        """A `snapshot` event (or its saved record): its files, and with `layers` (a repository
        that `extends` bases) each base's files, nearest first."""
        digest, files, bases = body.get("digest"), body.get("files"), body.get("layers")
        if not isinstance(digest, str) or not isinstance(files, dict):
            return
        stack = [Layer(OWN, _encoded(files))]
        for base in bases if isinstance(bases, list) else ():
            if isinstance(base, dict) and isinstance(base.get("files"), dict):
                stack.append(Layer(str(base.get("name") or ""), _encoded(base["files"])))
        try:
            self._snapshots[digest] = (
                load_layers(stack) if len(stack) > 1 else load_repository(stack[0].files)
            )
        except RepositoryError as exc:
            logger.warning("a streamed snapshot cannot be loaded (%s)", exc)
            self._snapshots[digest] = None
        if any(uses_guild(layer.files) for layer in stack):
            self._dependent.add(digest)
        record = {key: body[key] for key in ("files", "layers") if key in body}
        if self._keep_files:
            self._files[digest] = record
        self._save(f"s:{digest}", record)

    def _set_guild(self, body: Mapping[str, Any], *, loading: bool = False) -> None:
        guild = body.get("guild_id")
        served = Served.from_json(body.get("served"))
        if not isinstance(guild, str) or served is None:
            return
        served = self._interned.setdefault(served, served)
        previous = self._guilds.get(guild)
        self._guilds[guild] = served
        channels = body.get("previews")
        previews = {
            str(channel): self._interned.setdefault(state, state)
            for channel, raw in (channels.items() if isinstance(channels, dict) else ())
            if (state := Served.from_json(raw)) is not None
        }
        if previews:
            self._previews[guild] = previews
        else:
            self._previews.pop(guild, None)
        activated, head = body.get("activated_at"), body.get("head_at")
        self._freshness[guild] = (
            activated if isinstance(activated, str) else None,
            head if isinstance(head, str) else None,
        )
        if self._seen is not None:
            self._seen.add(guild)
        if loading:
            return
        if self.synced_at is not None and previous is not served and isinstance(head, str):
            try:
                pushed = datetime.fromisoformat(head)
                self.push_to_bot.append(max(0.0, (_now() - pushed).total_seconds()))
            except ValueError:
                pass
        self._save(f"g:{guild}", dict(body))

    def _synced(self, generation: int) -> None:
        if self._seen is not None:  # a full state: guilds it did not name are unbound now
            for guild in [g for g in self._guilds if g not in self._seen]:
                del self._guilds[guild]
                self._previews.pop(guild, None)
                self._freshness.pop(guild, None)
                self._save(f"g:{guild}", None)
            self._seen = None
        self._prune()
        self.generation = generation
        self.synced_at = _now()
        self.live = True
        self._save("gen", self._generation_record())

    def _generation_record(self) -> dict[str, Any]:
        synced = self.synced_at.isoformat() if self.synced_at is not None else None
        return {"generation": self.generation, "github_url": self.github_url, "synced_at": synced}

    def _prune(self) -> None:
        """Forget snapshots and answers no guild is served from any more."""
        live = set(self._guilds.values()) | {UNBOUND}
        for channels in self._previews.values():
            live.update(channels.values())
        digests = {s.snapshot for s in live if isinstance(s.snapshot, str)}
        for digest in [d for d in self._snapshots if d not in digests]:
            del self._snapshots[digest]
            self._files.pop(digest, None)
            self._dependent.discard(digest)
            self._save(f"s:{digest}", None)
        self._interned = {s: s for s in live}
        self._shared = {k: v for k, v in self._shared.items() if k[0] in live}

    def _save(self, key: str, record: Any) -> None:
        if self._persist is not None:
            self._persist(key, record)

    # ---- persistence --------------------------------------------------------------------------

    def records(self) -> dict[str, Any]:
        """Everything needed for a warm restart, as cache-file records."""
        records: dict[str, Any] = {f"s:{d}": record for d, record in list(self._files.items())}
        for guild, served in list(self._guilds.items()):
            activated, head = self._freshness.get(guild, (None, None))
            records[f"g:{guild}"] = {
                "guild_id": guild,
                "served": served.to_json(),
                "activated_at": activated,
                "head_at": head,
                "previews": {c: s.to_json() for c, s in self._previews.get(guild, {}).items()},
            }
        if self.generation is not None:
            records["gen"] = self._generation_record()
        return records

    def restore(self, records: Mapping[str, Any]) -> None:
        """Load what `records` wrote (not live: the stream confirms or replaces it)."""
        for key, record in records.items():
            if key.startswith("s:") and isinstance(record, dict):
                persist, self._persist = self._persist, None
                self._add_snapshot({**record, "digest": key[2:]})
                self._persist = persist
            elif key.startswith("g:") and isinstance(record, dict):
                self._set_guild(record, loading=True)
        gen = records.get("gen")
        if isinstance(gen, dict) and isinstance(gen.get("generation"), int):
            self.generation = gen["generation"]
            self.github_url = str(gen.get("github_url") or "")
            try:
                self.synced_at = datetime.fromisoformat(str(gen.get("synced_at")))
            except ValueError:
                self.synced_at = None
        self._prune_quietly()

    def _prune_quietly(self) -> None:
        persist, self._persist = self._persist, None
        try:
            self._prune()
        finally:
            self._persist = persist


class Subscription:
    """Keeps `GET /bridge/v1/stream` open in a daemon thread, applying events to `state`."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        state: LocalState,
        *,
        guilds: Iterable[object] | None = None,
        transport: httpx.BaseTransport | None = None,
        read_timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_backoff: float = 30.0,
    ) -> None:
        self.state = state
        self._base_url = base_url
        self._headers = {**headers, "Accept": "text/event-stream"}
        self._params = {"guilds": ",".join(str(g) for g in guilds)} if guilds is not None else None
        self._transport = transport
        self._timeout = httpx.Timeout(connect_timeout, read=read_timeout)
        self._max_backoff = max_backoff
        self._stop = threading.Event()
        self._http: httpx.Client | None = None
        self._thread: threading.Thread | None = None
        self._failing = ""
        self.connections = 0  # streams opened, for tests

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="guildprompts-stream", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        http = self._http
        if http is not None:
            try:
                http.close()  # unblocks the read in the stream thread
            except Exception as exc:  # may race the reader closing it: it stops anyway
                logger.debug("closing the stream: %s", exc)
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_live(self, timeout: float) -> bool:
        """Block until the state is live (for tests and start-up); False on timeout."""
        deadline = time.monotonic() + timeout
        while not self.state.live:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._stream()
                backoff = 0.5
            except Exception as exc:
                self._outage(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            finally:
                self.state.live = False
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, self._max_backoff)

    def _stream(self) -> None:
        headers = dict(self._headers)
        if self.state.generation is not None:
            headers["Last-Event-ID"] = str(self.state.generation)
        with httpx.Client(
            base_url=self._base_url, headers=headers, transport=self._transport
        ) as http:
            self._http = http
            if self._stop.is_set():
                return
            with http.stream("GET", STREAM_PATH, params=self._params, timeout=self._timeout) as r:
                if r.status_code != 200:
                    r.read()
                    raise RuntimeError(f"HTTP {r.status_code}: {_message(r)}")
                self.connections += 1
                if self._failing:
                    logger.info("guildprompts stream connected again")
                    self._failing = ""
                for event, data in _events(r.iter_lines()):
                    self.state.apply(event, data)
                    if self._stop.is_set():
                        return
        raise ConnectionError("the stream ended")

    def _outage(self, reason: str) -> None:
        if self._stop.is_set():
            return
        if reason != self._failing:
            logger.warning(
                "guildprompts stream unavailable (%s); resolving over HTTP until it is back",
                reason,
            )
        self._failing = reason


def _events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """Server-Sent Events: (event name, data) per blank-line-terminated block."""
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


def _encoded(files: Mapping[Any, Any]) -> dict[str, bytes]:
    return {str(path): str(text).encode() for path, text in files.items()}


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    return str(body.get("message")) if isinstance(body, dict) else response.reason_phrase


def _now() -> datetime:
    return datetime.now(UTC)
