"""Channel previews: one channel of a guild resolves from a pull request's head until the pull
request closes or the preview is turned off; the rest of the guild keeps its branch.

Pull requests are known from their webhooks (`record_pull_request`). What a preview serves is
read with the guild states (`active_previews`) by the resolver cache; every change bumps the
activation generation so all processes switch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, select
from sqlalchemy.orm import Session

from github_app.store import audit, branches
from github_app.store._sql import upsert
from github_app.store.models import ChannelPreview, PullRequest, Snapshot, utcnow


@dataclass(frozen=True)
class ActivePreview:
    """A preview that can serve: its pull request is open and its head is a valid snapshot."""

    guild_id: str
    channel_id: str
    repository_id: int
    pull_number: int
    snapshot_id: int
    commit_sha: str


def record_pull_request(
    session: Session, repository_id: int, number: int, head_sha: str, *, open_: bool
) -> bool:
    """Remember a pull request's head and state; True when a preview of it is affected."""
    row = session.get(PullRequest, (repository_id, number))
    changed = row is None or (row.head_sha, row.open) != (head_sha, open_)
    key = {"repository_id": repository_id, "number": number}
    upsert(session, PullRequest, key, {"head_sha": head_sha, "open": open_, "updated_at": utcnow()})
    previewed = bool(_previews_of(session, repository_id, number))
    if not open_:
        session.execute(
            delete(ChannelPreview).where(
                ChannelPreview.repository_id == repository_id,
                ChannelPreview.pull_number == number,
            )
        )
    if changed and previewed:
        branches.bump_generation(session)
        return True
    return False


def get_pull_request(session: Session, repository_id: int, number: int) -> PullRequest | None:
    return session.get(PullRequest, (repository_id, number))


def set_preview(
    session: Session,
    guild_id: str,
    channel_id: str,
    repository_id: int,
    number: int,
    *,
    actor: str,
    now: datetime | None = None,
) -> None:
    now = now or utcnow()
    key = {"guild_id": guild_id, "channel_id": channel_id}
    values = {"repository_id": repository_id, "pull_number": number, "set_by": actor, "set_at": now}
    upsert(session, ChannelPreview, key, values)
    after = {"channel_id": channel_id, "pull_request": number}
    audit.record_audit(session, actor, guild_id, "preview.set", None, after, now)
    branches.bump_generation(session)


def clear_previews(
    session: Session, guild_id: str, channel_id: str | None, *, actor: str
) -> list[str]:
    """End the guild's preview in `channel_id` (None: every channel); the channels ended."""
    query = select(ChannelPreview).where(ChannelPreview.guild_id == guild_id)
    if channel_id is not None:
        query = query.where(ChannelPreview.channel_id == channel_id)
    rows = list(session.scalars(query))
    for row in rows:
        before = {"channel_id": row.channel_id, "pull_request": row.pull_number}
        audit.record_audit(session, actor, guild_id, "preview.off", before, None)
        session.delete(row)
    if rows:
        session.flush()
        branches.bump_generation(session)
    return [row.channel_id for row in rows]


def guild_previews(session: Session, guild_id: str) -> list[ChannelPreview]:
    query = select(ChannelPreview).where(ChannelPreview.guild_id == guild_id)
    return list(session.scalars(query.order_by(ChannelPreview.channel_id)))


def previews_of_head(session: Session, repository_id: int, sha: str) -> list[ChannelPreview]:
    """Previews of the open pull requests whose head is `sha`."""
    query = (
        select(ChannelPreview)
        .join(
            PullRequest,
            and_(
                PullRequest.repository_id == ChannelPreview.repository_id,
                PullRequest.number == ChannelPreview.pull_number,
            ),
        )
        .where(
            ChannelPreview.repository_id == repository_id,
            PullRequest.head_sha == sha,
            PullRequest.open.is_(True),
        )
    )
    return list(session.scalars(query))


def drop_previews(session: Session, rows: Sequence[ChannelPreview], actor: str) -> None:
    for row in rows:
        before = {"channel_id": row.channel_id, "pull_request": row.pull_number}
        audit.record_audit(session, actor, row.guild_id, "preview.off", before, None)
        session.delete(row)
    session.flush()


def active_previews(session: Session) -> list[ActivePreview]:
    """Every preview that serves now: open pull request, head stored and valid."""
    query = (
        select(ChannelPreview, Snapshot.id, Snapshot.commit_sha)
        .join(
            PullRequest,
            and_(
                PullRequest.repository_id == ChannelPreview.repository_id,
                PullRequest.number == ChannelPreview.pull_number,
            ),
        )
        .join(
            Snapshot,
            and_(
                Snapshot.repository_id == PullRequest.repository_id,
                Snapshot.commit_sha == PullRequest.head_sha,
            ),
        )
        .where(PullRequest.open.is_(True), Snapshot.valid.is_(True))
    )
    return [
        ActivePreview(
            row.guild_id, row.channel_id, row.repository_id, row.pull_number, snap_id, sha
        )
        for row, snap_id, sha in session.execute(query)
    ]


def _previews_of(session: Session, repository_id: int, number: int) -> list[str]:
    query = select(ChannelPreview.guild_id).where(
        ChannelPreview.repository_id == repository_id, ChannelPreview.pull_number == number
    )
    return list(session.scalars(query))
