"""Encrypted App credentials (the manifest flow's results) and key rotation of every secret.

Names used by the manifest flow: `APP_ID`, `APP_SLUG`, `PRIVATE_KEY`, `WEBHOOK_SECRET`,
`CLIENT_ID`, `CLIENT_SECRET` (constants below); any other short name works too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from github_app.secrets import UndecryptableSecretError, Vault
from github_app.store._sql import insert_ignoring_conflicts
from github_app.store.models import AppSecret, GuildBinding, PendingBinding, utcnow

APP_ID = "app_id"
APP_SLUG = "app_slug"
PRIVATE_KEY = "private_key"
WEBHOOK_SECRET = "webhook_secret"  # noqa: S105 (a name, not a secret)
CLIENT_ID = "client_id"
CLIENT_SECRET = "client_secret"  # noqa: S105 (a name, not a secret)


def put_secret(
    session: Session, vault: Vault, name: str, value: str, now: datetime | None = None
) -> None:
    """Store (or replace) a named App secret, encrypted."""
    if not name or len(name) > 64:
        raise ValueError("a secret name must be 1 to 64 characters")
    now = now or utcnow()
    ciphertext = vault.encrypt(value)
    row = {"name": name, "ciphertext": ciphertext, "updated_at": now}
    if not insert_ignoring_conflicts(session, AppSecret.__table__, row, ["name"]):
        session.execute(
            update(AppSecret)
            .where(AppSecret.name == name)
            .values(ciphertext=ciphertext, updated_at=now)
        )


def get_secret(session: Session, vault: Vault, name: str) -> str | None:
    """The decrypted secret, None if not stored; `UndecryptableSecretError` if unreadable."""
    ciphertext = session.scalar(select(AppSecret.ciphertext).where(AppSecret.name == name))
    if ciphertext is None:
        return None
    return vault.decrypt(ciphertext, label=f"App secret {name!r}")


@dataclass
class RotationReport:
    rotated: int = 0
    failed: list[str] = field(default_factory=list)  # labels of values that stay as they were


def rotate_secrets(session: Session, vault: Vault) -> RotationReport:
    """Re-encrypt every stored secret under the vault's first key.

    A value no configured key can decrypt is left untouched and named in `failed`: it is
    reported, never dropped, so adding the missing key and rotating again recovers it.
    """
    report = RotationReport()
    targets = [
        (AppSecret, AppSecret.name, AppSecret.ciphertext, "App secret {!r}"),
        (GuildBinding, GuildBinding.guild_id, GuildBinding.token_ciphertext, "token of guild {}"),
        (
            PendingBinding,
            PendingBinding.guild_id,
            PendingBinding.token_ciphertext,
            "pending token of guild {}",
        ),
    ]
    for model, key, column, label in targets:
        rows = session.execute(select(key, column).where(column.is_not(None))).all()
        for identity, ciphertext in list(rows):
            if ciphertext is None:  # filtered out by the query; says so to the type checker
                continue
            name = label.format(identity)
            try:
                rotated = vault.rotate(ciphertext, label=name)
            except UndecryptableSecretError:
                report.failed.append(name)
                continue
            session.execute(update(model).where(key == identity).values({column.key: rotated}))
            report.rotated += 1
    return report
