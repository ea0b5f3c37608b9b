"""Migrations on both engines: up, down to base, up again, no drift; start-up schema checks;
the `db` commands through the real command line."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, inspect, select

from github_app.store import migrate
from github_app.store.db import Database
from github_app.store.errors import DatabaseUnavailableError, SchemaError
from github_app.store.models import ActivationGeneration, Base
from tests.harness import guildprompts


def _drift(database: Database, metadata: MetaData) -> list:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, metadata)


def _tables(database: Database) -> set[str]:
    return set(inspect(database.engine).get_table_names()) - {"alembic_version"}


def test_every_migration_up_down_up_without_drift(database_url: str) -> None:
    database = Database(database_url)
    try:
        migrate.upgrade(database.engine)
        assert migrate.schema_status(database.engine).up_to_date
        assert _tables(database) == set(Base.metadata.tables)
        assert _drift(database, Base.metadata) == []

        # The comparison really looks: a model the migrations lack is reported.
        extended = MetaData()
        for table in Base.metadata.tables.values():
            table.to_metadata(extended)
        Table("not_migrated", extended, Column("id", Integer, primary_key=True))
        assert [diff[0] for diff in _drift(database, extended)] == ["add_table"]

        migrate.downgrade(database.engine, "base")
        assert _tables(database) == set()
        assert migrate.schema_status(database.engine).current is None

        migrate.upgrade(database.engine)
        assert _drift(database, Base.metadata) == []
        with database.session() as session:
            assert session.scalar(select(ActivationGeneration.value)) == 0
    finally:
        database.dispose()


def test_sqlite_is_upgraded_at_start(sqlite_url: str) -> None:
    database = migrate.open_database(sqlite_url)
    try:
        assert migrate.schema_status(database.engine).up_to_date
        with database.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        database.dispose()


@pytest.mark.postgres
def test_postgres_behind_head_refuses_to_start_with_the_command(postgres_url: str) -> None:
    with pytest.raises(SchemaError, match="run `guildprompts db upgrade`"):
        migrate.open_database(postgres_url)
    database = Database(postgres_url)
    try:
        assert _tables(database) == set()  # nothing was migrated behind the operator's back
    finally:
        database.dispose()


def test_unknown_revision_is_reported(sqlite_url: str) -> None:
    database = migrate.open_database(sqlite_url)
    try:
        with database.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'f00dcafe'")
        with pytest.raises(SchemaError, match="newer version migrated it"):
            migrate.ensure_schema(database.engine)
        with pytest.raises(SchemaError, match="migration refused"):
            migrate.downgrade(database.engine, "no-such-revision")
    finally:
        database.dispose()


def test_unreachable_database_is_a_clear_error() -> None:
    database = Database("postgresql+psycopg://someone:hunter2@127.0.0.1:1/nothing")
    try:
        with pytest.raises(DatabaseUnavailableError) as caught:
            migrate.schema_status(database.engine)
        assert "127.0.0.1" in str(caught.value)
        assert "hunter2" not in str(caught.value)
    finally:
        database.dispose()


def test_db_commands(sqlite_url: str, tmp_path) -> None:
    # A read-only command creates nothing: no database file, no key file.
    missing = guildprompts("db", "current", database_url=sqlite_url, cwd=str(tmp_path))
    assert missing.returncode == 1
    assert missing.stderr == (
        f"guildprompts: no database at {tmp_path / 'guildprompts.db'} (nothing was created): "
        "`guildprompts serve` or `guildprompts db upgrade` creates it\n"
    )
    assert list(tmp_path.iterdir()) == []

    empty = Database(sqlite_url)
    empty.engine.connect().close()  # an empty database file
    empty.dispose()
    behind = guildprompts("db", "current", database_url=sqlite_url, cwd=str(tmp_path))
    assert behind.returncode == 1
    assert "base (empty)" in behind.stdout and "guildprompts db upgrade" in behind.stdout

    upgraded = guildprompts("db", "upgrade", database_url=sqlite_url, cwd=str(tmp_path))
    assert upgraded.returncode == 0, upgraded.stderr
    assert migrate.head_revision() in upgraded.stdout

    current = guildprompts("db", "current", database_url=sqlite_url, cwd=str(tmp_path))
    assert current.returncode == 0 and "up to date" in current.stdout

    down = guildprompts("db", "downgrade", "base", database_url=sqlite_url, cwd=str(tmp_path))
    assert down.returncode == 0 and "base (empty)" in down.stdout

    bad = guildprompts("db", "downgrade", "zzz", database_url=sqlite_url, cwd=str(tmp_path))
    assert bad.returncode == 1
    assert bad.stderr.startswith("guildprompts: migration refused")
    assert "Traceback" not in bad.stderr


def test_db_command_on_unreachable_database(tmp_path) -> None:
    result = guildprompts(
        "db", "upgrade", database_url="postgresql://u:hunter2@127.0.0.1:1/x", cwd=str(tmp_path)
    )
    assert result.returncode == 1
    assert "did not answer" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
