"""Tracked branches: the last-known-good pointer, the head last concluded, and the generation.

Ordering is decided by git, not by clocks or arrival order (see `github_app.sync.flow`): a sync
concludes a branch only for the commit GitHub reports as its head, read after `head_state` was
taken. `conclude_head` is a compare-and-set on the branch's `head_version`: it succeeds only if
no other sync concluded the branch since, so two syncs of one branch are serialised at the one
point that matters (a sync whose head reading may be stale loses and reads the head again).
`latest_sha` and `etag` are written together, only there: a conditional head request answered
304 with the stored ETag therefore means "the head is still `latest_sha`".

Activation is one pointer update in one transaction, made only by the sync that concluded.

Every change to what a guild may be served bumps one global `generation` counter (one small
row): processes poll it cheaply, and on PostgreSQL the bump also sends a NOTIFY on
`ACTIVATION_CHANNEL` (delivered at commit, carrying the new generation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from github_app.store._sql import affected_rows, dialect_of, insert_ignoring_conflicts
from github_app.store.errors import InvalidSnapshotError
from github_app.store.layers import ServedLayer, layers_json
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


@dataclass(frozen=True)
class HeadState:
    """What a sync reads before asking GitHub for the head: the version it must still find
    when it concludes, and the head last concluded with its ETag (for a free 304)."""

    version: int
    latest_sha: str | None
    etag: str | None
    kind: str | None = None  # "heads" or "tags": where the ref was found (a base may be a tag)


def head_state(session: Session, repository_id: int, branch: str) -> HeadState:
    _ensure(session, repository_id, branch)
    row = session.execute(
        select(
            TrackedBranch.head_version,
            TrackedBranch.latest_sha,
            TrackedBranch.etag,
            TrackedBranch.ref_kind,
        ).where(_key(repository_id, branch))
    ).one()
    return HeadState(int(row[0] or 0), row[1], row[2] if row[1] else None, row[3])


def conclude_head(
    session: Session,
    repository_id: int,
    branch: str,
    sha: str,
    etag: str | None,
    version: int,
    now: datetime | None = None,
    kind: str | None = None,
) -> bool:
    """Record `sha` as the branch head this sync concluded (with the ETag of the reading, and
    `kind`, where the ref was found); False, changing nothing, when another sync concluded the
    branch after `version` was read."""
    now = now or utcnow()
    matched = affected_rows(
        session,
        update(TrackedBranch)
        .where(_key(repository_id, branch), TrackedBranch.head_version == version)
        .values(
            head_version=TrackedBranch.head_version + 1,
            latest_sha=sha,
            latest_seen_at=now,
            etag=etag,
            updated_at=now,
            **({"ref_kind": kind} if kind is not None else {}),
        ),
    )
    return matched == 1


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
    now: datetime | None = None,
    *,
    layers: Sequence[ServedLayer] = (),
    valid: bool | None = None,
) -> bool:
    """Make a valid snapshot, with the bases it was validated with (`layers`), the branch's
    active pair; True if the pointer moved (the commit or a base commit changed).

    Call it only in the transaction whose `conclude_head` succeeded for this commit. Raises
    `InvalidSnapshotError` for an invalid snapshot or one of another repository: an invalid
    commit never becomes active. `valid` is the validation of the commit over `layers` (a
    commit with bases is valid or not with the bases it is checked with; the snapshot's own
    flag records its first check); without bases the snapshot's flag decides.
    """
    snapshot = session.get(Snapshot, snapshot_id)
    if snapshot is None or snapshot.repository_id != repository_id:
        raise InvalidSnapshotError(
            f"snapshot {snapshot_id} is not a snapshot of repository {repository_id}"
        )
    if not (snapshot.valid if valid is None or not layers else valid):
        raise InvalidSnapshotError(
            f"commit {snapshot.commit_sha} failed validation and cannot become active"
        )
    now = now or utcnow()
    _ensure(session, repository_id, branch)
    current = get_branch(session, repository_id, branch)
    assert current is not None
    wanted = layers_json(layers)
    if current.active_snapshot_id == snapshot_id and (current.active_layers or None) == wanted:
        return False
    session.execute(
        update(TrackedBranch)
        .where(_key(repository_id, branch))
        .values(
            active_snapshot_id=snapshot_id,
            active_layers=wanted,
            active_head_at=now,
            activated_at=now,
            updated_at=now,
        )
    )
    bump_generation(session)
    return True


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
