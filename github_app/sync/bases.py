"""What a commit whose PATH `extends` bases is built on: each base branch's active commit as
stored, with that commit's own bases (one database read; no GitHub request).

A base is a branch like any other: the one sync path reads it (a `base` job the first time a
branch extends it, then its pushes and the reconcile loop), concludes it at its head and keeps
its last good commit. A dependent is composed from those last good commits, so a broken base
push never reaches it, and re-synced (`rebase`) when one of them moves (`records`).

Each base is in one of three states for the dependent:
- ready: it has an active commit, which (with its own layers) is what the dependent is built on
  (a base nothing followed until now, whose pushes were not synced, is also queued a read: a
  newer head re-checks the dependent);
- waiting: never read yet, or read but waiting on its own bases: the dependent waits too (a
  `pending` status, no rejection), and a sync that is not itself a `rebase` queues the first read
  (whose failure, `branch_bases.problem`, makes the base failed for the `rebase` it queues);
- failed: read, and it has no good commit (unreadable, deleted, rejected): the dependent is
  checked without it, which `promptrepo` reports as `base-missing`, here with the base's status.
A base that extends the dependent back (through stored `branch_bases`) is a cycle, reported at
once rather than waited on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from sqlalchemy.orm import Session

from github_app.store import layers, serving, snapshots
from github_app.store.layers import BasesAt, Layers, ServedLayer
from github_app.store.models import BranchStatus
from promptrepo import Diagnostic
from promptrepo.diagnostics import diagnostic
from promptrepo.files import PATH_FILE
from promptrepo.layers import MAX_DEPTH, extends_of, stack
from promptrepo.pathfile import path_file_of

_EMPTY: Mapping[str, Mapping[str, bytes]] = MappingProxyType({})


@dataclass(frozen=True)
class BaseAccess:
    """Who may be served a base: anyone when it is public, else the guilds its PATH allows and
    those whose own token has just read it (`token_readers`, as for a bound repository)."""

    name: str
    private: bool
    allowed_guilds: tuple[str, ...]
    repository_id: int = 0
    gone: bool = False  # its content was purged (the App lost it): nobody may be served it

    def allows(self, guild_id: str, token_readers: frozenset[str] = frozenset()) -> bool:
        if self.gone:
            return False
        return not self.private or guild_id in self.allowed_guilds or guild_id in token_readers


@dataclass(frozen=True)
class Composition:
    """The bases of one commit, as stored now (empty for a commit without `extends`)."""

    extends: tuple[tuple[str, str], ...] = ()  # (owner/name, ref) as PATH writes them
    # `owner/name@ref` -> files, as promptrepo takes them
    files: Mapping[str, Mapping[str, bytes]] = field(default_factory=lambda: _EMPTY)
    layers: Layers = ()  # what is served with the commit, in promptrepo's stack order
    access: tuple[BaseAccess, ...] = ()
    waiting: tuple[str, ...] = ()  # `owner/name@ref` not read yet: the dependent waits
    to_read: tuple[tuple[str, str], ...] = ()  # bases to queue a read of (never read, unfollowed)
    failed: Mapping[str, str] = field(default_factory=dict)  # `owner/name@ref` -> its status
    cycles: tuple[Diagnostic, ...] = ()
    bases_at: BasesAt = ()  # what each direct base served when composed

    @property
    def labels(self) -> tuple[str, ...]:
        """`owner/base@abc1234` for each base commit: what statuses and check runs name."""
        return tuple(layer.label for layer in self.layers)

    def private_bases(self) -> tuple[ServedLayer, ...]:
        """The private base commits served with the commit (a guild's token may read them)."""
        return tuple(layer for layer in self.layers if layer.private)


NO_BASES = Composition()


def compose(
    session: Session, full_name: str, files: Mapping[str, bytes], *, may_queue: bool
) -> Composition:
    """The stored bases of a commit's files (see the module docstring). `may_queue`: bases never
    read are to be queued (False for a `rebase`, which a base's own sync asked for)."""
    extends = tuple((ref.repository, ref.ref) for ref in extends_of(files))
    if not extends:
        return NO_BASES
    found: dict[str, Mapping[str, bytes]] = {}
    served: dict[tuple[str, str], ServedLayer] = {}
    waiting: list[str] = []
    to_read: list[tuple[str, str]] = []
    failed: dict[str, str] = {}
    cycles: list[Diagnostic] = []
    bases_at = []  # what `layers.current_bases` will find unless a base moves meanwhile
    for name, ref in extends:
        key = f"{name}@{ref}"
        state = layers.base_state(session, name, ref)
        bases_at.append((state.snapshot_id, tuple(below.snapshot_id for below in state.layers)))
        if state.snapshot_id is not None and state.repository_id is not None:
            assert state.commit_sha is not None
            if may_queue and not serving.is_tracked(session, state.repository_id, ref):
                to_read.append((name, ref))  # nothing synced its pushes: its head may be newer
            found[key] = snapshots.snapshot_files(session, state.snapshot_id)
            served[(name.lower(), ref)] = ServedLayer(
                name, ref, state.repository_id, state.commit_sha, state.snapshot_id, state.private
            )
            for below in state.layers:
                found.setdefault(
                    f"{below.name}@{below.ref}",
                    snapshots.snapshot_files(session, below.snapshot_id),
                )
                served.setdefault((below.name.lower(), below.ref), below)
            continue
        loop = _cycle(session, full_name, name, ref)
        if loop is not None:
            cycles.append(
                diagnostic("extends-cycle", PATH_FILE, f"`extends` goes round in a circle: {loop}")
            )
        elif not state.known and not may_queue and (why := layers.base_problem(session, name, ref)):
            failed[key] = why  # its read failed; a push of this branch tries it again
        elif not state.known or state.status == BranchStatus.PENDING.value:
            waiting.append(key)
            if not state.known and may_queue:
                to_read.append((name, ref))
        else:
            failed[key] = state.status_message or f"{key} has no valid commit"
    stacked, _ = stack(files, found, full_name)
    chosen = tuple(
        served[(layer.name.lower(), layer.ref.ref)]
        for layer in stacked[1:]
        if layer.ref is not None and (layer.name.lower(), layer.ref.ref) in served
    )
    return Composition(
        extends=extends,
        files=MappingProxyType(found),
        layers=chosen,
        access=tuple(_access(layer, found) for layer in chosen),
        waiting=tuple(waiting),
        to_read=tuple(to_read),
        failed=failed,
        cycles=tuple(cycles),
        bases_at=tuple(bases_at),
    )


def _access(layer: ServedLayer, found: Mapping[str, Mapping[str, bytes]]) -> BaseAccess:
    path_file = path_file_of(found.get(f"{layer.name}@{layer.ref}", {}))
    allowed = path_file.allowed_guilds if path_file is not None else ()
    return BaseAccess(layer.name, layer.private, allowed, layer.repository_id)


def _cycle(session: Session, own: str, name: str, ref: str) -> str | None:
    """`own -> name -> ... -> own` when the stored bases of `name`@`ref` lead back to `own`."""
    trail = [own, name]
    frontier: list[tuple[list[str], str, str]] = [(trail, name, ref)]
    for _depth in range(MAX_DEPTH + 1):
        following: list[tuple[list[str], str, str]] = []
        for path, base, base_ref in frontier:
            state = layers.base_state(session, base, base_ref)
            if state.repository_id is None:
                continue
            for next_name, next_ref in layers.bases_of(session, state.repository_id, base_ref):
                if next_name.lower() == own.lower():
                    return " -> ".join([*path, own])
                following.append(([*path, next_name], next_name, next_ref))
        frontier = following
    return None


def explained(found: Sequence[Diagnostic], composition: Composition) -> list[Diagnostic]:
    """Diagnostics with each `base-missing` saying why that base could not be used."""
    if not composition.failed and not composition.waiting:
        return list(found)
    out = []
    for item in found:
        if item.code == "base-missing":
            for key, why in composition.failed.items():
                if key in item.message:
                    item = replace(item, hint=f"{key}: {why}")
            for key in composition.waiting:
                if key in item.message:
                    item = replace(item, hint=f"{key} has not been read yet")
        out.append(item)
    return out
