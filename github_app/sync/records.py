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
    layers,
    pins,
    previews,
    serving,
    snapshots,
)
from github_app.store.errors import ConcurrentUpdateError
from github_app.store.layers import Layers, layers_from
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
from github_app.sync.bases import BaseAccess
from github_app.sync.content import CommitFiles, Validation
from github_app.sync.jobs import enqueue_rebases, enqueue_sync
from github_app.sync.messages import (
    base_gone_message,
    base_refused_message,
    first_error,
    plural,
    private_message,
    rejected_message,
    serving_message,
    waiting_message,
)
from promptrepo import Diagnostic

log = logging.getLogger(__name__)

# A new check run is posted on a commit already checked: a person asked for one, or a base it
# extends moved (the run says which base commits it was checked with).
RERUN_TRIGGERS = frozenset({"check_suite", "check_run", "rebase"})
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
    superseded: bool  # not the branch head GitHub reports: never activated
    generation: int | None  # set when what guilds are served (or their status) changed
    serving: tuple[str, ...]
    pending: tuple[str, ...]
    conflict: bool = False  # another sync concluded the branch first: read the head again
    stale_bases: bool = False  # ... or a base moved since the commit was composed: compose again
    labels: tuple[str, ...] = ()  # the base commits the commit was checked with
    live_labels: tuple[str, ...] = ()  # the base commits served with live_sha
    waiting: tuple[str, ...] = ()  # bases not read yet: the commit is neither valid nor not
    queued: bool = False  # syncs were queued (bases to read, dependents to re-check)


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
        open_run = next(
            (run.check_run_id for run in reversed(runs) if run.status != "completed"), None
        )
        # A run left in progress is completed even when another sync completed one of its own
        # meanwhile (two syncs of one commit: a push and a reconcile job on two workers).
        post = trigger in RERUN_TRIGGERS or not completed or open_run is not None
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


@dataclass(frozen=True)
class Concluding:
    """This commit is the branch head GitHub reported after `version` was read (its ETag)."""

    version: int
    etag: str | None
    token_readers: frozenset[str] = field(default=frozenset(), repr=False)  # tokens that read it
    # base repository id -> guilds whose own token has just read that (private) base
    base_readers: Mapping[int, frozenset[str]] = field(default_factory=dict)
    kind: str | None = None  # "tags" when the followed ref is a tag (a base may be)


def record_commit(
    session: Session,
    vault: Vault,
    repository_id: int,
    branch: str | None,
    snapshot: CommitFiles,
    *,
    activate: bool,
    head: Concluding | None,
    full_name: str,
    trigger: str = "push",
    pushed_by: str | None = None,
    history_keep: int = 50,
) -> Recorded:
    """Store the snapshot; when it is the head of a tracked branch (`head`), conclude the
    branch: activate it if valid and update every status. One transaction, so guilds never see
    a half-applied sync. `conflict` says another sync concluded the branch first."""
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
    previewed = _previews_follow(session, vault, repository, snapshot)
    if not activate or branch is None:
        following = serving.guilds_for_branch(session, repository_id, branch) if branch else []
        generation = branches.current_generation(session) if previewed else None
        return Recorded(row.id, False, None, False, generation, tuple(following), ())
    before = branches.get_branch(session, repository_id, branch)
    status_before = (before.status, before.status_message) if before is not None else None
    active_sha = _active_sha(session, before)
    serving_now = tuple(serving.guilds_for_branch(session, repository_id, branch))
    pending_now = tuple(serving.guilds_for_branch(session, repository_id, branch, pending=True))
    generation = branches.current_generation(session) if previewed else None
    if head is None:  # not the branch head any more: stored and checked, never activated
        return Recorded(row.id, False, active_sha, True, generation, serving_now, pending_now)
    composition = snapshot.composition
    if layers.current_bases(session, composition.extends, lock=True) != composition.bases_at:
        # A base moved after the commit was composed: the base's sync may not see this branch
        # as its dependent yet, so this one composes again (the bases' rows stay locked).
        return Recorded(
            row.id,
            False,
            active_sha,
            True,
            generation,
            serving_now,
            pending_now,
            conflict=True,
            stale_bases=True,
        )
    if not branches.conclude_head(
        session, repository_id, branch, snapshot.sha, head.etag, head.version, now, head.kind
    ):
        return Recorded(
            row.id, False, active_sha, True, generation, serving_now, pending_now, conflict=True
        )
    layers.set_bases(session, repository_id, branch, composition.extends)
    served_layers = layers_from(before.active_layers if before else None)  # the last good pair's
    live_labels = tuple(layer.label for layer in served_layers)
    waiting = composition.waiting if not composition.cycles else ()
    queued = False
    activated = False
    for name, ref in composition.to_read if not composition.cycles else ():
        enqueue_sync(session, full_name=name, branch=ref, trigger="base")
        queued = True
    if waiting:
        status, message = BranchStatus.PENDING, waiting_message(snapshot.sha, waiting)
    elif validation.valid:
        activated = branches.activate(
            session, repository_id, branch, row.id, now, layers=composition.layers, valid=True
        )
        if activated:
            history.record_for_guilds(
                session,
                sorted(set(serving_now) - pins.pinned_guilds(session, list(serving_now))),
                repository_id,
                snapshot.sha,
                trigger=trigger,
                pushed_by=pushed_by,
                keep=history_keep,
                now=now,
            )
        status = BranchStatus.OK
        message = serving_message(snapshot.sha, validation.diagnostics, composition.labels)
    else:
        status = BranchStatus.REJECTED
        message = rejected_message(
            active_sha,
            snapshot.sha,
            validation.errors,
            live_labels=live_labels,
            labels=composition.labels,
            first=first_error(validation.diagnostics) if composition.extends else "",
        )
    good = validation.valid and not waiting
    live_sha = snapshot.sha if good else active_sha
    changed = activated
    branches.set_branch_status(
        session,
        repository_id,
        branch,
        status,
        message,
        diagnostics=[item.to_dict() for item in validation.diagnostics],
        synced_at=now,
    )
    readers = head.token_readers
    served_bases = composition.access if good else _base_access(session, served_layers)
    changed = (
        _bindings_follow(
            session,
            vault,
            repository,
            branch,
            validation,
            message,
            readers,
            served_bases,
            good,
            head.base_readers,
        )
        or changed
    )
    changed = (
        _settle_pending(
            session,
            vault,
            repository,
            branch,
            snapshot,
            full_name,
            readers,
            history_keep,
            message if waiting else None,
            head.base_readers,
        )
        or changed
    )
    if status_before != (status.value, message):
        changed = True
        if active_sha is None and not activated:  # dependents waiting on it learn it failed
            queued = _queue_dependents(session, repository, branch) or queued
    if activated:
        queued = _queue_dependents(session, repository, branch) or queued
    if changed and not activated:
        branches.bump_generation(session)
    return Recorded(
        snapshot_id=row.id,
        activated=activated,
        live_sha=live_sha,
        superseded=False,
        generation=branches.current_generation(session) if changed or previewed else None,
        serving=tuple(serving.guilds_for_branch(session, repository_id, branch)),
        pending=tuple(serving.guilds_for_branch(session, repository_id, branch, pending=True)),
        labels=composition.labels,
        live_labels=composition.labels if activated else live_labels,
        waiting=waiting,
        queued=queued,
    )


def _queue_dependents(session: Session, repository: Repository, branch: str) -> bool:
    """Re-check every branch built on this one (`rebase`): it serves a new commit, or it has
    none and its dependents wait on it. True if any was queued."""
    skip = (repository.id, branch)
    return enqueue_rebases(session, repository.full_name, [branch], skip=skip) > 0


def _base_access(session: Session, served: Layers) -> tuple[BaseAccess, ...]:
    """Who may be served the base commits a branch serves now (its last good pair)."""
    return tuple(
        BaseAccess(
            layer.name,
            layer.private,
            snapshots.allowed_guilds(session, layer.snapshot_id),
            layer.repository_id,
            gone=snapshots.get_snapshot(session, layer.snapshot_id) is None,
        )
        for layer in served
    )


def token_holders(
    session: Session, vault: Vault, repository_id: int, branch: str, *, any_visibility: bool = False
) -> dict[tuple[str, bool], str]:
    """(guild id, pending?) -> its own token, for the live bindings and pending requests on this
    branch of a private repository that gave one (each token is tried on the branch before a
    guild is served through it). With `any_visibility`, of a public one too: its tokens may
    read a private base it extends."""
    repository = installations.get_repository(session, repository_id)
    if repository is None or not (repository.private or any_visibility):
        return {}
    holders: list[GuildBinding | PendingBinding] = [
        *bindings.bindings_for_repository(session, repository_id=repository_id),
        *bindings.pending_for_repository(
            session, repository_id=repository_id, full_name=repository.full_name
        ),
    ]
    found: dict[tuple[str, bool], str] = {}
    for holder in holders:
        token = bindings.binding_token(holder, vault)
        if token is not None and _follows(holder, repository, branch):
            found[(holder.guild_id, isinstance(holder, PendingBinding))] = token
    return found


def _follows(binding: GuildBinding | PendingBinding, repository: Repository, branch: str) -> bool:
    return (binding.branch or repository.default_branch) == branch


def _allowed(
    binding: GuildBinding | PendingBinding,
    repository: Repository,
    allowed_guilds: Sequence[str],
    token_readers: frozenset[str],
    vault: Vault,
) -> bool:
    """May this guild read the repository? Public, listed in PATH, or the binding's own token
    has just read the branch (having a token is not enough: it must work)."""
    return (
        not repository.private
        or binding.guild_id in allowed_guilds
        or (
            binding.token_ciphertext is not None
            and bindings.binding_token(binding, vault) in token_readers
        )
    )


def _bindings_follow(
    session: Session,
    vault: Vault,
    repository: Repository,
    branch: str,
    validation: Validation,
    message: str,
    token_readers: frozenset[str],
    bases: Sequence[BaseAccess] = (),
    good: bool = True,
    base_readers: Mapping[int, frozenset[str]] | None = None,
) -> bool:
    """Live bindings on the branch: the sync's status, and access checked again against the
    allowed_guilds of what the branch serves now (the new commit if valid, else the last good
    one: the owner may have removed a guild), those of its private bases, and the tokens that
    just worked. True if changed."""
    changed = False
    allowed = _serving_allowed_guilds(session, repository.id, branch, validation, good)
    for binding in bindings.bindings_for_repository(session, repository_id=repository.id):
        if not _follows(binding, repository, branch):
            continue
        if allowed is None:  # nothing valid to serve yet: the defaults, with the status
            if binding.state != BindingState.ACTIVE:
                continue
            wanted = (BindingState.ACTIVE.value, message)
        elif not _allowed(binding, repository, allowed, token_readers, vault):
            wanted = (BindingState.NO_ACCESS.value, private_message(binding.guild_id))
        elif (refused := _refused_base(bases, binding.guild_id, base_readers)) is not None:
            wanted = (BindingState.NO_ACCESS.value, refused)
        else:
            wanted = (BindingState.ACTIVE.value, message)
        if (binding.state, binding.status_message) != wanted:
            bindings.set_binding_state(
                session, binding.guild_id, BindingState(wanted[0]), wanted[1]
            )
            changed = True
    return changed


def _previews_follow(
    session: Session, vault: Vault, repository: Repository, snapshot: CommitFiles
) -> bool:
    """A stored head of a previewed pull request: channels previewing it switch to it (a new
    generation), unless its PATH no longer lets the guild read a private repository (a guild's
    token is not tried here), which ends the preview. True when previews changed."""
    rows = previews.previews_of_head(session, repository.id, snapshot.sha)
    if not rows:
        return False
    loaded = snapshot.validation.repository
    if snapshot.validation.valid and loaded is not None:
        refused = []
        for row in rows:
            binding = bindings.get_binding(session, row.guild_id)
            if binding is None or not _allowed(
                binding, repository, loaded.allowed_guilds, frozenset(), vault
            ):
                refused.append(row)
        previews.drop_previews(session, refused, ACTOR)
    branches.bump_generation(session)
    return True


def _refused_base(
    bases: Sequence[BaseAccess],
    guild_id: str,
    base_readers: Mapping[int, frozenset[str]] | None = None,
) -> str | None:
    """Why this guild may not be served a base of the commit (None: it may)."""
    readers = base_readers or {}
    for base in bases:
        if base.gone:
            return base_gone_message(base.name)
        if not base.allows(guild_id, readers.get(base.repository_id, frozenset())):
            return base_refused_message(guild_id, base.name)
    return None


def _serving_allowed_guilds(
    session: Session, repository_id: int, branch: str, validation: Validation, good: bool = True
) -> Sequence[str] | None:
    """allowed_guilds of the commit the branch serves after this sync; None when it serves
    none (no valid commit yet)."""
    if good and validation.valid and validation.repository is not None:
        return validation.repository.allowed_guilds
    tracked = branches.get_branch(session, repository_id, branch)
    if tracked is None or tracked.active_snapshot_id is None:
        return None
    return snapshots.allowed_guilds(session, tracked.active_snapshot_id)


def _settle_pending(
    session: Session,
    vault: Vault,
    repository: Repository,
    branch: str,
    snapshot: CommitFiles,
    full_name: str,
    token_readers: frozenset[str],
    history_keep: int,
    waiting: str | None = None,
    base_readers: Mapping[int, frozenset[str]] | None = None,
) -> bool:
    """Promote the pending requests on this branch that may read it; tell the others why not
    (`waiting`: the commit waits for its bases). True if a binding went live."""
    validation = snapshot.validation
    promoted = False
    pending = bindings.pending_for_repository(
        session, repository_id=repository.id, full_name=full_name
    )
    for request in pending:
        if not _follows(request, repository, branch):
            continue
        refused = _refused_base(snapshot.composition.access, request.guild_id, base_readers)
        if waiting is not None:
            message = waiting
        elif not validation.valid or validation.repository is None:
            first = first_error(validation.diagnostics)
            message = (
                f"waiting for a valid commit on {branch}: {snapshot.sha[:7]} was rejected "
                f"({plural(validation.errors, 'error')}; first: {first})"
            )
        elif not _allowed(
            request, repository, validation.repository.allowed_guilds, token_readers, vault
        ):
            message = private_message(request.guild_id)
        elif refused is not None:
            message = refused
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


def served_by_token(
    session: Session, vault: Vault, repository_id: int, branch: str
) -> dict[str, str]:
    """guild id -> token, for the live bindings served only because their token read the
    branch (private repository, not in the active commit's allowed_guilds): the reconcile
    loop tries those tokens, since no webhook says one was revoked."""
    tracked = branches.get_branch(session, repository_id, branch)
    if tracked is None or tracked.active_snapshot_id is None:
        return {}
    allowed = set(snapshots.allowed_guilds(session, tracked.active_snapshot_id))
    live = {
        binding.guild_id
        for binding in bindings.bindings_for_repository(session, repository_id=repository_id)
        if binding.state == BindingState.ACTIVE and binding.enabled
    }
    return {
        guild_id: token
        for (guild_id, pending), token in token_holders(
            session, vault, repository_id, branch
        ).items()
        if not pending and guild_id in live and guild_id not in allowed
    }


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
