"""Layers: a branch whose PATH `extends` bases serves its commit together with one commit of
each base, and is re-synced when a base it is built on goes live somewhere new.

What a branch serves is the pair (its snapshot, `active_layers`): the bases' snapshots in the
order promptrepo stacks them (nearest first, a base's own bases after it), written in the same
single-row update that moves the pointer (`branches.activate`), so a guild never sees a commit
with bases it was not validated with. A base is tracked like any branch (the one sync path
concludes it at its head, keeping its last good commit); `branch_bases` records which bases a
branch's head extends, by name and ref as its PATH writes them, so that a push to a base is
tracked (`is_base`) and re-syncs every branch built on it (`dependents`).

The key a served pair is cached and streamed under (`serving_key`) is the snapshot id alone
without bases, or the ids joined with `+`: equal pairs, equal keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from github_app.store.models import (
    BranchBase,
    BranchStatus,
    GuildBinding,
    GuildPin,
    Repository,
    Snapshot,
    TrackedBranch,
)


@dataclass(frozen=True)
class ServedLayer:
    """One base commit served below a repository's own: `name` as its `extends:` entry names
    the repository (`owner/name`), the ref it follows, and the snapshot of the commit."""

    name: str
    ref: str
    repository_id: int
    commit_sha: str
    snapshot_id: int
    private: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ref": self.ref,
            "repository_id": self.repository_id,
            "commit_sha": self.commit_sha,
            "snapshot_id": self.snapshot_id,
            "private": self.private,
        }

    @classmethod
    def from_json(cls, data: Any) -> ServedLayer | None:
        try:
            return cls(
                name=str(data["name"]),
                ref=str(data["ref"]),
                repository_id=int(data["repository_id"]),
                commit_sha=str(data["commit_sha"]),
                snapshot_id=int(data["snapshot_id"]),
                private=bool(data.get("private", True)),
            )
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def label(self) -> str:
        """`owner/name@abc1234`: how statuses and check runs name the base commit."""
        return f"{self.name}@{self.commit_sha[:7]}"


Layers = tuple[ServedLayer, ...]


def layers_from(stored: Iterable[Any] | None) -> Layers:
    """The layers of a stored JSON list (None: no bases); malformed entries are dropped."""
    found = (ServedLayer.from_json(item) for item in stored or ())
    return tuple(layer for layer in found if layer is not None)


def layers_json(layers: Sequence[ServedLayer]) -> list[dict[str, Any]] | None:
    return [layer.to_json() for layer in layers] or None


def serving_key(snapshot_id: int, layers: Sequence[ServedLayer]) -> int | str:
    """The key of what a guild is served: the snapshot id, or `own+base+...` with bases."""
    if not layers:
        return snapshot_id
    return "+".join(str(part) for part in (snapshot_id, *(layer.snapshot_id for layer in layers)))


def snapshot_ids(key: int | str) -> tuple[int, ...]:
    """The snapshot ids of a `serving_key`, own first (ValueError for anything else)."""
    if isinstance(key, int):
        return (key,)
    return tuple(int(part) for part in str(key).split("+"))


def layer_names(session: Session, snapshot_ids_: Sequence[int]) -> dict[int, str]:
    """snapshot id -> the `owner/name` of its repository now (for keys read back)."""
    if not snapshot_ids_:
        return {}
    query = (
        select(Snapshot.id, Repository.full_name)
        .join(Repository, Repository.id == Snapshot.repository_id)
        .where(Snapshot.id.in_(list(snapshot_ids_)))
    )
    return {int(row[0]): str(row[1]) for row in session.execute(query)}


# ---- which branches extend which base ---------------------------------------------------------


@dataclass(frozen=True)
class Dependent:
    """A branch whose head extends a base: what a push to that base re-syncs."""

    repository_id: int
    full_name: str
    branch: str


def set_bases(
    session: Session, repository_id: int, branch: str, bases: Sequence[tuple[str, str]]
) -> bool:
    """Record the bases (`owner/name`, ref) the branch's head extends, nearest last as written;
    True when they changed."""
    wanted = [(name.lower(), ref) for name, ref in bases]
    rows = session.execute(
        select(BranchBase.base_full_name, BranchBase.base_ref)
        .where(BranchBase.repository_id == repository_id, BranchBase.branch == branch)
        .order_by(BranchBase.position)
    ).all()
    if [tuple(row) for row in rows] == wanted:
        return False
    session.execute(
        delete(BranchBase).where(
            BranchBase.repository_id == repository_id, BranchBase.branch == branch
        )
    )
    for position, (name, ref) in enumerate(wanted):
        session.add(
            BranchBase(
                repository_id=repository_id,
                branch=branch,
                position=position,
                base_full_name=name,
                base_ref=ref,
            )
        )
    session.flush()
    return True


def set_base_problem(session: Session, full_name: str, ref: str, problem: str | None) -> None:
    """Why `full_name`@`ref` cannot be read (None: it can), for every branch extending it."""
    session.execute(
        update(BranchBase)
        .where(BranchBase.base_full_name == full_name.lower(), BranchBase.base_ref == ref)
        .values(problem=problem)
    )


def base_problem(session: Session, full_name: str, ref: str) -> str | None:
    query = select(BranchBase.problem).where(
        BranchBase.base_full_name == full_name.lower(),
        BranchBase.base_ref == ref,
        BranchBase.problem.is_not(None),
    )
    return session.scalar(query.limit(1))


def bases_of(session: Session, repository_id: int, branch: str) -> list[tuple[str, str]]:
    rows = session.execute(
        select(BranchBase.base_full_name, BranchBase.base_ref)
        .where(BranchBase.repository_id == repository_id, BranchBase.branch == branch)
        .order_by(BranchBase.position)
    ).all()
    return [(str(row[0]), str(row[1])) for row in rows]


def dependents(session: Session, full_name: str, ref: str) -> list[Dependent]:
    """The branches whose head extends `full_name`@`ref`, each once."""
    query = (
        select(BranchBase.repository_id, Repository.full_name, BranchBase.branch)
        .join(Repository, Repository.id == BranchBase.repository_id)
        .where(BranchBase.base_full_name == full_name.lower(), BranchBase.base_ref == ref)
        .distinct()
        .order_by(BranchBase.repository_id, BranchBase.branch)
    )
    return [Dependent(int(r[0]), str(r[1]), str(r[2])) for r in session.execute(query)]


def extended_refs(session: Session, full_name: str) -> list[str]:
    """The refs of `full_name` that some branch extends."""
    query = (
        select(BranchBase.base_ref)
        .where(BranchBase.base_full_name == full_name.lower())
        .distinct()
        .order_by(BranchBase.base_ref)
    )
    return [str(ref) for ref in session.scalars(query)]


def is_base(session: Session, repository_id: int, ref: str) -> bool:
    """Does some branch extend this repository at `ref`? (A push to it then needs a sync.)"""
    full_name = session.scalar(select(Repository.full_name).where(Repository.id == repository_id))
    if full_name is None:
        return False
    query = select(BranchBase.repository_id).where(
        BranchBase.base_full_name == full_name.lower(), BranchBase.base_ref == ref
    )
    return session.scalar(query.limit(1)) is not None


def base_targets(session: Session) -> list[tuple[Repository, str]]:
    """Every (stored repository, ref) some branch extends: the reconcile loop checks them."""
    query = (
        select(Repository, BranchBase.base_ref)
        .join(BranchBase, BranchBase.base_full_name == func.lower(Repository.full_name))
        .distinct()
    )
    return [(repository, str(ref)) for repository, ref in session.execute(query)]


BasesAt = tuple[tuple[int | None, tuple[int, ...]], ...]


def current_bases(
    session: Session, bases: Sequence[tuple[str, str]], *, lock: bool = False
) -> BasesAt:
    """What each base serves now: its active snapshot id (None: none, or not known) and the
    snapshot ids of its own bases. With `lock`, the bases' branch rows stay locked until the
    transaction ends (PostgreSQL): a base activating now waits, then sees this transaction's
    `branch_bases` and re-checks the branch."""
    found: list[tuple[int | None, tuple[int, ...]]] = []
    for name, ref in bases:
        repository = _named(session, name)
        if repository is None:
            found.append((None, ()))
            continue
        query = select(TrackedBranch.active_snapshot_id, TrackedBranch.active_layers).where(
            TrackedBranch.repository_id == repository.id, TrackedBranch.branch == ref
        )
        if lock:
            query = query.with_for_update()
        row = session.execute(query).first()
        if row is None:
            found.append((None, ()))
            continue
        below = tuple(layer.snapshot_id for layer in layers_from(row[1]))
        found.append((row[0], below))
    return tuple(found)


# ---- what a dependent composes with ------------------------------------------------------------


@dataclass(frozen=True)
class BaseState:
    """A base branch as stored: its active commit and that commit's own bases (what a
    dependent is built on), and its status; `known` False: never read yet."""

    known: bool
    repository_id: int | None
    full_name: str | None
    private: bool
    snapshot_id: int | None
    commit_sha: str | None
    layers: Layers
    status: str | None
    status_message: str


def base_state(session: Session, full_name: str, ref: str) -> BaseState:
    repository = _named(session, full_name)
    if repository is None:
        return BaseState(False, None, None, True, None, None, (), None, "")
    tracked = session.get(TrackedBranch, (repository.id, ref), populate_existing=True)
    if tracked is None:
        return BaseState(
            False, repository.id, repository.full_name, repository.private, None, None, (), None, ""
        )
    sha = None
    if tracked.active_snapshot_id is not None:
        sha = session.scalar(
            select(Snapshot.commit_sha).where(Snapshot.id == tracked.active_snapshot_id)
        )
    return BaseState(
        known=tracked.last_sync_at is not None
        or tracked.active_snapshot_id is not None
        or tracked.status != BranchStatus.PENDING.value,
        repository_id=repository.id,
        full_name=repository.full_name,
        private=repository.private,
        snapshot_id=tracked.active_snapshot_id,
        commit_sha=sha,
        layers=layers_from(tracked.active_layers),
        status=tracked.status,
        status_message=tracked.status_message,
    )


def _named(session: Session, full_name: str) -> Repository | None:
    """A base by the name an `extends:` entry gives it, in any case (`store.installations`
    imports this module, so its `repository_by_name` cannot be called from here)."""
    query = select(Repository).where(func.lower(Repository.full_name) == full_name.lower())
    return session.scalar(query.order_by(Repository.updated_at.desc()).limit(1))


def dependent_bindings(session: Session, full_name: str) -> list[tuple[GuildBinding, str]]:
    """Every live binding following a branch that extends `full_name`, with the ref it extends:
    the guilds served that base (a binding counted once per ref)."""
    effective = func.coalesce(GuildBinding.branch, Repository.default_branch)
    query = (
        select(GuildBinding, BranchBase.base_ref)
        .join(Repository, Repository.id == GuildBinding.repository_id)
        .join(
            BranchBase,
            (BranchBase.repository_id == GuildBinding.repository_id)
            & (BranchBase.branch == effective),
        )
        .where(BranchBase.base_full_name == full_name.lower())
        .order_by(GuildBinding.guild_id, BranchBase.base_ref)
    )
    found = dict.fromkeys((binding, str(ref)) for binding, ref in session.execute(query))
    return list(found)


def base_snapshot_ids(session: Session) -> set[int]:
    """Snapshots served as a base of some branch or pin: retention keeps them."""
    kept: set[int] = set()
    for (stored,) in session.execute(
        select(TrackedBranch.active_layers).where(TrackedBranch.active_layers.is_not(None))
    ):
        kept.update(layer.snapshot_id for layer in layers_from(stored))
    for (stored,) in session.execute(select(GuildPin.layers).where(GuildPin.layers.is_not(None))):
        kept.update(layer.snapshot_id for layer in layers_from(stored))
    return kept
