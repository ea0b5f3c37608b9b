"""Snapshots on both engines: content-addressed blobs, immutable snapshots, an activation that
never goes backwards, purge on lost access, and retention that never touches what is served."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from github_app.store import (
    branches,
    deliveries,
    installations,
    retention,
    serving,
    snapshots,
)
from github_app.store.db import Database
from github_app.store.errors import ImmutableRowError, InvalidSnapshotError
from github_app.store.migrate import open_database
from github_app.store.models import Blob, BranchStatus, Snapshot
from tests.harness import guildprompts
from tests.store_helpers import save_binding

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REPO = 700


@pytest.fixture
def db(db: Database) -> Database:
    """The shared database, holding the repository these tests snapshot."""
    database = db
    with database.session() as session:
        installations.upsert_installation(session, 1, "owner")
        installations.upsert_repository(
            session, REPO, "owner/prompts", private=True, default_branch="main", installation_id=1
        )
    return database


def _snapshot(
    db: Database, sha: str, files: dict[str, bytes], *, valid: bool = True, at: datetime = T0
) -> int:
    """Store a commit's files the way a sync does: missing blobs, then the snapshot."""
    ids = {path: snapshots.git_blob_sha(content) for path, content in files.items()}
    with db.session() as session:
        missing = snapshots.missing_blobs(session, ids.values())
        snapshots.store_blobs(
            session, {ids[p]: c for p, c in files.items() if ids[p] in missing}, now=at
        )
        return snapshots.create_snapshot(
            session,
            REPO,
            sha,
            ids,
            valid=valid,
            diagnostics=[] if valid else [{"severity": "error", "path": "PATH", "line": 1}],
            now=at,
        ).id


def _blob_count(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(Blob))


def test_blobs_are_content_addressed_and_snapshots_immutable(db: Database) -> None:
    first = _snapshot(db, "a" * 40, {"PATH": b"routes: []\n", "prompts/x.md": b"hello"})
    assert _blob_count(db) == 2
    second = _snapshot(db, "b" * 40, {"PATH": b"routes: []\n", "prompts/x.md": b"hello v2"})
    assert _blob_count(db) == 3  # one changed file, one new blob
    assert _snapshot(db, "b" * 40, {}) == second  # same commit: the stored snapshot

    with db.session() as session:
        assert snapshots.snapshot_files(session, first) == {
            "PATH": b"routes: []\n",
            "prompts/x.md": b"hello",
        }
        assert snapshots.missing_blobs(session, [snapshots.git_blob_sha(b"hello"), "f" * 40]) == {
            "f" * 40
        }
        with pytest.raises(InvalidSnapshotError, match="does not hash"):
            snapshots.store_blobs(session, {"0" * 40: b"tampered"})
        with pytest.raises(InvalidSnapshotError, match="not stored"):
            snapshots.create_snapshot(session, REPO, "c" * 40, {"PATH": "e" * 40}, valid=True)
        stored = snapshots.get_snapshot(session, first)
        assert stored is not None
        stored.valid = False
        with pytest.raises(ImmutableRowError):
            session.flush()
        session.rollback()


def test_sha256_blob_ids(db: Database) -> None:
    content = b"a prompt"
    sha = snapshots.git_blob_sha(content, algorithm="sha256")
    with db.session() as session:
        assert snapshots.store_blobs(session, {sha: content}) == 1
        assert snapshots.store_blobs(session, {sha: content}) == 0


def test_activation_never_goes_backwards(db: Database) -> None:
    old = _snapshot(db, "1" * 40, {"PATH": b"v1"})
    new = _snapshot(db, "2" * 40, {"PATH": b"v2"})
    broken = _snapshot(db, "3" * 40, {"PATH": b"v3"}, valid=False)
    with db.session() as session:
        generation = branches.current_generation(session)
        assert branches.activate(session, REPO, "main", new, T0 + timedelta(minutes=2))
        assert branches.current_generation(session) == generation + 1
        # A late or redelivered older push is refused, and the pointer stays.
        assert not branches.activate(session, REPO, "main", old, T0 + timedelta(minutes=1))
        assert not branches.activate(session, REPO, "main", old, T0 + timedelta(minutes=2))
        assert branches.activate(session, REPO, "main", new, T0 + timedelta(minutes=2))  # no-op
        assert branches.current_generation(session) == generation + 1
        with pytest.raises(InvalidSnapshotError, match="failed validation"):
            branches.activate(session, REPO, "main", broken, T0 + timedelta(minutes=3))
        with pytest.raises(InvalidSnapshotError):
            branches.activate(session, REPO + 1, "main", new, T0 + timedelta(minutes=3))
        branch = branches.get_branch(session, REPO, "main")
        assert branch is not None and branch.active_snapshot_id == new

        assert branches.note_head(session, REPO, "main", "3" * 40, T0 + timedelta(minutes=3))
        assert not branches.note_head(session, REPO, "main", "1" * 40, T0)
        branches.set_etag(session, REPO, "main", 'W/"abc"')
        branch = branches.get_branch(session, REPO, "main")
        assert branch is not None and (branch.latest_sha, branch.etag) == ("3" * 40, 'W/"abc"')


@pytest.mark.postgres
def test_activation_notifies_listeners_at_commit(postgres_url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    db = open_database(postgres_url, auto_upgrade=True)
    dsn = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    try:
        with db.session() as session:
            installations.upsert_installation(session, 1, "owner")
            installations.upsert_repository(
                session,
                REPO,
                "owner/prompts",
                private=True,
                default_branch="main",
                installation_id=1,
            )
        snapshot_id = _snapshot(db, "8" * 40, {"PATH": b"v8"})
        with psycopg.connect(dsn, autocommit=True) as listener:
            listener.execute(f"LISTEN {branches.ACTIVATION_CHANNEL}")
            with db.session() as session:
                assert branches.activate(session, REPO, "main", snapshot_id, T0)
                generation = branches.current_generation(session)
            [notice] = list(listener.notifies(timeout=2, stop_after=1))
        assert notice.channel == branches.ACTIVATION_CHANNEL
        assert notice.payload == str(generation)
    finally:
        db.dispose()


def test_lost_access_purges_content_and_falls_back_to_defaults(db: Database) -> None:
    shared = b"shared by another repository"
    with db.session() as session:  # another account's installation uses the same content
        installations.upsert_installation(session, 2, "someone-else")
        installations.upsert_repository(
            session,
            800,
            "someone-else/other",
            private=False,
            default_branch="main",
            installation_id=2,
        )
        blob = snapshots.git_blob_sha(shared)
        snapshots.store_blobs(session, {blob: shared})
        snapshots.create_snapshot(session, 800, "9" * 40, {"x.md": blob}, valid=True)
    active = _snapshot(db, "4" * 40, {"PATH": b"private", "x.md": shared})
    with db.session() as session:
        branches.activate(session, REPO, "main", active, T0)
        save_binding(
            session,
            "g1",
            repository_full_name="owner/prompts",
            repository_id=REPO,
            branch=None,
            actor="a",
            expected_version=None,
        )
    with db.session() as session:
        installations.suspend_installation(session, 1, True)
    with db.session() as session:
        state = serving.guild_state(session, "g1")
        assert state is not None and state.snapshot_id is None and not state.installed
        assert "suspended" in state.status_message
        assert snapshots.get_snapshot(session, active) is None
        assert branches.get_branch(session, REPO, "main") is None
        assert snapshots.missing_blobs(session, [snapshots.git_blob_sha(b"private"), blob]) == {
            snapshots.git_blob_sha(b"private")
        }  # the other repository's blob stays
        assert serving.tracked_targets(session) == []
        installations.remove_installation(session, 1)
        repository = installations.get_repository(session, REPO)
        assert repository is not None and repository.installation_id is None
        assert installations.get_installation(session, 1) is None
        assert not installations.has_app_access(session, REPO)


def test_an_active_snapshot_survives_pruning(db: Database) -> None:
    long_ago = T0 - timedelta(days=90)
    active = _snapshot(db, "5" * 40, {"PATH": b"live", "a.md": b"kept"}, at=long_ago)
    stale = _snapshot(db, "6" * 40, {"PATH": b"old", "a.md": b"kept"}, at=long_ago)
    recent = _snapshot(db, "7" * 40, {"PATH": b"recent"}, at=T0)
    with db.session() as session:
        branches.activate(session, REPO, "main", active, long_ago)
        deliveries.record_delivery(
            session, "old-done", "push", None, 1, REPO, b"{}", received_at=long_ago
        )
        deliveries.record_delivery(
            session, "old-pending", "push", None, 1, REPO, b"{}", received_at=long_ago
        )
        done = deliveries.get_delivery(session, "old-done")
        assert done is not None
        deliveries.mark_done(session, done.id, long_ago)

    with db.session() as session:
        report = retention.prune(session, timedelta(days=30), now=T0)
    assert (report.snapshots, report.deliveries, report.blobs) == (1, 1, 1)
    with db.session() as session:
        assert snapshots.get_snapshot(session, stale) is None
        assert snapshots.get_snapshot(session, recent) is not None
        assert snapshots.snapshot_files(session, active) == {"PATH": b"live", "a.md": b"kept"}
        assert deliveries.get_delivery(session, "old-pending") is not None  # never unfinished
        # The database itself refuses to drop an active snapshot, whoever asks.
        with pytest.raises(IntegrityError):
            session.execute(Snapshot.__table__.delete().where(Snapshot.id == active))


def test_prune_command(sqlite_url: str, tmp_path) -> None:
    database = open_database(sqlite_url)
    with database.session() as session:
        deliveries.record_delivery(session, "g", "ping", None, None, None, b"{}")
        delivery = deliveries.get_delivery(session, "g")
        assert delivery is not None
        deliveries.mark_done(session, delivery.id, datetime.now(UTC) - timedelta(days=3))
    database.dispose()

    kept = guildprompts("prune", database_url=sqlite_url, cwd=str(tmp_path))
    assert kept.returncode == 0, kept.stderr
    assert "older than 30 days): 0 deliveries" in kept.stdout
    pruned = guildprompts("prune", "--older-than", "2", database_url=sqlite_url, cwd=str(tmp_path))
    assert pruned.returncode == 0 and "older than 2 days): 1 deliveries" in pruned.stdout
    bad = guildprompts("prune", "--older-than", "soon", database_url=sqlite_url, cwd=str(tmp_path))
    assert bad.returncode == 2 and "whole number of days" in bad.stderr


def test_branch_status_values_are_checked(db: Database) -> None:
    with db.session() as session:
        branches.set_branch_status(session, REPO, "gone", BranchStatus.DELETED, "branch deleted")
        branch = branches.get_branch(session, REPO, "gone")
        assert branch is not None and branch.status == "deleted"
        with pytest.raises(ValueError):
            branches.set_branch_status(session, REPO, "gone", "sideways")
