"""Installations coming and going: access restored syncs by itself, access lost purges.

- `installation` created / unsuspend / new_permissions_accepted and `installation_repositories`
  added: the installation and its repositories are stored (the repository list comes from
  GitHub, which gives default branches the payload lacks), and a `guildprompts.sync`
  (trigger access-restored) is queued for every branch a binding or pending request follows
  there, so pending bindings complete without anyone asking again.
- `installation` deleted / suspend and `installation_repositories` removed: the repositories'
  stored content is purged in the same transaction, their guilds fall back to the built-in
  defaults with a status saying why, and this process's caches are told at once.
- `github_app_authorization` revoked: a user revoked their authorization of the App, which
  invalidates the user-to-server tokens the App holds for that user. guildprompts never asks
  for user-to-server tokens (it reads with installation tokens and the personal access tokens
  guilds give), so nothing it stores depends on it: the event is acknowledged and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from github_app.github import InstallationUnavailable, NotFound
from github_app.handlers.common import (
    HandlerContext,
    enqueue_followed,
    integer,
    mapping,
    remember_installation,
)
from github_app.store import installations
from github_app.store.models import Repository
from github_app.webhooks import Delivery, Router

log = logging.getLogger("guildprompts.handlers.installation_events")
router = Router()


@router.register("installation", "created")
@router.register("installation", "unsuspend")
@router.register("installation", "new_permissions_accepted")
async def on_access_granted(delivery: Delivery, ctx: HandlerContext) -> None:
    installation = mapping(delivery.payload.get("installation"))
    repositories = await _list_repositories(ctx, delivery)
    if repositories is None:
        return
    guids = await ctx.db_then_wake(_store_installation, installation, repositories, replace=True)
    log.info(
        "installation %s %s: %d repositories, %d syncs queued",
        delivery.installation_id,
        delivery.action,
        len(repositories),
        len(guids),
    )


@router.register("installation_repositories", "added")
async def on_repositories_added(delivery: Delivery, ctx: HandlerContext) -> None:
    added = _ids(delivery.payload.get("repositories_added"))
    listed = await _list_repositories(ctx, delivery) if added else None
    if listed is None:
        return
    assert delivery.installation_id is not None
    repositories = [repository for repository in listed if repository.get("id") in added]
    repositories += await _fetch_missing(ctx, delivery.installation_id, added, repositories)
    installation = mapping(delivery.payload.get("installation"))
    guids = await ctx.db_then_wake(_store_installation, installation, repositories, replace=False)
    log.info(
        "installation %s: %d repositories added, %d syncs queued",
        delivery.installation_id,
        len(repositories),
        len(guids),
    )


@router.register("installation", "deleted")
async def on_installation_deleted(delivery: Delivery, ctx: HandlerContext) -> None:
    if delivery.installation_id is None:
        return
    account = _account(delivery.payload)
    purged = await ctx.db_then_announce(
        installations.remove_installation,
        delivery.installation_id,
        reason=f"the guildprompts App was uninstalled from {account}: serving the built-in "
        "defaults until it is installed again",
    )
    log.info(
        "installation %s deleted: %d repositories purged", delivery.installation_id, len(purged)
    )


@router.register("installation", "suspend")
async def on_suspend(delivery: Delivery, ctx: HandlerContext) -> None:
    if delivery.installation_id is None:
        return
    account = _account(delivery.payload)
    purged = await ctx.db_then_announce(
        _suspend,
        mapping(delivery.payload.get("installation")),
        delivery.installation_id,
        f"the guildprompts App's installation on {account} is suspended: serving the built-in "
        "defaults until it is unsuspended",
    )
    log.info(
        "installation %s suspended: %d repositories purged", delivery.installation_id, len(purged)
    )


@router.register("installation_repositories", "removed")
async def on_repositories_removed(delivery: Delivery, ctx: HandlerContext) -> None:
    removed = _ids(delivery.payload.get("repositories_removed"))
    account = _account(delivery.payload)
    count = await ctx.db_then_announce(
        _detach,
        removed,
        f"the repository was removed from the guildprompts App's installation on {account}: "
        "serving the built-in defaults until it is added again",
    )
    log.info("installation %s: %d repositories removed and purged", delivery.installation_id, count)


@router.register("github_app_authorization", "revoked")
async def on_authorization_revoked(delivery: Delivery, ctx: HandlerContext) -> None:
    sender = mapping(delivery.payload.get("sender")).get("login")
    log.info(
        "GitHub user %s revoked their authorization of the App; guildprompts holds no "
        "user-to-server token, nothing to forget",
        sender,
    )


def _store_installation(
    session: Session,
    installation: Mapping[str, Any],
    repositories: list[dict[str, Any]],
    *,
    replace: bool,
) -> list[str]:
    """Store the installation and its repositories; queue syncs; returns the queued GUIDs.

    `replace`: `repositories` is the installation's whole list, so stored repositories missing
    from it left the installation meanwhile and are detached.
    """
    installation_id = remember_installation(session, installation, suspended=False)
    if installation_id is None:
        return []
    # One query for what is stored, so a large installation's unchanged repositories (the
    # usual case when an event re-lists 10,000 of them) cost no write.
    known = {r.id: r for r in installations.installation_repositories(session, installation_id)}
    ids: set[int] = set()
    for listed in repositories:
        current = known.get(integer(listed.get("id")) or -1)
        if current is None or not _unchanged(current, listed):
            current = installations.remember_repository(session, listed, installation_id)
        if current is not None:
            ids.add(current.id)
    if replace:
        for gone in known.values():
            if gone.id not in ids:
                installations.detach_repository(
                    session,
                    gone.id,
                    reason="the repository is no longer in the guildprompts App's installation",
                )
    return enqueue_followed(session, ids, "access-restored")


def _unchanged(stored: Repository, repository: Mapping[str, Any]) -> bool:
    return (stored.full_name, stored.private, stored.default_branch) == (
        repository.get("full_name"),
        repository.get("private"),
        repository.get("default_branch"),
    )


def _suspend(
    session: Session, installation: Mapping[str, Any], installation_id: int, reason: str
) -> list[int]:
    remember_installation(session, installation, suspended=True)
    return installations.suspend_installation(session, installation_id, True, reason=reason)


def _detach(session: Session, repository_ids: Iterable[int], reason: str) -> int:
    count = 0
    for repository_id in repository_ids:
        if installations.get_repository(session, repository_id) is not None:
            installations.detach_repository(session, repository_id, reason=reason)
            count += 1
    return count


async def _list_repositories(
    ctx: HandlerContext, delivery: Delivery
) -> list[dict[str, Any]] | None:
    """Every repository of the delivery's installation, with default branches; None when
    there is no installation to ask about (gone again since the event was sent)."""
    if delivery.installation_id is None:
        return None
    try:
        return await ctx.runtime.github.list_installation_repositories(delivery.installation_id)
    except InstallationUnavailable:
        log.info(
            "installation %s %s, but GitHub grants it no token any more (deleted or "
            "suspended since): the event saying so follows",
            delivery.installation_id,
            delivery.action,
        )
        return None


async def _fetch_missing(
    ctx: HandlerContext, installation_id: int, wanted: set[int], found: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Repositories GitHub's listing does not show yet (it can lag behind the event)."""
    missing = wanted - {repository.get("id") for repository in found}
    fetched = []
    for repository_id in sorted(missing):
        try:
            fetched.append(
                await ctx.runtime.github.get_repository(
                    repository_id, installation_id=installation_id
                )
            )
        except NotFound:
            log.info(
                "repository %s is not readable by installation %s any more",
                repository_id,
                installation_id,
            )
    return fetched


def _ids(value: Any) -> set[int]:
    items = value if isinstance(value, list) else []
    return {rid for rid in (integer(mapping(item).get("id")) for item in items) if rid is not None}


def _account(payload: Mapping[str, Any]) -> str:
    login = mapping(mapping(payload.get("installation")).get("account")).get("login")
    return str(login) if isinstance(login, str) and login else "its account"
