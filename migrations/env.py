"""Alembic environment: runs on the connection guildprompts hands over, or on DATABASE_URL.

`github_app.store.migrate` passes its own open connection in `config.attributes["connection"]`
(with the engine's SQLite pragmas and locking), so migrations and the application see the
database the same way. The `alembic` command line falls back to DATABASE_URL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from github_app.store.models import Base

config = context.config


def _database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from github_app.settings import Settings

    return Settings.from_env().database_url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        context.configure(url=_database_url(), target_metadata=Base.metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from github_app.store.db import make_engine

    engine = make_engine(_database_url())
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


main()
