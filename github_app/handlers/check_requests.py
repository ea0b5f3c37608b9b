"""Check runs on demand: pull requests, check suites, and "Re-run" on a guildprompts check.

Each one syncs the head commit without activating it (`activate=False`) and posts the
`guildprompts` check run on it. A commit gets one run whichever event asks first: the sync
skips a commit with a completed run for `pull_request`, and this module skips `check_suite`
requested on a commit with any recorded run (the sync treats every check_suite trigger as a
rerun). `rerequested` always posts a new one, since a person asked for it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from github_app.handlers.common import (
    HandlerContext,
    commit_sha,
    integer,
    mapping,
    remember_installation,
)
from github_app.store import checkruns, installations, previews
from github_app.sync import SyncRequest, sync
from github_app.webhooks import Delivery, Router

log = logging.getLogger("guildprompts.handlers.checks")
router = Router()


@router.register("pull_request", "opened")
@router.register("pull_request", "synchronize")
@router.register("pull_request", "reopened")
async def on_pull_request(delivery: Delivery, ctx: HandlerContext) -> None:
    pull = mapping(delivery.payload.get("pull_request"))
    head = mapping(pull.get("head"))
    same_repository = integer(mapping(head.get("repo")).get("id")) == delivery.repository_id
    branch = head.get("ref") if same_repository and isinstance(head.get("ref"), str) else None
    await _remember_pull(ctx, delivery, open_=True)
    await _check(
        ctx, delivery, commit_sha(head.get("sha")), branch, "pull_request", base=_base(pull)
    )


@router.register("pull_request", "closed")
async def on_pull_request_closed(delivery: Delivery, ctx: HandlerContext) -> None:
    """Closed or merged: channel previews of it end by themselves."""
    await _remember_pull(ctx, delivery, open_=False)


async def _remember_pull(ctx: HandlerContext, delivery: Delivery, *, open_: bool) -> None:
    """The pull request's head and state, for channel previews (store.previews)."""
    pull = mapping(delivery.payload.get("pull_request"))
    number = integer(pull.get("number"))
    sha = commit_sha(mapping(pull.get("head")).get("sha"))
    if delivery.repository_id is None or number is None or sha is None:
        return
    await ctx.db_then_announce(
        previews.record_pull_request, delivery.repository_id, number, sha, open_=open_
    )


@router.register("check_suite", "requested")
@router.register("check_suite", "rerequested")
async def on_check_suite(delivery: Delivery, ctx: HandlerContext) -> None:
    suite = mapping(delivery.payload.get("check_suite"))
    branch = suite.get("head_branch") if isinstance(suite.get("head_branch"), str) else None
    await _check(
        ctx,
        delivery,
        commit_sha(suite.get("head_sha")),
        branch,
        "check_suite",
        skip_if_checked=delivery.action == "requested",
        base=_suite_base(suite),
    )


@router.register("check_run", "rerequested")
async def on_check_run(delivery: Delivery, ctx: HandlerContext) -> None:
    run = mapping(delivery.payload.get("check_run"))
    suite = mapping(run.get("check_suite"))
    branch = suite.get("head_branch") if isinstance(suite.get("head_branch"), str) else None
    base = _suite_base(run) if run.get("pull_requests") else _suite_base(suite)
    await _check(ctx, delivery, commit_sha(run.get("head_sha")), branch, "check_run", base=base)


def _base(pull: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """A pull request's base commit and branch: what its routing diff compares with."""
    base = mapping(pull.get("base"))
    ref = base.get("ref") if isinstance(base.get("ref"), str) else None
    return commit_sha(base.get("sha")), ref


def _suite_base(holder: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The base of the first pull request a check suite or run lists (none: no diff)."""
    pulls = holder.get("pull_requests")
    if not isinstance(pulls, list) or not pulls:
        return None, None
    return _base(mapping(pulls[0]))


async def _check(
    ctx: HandlerContext,
    delivery: Delivery,
    sha: str | None,
    branch: str | None,
    trigger: str,
    *,
    skip_if_checked: bool = False,
    base: tuple[str | None, str | None] = (None, None),
) -> None:
    if delivery.repository_id is None or delivery.repository is None or sha is None:
        log.info(
            "%s.%s without a repository or head sha: nothing to check",
            delivery.event,
            delivery.action,
        )
        return
    installation_id = await ctx.db(
        _prepare, delivery.payload, delivery.repository_id, sha, skip_if_checked
    )
    if installation_id is None:
        log.info(
            "%s.%s: commit %s already has a check run, or the App cannot post one",
            delivery.event,
            delivery.action,
            sha[:7],
        )
        return
    await sync(
        ctx.runtime,
        SyncRequest(
            repository_id=delivery.repository_id,
            full_name=delivery.repository,
            branch=branch,
            sha=sha,
            trigger=trigger,
            installation_id=installation_id,
            activate=False,
            check_run=True,
            base_sha=base[0],
            base_branch=base[1],
        ),
    )


def _prepare(
    session: Session,
    payload: Mapping[str, Any],
    repository_id: int,
    sha: str,
    skip_if_checked: bool,
) -> int | None:
    """Refresh the repository; the installation to post with, or None to post nothing."""
    repository = mapping(payload.get("repository"))
    owner = mapping(repository.get("owner"))
    installation_id = remember_installation(
        session, mapping(payload.get("installation")), account_login=owner.get("login")
    )
    installations.remember_repository(session, repository, installation_id)
    if installation_id is None or not installations.has_app_access(session, repository_id):
        return None
    if skip_if_checked and checkruns.check_runs_for(session, repository_id, sha):
        return None
    return installation_id
