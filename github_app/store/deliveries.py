"""The durable queue of webhook deliveries: store once, claim, finish, retry, coalesce.

A delivery is a row from the moment it is acknowledged. Workers claim one at a time with a lease:
PostgreSQL hands rows out with `FOR UPDATE SKIP LOCKED`, so concurrent workers never wait on or
receive the same delivery; SQLite serialises writers (`BEGIN IMMEDIATE`) and claims with a
conditional UPDATE. A claim whose lease expired (the worker crashed) is handed out again, so
processing is at-least-once and handlers must be idempotent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from github_app.store._sql import affected_rows, dialect_of, insert_ignoring_conflicts
from github_app.store.errors import NotFoundError
from github_app.store.models import DeliveryRow, DeliveryState, utcnow

DEFAULT_LEASE = timedelta(minutes=5)
WORK_CHANNEL = "guildprompts_work"  # NOTIFYed (PostgreSQL) at the commit of new work
_GUID_MAX = 64


def record_delivery(
    session: Session,
    guid: str,
    event: str,
    action: str | None,
    installation_id: int | None,
    repository_id: int | None,
    payload: bytes | Mapping[str, Any],
    *,
    ref: str | None = None,
    received_at: datetime | None = None,
) -> bool:
    """Store a delivery before it is acknowledged; False when this GUID is already stored.

    `payload` is the exact body received (bytes) or its parsed form. `ref` is the pushed ref of
    a `push` event ("refs/heads/main"), used to coalesce pushes to one branch.
    """
    guid = guid.strip()
    if not guid or len(guid) > _GUID_MAX:
        raise ValueError(f"a delivery GUID must be 1 to {_GUID_MAX} characters")
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    row = {
        "guid": guid,
        "event": event,
        "action": action,
        "installation_id": installation_id,
        "repository_id": repository_id,
        "ref": ref,
        "payload": body,
        "received_at": received_at or utcnow(),
        "state": DeliveryState.PENDING.value,
        "attempts": 0,
    }
    stored = insert_ignoring_conflicts(session, DeliveryRow.__table__, row, ["guid"]) == 1
    if stored and dialect_of(session) == "postgresql":  # wakes workers listening elsewhere
        session.execute(select(func.pg_notify(WORK_CHANNEL, "")))
    return stored


def get_delivery(session: Session, guid: str) -> DeliveryRow | None:
    return session.scalar(select(DeliveryRow).where(DeliveryRow.guid == guid))


def claim_next(
    session: Session,
    worker_id: str,
    now: datetime | None = None,
    *,
    lease: timedelta = DEFAULT_LEASE,
) -> DeliveryRow | None:
    """Take the oldest delivery that is due, or whose previous claim's lease expired.

    The returned delivery is PROCESSING, claimed by `worker_id` until `now + lease`, with
    `attempts` counting this claim. Commit right away and process outside the transaction (on
    PostgreSQL the row stays locked until the commit), then record the outcome with
    `mark_done` / `mark_retry` / `mark_failed` in another. None when nothing is due.
    """
    now = now or utcnow()
    due = or_(
        and_(
            DeliveryRow.state == DeliveryState.PENDING,
            or_(DeliveryRow.next_attempt_at.is_(None), DeliveryRow.next_attempt_at <= now),
        ),
        and_(DeliveryRow.state == DeliveryState.PROCESSING, DeliveryRow.lease_expires_at < now),
    )
    claim = {
        "state": DeliveryState.PROCESSING,
        "claimed_by": worker_id,
        "lease_expires_at": now + lease,
        "attempts": DeliveryRow.attempts + 1,
    }
    oldest_due = select(DeliveryRow.id).where(due).order_by(DeliveryRow.id).limit(1)
    if dialect_of(session) == "postgresql":
        oldest_due = oldest_due.with_for_update(skip_locked=True)
    delivery_id = session.scalar(oldest_due)
    if delivery_id is None:
        return None
    # Conditional, so the claim stays correct even if the row changed since it was read.
    claimed = affected_rows(
        session, update(DeliveryRow).where(DeliveryRow.id == delivery_id, due).values(**claim)
    )
    if claimed != 1:
        return None
    return session.get(DeliveryRow, delivery_id, populate_existing=True)


def mark_done(session: Session, delivery_id: int, now: datetime | None = None) -> None:
    """Processing finished (including "nothing to do", e.g. a coalesced older push)."""
    _finish(session, delivery_id, DeliveryState.DONE, None, now)


def mark_failed(
    session: Session, delivery_id: int, error: str, now: datetime | None = None
) -> None:
    """Give up on a delivery; it stays visible to operators with its error."""
    _finish(session, delivery_id, DeliveryState.FAILED, error, now)


def mark_retry(session: Session, delivery_id: int, error: str, next_attempt_at: datetime) -> None:
    """A transient failure: the delivery is due again at `next_attempt_at` (backoff)."""
    _set(
        session,
        delivery_id,
        state=DeliveryState.PENDING,
        last_error=error,
        next_attempt_at=next_attempt_at,
        claimed_by=None,
        lease_expires_at=None,
    )


def _finish(
    session: Session,
    delivery_id: int,
    state: DeliveryState,
    error: str | None,
    now: datetime | None,
) -> None:
    values: dict[str, Any] = {
        "state": state,
        "finished_at": now or utcnow(),
        "claimed_by": None,
        "lease_expires_at": None,
    }
    if error is not None:
        values["last_error"] = error
    _set(session, delivery_id, **values)


def _set(session: Session, delivery_id: int, **values: Any) -> None:
    matched = affected_rows(
        session, update(DeliveryRow).where(DeliveryRow.id == delivery_id).values(**values)
    )
    if matched != 1:
        raise NotFoundError(f"delivery {delivery_id} does not exist (pruned?)")


def has_newer_push(session: Session, repository_id: int, ref: str, than_delivery_id: int) -> bool:
    """Is a later push to the same ref stored? Then this one need not be synced on its own."""
    newer = select(DeliveryRow.id).where(
        DeliveryRow.event == "push",
        DeliveryRow.repository_id == repository_id,
        DeliveryRow.ref == ref,
        DeliveryRow.id > than_delivery_id,
    )
    return bool(session.scalar(select(exists(newer))))


@dataclass(frozen=True)
class QueueStats:
    pending: int  # waiting, including those backing off
    processing: int
    failed: int
    oldest_pending_age: float | None  # seconds since the oldest pending one was received


def queue_stats(session: Session, now: datetime | None = None) -> QueueStats:
    """Queue depth and age for metrics, in one query."""
    now = now or utcnow()
    counts = dict(
        session.execute(
            select(DeliveryRow.state, func.count())
            .where(
                DeliveryRow.state.in_(
                    [DeliveryState.PENDING, DeliveryState.PROCESSING, DeliveryState.FAILED]
                )
            )
            .group_by(DeliveryRow.state)
        ).all()
    )
    oldest = session.scalar(
        select(DeliveryRow.received_at)
        .where(DeliveryRow.state == DeliveryState.PENDING)
        .order_by(DeliveryRow.id)
        .limit(1)
    )
    return QueueStats(
        pending=counts.get(DeliveryState.PENDING, 0),
        processing=counts.get(DeliveryState.PROCESSING, 0),
        failed=counts.get(DeliveryState.FAILED, 0),
        oldest_pending_age=None if oldest is None else max(0.0, (now - oldest).total_seconds()),
    )
