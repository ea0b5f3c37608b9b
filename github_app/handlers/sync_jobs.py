"""`guildprompts.sync`: the internal job that syncs a followed branch (see `github_app.sync.jobs`).

Producers know a repository by name at least; this handler finds out how to read it:
- the App's installation when it covers the repository (and is not suspended),
- else a personal access token a guild gave for it (the asking guild's first),
- else, when the repository or its access is not known here, GitHub is asked once (the App's
  installation on the repository, or the repository through the token) and the answer stored,
  which catches installations whose events were missed.
With no way to read it, pending requests on it say they wait for the App, and nothing is synced.

A reconcile job names the new head it saw; that commit gets a check run when it has none yet
(its push may never have been delivered). Other jobs post no check run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session

from github_app.github import InstallationUnavailable, NotFound
from github_app.handlers.common import (
    HandlerContext,
    commit_sha,
    integer,
    remember_installation,
)
from github_app.logs import log_context
from github_app.secrets import Vault
from github_app.store import bindings, checkruns, installations, layers
from github_app.store.models import GuildBinding, PendingBinding, Repository
from github_app.sync import SyncRequest, sync
from github_app.sync.jobs import SNAPSHOT_ONLY, SYNC_EVENT, enqueue_rebases
from github_app.sync.request import JOB_TRIGGERS
from github_app.webhooks import Delivery, Router

log = logging.getLogger("guildprompts.handlers.sync")
BASE_TRIGGERS = frozenset({"base", "rebase"})  # syncs of a branch as another one's base
router = Router()


@dataclass(frozen=True)
class SyncJob:
    repository_id: int | None
    full_name: str
    branch: str | None
    sha: str | None
    trigger: str
    guild_id: str | None

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> SyncJob | None:
        """The job, or None when the payload is not one `enqueue_sync` writes."""
        full_name, trigger = payload.get("full_name"), payload.get("trigger")
        branch, guild_id = payload.get("branch"), payload.get("guild_id")
        if not isinstance(full_name, str) or full_name.count("/") != 1:
            return None
        if trigger not in JOB_TRIGGERS:
            return None
        if branch is not None and not (isinstance(branch, str) and branch):
            return None
        if guild_id is not None and not isinstance(guild_id, str):
            return None
        return cls(
            integer(payload.get("repository_id")),
            full_name,
            branch,
            commit_sha(payload.get("sha")),
            trigger,
            guild_id,
        )


@dataclass(frozen=True)
class _Target:
    repository_id: int
    full_name: str
    branch: str
    installation_id: int | None
    token: str | None
    check_run: bool
    public: bool = False

    @property
    def readable(self) -> bool:
        """A base may be read anonymously when public; a bound repository needs the App or a
        token (its guilds' access rules are about who gave them)."""
        return self.installation_id is not None or self.token is not None or self.public


@router.register(SYNC_EVENT)
async def on_sync_job(delivery: Delivery, ctx: HandlerContext) -> None:
    job = SyncJob.from_payload(delivery.payload)
    if job is None:
        log.error("sync job %s is malformed: dropped", delivery.guid)
        return
    vault = ctx.runtime.vault
    with log_context(repository=job.full_name, guild=job.guild_id):
        target = await ctx.db(_target, job, vault)
        if target is None or not target.readable:
            discovered = await _discover(ctx, job)
            if discovered is not None:  # by id: a former name leads to the renamed repository
                job = replace(job, repository_id=discovered)
                target = await ctx.db(_target, job, vault)
        if target is None or not target.readable:
            if job.trigger in BASE_TRIGGERS:
                await ctx.db(_base_unreadable, job)
                ctx.runtime.wake_worker()
            waiting = await ctx.db(_mark_waiting, job)
            log.info(
                "sync of %s (%s): the App cannot read it and no token was given; %d "
                "pending requests wait for the App",
                job.full_name,
                job.trigger,
                waiting,
            )
            return
        if job.trigger in BASE_TRIGGERS:
            await ctx.db(layers.set_base_problem, job.full_name, target.branch, None)
        await sync(
            ctx.runtime,
            SyncRequest(
                repository_id=target.repository_id,
                full_name=target.full_name,
                branch=target.branch,
                sha=job.sha,
                trigger=job.trigger,
                installation_id=target.installation_id,
                token=target.token,
                activate=job.trigger not in SNAPSHOT_ONLY,
                check_run=target.check_run,
            ),
        )


def _target(session: Session, job: SyncJob, vault: Vault) -> _Target | None:
    repository = _stored_repository(session, job)
    if repository is None:
        return None
    installation_id = None
    token = None
    if installations.has_app_access(session, repository.id):
        installation_id = repository.installation_id
    else:
        token = _token(session, vault, job, repository)
    check_run = installation_id is not None and (
        job.trigger == "rebase"  # says which base commits the head was checked with
        or (
            job.trigger == "reconcile"
            and job.sha is not None
            and not checkruns.check_runs_for(session, repository.id, job.sha)
        )
    )
    return _Target(
        repository.id,
        repository.full_name,
        job.branch or repository.default_branch,
        installation_id,
        token,
        check_run,
        public=job.trigger in BASE_TRIGGERS and not repository.private,
    )


def _stored_repository(session: Session, job: SyncJob) -> Repository | None:
    if job.repository_id is not None:
        return installations.get_repository(session, job.repository_id)
    return installations.repository_by_name(session, job.full_name)


def _token(
    session: Session, vault: Vault, job: SyncJob, repository: Repository | None
) -> str | None:
    """A personal access token given for the repository: the asking guild's first."""
    repository_id = repository.id if repository is not None else job.repository_id
    full_name = repository.full_name if repository is not None else job.full_name
    holders: list[GuildBinding | PendingBinding | None] = []
    if job.guild_id is not None:
        holders += [
            bindings.get_pending(session, job.guild_id),
            bindings.get_binding(session, job.guild_id),
        ]
    holders += bindings.pending_for_repository(
        session, repository_id=repository_id, full_name=full_name
    )
    holders += bindings.bindings_for_repository(
        session, repository_id=repository_id, full_name=full_name
    )
    for holder in holders:
        if (
            holder is not None
            and holder.token_ciphertext is not None
            and _names(holder, repository_id, full_name)
        ):
            return bindings.binding_token(holder, vault)
    if job.trigger in BASE_TRIGGERS:  # a base: a token of a guild built on it
        ref = job.branch or (repository.default_branch if repository is not None else "main")
        return bindings.base_token(session, vault, full_name, ref)
    return None


def _names(
    holder: GuildBinding | PendingBinding, repository_id: int | None, full_name: str
) -> bool:
    if holder.repository_id is not None and repository_id is not None:
        return holder.repository_id == repository_id
    return holder.repository_full_name.lower() == full_name.lower()


async def _discover(ctx: HandlerContext, job: SyncJob) -> int | None:
    """Ask GitHub how the repository can be read and store the answer; the repository's id
    if stored. GitHub follows a former name (301) to the repository, stored under its name now.
    """
    github = ctx.runtime.github
    if ctx.runtime.app_configured:
        installation = await github.get_repo_installation(job.full_name)
        if installation is not None:
            if installation.get("suspended_at") is not None:
                await ctx.db(remember_installation, installation)
                return None
            try:
                repository = await github.get_repository(
                    job.full_name, installation_id=installation["id"]
                )
            except (InstallationUnavailable, NotFound):
                return None  # uninstalled or suspended a moment ago: its event follows
            return await ctx.db(_store, job, repository, installation)
    token = await ctx.db(_token, ctx.runtime.vault, job, None)
    if token is None and job.trigger not in BASE_TRIGGERS:
        return None
    try:  # a base nobody gave a token for is read anonymously when it is public
        repository = await github.get_repository(job.full_name, token=token)
    except NotFound:
        return None
    return await ctx.db(_store, job, repository, None)


def _store(
    session: Session,
    job: SyncJob,
    repository: Mapping[str, Any],
    installation: Mapping[str, Any] | None,
) -> int | None:
    installation_id = None
    if installation is not None:
        installation_id = remember_installation(session, installation)
    stored = installations.remember_repository(session, repository, installation_id)
    if stored is None:
        return None
    bindings.link_pending(session, job.full_name, stored.id)
    return stored.id


def _base_unreadable(session: Session, job: SyncJob) -> None:
    """A base nothing can read: the branches extending it say so (a `rebase` of each), rather
    than wait for it; their next push tries it again."""
    ref = job.branch or "main"
    problem = (
        f"guildprompts cannot read {job.full_name}@{ref}: it does not exist, or it is private "
        "and neither the GitHub App nor a token given for a repository extending it can read it"
    )
    layers.set_base_problem(session, job.full_name, ref, problem)
    enqueue_rebases(session, job.full_name, [ref])  # a rebase never queues a read: no loop


def _mark_waiting(session: Session, job: SyncJob) -> int:
    message = (
        f"waiting for the guildprompts App to be installed on {job.full_name} (or for "
        "a personal access token that can read it)"
    )
    pending = bindings.pending_for_repository(
        session, repository_id=job.repository_id, full_name=job.full_name
    )
    if job.repository_id is None:
        stored = installations.repository_by_name(session, job.full_name)
        if stored is not None:
            pending += bindings.pending_for_repository(session, repository_id=stored.id)
    waiting = {p.guild_id for p in pending if job.guild_id in (None, p.guild_id)}
    for guild_id in sorted(waiting):
        bindings.set_pending_status(session, guild_id, message)
    return len(waiting)
