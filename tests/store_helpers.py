"""Store reads and writes that only tests need: production never calls them, so they live here.

They use the store's models and its optimistic-update primitive, as an operator's script would.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from github_app.secrets import Vault
from github_app.store import bindings
from github_app.store._sql import insert_ignoring_conflicts
from github_app.store.audit import record_audit
from github_app.store.branches import bump_generation
from github_app.store.errors import ConcurrentUpdateError
from github_app.store.models import (
    UNCHANGED,
    AppSecret,
    BindingState,
    DeliveryRow,
    DeliveryState,
    GuildBinding,
    PendingBinding,
    Unchanged,
    utcnow,
)


def failed_deliveries(session: Session, limit: int = 50) -> list[DeliveryRow]:
    """The most recent deliveries that ended as failed, newest first."""
    query = (
        select(DeliveryRow)
        .where(DeliveryRow.state == DeliveryState.FAILED)
        .order_by(DeliveryRow.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def secret_names(session: Session) -> list[str]:
    return list(session.scalars(select(AppSecret.name).order_by(AppSecret.name)))


def save_binding(
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
    enabled: bool = True,
    state: BindingState = BindingState.ACTIVE,
    status_message: str = "",
    now: datetime | None = None,
) -> GuildBinding:
    """Create (expected_version None) or replace (the version read) a guild's live binding.

    Any pending request of the guild is superseded and removed.
    """
    now = now or utcnow()
    fields: dict[str, Any] = {
        "repository_full_name": repository_full_name,
        "repository_id": repository_id,
        "branch": branch,
        "enabled": enabled,
        "set_by": actor,
        "set_at": now,
        "state": BindingState(state).value,
        "status_message": status_message,
        "last_error": None,
        "token_ciphertext": bindings._encrypt(token, vault),
    }
    before = bindings.get_binding(session, guild_id)
    before_view = bindings.audit_view(before)
    if expected_version is None:
        row = {"guild_id": guild_id, "version": 1, **fields}
        if not insert_ignoring_conflicts(session, GuildBinding.__table__, row, ["guild_id"]):
            raise ConcurrentUpdateError(guild_id, None, bindings._version_of(session, guild_id))
    else:
        bindings._versioned_update(session, guild_id, expected_version, fields)
    session.execute(delete(PendingBinding).where(PendingBinding.guild_id == guild_id))
    binding = bindings._reload(session, guild_id)
    record_audit(
        session, actor, guild_id, "binding.set", before_view, bindings.audit_view(binding), now
    )
    bump_generation(session)
    return binding


def update_binding(
    session: Session,
    guild_id: str,
    expected_version: int,
    *,
    actor: str,
    branch: str | Unchanged | None = UNCHANGED,
    enabled: bool | Unchanged = UNCHANGED,
    token: str | Unchanged | None = UNCHANGED,
    vault: Vault | None = None,
    now: datetime | None = None,
) -> GuildBinding:
    """Change some fields of a live binding (UNCHANGED leaves a field; token None removes it),
    with the version check, audit entry and generation bump every binding change makes."""
    now = now or utcnow()
    fields: dict[str, Any] = {"set_by": actor, "set_at": now}
    if not isinstance(branch, Unchanged):
        fields["branch"] = branch
    if not isinstance(enabled, Unchanged):
        fields["enabled"] = enabled
    if not isinstance(token, Unchanged):
        fields["token_ciphertext"] = bindings._encrypt(token, vault)
    before = bindings.audit_view(bindings.get_binding(session, guild_id))
    bindings._versioned_update(session, guild_id, expected_version, fields)
    binding = bindings._reload(session, guild_id)
    record_audit(
        session, actor, guild_id, "binding.update", before, bindings.audit_view(binding), now
    )
    bump_generation(session)
    return binding
