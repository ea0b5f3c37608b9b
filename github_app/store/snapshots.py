"""Immutable snapshots of a repository at a commit, over content-addressed blobs.

A blob is stored once per git blob id, whatever the number of commits, branches or repositories
using it, so a push that changes one file stores one new blob. `store_blobs` checks that each
content hashes to its id (the git blob hash), so a key always names its content.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from github_app.store._sql import insert_ignoring_conflicts
from github_app.store.errors import InvalidSnapshotError
from github_app.store.models import Blob, Snapshot, SnapshotFile, utcnow
from promptrepo.files import PATH_FILE
from promptrepo.pathfile import PathFile, path_file_of

_CHUNK = 500  # keeps IN (...) lists well under SQLite's bound-parameter limit


def git_blob_sha(content: bytes, *, algorithm: str = "sha1") -> str:
    """The id git gives a file's content ("blob <size>\\0" + content, SHA-1 or SHA-256)."""
    header = b"blob %d\x00" % len(content)
    return hashlib.new(algorithm, header + content).hexdigest()


def missing_blobs(session: Session, shas: Iterable[str]) -> set[str]:
    """The blob ids not stored yet: a sync downloads only these."""
    wanted = set(shas)
    present = {sha for (sha,) in _blob_rows(session, wanted, Blob.sha)}
    return wanted - present


def load_blobs(session: Session, shas: Iterable[str]) -> dict[str, bytes]:
    """Contents of stored blobs by id (a commit's unchanged files); unknown ids are left out."""
    return dict(_blob_rows(session, shas, Blob.sha, Blob.content))


def _blob_rows(session: Session, shas: Iterable[str], *columns: Any) -> Iterator[Any]:
    """Rows of the given blobs, queried in chunks so a large tree stays under bind limits."""
    ordered = sorted(set(shas))
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        yield from session.execute(select(*columns).where(Blob.sha.in_(chunk)))


def store_blobs(session: Session, blobs: Mapping[str, bytes], now: datetime | None = None) -> int:
    """Store contents by blob id (already stored ones are skipped); returns how many were new.

    Raises `InvalidSnapshotError` when a content does not hash to its id.
    """
    now = now or utcnow()
    rows = []
    for sha, content in blobs.items():
        algorithm = "sha256" if len(sha) == 64 else "sha1"
        if git_blob_sha(content, algorithm=algorithm) != sha.lower():
            raise InvalidSnapshotError(f"blob {sha}: the content does not hash to this id")
        rows.append(
            {"sha": sha.lower(), "content": content, "size": len(content), "created_at": now}
        )
    return insert_ignoring_conflicts(session, Blob.__table__, rows, ["sha"])


def create_snapshot(
    session: Session,
    repository_id: int,
    commit_sha: str,
    files: Mapping[str, str],
    *,
    valid: bool,
    diagnostics: Sequence[Mapping[str, Any]] = (),
    now: datetime | None = None,
) -> Snapshot:
    """Record a repository at a commit: `files` maps path -> blob id (blobs stored first).

    Idempotent: (repository, commit) is unique and snapshots never change, so a second call
    (a redelivery, two workers racing) returns the snapshot already stored.
    """
    existing = find_snapshot(session, repository_id, commit_sha)
    if existing is not None:
        return existing
    blob_ids = {sha.lower() for sha in files.values()}
    absent = missing_blobs(session, blob_ids)
    if absent:
        shown = ", ".join(sorted(absent)[:5])
        raise InvalidSnapshotError(
            f"snapshot of {commit_sha} refers to {len(absent)} blob(s) not stored: {shown}"
        )
    severities = [str(item.get("severity", "")).lower() for item in diagnostics]
    row = {
        "repository_id": repository_id,
        "commit_sha": commit_sha,
        "valid": valid,
        "diagnostics": [dict(item) for item in diagnostics],
        "error_count": severities.count("error"),
        "warning_count": severities.count("warning"),
        "created_at": now or utcnow(),
    }
    if insert_ignoring_conflicts(session, Snapshot.__table__, row, ["repository_id", "commit_sha"]):
        snapshot = find_snapshot(session, repository_id, commit_sha)
        assert snapshot is not None
        if files:
            session.execute(
                SnapshotFile.__table__.insert(),
                [
                    {"snapshot_id": snapshot.id, "path": path, "blob_sha": sha.lower()}
                    for path, sha in files.items()
                ],
            )
        return snapshot
    snapshot = find_snapshot(session, repository_id, commit_sha)
    assert snapshot is not None  # the concurrent writer committed it
    return snapshot


def find_snapshot(session: Session, repository_id: int, commit_sha: str) -> Snapshot | None:
    query = select(Snapshot).where(
        Snapshot.repository_id == repository_id, Snapshot.commit_sha == commit_sha
    )
    return session.scalar(query)


def get_snapshot(session: Session, snapshot_id: int) -> Snapshot | None:
    return session.get(Snapshot, snapshot_id)


def snapshot_files(session: Session, snapshot_id: int) -> dict[str, bytes]:
    """Path -> content of every file of a snapshot: what `promptrepo` loads."""
    query = (
        select(SnapshotFile.path, Blob.content)
        .join(Blob, Blob.sha == SnapshotFile.blob_sha)
        .where(SnapshotFile.snapshot_id == snapshot_id)
    )
    return dict(session.execute(query).all())


def allowed_guilds(session: Session, snapshot_id: int) -> tuple[str, ...]:
    """The `allowed_guilds` of a snapshot's PATH (none when it cannot be read): PATH alone says
    it, also for a commit that `extends` bases."""
    found = path_file(session, snapshot_id)
    return found.allowed_guilds if found is not None else ()


def path_file(session: Session, snapshot_id: int) -> PathFile | None:
    """A snapshot's parsed PATH, read and parsed alone (what PATH says: its `extends`, its
    `allowed_guilds`); None when it has no usable PATH."""
    query = (
        select(Blob.content)
        .join(SnapshotFile, SnapshotFile.blob_sha == Blob.sha)
        .where(SnapshotFile.snapshot_id == snapshot_id, SnapshotFile.path == PATH_FILE)
    )
    content = session.scalar(query)
    return path_file_of({PATH_FILE: content}) if content is not None else None
