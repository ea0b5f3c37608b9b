"""Guild bindings (live) and pending binding requests, with optimistic concurrency and audit.

A live binding is what a guild is served from. A request that is not good yet (the App is not
installed on the repository, the first sync has not succeeded) is kept as a *pending* binding
beside it, so a failed attempt never replaces a working binding; `promote_pending` makes it live
once it is good.

Admin edits carry the version the admin read (`expected_version`); a mismatch raises
`ConcurrentUpdateError` instead of silently overwriting. Status updates made by the system
(`set_binding_state`) do not change the version, so background syncs never make an admin's
edit fail. Every admin change writes an audit entry in the same transaction. Tokens are stored
encrypted and never appear in audit entries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.orm import Session

from github_app.secrets import Vault
from github_app.store import layers
from github_app.store._sql import affected_rows, insert_ignoring_conflicts
from github_app.store.audit import record_audit
from github_app.store.branches import bump_generation
from github_app.store.errors import ConcurrentUpdateError, NotFoundError
from github_app.store.models import (
    BindingState,
    GuildBinding,
    PendingBinding,
    utcnow,
)

_Holder = TypeVar("_Holder", GuildBinding, PendingBinding)


def get_binding(session: Session, guild_id: str) -> GuildBinding | None:
    return session.get(GuildBinding, guild_id, populate_existing=True)


def get_pending(session: Session, guild_id: str) -> PendingBinding | None:
    return session.get(PendingBinding, guild_id, populate_existing=True)


def binding_token(binding: GuildBinding | PendingBinding, vault: Vault) -> str | None:
    """The decrypted personal access token of a binding, if it has one."""
    if binding.token_ciphertext is None:
        return None
    return vault.decrypt(binding.token_ciphertext, label=f"token of guild {binding.guild_id}")


def delete_binding(
    session: Session,
    guild_id: str,
    *,
    actor: str,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> bool:
    """Remove a guild's live binding and pending request; False if it had neither.

    With `expected_version`, refuses (ConcurrentUpdateError) if the binding changed meanwhile.
    """
    binding = get_binding(session, guild_id)
    pending = get_pending(session, guild_id)
    if expected_version is not None and (binding is None or binding.version != expected_version):
        raise ConcurrentUpdateError(
            guild_id, expected_version, None if binding is None else binding.version
        )
    if binding is None and pending is None:
        return False
    if binding is not None:
        deleted = affected_rows(
            session,
            delete(GuildBinding).where(
                GuildBinding.guild_id == guild_id, GuildBinding.version == binding.version
            ),
        )
        if deleted != 1:
            raise ConcurrentUpdateError(guild_id, binding.version, _version_of(session, guild_id))
    session.execute(delete(PendingBinding).where(PendingBinding.guild_id == guild_id))
    before = audit_view(binding) if binding is not None else audit_view(pending)
    record_audit(session, actor, guild_id, "binding.delete", before, None, now)
    bump_generation(session)
    return True


def set_binding_state(
    session: Session,
    guild_id: str,
    state: BindingState,
    status_message: str = "",
    *,
    last_error: str | None = None,
) -> None:
    """System status of a live binding (access lost/regained, errors); the version is kept."""
    matched = affected_rows(
        session,
        update(GuildBinding)
        .where(GuildBinding.guild_id == guild_id)
        .values(
            state=BindingState(state).value, status_message=status_message, last_error=last_error
        ),
    )
    if matched != 1:
        raise NotFoundError(f"guild {guild_id} has no binding")
    bump_generation(session)


def bindings_for_repository(
    session: Session, *, repository_id: int | None = None, full_name: str | None = None
) -> list[GuildBinding]:
    """Live bindings of a repository, by id or (for ids not known yet) by full name."""
    return list(session.scalars(_by_repository(GuildBinding, repository_id, full_name)))


def save_pending(
    session: Session,
    guild_id: str,
    *,
    repository_full_name: str,
    repository_id: int | None,
    branch: str | None,
    actor: str,
    expected_version: int | None,
    token: str | None = None,
    vault: Vault | None = None,
    status_message: str = "",
    now: datetime | None = None,
) -> PendingBinding:
    """Store (or replace) a guild's pending request without touching its live binding.

    `expected_version` is the live binding's version the admin saw (None: no binding); it must
    still be current, and `promote_pending` later checks it again.
    """
    now = now or utcnow()
    actual = _version_of(session, guild_id)
    if actual != expected_version:
        raise ConcurrentUpdateError(guild_id, expected_version, actual)
    previous = get_pending(session, guild_id)
    before_view = audit_view(previous)
    if previous is not None:
        session.delete(previous)
        session.flush()
    pending = PendingBinding(
        guild_id=guild_id,
        repository_full_name=repository_full_name,
        repository_id=repository_id,
        branch=branch,
        set_by=actor,
        set_at=now,
        status_message=status_message,
        token_ciphertext=_encrypt(token, vault),
        base_version=expected_version or 0,
    )
    session.add(pending)
    session.flush()
    record_audit(session, actor, guild_id, "binding.request", before_view, audit_view(pending), now)
    return pending


def set_pending_status(session: Session, guild_id: str, status_message: str) -> None:
    """Why a pending request is still pending (e.g. "waiting for the App to be installed")."""
    matched = affected_rows(
        session,
        update(PendingBinding)
        .where(PendingBinding.guild_id == guild_id)
        .values(status_message=status_message),
    )
    if matched != 1:
        raise NotFoundError(f"guild {guild_id} has no pending binding")


def pending_for_repository(
    session: Session, *, repository_id: int | None = None, full_name: str | None = None
) -> list[PendingBinding]:
    """Pending requests waiting on a repository (by id, or by full name if the id is unknown)."""
    return list(session.scalars(_by_repository(PendingBinding, repository_id, full_name)))


def link_pending(session: Session, asked_name: str, repository_id: int) -> int:
    """Requests made by a name GitHub resolved to a repository (a former name, after a rename
    or transfer: GitHub's 301) now wait on that repository by id; the name follows the stored
    repository's once the request is live, as every binding's does."""
    return affected_rows(
        session,
        update(PendingBinding)
        .where(
            PendingBinding.repository_id.is_(None),
            func.lower(PendingBinding.repository_full_name) == asked_name.lower(),
        )
        .values(repository_id=repository_id),
    )


def promote_pending(
    session: Session, guild_id: str, *, actor: str, now: datetime | None = None
) -> GuildBinding:
    """Make a guild's pending request its live binding, in one step.

    Raises `NotFoundError` without a pending request, and `ConcurrentUpdateError` if the live
    binding changed since the request was made.
    """
    pending = get_pending(session, guild_id)
    if pending is None:
        raise NotFoundError(f"guild {guild_id} has no pending binding")
    now = now or utcnow()
    fields: dict[str, Any] = {
        "repository_full_name": pending.repository_full_name,
        "repository_id": pending.repository_id,
        "branch": pending.branch,
        "enabled": True,
        "set_by": pending.set_by,
        "set_at": now,
        "state": BindingState.ACTIVE.value,
        "status_message": "",
        "last_error": None,
        "token_ciphertext": pending.token_ciphertext,
    }
    before_view = audit_view(get_binding(session, guild_id))
    if pending.base_version == 0:
        row = {"guild_id": guild_id, "version": 1, **fields}
        if not insert_ignoring_conflicts(session, GuildBinding.__table__, row, ["guild_id"]):
            raise ConcurrentUpdateError(guild_id, None, _version_of(session, guild_id))
    else:
        _versioned_update(session, guild_id, pending.base_version, fields)
    session.delete(pending)
    session.flush()
    binding = _reload(session, guild_id)
    record_audit(session, actor, guild_id, "binding.promote", before_view, audit_view(binding), now)
    bump_generation(session)
    return binding


def audit_view(binding: GuildBinding | PendingBinding | None) -> dict[str, Any] | None:
    """What the audit log keeps of a binding: everything but the token itself."""
    if binding is None:
        return None
    view: dict[str, Any] = {
        "repository": binding.repository_full_name,
        "repository_id": binding.repository_id,
        "branch": binding.branch,
        "has_token": binding.token_ciphertext is not None,
    }
    if isinstance(binding, GuildBinding):
        view.update(enabled=binding.enabled, version=binding.version)
    else:
        view.update(pending=True)
    return view


def _encrypt(token: str | None, vault: Vault | None) -> str | None:
    if token is None:
        return None
    if vault is None:
        raise ValueError("a token can only be stored encrypted: pass the vault")
    return vault.encrypt(token)


def _versioned_update(
    session: Session, guild_id: str, expected_version: int, fields: dict[str, Any]
) -> None:
    matched = affected_rows(
        session,
        update(GuildBinding)
        .where(GuildBinding.guild_id == guild_id, GuildBinding.version == expected_version)
        .values(version=GuildBinding.version + 1, **fields),
    )
    if matched != 1:
        raise ConcurrentUpdateError(guild_id, expected_version, _version_of(session, guild_id))


def _version_of(session: Session, guild_id: str) -> int | None:
    return session.scalar(select(GuildBinding.version).where(GuildBinding.guild_id == guild_id))


def _reload(session: Session, guild_id: str) -> GuildBinding:
    binding = get_binding(session, guild_id)
    assert binding is not None
    return binding


def _by_repository(
    model: type[GuildBinding] | type[PendingBinding],
    repository_id: int | None,
    full_name: str | None,
) -> Any:
    if repository_id is None and full_name is None:
        raise ValueError("give a repository id or a full name")
    query = select(model).order_by(model.guild_id)
    if repository_id is not None and full_name is not None:
        return query.where(
            (model.repository_id == repository_id)
            | (
                model.repository_id.is_(None)
                & (func.lower(model.repository_full_name) == full_name.lower())
            )
        )
    if repository_id is not None:
        return query.where(model.repository_id == repository_id)
    assert full_name is not None
    return query.where(func.lower(model.repository_full_name) == full_name.lower())


def repository_token(session: Session, vault: Vault, repository_id: int) -> str | None:
    """A personal access token some guild gave for this repository, for repositories the App
    is not installed on: live bindings first, and among them those still served (a binding in
    NO_ACCESS may hold a revoked token, which must not stand in for the others' tokens)."""
    holder = _newest_token_holder(session, GuildBinding, repository_id) or _newest_token_holder(
        session, PendingBinding, repository_id
    )
    return None if holder is None else binding_token(holder, vault)


def base_token(session: Session, vault: Vault, full_name: str, ref: str) -> str | None:
    """A token for a base (`full_name`@`ref`) the App is not installed on: one given by a guild
    bound to a branch that extends it (the rule of a binding: its token may read the base)."""
    for dependent in layers.dependents(session, full_name, ref):
        token = repository_token(session, vault, dependent.repository_id)
        if token is not None:
            return token
    return None


def _newest_token_holder(
    session: Session, model: type[_Holder], repository_id: int
) -> _Holder | None:
    query = select(model).where(
        model.repository_id == repository_id, model.token_ciphertext.is_not(None)
    )
    if model is GuildBinding:
        query = query.order_by(case((GuildBinding.state == BindingState.ACTIVE.value, 0), else_=1))
    return session.scalar(query.order_by(model.set_at.desc()).limit(1))
