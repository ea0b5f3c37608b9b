"""`guildprompts db ...`, `guildprompts keys ...` and `guildprompts prune`.

Registration only adds arguments; SQLAlchemy, Alembic and cryptography are imported when a
command runs. Every expected failure (bad configuration, unreachable database, schema behind,
undecryptable secrets) prints one line saying what to do and exits non-zero.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Command = Callable[[argparse.Namespace], int]


def register(subparsers: Any) -> None:
    db = subparsers.add_parser(
        "db", help="Database schema: upgrade, downgrade, show the current revision."
    )
    actions = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = actions.add_parser("upgrade", help="Migrate the database to the newest schema.")
    up.add_argument("revision", nargs="?", default="head", help="target revision (default head)")
    up.set_defaults(run=_guarded(_db_upgrade))
    down = actions.add_parser("downgrade", help="Migrate the database down to REV.")
    down.add_argument("revision", metavar="REV", help='target revision ("base": no tables)')
    down.set_defaults(run=_guarded(_db_downgrade))
    current = actions.add_parser(
        "current", help="Show the database's revision; exit 1 unless it is the newest."
    )
    current.set_defaults(run=_guarded(_db_current))

    keys = subparsers.add_parser("keys", help="Encryption keys of stored secrets.")
    key_actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    generate = key_actions.add_parser("generate", help="Print a new encryption key.")
    generate.set_defaults(run=_guarded(_keys_generate))
    rotate = key_actions.add_parser(
        "rotate", help="Re-encrypt every stored secret under the first key of ENCRYPTION_KEYS."
    )
    rotate.set_defaults(run=_guarded(_keys_rotate))

    prune = subparsers.add_parser(
        "prune",
        help="Delete finished deliveries, sync logs and inactive snapshots older than DAYS.",
    )
    prune.add_argument(
        "--older-than",
        type=_days,
        default=None,
        metavar="DAYS",
        help="age in days (default: RETENTION_DAYS)",
    )
    prune.set_defaults(run=_guarded(_prune))


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        days = -1
    if days < 0:
        raise argparse.ArgumentTypeError("expected a whole number of days, 0 or more")
    return days


def _guarded(command: Command) -> Command:
    """Turn the errors a person can act on into one line on stderr and exit status 1."""

    def run(args: argparse.Namespace) -> int:
        from github_app.secrets import SecretsError
        from github_app.store.errors import StoreError

        try:
            return command(args)
        except (StoreError, SecretsError) as exc:
            print(f"guildprompts: {exc}", file=sys.stderr)
            return 1

    return run


@contextmanager
def _opened_database(*, read_only: bool = False) -> Iterator[Any]:
    """The configured database; `read_only` refuses to create an SQLite file that is missing."""
    from pathlib import Path

    from github_app.settings import Settings
    from github_app.store.db import Database, normalize_url
    from github_app.store.errors import StoreError

    url = Settings.from_env().database_url
    parsed = normalize_url(url)
    path = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if read_only and path and path != ":memory:" and not Path(path).exists():
        raise StoreError(
            f"no database at {Path(path).resolve()} (nothing was created): "
            "`guildprompts serve` or `guildprompts db upgrade` creates it"
        )
    database = Database(url)
    try:
        yield database
    finally:
        database.dispose()


def _db_upgrade(args: argparse.Namespace) -> int:
    return _migrate(args.revision, downgrade=False)


def _db_downgrade(args: argparse.Namespace) -> int:
    return _migrate(args.revision, downgrade=True)


def _migrate(revision: str, *, downgrade: bool) -> int:
    """Move the schema to `revision` (either way) and say where it ended."""
    from github_app.store import migrate

    move = migrate.downgrade if downgrade else migrate.upgrade
    with _opened_database() as database:
        move(database.engine, revision)
        status = migrate.schema_status(database.engine)
    print(f"database {database.display_url} is at revision {status.current or 'base (empty)'}")
    return 0


def _db_current(_args: argparse.Namespace) -> int:
    from github_app.store import migrate

    with _opened_database(read_only=True) as database:
        status = migrate.schema_status(database.engine)
    print(_describe(status))
    return 0 if status.up_to_date else 1


def _describe(status: Any) -> str:
    from github_app.store.migrate import UPGRADE_COMMAND

    current = status.current or "base (empty)"
    if status.up_to_date:
        return f"{current} (head: up to date)"
    if not status.known:
        return f"{current} (unknown to this guildprompts, newest known: {status.head})"
    return f"{current} (behind head {status.head}: run `{UPGRADE_COMMAND}`)"


def _keys_generate(_args: argparse.Namespace) -> int:
    from github_app.secrets import generate_key

    print(generate_key())
    print(
        "Put it first in ENCRYPTION_KEYS, keep the previous keys after it, run "
        "`guildprompts keys rotate`, then drop the previous keys.",
        file=sys.stderr,
    )
    return 0


def _keys_rotate(_args: argparse.Namespace) -> int:
    from github_app.secrets import load_vault
    from github_app.settings import Settings
    from github_app.store.credentials import rotate_secrets
    from github_app.store.migrate import ensure_schema

    vault = load_vault(Settings.from_env())
    with _opened_database() as database:
        ensure_schema(database.engine)
        with database.session() as session:
            report = rotate_secrets(session, vault)
    print(f"re-encrypted {report.rotated} secret(s) under the first key")
    for label in report.failed:
        print(
            f"guildprompts: could not decrypt the stored {label}; left as it was", file=sys.stderr
        )
    if report.failed:
        print(
            "guildprompts: add the key those values were encrypted with to ENCRYPTION_KEYS "
            "(after the first) and run `guildprompts keys rotate` again",
            file=sys.stderr,
        )
        return 1
    return 0


def _prune(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from github_app.settings import Settings
    from github_app.store.migrate import ensure_schema
    from github_app.store.retention import prune

    settings = Settings.from_env()
    days = settings.retention_days if args.older_than is None else args.older_than
    with _opened_database() as database:
        ensure_schema(database.engine)
        with database.session() as session:
            report = prune(session, timedelta(days=days))
    print(
        f"pruned (older than {days} days): {report.deliveries} deliveries, "
        f"{report.sync_logs} sync log entries, {report.check_runs} check runs, "
        f"{report.snapshots} snapshots, {report.blobs} blobs"
    )
    return 0
