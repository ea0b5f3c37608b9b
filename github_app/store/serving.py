"""Read models that join bindings, repositories and branches: what to serve, what to sync.

A guild is served from the active snapshot of the branch its binding follows (its own branch, or
the repository's default branch when it has none), while the binding is enabled and ACTIVE;
otherwise from the built-in defaults (`snapshot_id` None). Guilds bound to one branch share one
snapshot. The bridge loads `all_guild_states` when the activation generation changes and never
queries per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from github_app.store import layers
from github_app.store.layers import Layers, layers_from, serving_key
from github_app.store.models import (
    STALE_BRANCH_STATUSES,
    BindingState,
    GuildBinding,
    GuildPin,
    Installation,
    PendingBinding,
    Repository,
    Snapshot,
    TrackedBranch,
)


@dataclass(frozen=True)
class GuildState:
    """Everything the bridge needs about one guild: what to serve and how it is going."""

    guild_id: str
    version: int  # pass back as expected_version when editing the binding
    repository_id: int | None
    repository_full_name: str
    branch: str | None  # as configured; None follows the default branch
    effective_branch: str | None  # the branch actually followed (None: repository unknown)
    enabled: bool
    state: str  # BindingState
    set_by: str
    set_at: datetime
    has_token: bool
    private: bool | None  # None: repository not known yet
    installed: bool  # the App can read the repository (installed, not suspended)
    snapshot_id: int | None  # what to serve; None: the built-in defaults
    commit_sha: str | None  # commit of snapshot_id
    activated_at: datetime | None
    head_at: datetime | None  # when the active commit became the branch head (the push)
    latest_sha: str | None  # newest head seen on the branch
    branch_status: str | None  # BranchStatus of the latest sync; None: never tracked
    status_message: str
    diagnostics: list[dict[str, Any]]  # findings of the latest synced commit
    last_sync_at: datetime | None
    last_error: str | None
    is_stale: bool  # syncing currently fails and an older snapshot answers
    # A pin (store.pins): the commit served instead of the branch's, and what the branch has.
    pinned_sha: str | None = None
    pinned_by: str | None = None
    pinned_at: datetime | None = None
    branch_sha: str | None = None  # the branch's active commit (what unpinning serves)
    layers: Layers = ()  # the base commits served with snapshot_id (store.layers)

    @property
    def serving_key(self) -> int | str | None:
        """What the guild is served, bases included (`layers.serving_key`); None: defaults."""
        if self.snapshot_id is None:
            return None
        return serving_key(self.snapshot_id, self.layers)


@dataclass(frozen=True)
class TrackedTarget:
    """A branch some guild follows (or asked to follow): what the reconcile loop checks."""

    repository_id: int
    full_name: str
    branch: str
    installation_id: int | None  # None: read it with a guild's token (`repository_token`)
    etag: str | None
    latest_sha: str | None
    active_sha: str | None
    kind: str | None = None  # "tags": a base following a tag
    private: bool = True  # False: a public base, read anonymously when nothing else can


def _effective_branch(model: type[GuildBinding] | type[PendingBinding]) -> Any:
    return func.coalesce(model.branch, Repository.default_branch)


def _state_query() -> Any:
    effective = _effective_branch(GuildBinding)
    return (
        select(
            GuildBinding,
            Repository,
            TrackedBranch,
            Snapshot.commit_sha,
            Installation.suspended,
            effective,
            GuildPin,
        )
        .outerjoin(Repository, Repository.id == GuildBinding.repository_id)
        .outerjoin(
            TrackedBranch,
            and_(
                TrackedBranch.repository_id == GuildBinding.repository_id,
                TrackedBranch.branch == effective,
            ),
        )
        .outerjoin(Snapshot, Snapshot.id == TrackedBranch.active_snapshot_id)
        .outerjoin(Installation, Installation.id == Repository.installation_id)
        .outerjoin(
            GuildPin,
            and_(
                GuildPin.guild_id == GuildBinding.guild_id,
                GuildPin.repository_id == GuildBinding.repository_id,
            ),
        )
    )


def guild_state(session: Session, guild_id: str) -> GuildState | None:
    """The guild's live binding and what it serves; None when it has no live binding."""
    row = session.execute(_state_query().where(GuildBinding.guild_id == guild_id)).first()
    return None if row is None else _to_state(*row)


def all_guild_states(session: Session) -> dict[str, GuildState]:
    """Every guild's state in one query: the bridge's map from guild to snapshot."""
    states = (_to_state(*row) for row in session.execute(_state_query()))
    return {state.guild_id: state for state in states}


def _to_state(
    binding: GuildBinding,
    repository: Repository | None,
    branch: TrackedBranch | None,
    commit_sha: str | None,
    suspended: bool | None,
    effective_branch: str | None,
    pin: GuildPin | None = None,
) -> GuildState:
    serving = binding.enabled and binding.state == BindingState.ACTIVE
    snapshot_id = branch.active_snapshot_id if serving and branch is not None else None
    branch_sha = commit_sha if snapshot_id is not None else None
    if binding.state != BindingState.ACTIVE:
        message = binding.status_message
    else:
        message = branch.status_message if branch is not None else ""
    pinned = pin is not None and serving
    layers = layers_from(branch.active_layers) if snapshot_id is not None and branch else ()
    if pin is not None and serving:
        # The pin is the one place a guild is served something else than its branch's head.
        snapshot_id, commit_sha = pin.snapshot_id, pin.commit_sha
        layers = layers_from(pin.layers)
        meanwhile = f"{branch_sha[:7]}" if branch_sha else "no valid commit"
        message = (
            f"pinned to {pin.commit_sha[:7]} by {pin.pinned_by} ({pin.reason}); "
            f"{effective_branch or 'the branch'} has {meanwhile} meanwhile"
        )
    return GuildState(
        guild_id=binding.guild_id,
        version=binding.version,
        repository_id=binding.repository_id,
        repository_full_name=binding.repository_full_name,
        branch=binding.branch,
        effective_branch=effective_branch,
        enabled=binding.enabled,
        state=binding.state,
        set_by=binding.set_by,
        set_at=binding.set_at,
        has_token=binding.token_ciphertext is not None,
        private=None if repository is None else repository.private,
        installed=suspended is False,
        snapshot_id=snapshot_id,
        commit_sha=commit_sha if snapshot_id is not None else None,
        activated_at=branch.activated_at if branch is not None else None,
        head_at=branch.active_head_at if branch is not None else None,
        latest_sha=branch.latest_sha if branch is not None else None,
        branch_status=branch.status if branch is not None else None,
        status_message=message,
        diagnostics=list(branch.diagnostics) if branch is not None else [],
        last_sync_at=branch.last_sync_at if branch is not None else None,
        last_error=binding.last_error,
        is_stale=not pinned
        and snapshot_id is not None
        and branch is not None
        and branch.status in STALE_BRANCH_STATUSES,
        pinned_sha=pin.commit_sha if pinned and pin is not None else None,
        pinned_by=pin.pinned_by if pinned and pin is not None else None,
        pinned_at=pin.pinned_at if pinned and pin is not None else None,
        branch_sha=branch_sha,
        layers=layers,
    )


def guilds_for_branch(
    session: Session, repository_id: int, branch: str, *, pending: bool = False
) -> list[str]:
    """Guilds whose enabled live binding follows this branch (or, with pending=True, whose
    pending request does): whom a push serves, or would serve."""
    default = session.scalar(
        select(Repository.default_branch).where(Repository.id == repository_id)
    )
    model: type[GuildBinding] | type[PendingBinding] = PendingBinding if pending else GuildBinding
    follows = model.branch == branch
    if default == branch:
        follows = or_(follows, model.branch.is_(None))
    query = select(model.guild_id).where(model.repository_id == repository_id, follows)
    if model is GuildBinding:
        query = query.where(GuildBinding.enabled.is_(True))
    return list(session.scalars(query.order_by(model.guild_id)))


def is_tracked(session: Session, repository_id: int, branch: str) -> bool:
    """Does a push to this branch need a sync? (Tag pushes and untracked branches do not.)
    A branch that another branch `extends` is tracked too: its dependents are built on it."""
    return bool(
        guilds_for_branch(session, repository_id, branch)
        or guilds_for_branch(session, repository_id, branch, pending=True)
        or layers.is_base(session, repository_id, branch)
    )


def tracked_targets(session: Session) -> list[TrackedTarget]:
    """Every branch followed by an enabled live binding or a pending request, once each,
    that the App or a guild's token can read."""
    readable: dict[tuple[int, str], TrackedTarget] = {}
    for model in (GuildBinding, PendingBinding):
        effective = _effective_branch(model)
        query = (
            select(
                Repository,
                effective,
                Installation.suspended,
                model.token_ciphertext.is_not(None),
                TrackedBranch,
                Snapshot.commit_sha,
            )
            .join(Repository, Repository.id == model.repository_id)
            .outerjoin(Installation, Installation.id == Repository.installation_id)
            .outerjoin(
                TrackedBranch,
                and_(
                    TrackedBranch.repository_id == Repository.id, TrackedBranch.branch == effective
                ),
            )
            .outerjoin(Snapshot, Snapshot.id == TrackedBranch.active_snapshot_id)
        )
        if model is GuildBinding:
            query = query.where(GuildBinding.enabled.is_(True))
        for repository, branch_name, suspended, has_token, branch, active_sha in session.execute(
            query
        ):
            installed = suspended is False
            key = (repository.id, branch_name)
            if not (installed or has_token):
                continue
            known = readable.get(key)
            if known is not None and known.installation_id is not None:
                continue
            readable[key] = _target(repository, branch_name, installed, branch, active_sha)
    for repository, ref in layers.base_targets(session):  # bases some branch extends
        key = (repository.id, ref)
        if key in readable:
            continue
        branch = session.get(TrackedBranch, key)
        installation = (
            session.get(Installation, repository.installation_id)
            if repository.installation_id is not None
            else None
        )
        installed = installation is not None and not installation.suspended
        active_sha = None
        if branch is not None and branch.active_snapshot_id is not None:
            active_sha = session.scalar(
                select(Snapshot.commit_sha).where(Snapshot.id == branch.active_snapshot_id)
            )
        readable[key] = _target(repository, ref, installed, branch, active_sha)
    return sorted(readable.values(), key=lambda target: (target.repository_id, target.branch))


def _target(
    repository: Repository,
    branch_name: str,
    installed: bool,
    branch: TrackedBranch | None,
    active_sha: str | None,
) -> TrackedTarget:
    return TrackedTarget(
        repository_id=repository.id,
        full_name=repository.full_name,
        branch=branch_name,
        installation_id=repository.installation_id if installed else None,
        etag=branch.etag if branch is not None else None,
        latest_sha=branch.latest_sha if branch is not None else None,
        active_sha=active_sha,
        kind=branch.ref_kind if branch is not None else None,
        private=repository.private,
    )
