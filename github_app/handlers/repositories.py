"""`repository` events: GitHub's numeric id is the key, so most changes only update a column.

- renamed / transferred: the full name changes (bindings follow it); a transfer into an account
  where the App is installed also names that installation.
- edited with a new default branch: bindings following the default branch now follow the new
  one, so a sync of it is queued.
- privatized / publicized: the `private` flag changes (who may bind it depends on it).
- deleted: the content is purged and the bound guilds fall back to the built-in defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from github_app.handlers.common import (
    HandlerContext,
    enqueue_followed,
    integer,
    mapping,
    remember_installation,
)
from github_app.store import installations
from github_app.webhooks import Delivery, Router

log = logging.getLogger("guildprompts.handlers.repositories")
router = Router()


@router.register("repository", "renamed")
@router.register("repository", "transferred")
@router.register("repository", "privatized")
@router.register("repository", "publicized")
async def on_changed(delivery: Delivery, ctx: HandlerContext) -> None:
    stored = await ctx.db_then_announce(_refresh, delivery.payload)
    log.info(
        "repository %s %s: %s",
        delivery.repository,
        delivery.action,
        "updated" if stored else "no usable repository in the payload",
    )


@router.register("repository", "edited")
async def on_edited(delivery: Delivery, ctx: HandlerContext) -> None:
    changes = mapping(delivery.payload.get("changes"))
    if "default_branch" not in changes:
        return
    guids = await ctx.db_then_announce(_new_default_branch, delivery.payload)
    ctx.runtime.wake_worker()
    log.info(
        "repository %s has a new default branch: %d syncs queued", delivery.repository, len(guids)
    )


@router.register("repository", "deleted")
async def on_repository_deleted(delivery: Delivery, ctx: HandlerContext) -> None:
    if delivery.repository_id is None:
        return
    detached = await ctx.db_then_announce(_delete, delivery.repository_id)
    log.info(
        "repository %s deleted: %s",
        delivery.repository,
        "content purged" if detached else "not known here",
    )


def _refresh(session: Session, payload: Mapping[str, Any]) -> bool:
    """Store the repository as the payload shows it (a binding may be waiting on its new
    name); False when the payload has no usable repository."""
    repository = mapping(payload.get("repository"))
    owner = mapping(repository.get("owner"))
    installation_id = remember_installation(
        session, mapping(payload.get("installation")), account_login=owner.get("login")
    )
    return installations.remember_repository(session, repository, installation_id) is not None


def _new_default_branch(session: Session, payload: Mapping[str, Any]) -> list[str]:
    if not _refresh(session, payload):
        return []
    repository_id = integer(mapping(payload.get("repository")).get("id"))
    assert repository_id is not None  # _refresh found it
    return enqueue_followed(session, [repository_id], "refresh", default_only=True)


def _delete(session: Session, repository_id: int) -> bool:
    if installations.get_repository(session, repository_id) is None:
        return False
    installations.detach_repository(
        session,
        repository_id,
        reason="the repository was deleted on GitHub: serving the built-in defaults; bind "
        "another repository",
    )
    return True
