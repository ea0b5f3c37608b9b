"""What handlers share: their context, and the few steps several event families take.

Handlers are `async def handler(delivery, ctx: HandlerContext)`. They must be idempotent (a
delivery is processed at least once), may raise to have the worker retry the whole delivery, and
never answer HTTP. Database work goes through `ctx.db`, in a thread, one transaction per call.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from github_app.runtime import Runtime
from github_app.store import bindings, branches, installations
from github_app.store.models import BranchStatus, Repository
from github_app.store.snapshots import get_snapshot
from github_app.sync.jobs import enqueue_sync

log = logging.getLogger("guildprompts.handlers")

T = TypeVar("T")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class HandlerContext:
    """The runtime, plus what the queue knows about the delivery being handled."""

    runtime: Runtime
    row_id: int  # the delivery's row: pushes coalesce on row order
    received_at: datetime  # when intake stored it: push-to-live starts here
    attempt: int  # 1 on the first try

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self.runtime.run_db(fn, *args, **kwargs)

    async def db_then_announce(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` in one transaction, then tell this process's caches what it changed.

        For work that bumps the activation generation (purges, branch status): the generation
        is read in the same transaction, so the announcement is never older than the change.
        """

        def work(session: Session) -> tuple[T, int]:
            result = fn(session, *args, **kwargs)
            return result, branches.current_generation(session)

        result, generation = await self.db(work)
        await self.runtime.announce_activation(generation)
        return result

    async def db_then_wake(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` (which may enqueue work) in one transaction, then wake the worker."""
        result = await self.db(fn, *args, **kwargs)
        self.runtime.wake_worker()
        return result


def commit_sha(value: Any) -> str | None:
    """A full lowercase commit sha from a payload field, or None (also for the zero sha)."""
    if isinstance(value, str) and _SHA.fullmatch(value) and value.strip("0"):
        return value
    return None


def integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def remember_installation(
    session: Session,
    installation: Mapping[str, Any],
    *,
    suspended: bool | None = None,
    account_login: str | None = None,
) -> int | None:
    """Store or refresh an installation from a payload; its id, or None when it has none.

    `installation` events carry the whole installation. Other payloads carry only its id: one
    already stored is left as it is, and an unknown one is stored under `account_login` (the
    repository owner) so repositories can refer to it. `suspended` None reads `suspended_at`.
    """
    installation_id = integer(installation.get("id"))
    if installation_id is None:
        return None
    account = mapping(installation.get("account"))
    login = account.get("login")
    if not isinstance(login, str) or not login:
        if installations.get_installation(session, installation_id) is not None:
            return installation_id
        if not account_login:
            return None
        login = account_login
    if suspended is None:
        suspended = installation.get("suspended_at") is not None
    account_type = account.get("type")
    installations.upsert_installation(
        session,
        installation_id,
        login,
        account_id=integer(account.get("id")),
        account_type=account_type if isinstance(account_type, str) else None,
        suspended=suspended,
        permissions=mapping(installation.get("permissions")),
        events=[event for event in _list(installation.get("events")) if isinstance(event, str)],
    )
    return installation_id


def followed_branches(
    session: Session, repository: Repository, *, default_only: bool = False
) -> set[str]:
    """Branches that enabled bindings or pending requests on the repository follow
    (`default_only`: those following the default branch, i.e. the default branch or none)."""
    live = bindings.bindings_for_repository(session, repository_id=repository.id)
    pending = bindings.pending_for_repository(session, repository_id=repository.id)
    configured = [b.branch for b in live if b.enabled] + [p.branch for p in pending]
    if default_only:
        configured = [branch for branch in configured if branch is None]
    return {branch or repository.default_branch for branch in configured}


def enqueue_followed(
    session: Session,
    repository_ids: Iterable[int],
    trigger: str,
    *,
    default_only: bool = False,
) -> list[str]:
    """Queue a sync of every followed branch of these repositories; returns the GUIDs."""
    guids = []
    for repository_id in sorted(set(repository_ids)):
        repository = installations.get_repository(session, repository_id)
        if repository is None:
            continue
        for branch in sorted(followed_branches(session, repository, default_only=default_only)):
            guids.append(
                enqueue_sync(
                    session,
                    full_name=repository.full_name,
                    repository_id=repository.id,
                    branch=branch,
                    trigger=trigger,
                )
            )
    return guids


def mark_branch_deleted(session: Session, repository_id: int, branch: str) -> bool:
    """A followed branch was deleted: keep its last good snapshot, say so; False if unknown."""
    tracked = branches.get_branch(session, repository_id, branch)
    if tracked is None:
        return False
    if tracked.active_snapshot_id is not None:
        snapshot = get_snapshot(session, tracked.active_snapshot_id)
        kept = snapshot.commit_sha[:7] if snapshot is not None else "the last good commit"
        message = (
            f"branch {branch} was deleted on GitHub; still serving {kept}, its last good "
            "commit. Restore the branch or bind another one."
        )
    else:
        message = (
            f"branch {branch} was deleted on GitHub before any valid commit was synced "
            "from it; serving the built-in defaults. Bind another branch."
        )
    branches.set_branch_status(session, repository_id, branch, BranchStatus.DELETED, message)
    branches.bump_generation(session)
    return True


def head_time(payload: Mapping[str, Any], received_at: datetime) -> datetime:
    """When the pushed commit became the branch head, for "never activate an older commit".

    GitHub's `repository.pushed_at` (Unix seconds in push payloads) orders pushes even when a
    delivery arrives late or is redelivered. It has one-second resolution, so within its second
    pushes are ordered by arrival: the delay to `received_at`, capped below one second, is added.
    Without `pushed_at`, the arrival time is used.
    """
    pushed_at = _timestamp(mapping(payload.get("repository")).get("pushed_at"))
    if pushed_at is None:
        return received_at
    delay = (received_at - pushed_at).total_seconds()
    return pushed_at + timedelta(seconds=min(max(delay, 0.0), 0.999))


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return None
