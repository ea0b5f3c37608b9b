"""Installations, the repositories they cover, and the purge of content when access is lost.

The App may keep a repository's content only while it can read it: when an installation is
deleted or suspended, or a repository leaves it or is deleted, the repository's snapshots,
branch pointers and the blobs only they used are deleted in the same transaction, and the
bindings relying on the App fall back to the built-in defaults with a status saying why.
Bindings that carry their own personal access token keep their state: they can still read the
repository, and their branch is fetched again with their token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.orm import Session

from github_app.store import layers
from github_app.store._sql import affected_rows
from github_app.store.branches import bump_generation
from github_app.store.models import (
    UNCHANGED,
    BindingState,
    Blob,
    GuildBinding,
    Installation,
    PendingBinding,
    Repository,
    Snapshot,
    SnapshotFile,
    TrackedBranch,
    Unchanged,
    utcnow,
)


def upsert_installation(
    session: Session,
    installation_id: int,
    account_login: str,
    *,
    account_id: int | None = None,
    account_type: str | None = None,
    suspended: bool = False,
    permissions: Mapping[str, Any] | None = None,
    events: Sequence[str] | None = None,
    now: datetime | None = None,
) -> Installation:
    """Create or refresh an installation from an `installation` event (or the API)."""
    now = now or utcnow()
    installation = session.get(Installation, installation_id)
    if installation is None:
        installation = Installation(id=installation_id, created_at=now)
        session.add(installation)
    installation.account_login = account_login
    installation.account_id = account_id
    installation.account_type = account_type
    installation.suspended = suspended
    installation.permissions = dict(permissions or {})
    installation.events = list(events or [])
    installation.updated_at = now
    session.flush()
    return installation


def get_installation(session: Session, installation_id: int) -> Installation | None:
    return session.get(Installation, installation_id)


def suspend_installation(
    session: Session, installation_id: int, suspended: bool, *, reason: str = ""
) -> list[int]:
    """Flag an installation (un)suspended; suspending purges its repositories' content.

    The repositories stay attached, so unsuspending knows which ones to sync again. Returns
    their ids.
    """
    session.execute(
        update(Installation)
        .where(Installation.id == installation_id)
        .values(suspended=suspended, updated_at=utcnow())
    )
    repository_ids = [repo.id for repo in installation_repositories(session, installation_id)]
    if suspended:
        for repository_id in repository_ids:
            purge_repository_content(
                session, repository_id, reason=reason or "the App's installation is suspended"
            )
    return repository_ids


def remove_installation(session: Session, installation_id: int, *, reason: str = "") -> list[int]:
    """The App was uninstalled: purge and detach every repository it covered."""
    repository_ids = [repo.id for repo in installation_repositories(session, installation_id)]
    for repository_id in repository_ids:
        detach_repository(
            session, repository_id, reason=reason or "the App was uninstalled from this account"
        )
    session.execute(delete(Installation).where(Installation.id == installation_id))
    return repository_ids


def remember_repository(
    session: Session,
    repository: Mapping[str, Any],
    installation_id: int | None = None,
) -> Repository | None:
    """Store or refresh a repository from GitHub's repository object (a payload's, or the API's).

    Fields the object lacks keep their stored value; a repository not stored yet whose object
    gives no default branch is not stored (None): an invented default branch would make guilds
    follow a branch that may not exist. `installation_id` None, or one not stored, leaves the
    stored installation as it is (losing access is `detach_repository`'s business, never a side
    effect of a missing field).
    """
    repository_id = repository.get("id")
    full_name = repository.get("full_name")
    if not isinstance(repository_id, int) or isinstance(repository_id, bool):
        return None
    if not isinstance(full_name, str) or not full_name:
        return None
    stored = get_repository(session, repository_id)
    default_branch = repository.get("default_branch")
    if not isinstance(default_branch, str) or not default_branch:
        if stored is None:
            return None
        default_branch = stored.default_branch
    private = repository.get("private")
    if not isinstance(private, bool):
        private = stored.private if stored is not None else True
    known = installation_id is not None and get_installation(session, installation_id) is not None
    return upsert_repository(
        session,
        repository_id,
        full_name,
        private=private,
        default_branch=default_branch,
        installation_id=installation_id if known else UNCHANGED,
    )


def upsert_repository(
    session: Session,
    repository_id: int,
    full_name: str,
    *,
    private: bool,
    default_branch: str,
    installation_id: int | Unchanged | None = UNCHANGED,
    now: datetime | None = None,
) -> Repository:
    """Create or refresh a repository (renames, transfers, default branch changes).

    `installation_id` None means the App cannot read it (known through a personal access
    token); UNCHANGED keeps what is stored. Bindings naming the repository get its id, and
    follow its new full name.
    """
    now = now or utcnow()
    repository = session.get(Repository, repository_id)
    changed_serving = False
    if repository is None:
        repository = Repository(id=repository_id, created_at=now)
        repository.installation_id = None
        session.add(repository)
    elif repository.default_branch != default_branch:
        changed_serving = True  # guilds following the default branch now follow another one
    if not isinstance(installation_id, Unchanged):
        repository.installation_id = installation_id
    repository.full_name = full_name
    repository.private = private
    repository.default_branch = default_branch
    repository.updated_at = now
    session.flush()
    for model in (GuildBinding, PendingBinding):
        linked = affected_rows(
            session,
            update(model)
            .where(
                model.repository_id.is_(None),
                func.lower(model.repository_full_name) == full_name.lower(),
            )
            .values(repository_id=repository_id),
        )
        session.execute(
            update(model)
            .where(model.repository_id == repository_id, model.repository_full_name != full_name)
            .values(repository_full_name=full_name)
        )
        changed_serving = changed_serving or (model is GuildBinding and linked > 0)
    if changed_serving:
        bump_generation(session)
    return repository


def get_repository(session: Session, repository_id: int) -> Repository | None:
    return session.get(Repository, repository_id)


def repository_by_name(session: Session, full_name: str) -> Repository | None:
    """Case-insensitive, like GitHub; if a name was reused, the most recently seen holder."""
    query = (
        select(Repository)
        .where(func.lower(Repository.full_name) == full_name.strip().lower())
        .order_by(Repository.updated_at.desc())
        .limit(1)
    )
    return session.scalar(query)


def installation_repositories(session: Session, installation_id: int) -> list[Repository]:
    query = (
        select(Repository)
        .where(Repository.installation_id == installation_id)
        .order_by(Repository.id)
    )
    return list(session.scalars(query))


def has_app_access(session: Session, repository_id: int) -> bool:
    """Can the App read this repository (installed, installation not suspended)?"""
    query = (
        select(Installation.suspended)
        .join(Repository, Repository.installation_id == Installation.id)
        .where(Repository.id == repository_id)
    )
    suspended = session.scalar(query)
    return suspended is False


def detach_repository(session: Session, repository_id: int, *, reason: str) -> None:
    """The repository left the installation or was deleted: forget access, purge content."""
    session.execute(
        update(Repository)
        .where(Repository.id == repository_id)
        .values(installation_id=None, updated_at=utcnow())
    )
    purge_repository_content(session, repository_id, reason=reason)


@dataclass(frozen=True)
class PurgeReport:
    snapshots: int
    blobs: int
    bindings: int  # live bindings now without access


def _stop_dependents(session: Session, repository_id: int, reason: str) -> int:
    """A base read no more: the guilds served it through a branch extending it stop being
    served (their next sync says more, and serves them again if the base can be read)."""
    repository = get_repository(session, repository_id)
    if repository is None:
        return 0
    message = f"the base {repository.full_name} cannot be read any more ({reason})"
    stopped = {
        binding for binding, _ref in layers.dependent_bindings(session, repository.full_name)
    }
    for binding in stopped:
        binding.state, binding.status_message = BindingState.NO_ACCESS.value, message
    session.flush()
    return len(stopped)


def purge_repository_content(session: Session, repository_id: int, *, reason: str) -> PurgeReport:
    """Delete everything read from a repository; its token-less bindings get NO_ACCESS + reason."""
    snapshot_ids = select(Snapshot.id).where(Snapshot.repository_id == repository_id)
    used_blobs = set(
        session.scalars(
            select(SnapshotFile.blob_sha)
            .where(SnapshotFile.snapshot_id.in_(snapshot_ids))
            .distinct()
        )
    )
    session.execute(delete(TrackedBranch).where(TrackedBranch.repository_id == repository_id))
    snapshots = affected_rows(
        session, delete(Snapshot).where(Snapshot.repository_id == repository_id)
    )
    blobs = 0
    ordered = sorted(used_blobs)
    for start in range(0, len(ordered), 500):
        chunk = ordered[start : start + 500]
        still_used = exists().where(SnapshotFile.blob_sha == Blob.sha)
        blobs += affected_rows(session, delete(Blob).where(Blob.sha.in_(chunk), ~still_used))
    bindings = affected_rows(
        session,
        update(GuildBinding)
        .where(GuildBinding.repository_id == repository_id, GuildBinding.token_ciphertext.is_(None))
        .values(state=BindingState.NO_ACCESS.value, status_message=reason),
    )
    bindings += _stop_dependents(session, repository_id, reason)
    bump_generation(session)
    return PurgeReport(snapshots=snapshots, blobs=blobs, bindings=bindings)
