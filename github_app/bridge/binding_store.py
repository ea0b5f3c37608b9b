"""The bridge's database work for a guild's binding: what the config and events endpoints show,
and the bind / refresh / delete requests with the decision a PUT waits for.

Each function takes a session and runs in one transaction, in a thread (`Runtime.run_db`); the
routes in `github_app.bridge.routes` turn the results (and a `Refusal`) into HTTP answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from github_app.secrets import Vault
from github_app.store import (
    audit,
    bindings,
    branches,
    deliveries,
    installations,
    layers,
    pins,
    serving,
    snapshots,
)
from github_app.store.models import (
    BranchStatus,
    DeliveryState,
    PendingBinding,
    Repository,
    Snapshot,
    TrackedBranch,
)
from github_app.store.serving import GuildState
from github_app.sync import jobs

EVENTS_LIMIT = 50
PROBLEM_OUTCOMES = frozenset({"rejected", "no_access", "failed", "gone"})
_FINISHED = frozenset({DeliveryState.DONE.value, DeliveryState.FAILED.value})


class Refusal(Exception):
    """An answer other than success (HTTP status, error code, message and extra JSON keys),
    raised from deep inside a handler or returned by `decide`."""

    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.extra = status, error, message, extra


@dataclass(frozen=True)
class BindRequest:
    """A checked PUT .../config body."""

    full_name: str
    branch: str | None
    token: str | None = field(repr=False)
    actor: str
    expected_version: int | None


@dataclass(frozen=True)
class Plan:
    """A queued sync the answer waits for, and how to recognise the request it serves."""

    guid: str | None
    full_name: str
    branch: str | None
    pending_set_at: datetime | None  # None: a refresh of the live binding
    generation: int | None = None  # set when the binding went live at once (no sync needed)
    state: GuildState | None = None  # the guild's state then


def request_binding(
    session: Session, guild_id: str, wanted: BindRequest, vault: Vault, readable: bool
) -> Plan:
    live = bindings.get_binding(session, guild_id)
    version = wanted.expected_version
    if version is None and live is not None:
        version = live.version
    repository = installations.repository_by_name(session, wanted.full_name)
    full_name = repository.full_name if repository is not None else wanted.full_name
    repository_id = repository.id if repository is not None else None
    # A branch nobody followed was not synced on its pushes: its stored commit may be old.
    followed = repository is not None and serving.is_tracked(
        session, repository.id, wanted.branch or repository.default_branch
    )
    pending = bindings.save_pending(
        session,
        guild_id,
        repository_full_name=full_name,
        repository_id=repository_id,
        branch=wanted.branch,
        actor=wanted.actor,
        expected_version=version,
        token=wanted.token,
        vault=vault,
        status_message="first sync queued" if readable else "waiting for the GitHub App",
    )
    if (
        wanted.token is None
        and repository is not None
        and followed
        and _live_already(session, repository, wanted.branch, guild_id)
    ):  # the commit is live and the guild may read it: nothing to sync
        bindings.promote_pending(session, guild_id, actor=wanted.actor)
        generation = branches.current_generation(session)
        state = serving.guild_state(session, guild_id)
        return Plan(None, full_name, wanted.branch, pending.set_at, generation, state)
    guid = None
    if readable:  # the handler asks GitHub how to read it, catching installations we missed
        guid = jobs.enqueue_sync(
            session,
            full_name=full_name,
            repository_id=repository_id,
            branch=wanted.branch,
            trigger="bind",
            guild_id=guild_id,
        )
    return Plan(guid, full_name, wanted.branch, pending.set_at)


def request_refresh(session: Session, guild_id: str, actor: str) -> Plan | None:
    pending = bindings.get_pending(session, guild_id)
    target = pending or bindings.get_binding(session, guild_id)
    if target is None:
        return None
    audit.record_audit(
        session,
        actor,
        guild_id,
        "binding.refresh",
        None,
        {"repository": target.repository_full_name, "branch": target.branch},
    )
    guid = jobs.enqueue_sync(
        session,
        full_name=target.repository_full_name,
        repository_id=target.repository_id,
        branch=target.branch,
        trigger="refresh",
        guild_id=guild_id,
    )
    return Plan(
        guid,
        target.repository_full_name,
        target.branch,
        pending.set_at if pending is not None else None,
    )


def delete_binding(
    session: Session, guild_id: str, actor: str, expected_version: int | None
) -> tuple[bool, int]:
    removed = bindings.delete_binding(
        session, guild_id, actor=actor, expected_version=expected_version
    )
    if removed:
        pins.drop_pin(session, guild_id)
    return removed, branches.current_generation(session)


def decide(
    session: Session, guild_id: str, plan: Plan, install_url: str | None
) -> Refusal | bool | None:
    """True: done (show the config); a refusal; None: the sync has not finished yet."""
    delivery = deliveries.get_delivery(session, plan.guid) if plan.guid else None
    running = delivery is not None and delivery.state not in _FINISHED
    if plan.pending_set_at is None:  # a refresh of the live binding: done when the sync is
        return None if running else True
    pending = bindings.get_pending(session, guild_id)
    if pending is None or pending.set_at != plan.pending_set_at:
        live = bindings.get_binding(session, guild_id)
        if pending is None and live is not None and _same_target(live, plan):
            return True  # promoted
        return Refusal(
            409,
            "conflict",
            "the binding of this server was changed by someone "
            "else meanwhile: look at it with the config and try again if needed",
        )
    if running or _waits_for_bases(session, pending):
        return None
    return _why_pending(session, guild_id, pending, delivery, install_url)


def _waits_for_bases(session: Session, pending: PendingBinding) -> bool:
    """The branch's commit was read and waits for a base it `extends` to be read (the branch
    stays pending): the request completes by itself once it is, like a sync still running."""
    repository = _pending_repository(session, pending)
    if repository is None:
        return False
    tracked = branches.get_branch(
        session, repository.id, pending.branch or repository.default_branch
    )
    return (
        tracked is not None
        and tracked.status == BranchStatus.PENDING
        and tracked.latest_sha is not None
    )


def _why_pending(
    session: Session,
    guild_id: str,
    pending: PendingBinding,
    delivery: Any,
    install_url: str | None,
) -> Refusal:
    """The sync finished and the request is still pending: find out why, from the facts."""
    live = bindings.get_binding(session, guild_id)
    if pending.base_version != (live.version if live is not None else 0):
        return Refusal(
            409,
            "conflict",
            "the binding of this server was changed by someone "
            "else since this request was made: make the request again",
        )
    repository = _pending_repository(session, pending)
    has_token = pending.token_ciphertext is not None
    if repository is None or not (
        has_token or installations.has_app_access(session, repository.id)
    ):
        name = repository.full_name if repository is not None else pending.repository_full_name
        where = (
            f"Install it here, choosing {name}: {install_url}"
            if install_url
            else "Ask the guildprompts operator for the App's install link."
        )
        return Refusal(
            409,
            "not_installed",
            f"the guildprompts GitHub App is not installed on {name} (or cannot see "
            f"it). {where} The request is saved and completes by itself once the "
            "App is installed.",
            install_url=install_url,
            repository=name,
        )
    branch = pending.branch or repository.default_branch
    tracked = branches.get_branch(session, repository.id, branch)
    latest = None
    if tracked is not None and tracked.latest_sha:
        latest = snapshots.find_snapshot(session, repository.id, tracked.latest_sha)
    if latest is not None and not _checked_valid(tracked, latest):
        diagnostics = list(latest.diagnostics)
        return Refusal(
            422,
            "invalid",
            pending.status_message
            or f"commit {latest.commit_sha[:7]} on {branch} failed validation",
            errors=diagnostics,
            diagnostics=diagnostics,
            commit_sha=latest.commit_sha,
        )
    if (
        latest is not None
        and repository.private
        and not has_token
        and guild_id not in snapshots.allowed_guilds(session, latest.id)
    ):
        line = f'allowed_guilds: ["{guild_id}"]'
        return Refusal(
            403,
            "forbidden",
            f"{repository.full_name} is private and its PATH file does not allow "
            f"this server. Add this to PATH (or add the id to the existing list), "
            f"push, then set the repository again: {line}",
            allowed_guilds_entry=guild_id,
            path_snippet=line,
        )
    reason = _last_sync_message(session, repository.id, branch, pending.set_at)
    failed = delivery is not None and delivery.state == DeliveryState.FAILED.value
    if failed:
        reason = f"the first sync failed: {delivery.last_error or reason or 'see the log'}"
    reason = (
        reason
        or pending.status_message
        or f"the first sync of {repository.full_name}@{branch} did not complete"
    )
    if reason != pending.status_message:  # `GET .../config` shows it from now on
        bindings.set_pending_status(session, guild_id, reason[:2000])
    return Refusal(502 if failed else 422, "sync_failed" if failed else "not_synced", reason)


def _checked_valid(tracked: TrackedBranch | None, latest: Snapshot) -> bool:
    """Is the branch's latest commit valid? A commit that extends bases is valid or not with
    the base commits it is checked with: it is when the branch serves it (its snapshot's own
    flag records its first check; one waiting for a base is `_waits_for_bases`)."""
    if latest.valid or tracked is None:
        return latest.valid
    return tracked.active_snapshot_id == latest.id


def _last_sync_message(
    session: Session, repository_id: int, branch: str, since: datetime
) -> str | None:
    """What the latest sync of the branch since the request said (e.g. the branch is gone)."""
    for entry in audit.recent_syncs(session, repository_id, limit=20):
        if entry.at < since:
            return None
        if entry.branch == branch and entry.message:
            return entry.message
    return None


def _same_target(live: Any, plan: Plan) -> bool:
    return (
        live.repository_full_name.lower() == plan.full_name.lower() and live.branch == plan.branch
    )


def _live_already(
    session: Session, repository: Repository, branch: str | None, guild_id: str
) -> bool:
    """The branch already serves its newest commit through the App, and this guild may read
    it (public, or listed in allowed_guilds): binding needs only this access check."""
    tracked = branches.get_branch(session, repository.id, branch or repository.default_branch)
    if tracked is None or tracked.active_snapshot_id is None or tracked.status != BranchStatus.OK:
        return False
    active = snapshots.get_snapshot(session, tracked.active_snapshot_id)
    if active is None or (tracked.latest_sha and tracked.latest_sha != active.commit_sha):
        return False  # a newer head is being synced: let that sync decide
    if not installations.has_app_access(session, repository.id):
        return False
    for base in layers.layers_from(tracked.active_layers):  # a private base allows it too
        if base.private and guild_id not in snapshots.allowed_guilds(session, base.snapshot_id):
            return False
    return not repository.private or guild_id in snapshots.allowed_guilds(session, active.id)


def _pending_repository(session: Session, pending: PendingBinding) -> Repository | None:
    if pending.repository_id is not None:
        return installations.get_repository(session, pending.repository_id)
    return installations.repository_by_name(session, pending.repository_full_name)


def config_view(
    session: Session, guild_id: str, github_url: str, install_url: str | None
) -> dict[str, Any] | None:
    """What `GET .../config` shows: the live binding (else the pending request) and its syncs."""
    state = serving.guild_state(session, guild_id)
    pending = bindings.get_pending(session, guild_id)
    if state is None and pending is None:
        return None
    if state is not None:
        view = _live_view(state, github_url)
        if not state.installed and not state.has_token:
            view["install_url"] = install_url
    else:
        assert pending is not None
        view = _pending_view(session, pending, github_url, install_url)
    request = None
    if state is not None and pending is not None:
        requested = _pending_view(session, pending, github_url, install_url)
        request = {
            key: requested[key]
            for key in (
                "repository",
                "branch",
                "status_message",
                "set_by",
                "set_at",
                "has_token",
                "install_url",
                "last_sync_outcome",
                "errors",
            )
        }
    return {"guild_id": guild_id, **view, "pending": request}


def _live_view(state: GuildState, github_url: str) -> dict[str, Any]:
    return {
        "repository": state.repository_full_name,
        "branch": state.branch,
        "effective_branch": state.effective_branch,
        "enabled": state.enabled,
        "state": state.state,
        "last_sync_outcome": state.branch_status or "pending",
        "status_message": state.status_message,
        "active_sha": state.commit_sha,
        "latest_sha": state.latest_sha,
        "last_sync_at": _iso(state.last_sync_at),
        "activated_at": _iso(state.activated_at),
        "errors": list(state.diagnostics),
        "is_stale": state.is_stale,
        "last_error": state.last_error,
        "set_by": state.set_by,
        "set_at": _iso(state.set_at),
        "repo_url": f"{github_url}/{state.repository_full_name}",
        "private": state.private,
        "installed": state.installed,
        "has_token": state.has_token,
        "version": state.version,
        "install_url": None,
        "pinned": pin_view(state),
        "bases": [
            {
                "repository": layer.name,
                "ref": layer.ref,
                "commit_sha": layer.commit_sha,
                "repo_url": f"{github_url}/{layer.name}",
            }
            for layer in state.layers
        ],
    }


def pin_view(state: GuildState) -> dict[str, Any] | None:
    """The pin a guild is served from, and what its branch has meanwhile (None: not pinned)."""
    if state.pinned_sha is None:
        return None
    return {
        "sha": state.pinned_sha,
        "pinned_by": state.pinned_by,
        "pinned_at": _iso(state.pinned_at),
        "branch_sha": state.branch_sha,
    }


def _pending_view(
    session: Session, pending: PendingBinding, github_url: str, install_url: str | None
) -> dict[str, Any]:
    repository = _pending_repository(session, pending)
    branch = pending.branch or (repository.default_branch if repository is not None else None)
    tracked = None
    if repository is not None and branch is not None:
        tracked = branches.get_branch(session, repository.id, branch)
    installed = repository is not None and installations.has_app_access(session, repository.id)
    has_token = pending.token_ciphertext is not None
    return {
        "repository": pending.repository_full_name,
        "branch": pending.branch,
        "effective_branch": branch,
        "enabled": True,
        "state": "pending",
        "last_sync_outcome": tracked.status if tracked is not None else "pending",
        "status_message": pending.status_message or "waiting for the first sync",
        "active_sha": None,
        "latest_sha": tracked.latest_sha if tracked is not None else None,
        "last_sync_at": _iso(tracked.last_sync_at) if tracked is not None else None,
        "activated_at": None,
        "errors": list(tracked.diagnostics) if tracked is not None else [],
        "is_stale": False,
        "last_error": None,
        "set_by": pending.set_by,
        "set_at": _iso(pending.set_at),
        "repo_url": f"{github_url}/{pending.repository_full_name}",
        "private": repository.private if repository is not None else None,
        "installed": installed,
        "has_token": has_token,
        "version": None,
        "install_url": None if installed or has_token else install_url,
    }


def guild_events(session: Session, guild_id: str) -> list[dict[str, Any]]:
    """Configuration changes (audit log) and sync problems, newest first.

    A problem is reported once however many times it recurred (retries, reconcile passes):
    syncs are grouped by (outcome, commit), with a count and the last time seen.
    """
    found: list[dict[str, Any]] = [
        {
            "at": _iso(entry.at),
            "actor": entry.actor,
            "action": entry.action,
            "before": entry.before,
            "after": entry.after,
            "kind": "change",
        }
        for entry in audit.audit_entries(session, guild_id, limit=EVENTS_LIMIT)
    ]
    state = serving.guild_state(session, guild_id)
    pending = bindings.get_pending(session, guild_id)
    followed: dict[tuple[int, str], str] = {}
    if state is not None and state.repository_id is not None and state.effective_branch:
        followed[(state.repository_id, state.effective_branch)] = state.repository_full_name
    if pending is not None:
        repository = _pending_repository(session, pending)
        if repository is not None:
            branch = pending.branch or repository.default_branch
            followed[(repository.id, branch)] = repository.full_name
    problems: dict[tuple[str, str | None], dict[str, Any]] = {}
    for (repository_id, branch), full_name in followed.items():
        for entry in reversed(audit.recent_syncs(session, repository_id, limit=200)):
            if entry.outcome not in PROBLEM_OUTCOMES or entry.branch not in (branch, None):
                continue
            key = (entry.outcome, entry.commit_sha)
            if key in problems:
                problems[key]["count"] += 1
                problems[key]["last_at"] = _iso(entry.at)
                continue
            problems[key] = {
                "at": _iso(entry.at),
                "actor": "guildprompts",
                "action": f"sync.{entry.outcome}",
                "before": None,
                "kind": "problem",
                "count": 1,
                "last_at": _iso(entry.at),
                "after": {
                    "repository": full_name,
                    "branch": entry.branch,
                    "commit_sha": entry.commit_sha,
                    "trigger": entry.trigger,
                    "message": entry.message,
                },
            }
    found.extend(problems.values())
    found.sort(key=lambda event: event["at"] or "", reverse=True)
    if (
        state is not None
        and state.state == "no_access"
        and not any(outcome == "no_access" for outcome, _sha in problems)
    ):
        found.insert(
            0,
            {
                "at": None,
                "actor": "guildprompts",
                "action": "access.lost",
                "before": None,
                "kind": "problem",
                "count": 1,
                "last_at": None,
                "after": {
                    "repository": state.repository_full_name,
                    "message": state.status_message,
                },
            },
        )
    return found[:EVENTS_LIMIT]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
