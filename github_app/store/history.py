"""Each guild's activations: which commit it served from when, who pushed it, what caused it.

Rows are written in the transaction that changes what a guild serves (a branch activation, a
binding going live, a pin, a rollback, an unpin), kept past the retention pruning of deliveries,
and trimmed to the newest `keep` per guild.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from github_app.store.models import GuildActivation, utcnow


def record_activation(
    session: Session,
    guild_id: str,
    repository_id: int,
    commit_sha: str,
    *,
    trigger: str,
    keep: int,
    pushed_by: str | None = None,
    actor: str | None = None,
    pinned: bool = False,
    now: datetime | None = None,
) -> None:
    session.add(
        GuildActivation(
            guild_id=guild_id,
            repository_id=repository_id,
            commit_sha=commit_sha,
            at=now or utcnow(),
            trigger=trigger[:32],
            pushed_by=pushed_by[:255] if pushed_by else None,
            actor=actor,
            pinned=pinned,
        )
    )
    session.flush()
    _trim(session, guild_id, keep)


def record_for_guilds(
    session: Session,
    guild_ids: Iterable[str],
    repository_id: int,
    commit_sha: str,
    **fields: Any,
) -> None:
    for guild_id in guild_ids:
        record_activation(session, guild_id, repository_id, commit_sha, **fields)


def _trim(session: Session, guild_id: str, keep: int) -> None:
    newest = select(GuildActivation.id).where(GuildActivation.guild_id == guild_id)
    kept = newest.order_by(GuildActivation.id.desc()).limit(max(1, keep))
    session.execute(
        delete(GuildActivation).where(
            GuildActivation.guild_id == guild_id, GuildActivation.id.not_in(kept.scalar_subquery())
        )
    )


def guild_history(session: Session, guild_id: str, limit: int) -> list[GuildActivation]:
    """The newest activations first."""
    query = (
        select(GuildActivation)
        .where(GuildActivation.guild_id == guild_id)
        .order_by(GuildActivation.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))
