"""Migrations from code: upgrade, downgrade, and the start-up check of the schema revision.

The Alembic configuration is built here rather than read from an .ini file, so the commands work
from an installed package in any working directory. An embedded SQLite database is upgraded by
the service itself; a shared PostgreSQL database is upgraded only by an operator
(`guildprompts db upgrade`), because other processes may still run the old code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import InterfaceError, OperationalError

import migrations
from github_app.store.db import Database, unavailable
from github_app.store.errors import SchemaError

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent
UPGRADE_COMMAND = "guildprompts db upgrade"
# Any constant works: it only keeps two `db upgrade` runs on one PostgreSQL from interleaving.
_PG_MIGRATION_LOCK = 7_130_402_211


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None  # None: an empty database
    head: str
    known: bool  # False: the database was migrated by a newer guildprompts

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations, optionally bound to a connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _script() -> ScriptDirectory:
    """The packaged migrations, read once: they cannot change under a running process, and
    reading them executes every revision file (most of a /readyz probe's time otherwise)."""
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = _script().get_current_head()
    assert head is not None, "the migrations directory has no revision"
    return head


def schema_status(engine: Engine) -> SchemaStatus:
    """Where the database stands relative to the migrations this code ships."""
    script = _script()
    with _reachable(engine), engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    known = current is None or _is_known(script, current)
    return SchemaStatus(current=current, head=head_revision(), known=known)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate up to `revision`, in one transaction (both engines have transactional DDL)."""
    _run(engine, lambda config: command.upgrade(config, revision))


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate down to `revision` ("base" empties the database of guildprompts' tables)."""
    _run(engine, lambda config: command.downgrade(config, revision))


def ensure_schema(engine: Engine, auto_upgrade: bool | None = None) -> SchemaStatus:
    """Make sure the schema is at head before a service starts.

    `auto_upgrade` defaults to True on SQLite (one embedded instance owns the file) and False
    on PostgreSQL, where a database behind head raises `SchemaError` naming the command to run.
    """
    if auto_upgrade is None:
        auto_upgrade = engine.dialect.name == "sqlite"
    status = schema_status(engine)
    if status.up_to_date:
        return status
    if not status.known:
        raise SchemaError(
            f"the database schema is at revision {status.current}, which this version of "
            "guildprompts does not know (a newer version migrated it): upgrade guildprompts"
        )
    if not auto_upgrade:
        where = "empty" if status.current is None else f"at revision {status.current}"
        raise SchemaError(
            f"the database schema is {where}, this version of guildprompts needs "
            f"{status.head}: run `{UPGRADE_COMMAND}`"
        )
    upgrade(engine)
    return schema_status(engine)


@contextmanager
def _reachable(engine: Engine) -> Iterator[None]:
    """Connection failures become `DatabaseUnavailableError` (a message, not a traceback)."""
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        raise unavailable(engine.url, exc) from exc


def open_database(url: str, *, auto_upgrade: bool | None = None) -> Database:
    """A `Database` whose schema is at head (see `ensure_schema`): what services start with."""
    database = Database(url)
    try:
        ensure_schema(database.engine, auto_upgrade)
    except BaseException:
        database.dispose()
        raise
    return database


def _run(engine: Engine, action: Callable[[Config], object]) -> None:
    with _reachable(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            lock = text("SELECT pg_advisory_xact_lock(:key)")
            connection.execute(lock, {"key": _PG_MIGRATION_LOCK})
        try:
            action(alembic_config(connection))
        except CommandError as exc:
            raise SchemaError(f"migration refused: {exc}") from None


def _is_known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False
