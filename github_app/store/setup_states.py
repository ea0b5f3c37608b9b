"""The /setup flow's one-time `state` values, shared by every web process through the database.

Only a SHA-256 of each state is stored; a state works once (the delete that consumes it is the
check) and until it expires. Issuing one also deletes the expired ones, so the table stays small.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from github_app.store._sql import affected_rows
from github_app.store.models import SetupState, utcnow


def _digest(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def issue_state(session: Session, ttl: timedelta, now: datetime | None = None) -> str:
    """A new random state, valid for `ttl`."""
    now = now or utcnow()
    session.execute(delete(SetupState).where(SetupState.expires_at <= now))
    state = secrets.token_urlsafe(32)
    session.add(SetupState(digest=_digest(state), expires_at=now + ttl))
    return state


def consume_state(session: Session, state: str, now: datetime | None = None) -> bool:
    """True once for an issued state that has not expired; it is gone afterwards either way."""
    if not state or len(state) > 256:
        return False
    now = now or utcnow()
    taken = delete(SetupState).where(
        SetupState.digest == _digest(state), SetupState.expires_at > now
    )
    return affected_rows(session, taken) == 1
