"""Statements whose spelling differs between SQLite and PostgreSQL, written once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, Insert, Table, Update, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def dialect_of(session: Session) -> str:
    return session.get_bind().dialect.name


def insert_ignoring_conflicts(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    conflict_columns: Sequence[str],
) -> int:
    """INSERT ... ON CONFLICT DO NOTHING; returns how many rows were actually inserted.

    Race-safe on both engines: a concurrent insert of the same key makes this one a no-op
    (PostgreSQL waits for the other transaction, SQLite serialises writers) instead of an error.
    """
    if isinstance(rows, Mapping):
        rows = [rows]
    if not rows:
        return 0
    module = postgresql if dialect_of(session) == "postgresql" else sqlite
    # Counted through RETURNING: drivers report no reliable rowcount for this statement.
    statement: Insert = (
        module.insert(table)
        .on_conflict_do_nothing(index_elements=list(conflict_columns))
        .returning(*table.primary_key.columns)
    )
    return sum(len(session.execute(statement, dict(row)).all()) for row in rows)


def affected_rows(session: Session, statement: Update | Delete) -> int:
    """Run an UPDATE or DELETE and return how many rows it matched (the optimistic checks' test).

    Session.execute is typed as returning a plain Result; a DML statement gives a CursorResult.
    """
    return cast(CursorResult[Any], session.execute(statement)).rowcount


def upsert(session: Session, model: Any, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    """Insert the row named by `key`, or update it to `values`: race-safe on both engines (two
    requests for one key never fail on the unique key; the later write wins)."""
    table = model.__table__
    if not insert_ignoring_conflicts(session, table, {**key, **values}, list(key)):
        conditions = [getattr(model, name) == value for name, value in key.items()]
        # An ORM update: objects of that row already in the session see the new values.
        session.execute(update(model).where(*conditions).values(**values))
