"""What the bridge answers about pins, history and channel previews, as plain values the bot
can show.

Parsed leniently (a missing field is None), like `results`: an older or newer service never
breaks the bot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .results import text_field


@dataclass(frozen=True)
class PinStatus:
    """What the guild serves after a pin, unpin or rollback, and what its branch has."""

    guild_id: str
    active_sha: str | None
    branch_sha: str | None
    pinned_sha: str | None  # None: not pinned, the branch's newest valid commit is served
    pinned_by: str | None
    status_message: str | None
    in_progress: bool = False  # 202: the commit is still being synced, nothing changed yet
    bases: tuple[str, ...] = ()  # base commits served with it (`owner/name@abc1234`), if any
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Activation:
    commit_sha: str
    at: str | None
    trigger: str | None
    pushed_by: str | None
    actor: str | None
    pinned: bool


@dataclass(frozen=True)
class GuildHistory:
    guild_id: str
    active_sha: str | None
    branch_sha: str | None
    pinned_sha: str | None
    activations: tuple[Activation, ...]


def _pinned(body: dict[str, Any]) -> dict[str, Any]:
    pinned = body.get("pinned")
    return pinned if isinstance(pinned, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def pin_status_from_body(guild: str, body: Any, status_code: int) -> PinStatus:
    body = body if isinstance(body, dict) else {}
    pinned = _pinned(body)
    return PinStatus(
        guild_id=text_field(body.get("guild_id")) or guild,
        active_sha=text_field(body.get("active_sha")),
        branch_sha=text_field(body.get("branch_sha")),
        pinned_sha=text_field(pinned.get("sha")),
        pinned_by=text_field(pinned.get("pinned_by")),
        status_message=text_field(body.get("status_message") or body.get("message")),
        in_progress=status_code == 202,
        bases=tuple(text for item in _list(body.get("bases")) if (text := text_field(item))),
        raw=body,
    )


def history_from_body(guild: str, body: Any, status_code: int) -> GuildHistory:
    body = body if isinstance(body, dict) else {}
    items = body.get("activations")
    activations = tuple(
        Activation(
            commit_sha=text_field(item.get("commit_sha")) or "",
            at=text_field(item.get("at")),
            trigger=text_field(item.get("trigger")),
            pushed_by=text_field(item.get("pushed_by")),
            actor=text_field(item.get("actor")),
            pinned=item.get("pinned") is True,
        )
        for item in (items if isinstance(items, list) else ())
        if isinstance(item, dict)
    )
    return GuildHistory(
        guild_id=text_field(body.get("guild_id")) or guild,
        active_sha=text_field(body.get("active_sha")),
        branch_sha=text_field(body.get("branch_sha")),
        pinned_sha=text_field(_pinned(body).get("sha")),
        activations=activations,
    )


@dataclass(frozen=True)
class ChannelPreview:
    """A channel resolving from a pull request's head (`in_progress`: head not synced yet)."""

    channel_id: str | None
    pull_request: int | None
    head_sha: str | None
    message: str | None
    in_progress: bool = False


def channel_preview_from_body(guild: str, body: Any, status_code: int) -> ChannelPreview:
    body = body if isinstance(body, dict) else {}
    number = body.get("pull_request")
    return ChannelPreview(
        channel_id=text_field(body.get("channel_id")),
        pull_request=number if isinstance(number, int) and not isinstance(number, bool) else None,
        head_sha=text_field(body.get("head_sha")),
        message=text_field(body.get("message")),
        in_progress=status_code == 202,
    )


def ended_from_body(guild: str, body: Any, status_code: int) -> list[str]:
    ended = body.get("ended") if isinstance(body, dict) else None
    return [str(item) for item in ended] if isinstance(ended, list) else []
