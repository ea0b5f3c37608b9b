"""Retention: forget old finished work, never what is served.

Pruned: deliveries finished (done or failed) before the cutoff, sync log entries and completed
check runs older than it, and snapshots created before it that no branch has active and no
guild has pinned. Blobs no
snapshot uses any more go too, if they are older than the cutoff themselves, so a sync that
stored its blobs but has not yet written its snapshot keeps them. The audit log and the guilds'
activation history (trimmed by count, `HISTORY_KEEP`) are kept.
An active snapshot cannot be deleted at all: the branch pointer's foreign key refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, exists
from sqlalchemy.orm import Session

from github_app.store import layers
from github_app.store._sql import affected_rows
from github_app.store.models import (
    Blob,
    CheckRun,
    DeliveryRow,
    DeliveryState,
    GuildPin,
    Snapshot,
    SnapshotFile,
    SyncLogEntry,
    TrackedBranch,
    utcnow,
)


@dataclass(frozen=True)
class PruneReport:
    deliveries: int
    sync_logs: int
    check_runs: int
    snapshots: int
    blobs: int


def prune(session: Session, older_than: timedelta, now: datetime | None = None) -> PruneReport:
    """Delete what is older than `older_than` and no longer needed; returns the counts."""
    if older_than < timedelta(0):
        raise ValueError("the retention age cannot be negative")
    cutoff = (now or utcnow()) - older_than
    deliveries = affected_rows(
        session,
        delete(DeliveryRow).where(
            DeliveryRow.state.in_([DeliveryState.DONE, DeliveryState.FAILED]),
            DeliveryRow.finished_at < cutoff,
        ),
    )
    sync_logs = affected_rows(session, delete(SyncLogEntry).where(SyncLogEntry.at < cutoff))
    check_runs = affected_rows(
        session,
        delete(CheckRun).where(CheckRun.status == "completed", CheckRun.updated_at < cutoff),
    )
    active = exists().where(TrackedBranch.active_snapshot_id == Snapshot.id)
    pinned = exists().where(GuildPin.snapshot_id == Snapshot.id)
    condition = [Snapshot.created_at < cutoff, ~active, ~pinned]
    kept = sorted(layers.base_snapshot_ids(session))  # served as some branch's or pin's base
    if kept:
        condition.append(Snapshot.id.not_in(kept))
    snapshots = affected_rows(session, delete(Snapshot).where(*condition))
    used = exists().where(SnapshotFile.blob_sha == Blob.sha)
    blobs = affected_rows(session, delete(Blob).where(Blob.created_at < cutoff, ~used))
    return PruneReport(
        deliveries=deliveries,
        sync_logs=sync_logs,
        check_runs=check_runs,
        snapshots=snapshots,
        blobs=blobs,
    )
