"""Secrets at rest: encrypted in the database, rotated by `guildprompts keys rotate`, a corrupt
or foreign ciphertext reported clearly and never dropped, an embedded key file made once."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from github_app.secrets import (
    KeyConfigurationError,
    UndecryptableSecretError,
    Vault,
    generate_key,
    load_vault,
)
from github_app.settings import Settings
from github_app.store import bindings, credentials
from github_app.store.db import Database
from tests.harness import guildprompts
from tests.store_helpers import save_binding, secret_names

TOKEN = "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"
PRIVATE_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEsecret\n-----END RSA PRIVATE KEY-----\n"


def _raw_secrets(db: Database) -> str:
    with db.session() as session:
        rows = session.execute(
            text(
                "SELECT token_ciphertext FROM guild_bindings UNION ALL "
                "SELECT ciphertext FROM app_secrets"
            )
        ).scalars()
        return "\n".join(row for row in rows if row)


def _store(db: Database, vault: Vault) -> None:
    with db.session() as session:
        save_binding(
            session,
            "g1",
            repository_full_name="o/r",
            repository_id=None,
            branch=None,
            actor="a",
            expected_version=None,
            token=TOKEN,
            vault=vault,
        )
        credentials.put_secret(session, vault, credentials.PRIVATE_KEY, PRIVATE_KEY)


def test_a_token_is_unreadable_raw_and_readable_after_rotation(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    old_key, new_key = generate_key(), generate_key()
    _store(db, Vault([old_key]))
    raw = _raw_secrets(db)
    assert TOKEN not in raw and "MIIEsecret" not in raw

    rotated = guildprompts(
        "keys",
        "rotate",
        database_url=database_url,
        cwd=str(tmp_path),
        ENCRYPTION_KEYS=f"{new_key},{old_key}",
    )
    assert rotated.returncode == 0, rotated.stderr
    assert "re-encrypted 2 secret(s)" in rotated.stdout

    only_new = Vault([new_key])  # the old key can now be dropped
    with db.session() as session:
        binding = bindings.get_binding(session, "g1")
        assert binding is not None and bindings.binding_token(binding, only_new) == TOKEN
        assert credentials.get_secret(session, only_new, credentials.PRIVATE_KEY) == PRIVATE_KEY
        with pytest.raises(UndecryptableSecretError):
            credentials.get_secret(session, Vault([old_key]), credentials.PRIVATE_KEY)
    assert TOKEN not in _raw_secrets(db)


def test_corrupt_ciphertext_is_a_clear_error_and_is_kept(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    key = generate_key()
    vault = Vault([key])
    _store(db, vault)
    with db.session() as session:
        session.execute(text("UPDATE guild_bindings SET token_ciphertext = 'gAAAAAcorrupt'"))
    with db.session() as session:
        binding = bindings.get_binding(session, "g1")
        assert binding is not None
        with pytest.raises(UndecryptableSecretError) as caught:
            bindings.binding_token(binding, vault)
    message = str(caught.value)
    assert "token of guild g1" in message and "cannot be decrypted" in message
    assert key not in message

    result = guildprompts(
        "keys",
        "rotate",
        database_url=database_url,
        cwd=str(tmp_path),
        ENCRYPTION_KEYS=f"{generate_key()},{key}",
    )
    assert result.returncode == 1
    assert "re-encrypted 1 secret(s)" in result.stdout
    assert "token of guild g1" in result.stderr and "Traceback" not in result.stderr
    with db.session() as session:  # reported, never dropped
        raw = session.execute(text("SELECT token_ciphertext FROM guild_bindings")).scalar()
        assert raw == "gAAAAAcorrupt"


def test_app_secrets_store(db: Database) -> None:
    vault = Vault([generate_key()])
    with db.session() as session:
        credentials.put_secret(session, vault, credentials.WEBHOOK_SECRET, "one")
        credentials.put_secret(session, vault, credentials.WEBHOOK_SECRET, "two")
        assert credentials.get_secret(session, vault, credentials.WEBHOOK_SECRET) == "two"
        assert credentials.get_secret(session, vault, credentials.CLIENT_SECRET) is None
        assert secret_names(session) == [credentials.WEBHOOK_SECRET]


def test_embedded_install_generates_its_key_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / "gp.key"
    settings = Settings.from_env(
        {"DATABASE_URL": f"sqlite:///{tmp_path}/gp.db", "ENCRYPTION_KEY_FILE": str(key_file)},
        env_file=None,
    )
    with caplog.at_level(logging.WARNING, logger="guildprompts.secrets"):
        first = load_vault(settings)
        second = load_vault(settings)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    announcements = [r.getMessage() for r in caplog.records if "generated" in r.getMessage()]
    assert len(announcements) == 1 and str(key_file) in announcements[0]
    assert key_file.read_text().strip() not in caplog.text
    assert second.decrypt(first.encrypt("same key")) == "same key"
    assert list(tmp_path.glob(".*.tmp")) == []


def test_key_configuration_errors(tmp_path: Path) -> None:
    shared = Settings.from_env(
        {
            "DATABASE_URL": "postgresql+psycopg://db/gp",
            "ENCRYPTION_KEY_FILE": str(tmp_path / "absent.key"),
        },
        env_file=None,
    )
    with pytest.raises(KeyConfigurationError, match="ENCRYPTION_KEYS is required"):
        load_vault(shared)
    assert not (tmp_path / "absent.key").exists()  # never a throwaway key
    with pytest.raises(KeyConfigurationError, match="key 2 is not a Fernet key"):
        Vault([generate_key(), "not-a-key"])
    with pytest.raises(KeyConfigurationError, match="keys generate"):
        Vault([])


def test_keys_generate_prints_a_usable_key(tmp_path: Path) -> None:
    result = guildprompts("keys", "generate", database_url="sqlite://", cwd=str(tmp_path))
    assert result.returncode == 0
    key = result.stdout.strip()
    assert Vault([key]).decrypt(Vault([key]).encrypt("x")) == "x"
    assert "ENCRYPTION_KEYS" in result.stderr
