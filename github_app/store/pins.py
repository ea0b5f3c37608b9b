"""Pins: a guild served one chosen commit of its bound repository until it is unpinned.

A pin names a stored, valid snapshot (the foreign key keeps retention from pruning it) and, for
a commit whose PATH `extends` bases, the base commits it is served with (`layers`, kept by
retention too), so that a push to a base does not move a pinned guild either. Serving
(`store.serving`) answers from it instead of the branch's active snapshot while the binding is
live and on the same repository, so the resolver cache and everything that reads guild states
honour it without knowing about pins. Every change writes the guild's history and the audit log
and bumps the activation generation, in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from github_app.store import audit, branches, history
from github_app.store._sql import upsert
from github_app.store.layers import ServedLayer, layers_json
from github_app.store.models import GuildActivation, GuildPin, Snapshot, utcnow


def get_pin(session: Session, guild_id: str) -> GuildPin | None:
    return session.get(GuildPin, guild_id)


def set_pin(
    session: Session,
    guild_id: str,
    snapshot: Snapshot,
    *,
    actor: str,
    reason: str,
    keep: int,
    layers: Sequence[ServedLayer] = (),
    now: datetime | None = None,
) -> GuildPin:
    """Pin (or re-pin) the guild to `snapshot`, which must be valid, over the base commits
    `layers` (store.layers; none for a commit without bases)."""
    if not snapshot.valid:
        raise ValueError(f"commit {snapshot.commit_sha[:7]} failed validation: it cannot be pinned")
    now = now or utcnow()
    before_view = _view(get_pin(session, guild_id))
    values = {
        "repository_id": snapshot.repository_id,
        "snapshot_id": snapshot.id,
        "commit_sha": snapshot.commit_sha,
        "layers": layers_json(layers),
        "reason": reason,
        "pinned_by": actor,
        "pinned_at": now,
    }
    upsert(session, GuildPin, {"guild_id": guild_id}, values)
    pin = get_pin(session, guild_id)
    assert pin is not None
    history.record_activation(
        session,
        guild_id,
        snapshot.repository_id,
        snapshot.commit_sha,
        trigger=reason,
        keep=keep,
        actor=actor,
        pinned=True,
        now=now,
    )
    audit.record_audit(session, actor, guild_id, f"binding.{reason}", before_view, _view(pin), now)
    branches.bump_generation(session)
    return pin


def clear_pin(
    session: Session,
    guild_id: str,
    *,
    actor: str,
    serving_sha: str | None,
    keep: int,
    now: datetime | None = None,
) -> GuildPin | None:
    """Remove the pin (the removed row, or None when there was none); `serving_sha` is what
    the guild serves from now on (the branch's active commit), for its history."""
    pin = get_pin(session, guild_id)
    if pin is None:
        return None
    now = now or utcnow()
    before_view = _view(pin)
    session.delete(pin)
    session.flush()
    if serving_sha is not None:
        history.record_activation(
            session,
            guild_id,
            pin.repository_id,
            serving_sha,
            trigger="unpin",
            keep=keep,
            actor=actor,
            now=now,
        )
    audit.record_audit(session, actor, guild_id, "binding.unpin", before_view, None, now)
    branches.bump_generation(session)
    return pin


def drop_pin(session: Session, guild_id: str) -> None:
    """Forget a pin without history (the binding itself is going away)."""
    session.execute(delete(GuildPin).where(GuildPin.guild_id == guild_id))


def pinned_guilds(session: Session, guild_ids: list[str]) -> set[str]:
    if not guild_ids:
        return set()
    query = select(GuildPin.guild_id).where(GuildPin.guild_id.in_(guild_ids))
    return set(session.scalars(query))


def previous_good(
    session: Session, guild_id: str, repository_id: int, current_sha: str | None
) -> Snapshot | None:
    """The newest commit the guild served before `current_sha` that is still a stored, valid
    snapshot of its repository: what a rollback pins."""
    query = (
        select(Snapshot)
        .join(
            GuildActivation,
            (GuildActivation.commit_sha == Snapshot.commit_sha)
            & (GuildActivation.repository_id == Snapshot.repository_id),
        )
        .where(
            GuildActivation.guild_id == guild_id,
            Snapshot.repository_id == repository_id,
            Snapshot.valid.is_(True),
        )
        .order_by(GuildActivation.id.desc())
    )
    for snapshot in session.scalars(query):
        if snapshot.commit_sha != current_sha:
            return snapshot
    return None


def _view(pin: GuildPin | None) -> dict[str, str] | None:
    if pin is None:
        return None
    return {"commit_sha": pin.commit_sha, "reason": pin.reason, "pinned_by": pin.pinned_by}
