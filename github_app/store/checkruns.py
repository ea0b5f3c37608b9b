"""Check runs posted to GitHub, so a rerun or a later event can find and complete them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from github_app.store._sql import affected_rows, insert_ignoring_conflicts
from github_app.store.errors import NotFoundError
from github_app.store.models import CheckRun, utcnow


def record_check_run(
    session: Session,
    repository_id: int,
    head_sha: str,
    check_run_id: int,
    *,
    status: str = "in_progress",
    now: datetime | None = None,
) -> CheckRun:
    """Remember a check run GitHub created (idempotent on its id: handlers may run twice)."""
    now = now or utcnow()
    row = {
        "repository_id": repository_id,
        "head_sha": head_sha,
        "check_run_id": check_run_id,
        "status": status,
        "created_at": now,
        "updated_at": now,
    }
    insert_ignoring_conflicts(session, CheckRun.__table__, row, ["check_run_id"])
    return _get(session, check_run_id)


def complete_check_run(
    session: Session, check_run_id: int, conclusion: str, now: datetime | None = None
) -> CheckRun:
    matched = affected_rows(
        session,
        update(CheckRun)
        .where(CheckRun.check_run_id == check_run_id)
        .values(status="completed", conclusion=conclusion, updated_at=now or utcnow()),
    )
    if matched != 1:
        raise NotFoundError(f"check run {check_run_id} was never recorded")
    return _get(session, check_run_id)


def check_runs_for(session: Session, repository_id: int, head_sha: str) -> list[CheckRun]:
    """Every check run posted on a commit, oldest first."""
    query = (
        select(CheckRun)
        .where(CheckRun.repository_id == repository_id, CheckRun.head_sha == head_sha)
        .order_by(CheckRun.id)
    )
    return list(session.scalars(query))


def _get(session: Session, check_run_id: int) -> CheckRun:
    query = select(CheckRun).where(CheckRun.check_run_id == check_run_id)
    return session.scalars(query.execution_options(populate_existing=True)).one()
