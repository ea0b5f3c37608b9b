"""`repository` events: GitHub's numeric id is the key, so most changes only update a column.

- renamed / transferred: the full name changes (bindings follow it); a transfer into an account
  where the App is installed also names that installation.
- edited with a new default branch: bindings following the default branch now follow the new
  one, so a sync of it is queued.
- privatized: the `private` flag changes and, in the same transaction, every guild the active
  commit's `allowed_guilds` does not list stops being served, with a status saying why (a
  guild's own token is checked again by a refresh sync before it is served again: a token that
  read a public repository proves nothing about a private one).
- publicized: the flag changes and the followed branches are synced again, which serves every
  guild following them (no token needed any more).
- a base some branch extends, privatized: the guilds served it through such a branch that its
  `allowed_guilds` does not list stop being served at once; privatized or publicized, those
  branches are re-checked (`rebase`).
- deleted: the content is purged and the bound guilds fall back to the built-in defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from github_app.github import GitHubError, InstallationUnavailable, RateLimited, TransientError
from github_app.handlers.common import (
    HandlerContext,
    enqueue_followed,
    integer,
    mapping,
    remember_installation,
)
from github_app.store import bindings, branches, installations, layers
from github_app.store.models import BindingState, Repository
from github_app.store.snapshots import allowed_guilds
from github_app.sync.jobs import enqueue_rebases
from github_app.sync.messages import base_refused_message, private_message
from github_app.webhooks import Delivery, Router

log = logging.getLogger("guildprompts.handlers.repositories")
router = Router()


@router.register("repository", "privatized")
@router.register("repository", "publicized")
async def on_visibility(delivery: Delivery, ctx: HandlerContext) -> None:
    private, installed = await _visible_now(delivery, ctx)
    outcome = await ctx.db_then_announce(_visibility, delivery.payload, private, installed)
    ctx.runtime.wake_worker()
    log.info("repository %s %s: %s", delivery.repository, delivery.action, outcome)


async def _visible_now(delivery: Delivery, ctx: HandlerContext) -> tuple[bool, bool]:
    """(private now, the event's installation still there): GitHub is asked, since events may
    arrive out of order; the event's action decides when GitHub cannot be asked."""
    private = delivery.action == "privatized"
    installation_id = integer(mapping(delivery.payload.get("installation")).get("id"))
    if delivery.repository_id is None or installation_id is None:
        return private, installation_id is not None
    try:
        data = await ctx.runtime.github.get_repository(
            delivery.repository_id, installation_id=installation_id
        )
    except InstallationUnavailable:
        return private, False  # uninstalled since: a late event must not attach it again
    except GitHubError as exc:
        if isinstance(exc, TransientError | RateLimited):
            raise
        return private, True
    return bool(data.get("private", private)), True


@router.register("repository", "renamed")
@router.register("repository", "transferred")
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


def _visibility(
    session: Session, payload: Mapping[str, Any], private: bool, installed: bool
) -> str:
    """Store the new visibility; privatized: stop serving the guilds no longer allowed, now.
    Then queue a sync of the followed branches (tokens re-checked, public ones served)."""
    stored = (
        _refresh(session, payload)
        if installed
        else installations.remember_repository(session, mapping(payload.get("repository")))
        is not None
    )
    if not stored:
        return "no usable repository in the payload"
    repository_id = integer(mapping(payload.get("repository")).get("id"))
    assert repository_id is not None  # _refresh found it
    repository = installations.get_repository(session, repository_id)
    assert repository is not None
    if repository.private != private:  # GitHub's answer, not the (maybe late) payload
        installations.upsert_repository(
            session,
            repository_id,
            repository.full_name,
            private=private,
            default_branch=repository.default_branch,
        )
    stopped = 0
    if private:
        for binding in bindings.bindings_for_repository(session, repository_id=repository_id):
            branch = binding.branch or repository.default_branch
            tracked = branches.get_branch(session, repository_id, branch)
            active = tracked.active_snapshot_id if tracked is not None else None
            allowed = allowed_guilds(session, active) if active is not None else ()
            if binding.state != BindingState.ACTIVE or binding.guild_id in allowed:
                continue
            message = private_message(binding.guild_id)
            if binding.token_ciphertext is not None:
                message = (
                    f"{repository.full_name} became private: checking that this server's "
                    "token can read it"
                )
            bindings.set_binding_state(session, binding.guild_id, BindingState.NO_ACCESS, message)
            stopped += 1
        stopped += _stop_base_readers(session, repository)
        if stopped:
            branches.bump_generation(session)
    queued = enqueue_followed(session, [repository_id], "refresh")
    rebased = _rebase_dependents(session, repository)
    return f"{stopped} guilds stopped being served, {len(queued) + rebased} syncs queued"


def _stop_base_readers(session: Session, repository: Repository) -> int:
    """A base made private: the guilds served it through a branch extending it, that its
    active commit's `allowed_guilds` does not list, stop being served now; how many."""
    stopped = 0
    allowed: dict[str, tuple[str, ...]] = {}  # ref -> the base's allowed_guilds there
    for binding, ref in layers.dependent_bindings(session, repository.full_name):
        if ref not in allowed:
            tracked = branches.get_branch(session, repository.id, ref)
            active = tracked.active_snapshot_id if tracked is not None else None
            allowed[ref] = allowed_guilds(session, active) if active is not None else ()
        if binding.state != BindingState.ACTIVE or binding.guild_id in allowed[ref]:
            continue
        message = base_refused_message(binding.guild_id, repository.full_name)
        bindings.set_binding_state(session, binding.guild_id, BindingState.NO_ACCESS, message)
        stopped += 1
    return stopped


def _rebase_dependents(session: Session, repository: Repository) -> int:
    """Re-check the branches built on this repository (their access to it changed)."""
    return enqueue_rebases(
        session, repository.full_name, layers.extended_refs(session, repository.full_name)
    )


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
