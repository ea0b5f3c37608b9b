"""Tracked branches: the last-known-good pointer, what was last seen, and the generation counter.

Activation is one pointer update in one transaction. It never goes backwards: each activation
carries `head_at`, the time its commit became the branch head (GitHub's `repository.pushed_at`
for a push; the time the reconcile loop saw the head for a conditional request), and the pointer
moves only to a strictly later head time. A redelivered or slow old push therefore cannot
replace a newer active commit, whatever order the workers finish in.

Every change to what a guild may be served bumps one global `generation` counter (one small
row): processes poll it cheaply, and on PostgreSQL the bump also sends a NOTIFY on
`ACTIVATION_CHANNEL` (delivered at commit, carrying the new generation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from github_app.store._sql import affected_rows, dialect_of, insert_ignoring_conflicts
from github_app.store.errors import InvalidSnapshotError
from github_app.store.models import (
    ActivationGeneration,
    BranchStatus,
    Snapshot,
    TrackedBranch,
    utcnow,
)

ACTIVATION_CHANNEL = "guildprompts_activation"
_GENERATION_ROW = 1


def current_generation(session: Session) -> int:
    """The activation generation: cheap enough to poll every second."""
    value = session.scalar(
        select(ActivationGeneration.value).where(ActivationGeneration.id == _GENERATION_ROW)
    )
    return int(value or 0)


def bump_generation(session: Session) -> int:
    """Announce that what guilds are served may have changed; returns the new generation."""
    value = session.scalar(
        update(ActivationGeneration)
        .where(ActivationGeneration.id == _GENERATION_ROW)
        .values(value=ActivationGeneration.value + 1)
        .returning(ActivationGeneration.value)
    )
    if value is None:  # a database created without the migrations' seed row
        insert_ignoring_conflicts(
            session, ActivationGeneration.__table__, {"id": _GENERATION_ROW, "value": 1}, ["id"]
        )
        value = current_generation(session)
    if dialect_of(session) == "postgresql":
        session.execute(select(func.pg_notify(ACTIVATION_CHANNEL, str(value))))
    return int(value)


def get_branch(session: Session, repository_id: int, branch: str) -> TrackedBranch | None:
    return session.get(TrackedBranch, (repository_id, branch), populate_existing=True)


def note_head(
    session: Session, repository_id: int, branch: str, sha: str, seen_at: datetime
) -> bool:
    """Record the branch's head as seen at `seen_at`; False if a later sighting is stored."""
    _ensure(session, repository_id, branch)
    matched = affected_rows(
        session,
        update(TrackedBranch)
        .where(
            _key(repository_id, branch),
            or_(TrackedBranch.latest_seen_at.is_(None), TrackedBranch.latest_seen_at < seen_at),
        )
        .values(latest_sha=sha, latest_seen_at=seen_at, updated_at=utcnow()),
    )
    return matched == 1


def set_etag(session: Session, repository_id: int, branch: str, etag: str | None) -> None:
    """The ETag of the last conditional request for this branch's head (a 304 is free)."""
    _ensure(session, repository_id, branch)
    session.execute(
        update(TrackedBranch)
        .where(_key(repository_id, branch))
        .values(etag=etag, updated_at=utcnow())
    )


def set_branch_status(
    session: Session,
    repository_id: int,
    branch: str,
    status: BranchStatus | str,
    message: str = "",
    *,
    diagnostics: Sequence[Mapping[str, Any]] | None = None,
    synced_at: datetime | None = None,
) -> None:
    """The outcome of the latest sync, shared by every guild following the branch.

    `diagnostics` (the latest commit's findings) are replaced when given and kept when None.
    """
    values: dict[str, Any] = {
        "status": BranchStatus(status).value,
        "status_message": message,
        "updated_at": utcnow(),
    }
    if diagnostics is not None:
        values["diagnostics"] = [dict(item) for item in diagnostics]
    if synced_at is not None:
        values["last_sync_at"] = synced_at
    _ensure(session, repository_id, branch)
    session.execute(update(TrackedBranch).where(_key(repository_id, branch)).values(**values))


def activate(
    session: Session,
    repository_id: int,
    branch: str,
    snapshot_id: int,
    head_at: datetime,
    now: datetime | None = None,
) -> bool:
    """Make a valid snapshot the branch's active one; True if it is active afterwards.

    Refused (False, nothing changes) when the active commit became head at or after
    `head_at`. Raises `InvalidSnapshotError` for an invalid snapshot or one of another
    repository: an invalid commit never becomes active.
    """
    snapshot = session.get(Snapshot, snapshot_id)
    if snapshot is None or snapshot.repository_id != repository_id:
        raise InvalidSnapshotError(
            f"snapshot {snapshot_id} is not a snapshot of repository {repository_id}"
        )
    if not snapshot.valid:
        raise InvalidSnapshotError(
            f"commit {snapshot.commit_sha} failed validation and cannot become active"
        )
    now = now or utcnow()
    _ensure(session, repository_id, branch)
    moved = affected_rows(
        session,
        update(TrackedBranch)
        .where(
            _key(repository_id, branch),
            or_(TrackedBranch.active_head_at.is_(None), TrackedBranch.active_head_at < head_at),
        )
        .values(
            active_snapshot_id=snapshot_id,
            active_head_at=head_at,
            activated_at=now,
            updated_at=now,
        ),
    )
    if moved == 1:
        bump_generation(session)
        return True
    current = session.scalar(
        select(TrackedBranch.active_snapshot_id).where(_key(repository_id, branch))
    )
    return current == snapshot_id


def _key(repository_id: int, branch: str) -> Any:
    return (TrackedBranch.repository_id == repository_id) & (TrackedBranch.branch == branch)


def _ensure(session: Session, repository_id: int, branch: str) -> None:
    row = {
        "repository_id": repository_id,
        "branch": branch,
        "status": BranchStatus.PENDING.value,
        "status_message": "",
        "diagnostics": [],
        "updated_at": utcnow(),
    }
    insert_ignoring_conflicts(session, TrackedBranch.__table__, row, ["repository_id", "branch"])
