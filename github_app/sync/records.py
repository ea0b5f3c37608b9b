"""A sync's database units of work: each function runs in one transaction, in a thread
(`Runtime.run_db`), so guilds never see a half-applied sync.

They read what is stored before a sync (the repository, its branch, a commit already
snapshotted), record a commit (snapshot, activation, branch and binding statuses, pending
requests promoted), record an access problem or a branch status, and write the sync log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from github_app.secrets import Vault
from github_app.store import (
    audit,
    bindings,
    branches,
    checkruns,
    history,
    installations,
    pins,
    previews,
    serving,
    snapshots,
)
from github_app.store.errors import ConcurrentUpdateError
from github_app.store.models import (
    BindingState,
    BranchStatus,
    GuildBinding,
    PendingBinding,
    Repository,
    TrackedBranch,
    utcnow,
)
from github_app.sync.access import Access
from github_app.sync.content import CommitFiles, Validation
from github_app.sync.messages import (
    first_error,
    plural,
    private_message,
    rejected_message,
    serving_message,
)
from promptrepo import Diagnostic

log = logging.getLogger(__name__)

RERUN_TRIGGERS = frozenset({"check_suite", "check_run"})  # a person asked for a new check run
ACTOR = "guildprompts-sync"  # the audit log's actor for promotions made by a sync


@dataclass(frozen=True)
class RepoState:
    """The repository and the branch as stored before the sync."""

    private: bool
    default_branch: str
    installation_id: int | None  # an installation that can read it (not suspended)
    token: str | None = field(repr=False)  # a guild's token for it
    active_sha: str | None
    latest_sha: str | None
    etag: str | None


@dataclass(frozen=True)
class StoredCommit:
    """A commit already snapshotted, and whether a check run must be posted on it."""

    snapshot_id: int | None
    diagnostics: tuple[Diagnostic, ...]
    files: Mapping[str, bytes]
    post_check: bool
    open_check_run: int | None  # a run left in progress by a failed attempt


@dataclass(frozen=True)
class Recorded:
    snapshot_id: int
    activated: bool
    live_sha: str | None
    superseded: bool  # a later head of the branch was already seen
    generation: int | None  # set when what guilds are served (or their status) changed
    serving: tuple[str, ...]
    pending: tuple[str, ...]


def read_repository(
    session: Session, vault: Vault, repository_id: int, branch: str | None
) -> RepoState | None:
    repository = installations.get_repository(session, repository_id)
    if repository is None:
        return None
    installation_id = (
        repository.installation_id if installations.has_app_access(session, repository_id) else None
    )
    token = (
        bindings.repository_token(session, vault, repository_id)
        if installation_id is None
        else None
    )
    tracked = branches.get_branch(session, repository_id, branch or repository.default_branch)
    return RepoState(
        private=repository.private,
        default_branch=repository.default_branch,
        installation_id=installation_id,
        token=token,
        active_sha=_active_sha(session, tracked),
        latest_sha=tracked.latest_sha if tracked is not None else None,
        etag=tracked.etag if tracked is not None else None,
    )


def read_commit(
    session: Session, repository_id: int, sha: str, trigger: str, *, can_check: bool
) -> StoredCommit:
    snapshot = snapshots.find_snapshot(session, repository_id, sha)
    post, open_run = False, None
    if can_check:
        runs = checkruns.check_runs_for(session, repository_id, sha)
        completed = any(run.status == "completed" for run in runs)
        post = trigger in RERUN_TRIGGERS or not completed
        open_run = next(
            (run.check_run_id for run in reversed(runs) if run.status != "completed"), None
        )
    if snapshot is None:
        return StoredCommit(None, (), {}, post, open_run)
    return StoredCommit(
        snapshot.id,
        tuple(_diagnostics_from(snapshot.diagnostics)),
        snapshots.snapshot_files(session, snapshot.id),
        post,
        open_run,
    )


def _diagnostics_from(stored: Iterable[Mapping[str, Any]]) -> Iterable[Diagnostic]:
    for item in stored:
        try:
            yield Diagnostic(**item)
        except TypeError:
            log.warning("skipping a stored diagnostic of an unknown shape: %r", item)


def _active_sha(session: Session, tracked: TrackedBranch | None) -> str | None:
    if tracked is None or tracked.active_snapshot_id is None:
        return None
    snapshot = snapshots.get_snapshot(session, tracked.active_snapshot_id)
    return snapshot.commit_sha if snapshot is not None else None


def record_commit(
    session: Session,
    vault: Vault,
    repository_id: int,
    branch: str | None,
    snapshot: CommitFiles,
    *,
    activate: bool,
    head_at: datetime,
    etag: str | None,
    full_name: str,
    trigger: str = "push",
    pushed_by: str | None = None,
    history_keep: int = 50,
) -> Recorded:
    """Store the snapshot, then (tracked branch) activate it and update every status: one
    transaction, so guilds never see a half-applied sync. An activation goes into the history
    of every guild it changes (following the branch, not pinned)."""
    now = utcnow()
    validation = snapshot.validation
    snapshots.store_blobs(session, snapshot.downloaded, now)
    row = snapshots.create_snapshot(
        session,
        repository_id,
        snapshot.sha,
        snapshot.blob_ids,
        valid=validation.valid,
        diagnostics=[item.to_dict() for item in validation.diagnostics],
        now=now,
    )
    repository = installations.get_repository(session, repository_id)
    assert repository is not None
    previewed = _previews_follow(session, repository, snapshot)
    if not activate or branch is None:
        following = serving.guilds_for_branch(session, repository_id, branch) if branch else []
        generation = branches.current_generation(session) if previewed else None
        return Recorded(row.id, False, None, False, generation, tuple(following), ())
    before = branches.get_branch(session, repository_id, branch)
    status_before = (before.status, before.status_message) if before is not None else None
    active_sha = _active_sha(session, before)
    if etag is not None:
        branches.set_etag(session, repository_id, branch, etag)
    latest = branches.note_head(session, repository_id, branch, snapshot.sha, head_at) or (
        before is not None and before.latest_sha == snapshot.sha
    )
    activated = False
    live_sha = active_sha
    changed = False
    if latest and validation.valid and active_sha != snapshot.sha:
        activated = branches.activate(session, repository_id, branch, row.id, head_at, now)
        latest = activated
        live_sha = snapshot.sha if activated else active_sha
        changed = activated
        if activated:
            following = serving.guilds_for_branch(session, repository_id, branch)
            history.record_for_guilds(
                session,
                sorted(set(following) - pins.pinned_guilds(session, following)),
                repository_id,
                snapshot.sha,
                trigger=trigger,
                pushed_by=pushed_by,
                keep=history_keep,
                now=now,
            )
    if latest:
        if validation.valid:
            status, message = BranchStatus.OK, serving_message(snapshot.sha, validation.diagnostics)
        else:
            status = BranchStatus.REJECTED
            message = rejected_message(active_sha, snapshot.sha, validation.errors)
        branches.set_branch_status(
            session,
            repository_id,
            branch,
            status,
            message,
            diagnostics=[item.to_dict() for item in validation.diagnostics],
            synced_at=now,
        )
        changed = _bindings_follow(session, repository, branch, validation, message) or changed
        changed = (
            _settle_pending(session, repository, branch, snapshot, full_name, history_keep)
            or changed
        )
        if status_before != (status.value, message):
            changed = True
            branches.bump_generation(session)
    return Recorded(
        snapshot_id=row.id,
        activated=activated,
        live_sha=live_sha,
        superseded=not latest,
        generation=branches.current_generation(session) if changed or previewed else None,
        serving=tuple(serving.guilds_for_branch(session, repository_id, branch)),
        pending=tuple(serving.guilds_for_branch(session, repository_id, branch, pending=True)),
    )


def _follows(binding: GuildBinding | PendingBinding, repository: Repository, branch: str) -> bool:
    return (binding.branch or repository.default_branch) == branch


def _allowed(
    binding: GuildBinding | PendingBinding, repository: Repository, allowed_guilds: Sequence[str]
) -> bool:
    """May this guild read the repository? Public, listed in PATH, or it gave its own token."""
    return (
        not repository.private
        or binding.guild_id in allowed_guilds
        or binding.token_ciphertext is not None
    )


def _bindings_follow(
    session: Session, repository: Repository, branch: str, validation: Validation, message: str
) -> bool:
    """Live bindings on the branch: the sync's status; with a valid commit, access is checked
    against its allowed_guilds again (the owner may have removed a guild). True if changed."""
    changed = False
    repo = validation.repository
    for binding in bindings.bindings_for_repository(session, repository_id=repository.id):
        if not _follows(binding, repository, branch):
            continue
        if repo is not None and validation.valid:
            if _allowed(binding, repository, repo.allowed_guilds):
                wanted = (BindingState.ACTIVE.value, message)
            else:
                wanted = (BindingState.NO_ACCESS.value, private_message(binding.guild_id))
        elif binding.state == BindingState.ACTIVE:
            wanted = (BindingState.ACTIVE.value, message)
        else:
            continue
        if (binding.state, binding.status_message) != wanted:
            bindings.set_binding_state(
                session, binding.guild_id, BindingState(wanted[0]), wanted[1]
            )
            changed = True
    return changed


def _previews_follow(session: Session, repository: Repository, snapshot: CommitFiles) -> bool:
    """A stored head of a previewed pull request: channels previewing it switch to it (a new
    generation), unless its PATH no longer lets the guild read a private repository, which ends
    the preview. True when previews changed."""
    rows = previews.previews_of_head(session, repository.id, snapshot.sha)
    if not rows:
        return False
    loaded = snapshot.validation.repository
    if snapshot.validation.valid and loaded is not None:
        refused = []
        for row in rows:
            binding = bindings.get_binding(session, row.guild_id)
            if binding is None or not _allowed(binding, repository, loaded.allowed_guilds):
                refused.append(row)
        previews.drop_previews(session, refused, ACTOR)
    branches.bump_generation(session)
    return True


def _settle_pending(
    session: Session,
    repository: Repository,
    branch: str,
    snapshot: CommitFiles,
    full_name: str,
    history_keep: int,
) -> bool:
    """Promote the pending requests on this branch that may read it; tell the others why not.
    True if a binding went live."""
    validation = snapshot.validation
    promoted = False
    pending = bindings.pending_for_repository(
        session, repository_id=repository.id, full_name=full_name
    )
    for request in pending:
        if not _follows(request, repository, branch):
            continue
        if not validation.valid or validation.repository is None:
            first = first_error(validation.diagnostics)
            message = (
                f"waiting for a valid commit on {branch}: {snapshot.sha[:7]} was rejected "
                f"({plural(validation.errors, 'error')}; first: {first})"
            )
        elif not _allowed(request, repository, validation.repository.allowed_guilds):
            message = private_message(request.guild_id)
        else:
            try:
                if request.repository_id is None:  # asked by name before the repository was known
                    request.repository_id = repository.id
                bindings.promote_pending(session, request.guild_id, actor=ACTOR)
                pins.drop_pin(session, request.guild_id)  # a new binding starts unpinned
                history.record_activation(
                    session,
                    request.guild_id,
                    repository.id,
                    snapshot.sha,
                    trigger="bind",
                    keep=history_keep,
                    actor=request.set_by,
                )
                promoted = True
                continue
            except ConcurrentUpdateError:
                message = (
                    "the guild's binding was changed since this request was made: "
                    "make the request again"
                )
        if request.status_message != message:
            bindings.set_pending_status(session, request.guild_id, message)
    return promoted


def _uses(binding: GuildBinding, access: Access, vault: Vault) -> bool:
    """Does this binding depend on the credential that just failed?"""
    if access.kind == "token":
        return (
            binding.token_ciphertext is not None
            and bindings.binding_token(binding, vault) == access.token
        )
    return binding.token_ciphertext is None


def record_access_problem(
    session: Session,
    vault: Vault,
    repository_id: int,
    full_name: str,
    branch: str | None,
    message: str,
    access: Access,
) -> int | None:
    """Access is per repository: every binding relying on the failed credential serves the
    built-in defaults with `message`, and pending requests say it too; the synced branch (when
    tracked) records the error. Returns the new generation if anything changed."""
    changed = False
    live = bindings.bindings_for_repository(
        session, repository_id=repository_id, full_name=full_name
    )
    pending = bindings.pending_for_repository(
        session, repository_id=repository_id, full_name=full_name
    )
    if branch is not None:
        changed = (
            record_branch_status(session, repository_id, branch, BranchStatus.ERROR, message)
            is not None
        )
    for binding in live:
        wanted = (BindingState.NO_ACCESS.value, message)
        if _uses(binding, access, vault) and (binding.state, binding.status_message) != wanted:
            bindings.set_binding_state(session, binding.guild_id, BindingState.NO_ACCESS, message)
            changed = True
    for request in pending:
        if request.status_message != message:
            bindings.set_pending_status(session, request.guild_id, message)
    if not changed:
        return None
    return branches.bump_generation(session)


def record_branch_status(
    session: Session,
    repository_id: int,
    branch: str,
    status: BranchStatus,
    message: str,
    *,
    track: bool = False,
) -> int | None:
    """A tracked branch's status (an untracked one stays untracked unless `track`: a followed
    branch that has no commit yet, or waits for the rate limit); the new generation if it
    changed, since the bridge shows it."""
    tracked = branches.get_branch(session, repository_id, branch)
    if tracked is None and not track:
        return None
    if tracked is not None and (tracked.status, tracked.status_message) == (status.value, message):
        return None
    branches.set_branch_status(session, repository_id, branch, status, message)
    return branches.bump_generation(session)


def record_sync_log(session: Session, repository_id: int, **fields: Any) -> None:
    """The sync log row (a repository never stored has no row to hang it on)."""
    if installations.get_repository(session, repository_id) is not None:
        audit.record_sync(session, repository_id, **fields)
