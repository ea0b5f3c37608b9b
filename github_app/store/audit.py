"""Append-only logs: the audit trail of configuration changes and the log of syncs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from github_app.store.models import AuditEntry, SyncLogEntry, utcnow


def record_audit(
    session: Session,
    actor: str,
    guild_id: str,
    action: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    now: datetime | None = None,
) -> AuditEntry:
    """One configuration change. `before`/`after` must hold no secret (say `has_token`)."""
    entry = AuditEntry(
        at=now or utcnow(),
        actor=actor,
        guild_id=guild_id,
        action=action,
        before=dict(before) if before is not None else None,
        after=dict(after) if after is not None else None,
    )
    session.add(entry)
    session.flush()
    return entry


def audit_entries(
    session: Session, guild_id: str | None = None, limit: int = 100
) -> list[AuditEntry]:
    """Newest first, for one guild or all."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if guild_id is not None:
        query = query.where(AuditEntry.guild_id == guild_id)
    return list(session.scalars(query))


def record_sync(
    session: Session,
    repository_id: int,
    *,
    trigger: str,
    outcome: str,
    commit_sha: str | None = None,
    branch: str | None = None,
    files_fetched: int = 0,
    api_calls: int = 0,
    duration_ms: int = 0,
    message: str = "",
    now: datetime | None = None,
) -> SyncLogEntry:
    """One sync attempt: what triggered it, what it cost, how it ended."""
    entry = SyncLogEntry(
        at=now or utcnow(),
        repository_id=repository_id,
        branch=branch,
        commit_sha=commit_sha,
        trigger=trigger,
        files_fetched=files_fetched,
        api_calls=api_calls,
        duration_ms=duration_ms,
        outcome=outcome,
        message=message,
    )
    session.add(entry)
    session.flush()
    return entry


def recent_syncs(
    session: Session, repository_id: int | None = None, limit: int = 50
) -> list[SyncLogEntry]:
    """Newest first, for one repository or all."""
    query = select(SyncLogEntry).order_by(SyncLogEntry.id.desc()).limit(limit)
    if repository_id is not None:
        query = query.where(SyncLogEntry.repository_id == repository_id)
    return list(session.scalars(query))
