"""Telling guild admins when their prompts stop updating: Discord-free, so tests need no Discord.

`AlertWatcher.tick` asks the bridge, for each guild with an alert channel, for its events
(`GET .../events`) and its binding (`GET .../config`), and posts one message per problem: a
rejected commit, a failed sync, a deleted branch, lost access. Plain audit entries are never
posted. A problem is announced at most once; when the binding is healthy again the problem counts
as cleared, and only if it comes back after that (the server reports it seen again later) is it
announced again. While the binding is healthy nothing is posted at all: a transient failure
that the next sync fixed is not worth a message.

`AlertStore` remembers the channel per guild and what was announced, in memory or in a small JSON
file so a restarted bot neither loses its channels nor reposts. `set_alert_channel` is the
`/prompt-config alerts` command; `discord_cog` drives the watcher and posts to Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .client import AsyncBridgeClient
from .commands import GUILD_ONLY, PERMISSION_DENIED, Caller, Reply, can_manage
from .results import BridgeError, BridgeEvent, GuildConfig

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = 60.0  # seconds between two looks at every watched guild
STORE_FORMAT = "guildprompts-alerts/1"
MAX_ALERT_LENGTH = 2000  # Discord's message limit
_UNHEALTHY_OUTCOMES = frozenset({"rejected", "error", "deleted"})


@dataclass(frozen=True)
class Alert:
    """One message to post: `key` identifies the problem it announces (see `problem_key`)."""

    guild_id: str
    channel_id: str
    key: str
    text: str
    seen_at: str | None  # the event's last time seen, to tell a recurrence from the same problem


Post = Callable[[Alert], Awaitable[None]]


# --- which events, and what to say --------------------------------------------------------------


def is_problem(event: BridgeEvent) -> bool:
    """Failed or rejected syncs and lost access; configuration changes are not problems."""
    kind = event.raw.get("kind")
    if kind is not None:
        return bool(kind == "problem")
    return event.action.startswith("sync.") or event.action == "access.lost"


def problem_key(event: BridgeEvent) -> str:
    """The server groups a problem by (outcome, commit): the same grouping identifies it here."""
    after = event.after or {}
    identity = after.get("commit_sha") or after.get("repository") or ""
    return f"{event.action}:{identity}"


def alert_text(event: BridgeEvent, config: GuildConfig | None = None) -> str:
    """A message a guild admin can act on, with what still serves when the config says so."""
    after = event.after or {}
    repository = after.get("repository") or (config.repository if config else None) or "?"
    branch = after.get("branch") or (config.branch if config else None)
    where = f"**{repository}**" + (f"@{branch}" if branch else "")
    sha = after.get("commit_sha")
    commit = f"commit `{sha[:7]}`" if isinstance(sha, str) and sha else "the latest commit"
    detail = after.get("message")
    active = config.active_sha if config is not None else None
    serving = f"still serving `{active[:7]}`" if active else "the bot uses its built-in prompts"
    action = event.action
    if action == "sync.rejected":
        errors = _error_count(config, sha)
        counted = f" ({errors} error{'s' if errors != 1 else ''})" if errors else ""
        text = (
            f"guildprompts: {commit} on {where} was rejected{counted}; {serving}. "
            "Fix the problems and push again: `/prompt-config status` lists them with file and "
            "line."
        )
    elif action in ("sync.no_access", "access.lost"):
        text = (
            f"guildprompts lost access to {where}: prompts fell back to the built-in defaults. "
            "Install the guildprompts GitHub App on the repository again (or grant it access to "
            "this repository), then run `/prompt-config refresh`."
        )
    elif action == "sync.failed":
        text = (
            f"guildprompts could not sync {commit} on {where}; {serving}. It retries by itself; "
            "`/prompt-config refresh` retries now and `/prompt-config status` shows the state."
        )
    elif action == "sync.gone":
        text = (
            f"guildprompts: {commit} on {where} is gone from GitHub; {serving}. Push the branch "
            "again or choose another with `/prompt-config set`."
        )
    else:
        text = f"guildprompts: {action} on {where}. Run `/prompt-config status` for details."
    if isinstance(detail, str) and detail:
        text += f"\nDetails: {detail}"
    if event.raw.get("count", 1) not in (0, 1):
        text += f" (seen {event.raw['count']} times)"
    if len(text) > MAX_ALERT_LENGTH:
        text = text[: MAX_ALERT_LENGTH - 2].rstrip() + " …"
    return text


def _error_count(config: GuildConfig | None, sha: object) -> int:
    """Errors the config lists for this very commit (it only lists the latest one's)."""
    if config is None or not config.latest_sha or config.latest_sha != sha:
        return 0
    return sum(1 for item in config.errors if item.severity == "error")


def is_healthy(config: GuildConfig | None) -> bool:
    """Nothing to alert about: no binding, disabled, or active with a good last sync."""
    if config is None or not config.enabled:
        return True
    return config.state == "active" and config.last_sync_outcome not in _UNHEALTHY_OUTCOMES


# --- what is remembered -------------------------------------------------------------------------


class AlertStore:
    """Alert channel per guild and the problems already announced; `path`: also a JSON file.

    Announced problems are `{key: {"seen_at": ..., "cleared": bool}}` per guild. An unreadable
    file is logged and ignored (the bot starts with no channels rather than not at all).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._channels: dict[str, str] = {}
        self._announced: dict[str, dict[str, dict[str, Any]]] = {}
        if self.path is not None and self.path.exists():
            self._load(self.path)

    def channel(self, guild_id: str) -> str | None:
        return self._channels.get(str(guild_id))

    def channels(self) -> dict[str, str]:
        """guild id -> channel id, for every guild with alerts on."""
        return dict(self._channels)

    def set_channel(self, guild_id: str, channel_id: str | None) -> None:
        """`None` turns alerts off and forgets what was announced for the guild."""
        guild_id = str(guild_id)
        if channel_id is None:
            self._channels.pop(guild_id, None)
            self._announced.pop(guild_id, None)
        else:
            self._channels[guild_id] = str(channel_id)
        self._save()

    def announced(self, guild_id: str) -> dict[str, dict[str, Any]]:
        """A copy: change it through `remember`."""
        return {key: dict(value) for key, value in self._announced.get(str(guild_id), {}).items()}

    def remember(self, guild_id: str, announced: Mapping[str, Mapping[str, Any]]) -> None:
        guild_id = str(guild_id)
        fresh = {key: dict(value) for key, value in announced.items()}
        if fresh == self._announced.get(guild_id, {}):
            return
        if fresh:
            self._announced[guild_id] = fresh
        else:
            self._announced.pop(guild_id, None)
        self._save()

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("format") != STORE_FORMAT:
                raise ValueError(f"not a {STORE_FORMAT} file")
            channels = data.get("channels") or {}
            announced = data.get("announced") or {}
            self._channels = {str(guild): str(channel) for guild, channel in channels.items()}
            self._announced = {
                str(guild): {str(key): dict(value) for key, value in keys.items()}
                for guild, keys in announced.items()
            }
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            logger.warning("ignoring the alert store %s: %s", path, exc)
            self._channels, self._announced = {}, {}

    def _save(self) -> None:
        """Atomically (temporary file, then rename): a crash never leaves half a file."""
        if self.path is None:
            return
        body = {"format": STORE_FORMAT, "channels": self._channels, "announced": self._announced}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".alerts-")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(body, file, indent=1, sort_keys=True)
            os.replace(temporary, self.path)
        except OSError as exc:
            Path(temporary).unlink(missing_ok=True)
            logger.warning("could not save the alert store %s: %s", self.path, exc)


# --- the watcher --------------------------------------------------------------------------------


class AlertWatcher:
    """Looks at every guild with an alert channel each `interval` seconds and posts new problems.

    A problem is marked announced only once `post` succeeded, so a channel the bot cannot write
    to is tried again next tick. Service errors are logged and retried next tick; nothing raised
    by the bridge or by `post` stops the loop.
    """

    def __init__(
        self,
        client: AsyncBridgeClient,
        store: AlertStore | None = None,
        *,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"the alert interval must be positive, not {interval!r}")
        self.client = client
        self.store = store if store is not None else AlertStore()
        self.interval = interval

    async def pending(self, guild_id: str, channel_id: str) -> list[Alert]:
        """The alerts due for one guild now, oldest first; records cleared problems, posts nothing.

        The first time a guild has problems, only the newest is announced: older ones are
        history from before anyone watched. Raises `BridgeError` when the bridge cannot answer.
        """
        events = [event for event in await self.client.events(guild_id) if is_problem(event)]
        config = await self.client.get_config(guild_id)
        previous = self.store.announced(guild_id)
        current: dict[str, BridgeEvent] = {}
        for event in events:  # newest first: the first of a key is its latest report
            current.setdefault(problem_key(event), event)
        announced = {key: value for key, value in previous.items() if key in current}
        healthy = is_healthy(config)
        due: list[Alert] = []
        for index, (key, event) in enumerate(current.items()):
            record, seen_at = announced.get(key), _seen_at(event)
            if healthy or (record is None and not previous and index > 0):
                announced[key] = {"seen_at": seen_at, "cleared": True}
            elif record is None or (record.get("cleared") and record.get("seen_at") != seen_at):
                text = alert_text(event, config)
                due.append(Alert(str(guild_id), str(channel_id), key, text, seen_at))
        self.store.remember(guild_id, announced)
        return due[::-1]

    def mark_announced(self, alert: Alert) -> None:
        announced = self.store.announced(alert.guild_id)
        announced[alert.key] = {"seen_at": alert.seen_at, "cleared": False}
        self.store.remember(alert.guild_id, announced)

    async def tick(self, post: Post) -> list[Alert]:
        """One pass over every watched guild; returns the alerts posted."""
        posted: list[Alert] = []
        for guild_id, channel_id in self.store.channels().items():
            try:
                due = await self.pending(guild_id, channel_id)
            except BridgeError as exc:
                logger.warning(
                    "alerts for guild %s: the bridge did not answer (%s); trying again next time",
                    guild_id,
                    exc.message,
                )
                continue
            except Exception:
                logger.exception("alerts for guild %s failed; trying again next time", guild_id)
                continue
            for alert in due:
                try:
                    await post(alert)
                except Exception as exc:
                    logger.warning(
                        "could not post the alert for guild %s in channel %s (%s); "
                        "trying again next time",
                        guild_id,
                        channel_id,
                        exc,
                    )
                    break
                self.mark_announced(alert)
                posted.append(alert)
        return posted

    async def run(self, post: Post, stop: asyncio.Event | None = None) -> None:
        """`tick` every `interval` seconds until `stop` is set (or the task is cancelled)."""
        stop = stop if stop is not None else asyncio.Event()
        while not stop.is_set():
            await self.tick(post)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)


def _seen_at(event: BridgeEvent) -> str | None:
    value = event.raw.get("last_at") or event.at
    return value if isinstance(value, str) else None


# --- the command --------------------------------------------------------------------------------


async def set_alert_channel(
    store: AlertStore,
    caller: Caller,
    channel_id: str | None = None,
    *,
    off: bool = False,
    manager_roles: Iterable[str | int] = (),
) -> Reply:
    """`/prompt-config alerts [channel] [off]`: show, set (managers) or turn off (managers)."""
    if caller.guild_id is None:
        return Reply(GUILD_ONLY)
    current = store.channel(caller.guild_id)
    if channel_id is None and not off:
        if current is None:
            return Reply(
                "Alerts are off. An admin can have problems (a rejected commit, a failed sync, "
                "lost access to the repository) posted with `/prompt-config alerts #channel`."
            )
        return Reply(f"Problems with this server's prompts are posted in <#{current}>.")
    if not can_manage(caller, tuple(manager_roles)):
        return Reply(PERMISSION_DENIED)
    if off:
        store.set_channel(caller.guild_id, None)
        return Reply("Alerts turned off: problems are no longer posted.")
    store.set_channel(caller.guild_id, str(channel_id))
    return Reply(
        f"Alerts go to <#{channel_id}>: when this server's prompts stop updating (a rejected "
        "commit, a failed sync, lost access to the repository), guildprompts posts there once "
        "per problem. Make sure the bot can send messages in that channel."
    )
