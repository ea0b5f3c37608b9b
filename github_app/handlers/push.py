"""`push` and `delete`: keep tracked branches current, check commits on the other branches.

- A tag push, or a push already superseded by a newer stored push to the same branch, costs
  nothing (coalescing: the newer one syncs the branch); except a tag that a branch extends as
  its base (`owner/name@v1`), which is synced like a branch.
- A deleted branch keeps its last good snapshot and gets a status saying so.
- A tracked branch (some guild's binding or pending request follows it) is synced and may
  become active; the sync also posts the `guildprompts` check run.
- Any other branch is never synced for serving. It only gets a check run, and only when the
  pushed commit is known to hold a `PATH` file: the push's commit lists (oldest first) say so when
  they add, modify or remove PATH; otherwise PATH is as it was in `before`, known when a snapshot
  of `before` is stored. When neither tells (a new branch whose commits leave PATH alone), the
  push does nothing: GitHub's `check_suite` `requested`, sent for the same commit, checks it, so
  no tree is fetched just to find out.
- A commit gets one check run whichever of push, check_suite and pull_request asks first: the
  sync posts none on a commit with a completed run (and completes one a failed attempt left
  in progress).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from github_app.handlers.common import (
    HandlerContext,
    commit_sha,
    mapping,
    mark_branch_deleted,
    remember_installation,
)
from github_app.secrets import Vault
from github_app.store import (
    bindings,
    branches,
    deliveries,
    installations,
    layers,
    serving,
    snapshots,
)
from github_app.store.models import SnapshotFile
from github_app.sync import SyncRequest, sync
from github_app.webhooks import Delivery, Router
from promptrepo.files import PATH_FILE

log = logging.getLogger("guildprompts.handlers.push")
router = Router()


@dataclass(frozen=True)
class _Plan:
    """What a push needs, decided in one transaction."""

    skip: str | None = None  # why nothing is done
    tracked: bool = False
    check_run: bool = False
    installation_id: int | None = None
    token: str | None = None


@router.register("push")
async def on_push(delivery: Delivery, ctx: HandlerContext) -> None:
    if delivery.repository_id is None or delivery.repository is None:
        log.info("push without a repository: nothing to do")
        return
    if delivery.branch is None:
        tag = (delivery.ref or "").removeprefix("refs/tags/")
        if delivery.ref and delivery.ref.startswith("refs/tags/") and tag:
            await _tag_pushed(ctx, delivery, tag)
            return
        log.info("push to %s is not a branch push: nothing to sync", delivery.ref)
        return
    if delivery.payload.get("deleted") is True:
        await _branch_deleted(ctx, delivery)
        return
    sha = commit_sha(delivery.payload.get("after"))
    if sha is None:
        log.warning("push to %s has no usable `after` sha: nothing to sync", delivery.branch)
        return
    plan = await ctx.db(_plan, delivery, ctx.row_id, sha, ctx.runtime.vault)
    if plan.skip is not None:
        log.info("push of %s to %s: %s", sha[:7], delivery.branch, plan.skip)
        return
    await sync(
        ctx.runtime,
        SyncRequest(
            repository_id=delivery.repository_id,
            full_name=delivery.repository,
            branch=delivery.branch,
            sha=sha,
            trigger="push",
            installation_id=plan.installation_id,
            token=plan.token,
            activate=plan.tracked,
            check_run=plan.check_run,
            received_at=ctx.received_at if plan.tracked else None,
            base_sha=commit_sha(delivery.payload.get("before")),
            base_branch=delivery.branch,
            pushed_by=_pusher(delivery.payload),
        ),
    )


async def _tag_pushed(ctx: HandlerContext, delivery: Delivery, tag: str) -> None:
    """A tag that some branch extends as its base (`owner/name@tag`, read as a tag before):
    synced like a branch push, its commit read from the tag (an annotated tag's `after` is
    the tag object, not the commit). Any other tag push costs nothing."""
    assert delivery.repository_id is not None and delivery.repository is not None
    plan = await ctx.db(_tag_plan, delivery.repository_id, tag)
    if plan is None or delivery.payload.get("deleted") is True:
        log.info("push of tag %s: no branch follows it as a base", tag)
        return
    await sync(
        ctx.runtime,
        SyncRequest(
            repository_id=delivery.repository_id,
            full_name=delivery.repository,
            branch=tag,
            sha=None,
            trigger="push",
            installation_id=plan.installation_id,
            token=plan.token,
            check_run=False,  # a tag names a commit checked on its branch
            received_at=ctx.received_at,
        ),
    )


def _tag_plan(session: Session, repository_id: int, tag: str) -> _Plan | None:
    followed = branches.get_branch(session, repository_id, tag)
    if (
        followed is None
        or followed.ref_kind != "tags"
        or not layers.is_base(session, repository_id, tag)
    ):
        return None
    repository = installations.get_repository(session, repository_id)
    if repository is None or not installations.has_app_access(session, repository_id):
        return None  # its webhooks come from an installation: without one, reconcile reads it
    return _Plan(tracked=True, installation_id=repository.installation_id)


@router.register("delete")
async def on_delete(delivery: Delivery, ctx: HandlerContext) -> None:
    """`delete` names a branch or tag that is gone (a push with deleted=true also comes)."""
    if delivery.repository_id is None or delivery.branch is None:
        return
    await _branch_deleted(ctx, delivery)


async def _branch_deleted(ctx: HandlerContext, delivery: Delivery) -> None:
    assert delivery.repository_id is not None and delivery.branch is not None
    outcome = await ctx.db_then_announce(
        _mark_deleted, delivery.repository_id, delivery.branch, ctx.row_id
    )
    log.info("branch %s deleted: %s", delivery.branch, outcome)


def _mark_deleted(session: Session, repository_id: int, branch: str, row_id: int) -> str:
    if deliveries.has_newer_push(session, repository_id, f"refs/heads/{branch}", row_id):
        return "a newer push to the branch is stored (recreated), it decides"
    if mark_branch_deleted(session, repository_id, branch):
        return "its last good snapshot keeps serving, with a status saying the branch is gone"
    return "no guild follows it"


def _plan(session: Session, delivery: Delivery, row_id: int, sha: str, vault: Vault) -> _Plan:
    assert delivery.repository_id is not None and delivery.branch is not None
    repository_id = delivery.repository_id
    if delivery.ref and deliveries.has_newer_push(session, repository_id, delivery.ref, row_id):
        return _Plan(skip="a newer push to the branch is stored, it syncs the branch")
    repository = mapping(delivery.payload.get("repository"))
    owner = mapping(repository.get("owner"))
    installation_id = remember_installation(
        session,
        mapping(delivery.payload.get("installation")),
        account_login=owner.get("login") or owner.get("name"),
    )
    installations.remember_repository(session, repository, installation_id)
    tracked = serving.is_tracked(session, repository_id, delivery.branch)
    app_access = installations.has_app_access(session, repository_id)
    if not tracked:
        if not app_access:
            return _Plan(skip="branch not tracked, and the App cannot post a check run")
        if not _has_path_file(session, repository_id, delivery.payload):
            return _Plan(
                skip="branch not tracked; PATH not known to be in the commit "
                "(check_suite checks it)"
            )
    token = None
    if not app_access:
        token = bindings.repository_token(session, vault, repository_id)
    return _Plan(
        tracked=tracked,
        check_run=app_access,
        installation_id=installation_id if app_access else None,
        token=token,
    )


def _has_path_file(session: Session, repository_id: int, payload: Mapping[str, Any]) -> bool:
    """Is PATH in the pushed commit, as far as the payload and stored snapshots tell?"""
    present = _path_in_commits(payload.get("commits"))
    if present is not None:
        return present
    before = commit_sha(payload.get("before"))
    if before is None:
        return False
    snapshot = snapshots.find_snapshot(session, repository_id, before)
    if snapshot is None:
        return False
    query = select(
        exists().where(SnapshotFile.snapshot_id == snapshot.id, SnapshotFile.path == PATH_FILE)
    )
    return bool(session.scalar(query))


def _path_in_commits(commits: Any) -> bool | None:
    """The last word of the pushed commits (oldest first) on PATH: None when none touches it."""
    present = None
    for commit in commits if isinstance(commits, list) else ():
        commit = mapping(commit)
        if PATH_FILE in _paths(commit.get("removed")):
            present = False
        if PATH_FILE in _paths(commit.get("added")) or PATH_FILE in _paths(commit.get("modified")):
            present = True
    return present


def _pusher(payload: Mapping[str, Any]) -> str | None:
    """Who pushed: `pusher.name` (the GitHub login), else the sender's login."""
    for value in (
        mapping(payload.get("pusher")).get("name"),
        mapping(payload.get("sender")).get("login"),
    ):
        if isinstance(value, str) and value.strip():
            return value.strip()[:255]
    return None


def _paths(value: Any) -> list[str]:
    return [path for path in value if isinstance(path, str)] if isinstance(value, list) else []
