"""Engine and session factory: one place that knows how to talk to SQLite and PostgreSQL.

SQLite (one instance, embedded) runs in WAL mode with foreign keys on, a generous busy timeout,
and every transaction opened with `BEGIN IMMEDIATE`: writers queue on the file lock at the start
of a transaction instead of failing half-way with "database is locked", so a read followed by a
write in one transaction is safe (the claim of a delivery, the check of a version). PostgreSQL
(several processes) goes through psycopg 3, with connections checked before use.

The SQLite file holds private prompt content: it is created 0600 before SQLite opens it (SQLite
gives its -wal and -shm files the database file's mode), and an existing one is tightened.
A caller that must answer in time (webhook intake: GitHub gives up after 10 s) opens its
transaction with `session(wait=...)`: while another writer holds SQLite's lock longer than that,
it gets `DatabaseUnavailableError` instead of queueing for the 30 s busy timeout.

Data-access functions never commit: the `with database.session() as session:` block is the
transaction, so several calls can form one atomic unit, and an exception rolls everything back.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from github_app.store.errors import DatabaseUnavailableError, StoreError

SQLITE_BUSY_TIMEOUT_SECONDS = 30.0


def normalize_url(url: str) -> URL:
    """Parse DATABASE_URL; `postgres://` and `postgresql://` mean psycopg 3, the driver we ship."""
    try:
        parsed = make_url(url.strip())
    except ArgumentError:
        raise StoreError(
            "DATABASE_URL is not a database URL (expected sqlite:///path.db or "
            "postgresql+psycopg://user@host/db)"
        ) from None
    if parsed.drivername in {"postgres", "postgresql"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in {"sqlite", "postgresql"}:
        raise StoreError(
            f"DATABASE_URL: {parsed.get_backend_name()} is not supported "
            "(use sqlite:///path.db or postgresql+psycopg://...)"
        )
    return parsed


def display_url(url: str | URL) -> str:
    """The URL without its password, for messages and logs."""
    parsed = url if isinstance(url, URL) else make_url(url)
    return parsed.render_as_string(hide_password=True)


def make_engine(url: str | URL, **engine_options: Any) -> Engine:
    """An engine configured for guildprompts' concurrency needs on either database."""
    parsed = normalize_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() == "sqlite":
        _private_file(parsed.database)
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
        engine = create_engine(parsed, connect_args=connect_args, **engine_options)
        _configure_sqlite(engine)
        return engine
    return create_engine(parsed, pool_pre_ping=True, **engine_options)


def _private_file(database: str | None) -> None:
    """Create the SQLite file (and tighten existing ones) readable by this user only."""
    if database in {None, "", ":memory:"} or str(database).startswith("file:"):
        return
    path = str(database)
    if os.path.dirname(path) and not os.path.isdir(os.path.dirname(path)):
        return  # SQLite reports the missing directory itself
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    for name in (path, f"{path}-wal", f"{path}-shm"):
        try:
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
        except FileNotFoundError:
            continue


def _configure_sqlite(engine: Engine) -> None:
    memory = engine.url.database in {None, "", ":memory:"}

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 module (it would skip it before SELECTs).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """An engine plus its session factory; build one per process and share it."""

    def __init__(self, url: str | URL | Engine, **engine_options: Any) -> None:
        self.engine = url if isinstance(url, Engine) else make_engine(url, **engine_options)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite lets one transaction write at a time anyway (BEGIN IMMEDIATE); queueing this
        # process's threads on a lock hands the file over at once, where SQLite's busy handler
        # would sleep 1..100 ms between retries (the webhook acknowledgement's tail latency).
        self._turn: AbstractContextManager[Any] = (
            threading.RLock() if self.is_sqlite else nullcontext()
        )

    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def display_url(self) -> str:
        return display_url(self.engine.url)

    @contextmanager
    def session(self, *, wait: float | None = None) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises.

        Objects stay readable after the block (no expiry on commit), so a function can return
        the rows it wrote. Connection failures become `DatabaseUnavailableError`, and so does
        SQLite's write lock staying taken longer than `wait` seconds (when given).
        """
        if wait is not None and self.is_sqlite:
            with self._sqlite_session(wait) as session:
                yield session
            return
        try:
            with self._turn, self._sessions.begin() as session:
                yield session
        except (OperationalError, InterfaceError) as exc:
            raise unavailable(self.engine.url, exc) from exc

    @contextmanager
    def _sqlite_session(self, wait: float) -> Iterator[Session]:
        started = time.monotonic()
        if not self._turn.acquire(timeout=wait):  # type: ignore[attr-defined]
            raise DatabaseUnavailableError(
                f"the database at {self.display_url} stayed locked for {wait:g} s"
            )
        try:
            left = max(wait - (time.monotonic() - started), 0.001)
            with self.engine.connect() as connection:
                raw = connection.connection.dbapi_connection
                assert raw is not None
                raw.execute(f"PRAGMA busy_timeout={int(left * 1000)}")
                try:
                    with Session(connection, expire_on_commit=False) as session, session.begin():
                        yield session
                finally:
                    raw.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
        except (OperationalError, InterfaceError) as exc:
            raise unavailable(self.engine.url, exc) from exc
        finally:
            self._turn.release()  # type: ignore[attr-defined]

    def dispose(self) -> None:
        """Close pooled connections (tests, shutdown, after fork)."""
        self.engine.dispose()


def unavailable(url: URL, error: OperationalError | InterfaceError) -> DatabaseUnavailableError:
    """The error to raise when the database does not answer: URL without password, cause."""
    cause = error.orig if error.orig is not None else error
    lines = str(cause).strip().splitlines()
    reason = lines[0] if lines else type(cause).__name__
    return DatabaseUnavailableError(f"the database at {display_url(url)} did not answer ({reason})")
