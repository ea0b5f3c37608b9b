"""Encryption of stored secrets (tokens, App credentials) with Fernet keys.

`ENCRYPTION_KEYS` lists one or more keys: the first encrypts, every one decrypts (MultiFernet),
so a key is rotated by putting a new one first and running `guildprompts keys rotate`. An
embedded (SQLite) install with no key configured generates one into `ENCRYPTION_KEY_FILE`,
readable only by its owner, and says so the one time it does; a shared database needs keys
configured, because a key generated on one machine would not be on the others. A value that
cannot be decrypted raises `UndecryptableSecretError`: reported, never dropped or replaced.

Messages never contain a key or a plaintext.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from github_app.settings import Settings

logger = logging.getLogger("guildprompts.secrets")

KEY_GENERATE_COMMAND = "guildprompts keys generate"


class SecretsError(Exception):
    """Base class for encryption problems."""


class KeyConfigurationError(SecretsError):
    """No usable encryption key is configured."""


class UndecryptableSecretError(SecretsError):
    """A stored value cannot be decrypted with any configured key (wrong keys or corrupt)."""


def generate_key() -> str:
    """A new random Fernet key (URL-safe base64 text)."""
    return Fernet.generate_key().decode("ascii")


class Vault:
    """Encrypts with the first key, decrypts with any of them."""

    def __init__(self, keys: Sequence[str], *, source: str = "ENCRYPTION_KEYS") -> None:
        if not keys:
            raise KeyConfigurationError(
                f"{source} holds no key: create one with `{KEY_GENERATE_COMMAND}`"
            )
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.strip().encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                raise KeyConfigurationError(
                    f"{source}: key {position} is not a Fernet key (32 bytes of URL-safe "
                    f"base64): create one with `{KEY_GENERATE_COMMAND}`"
                ) from None
        self._fernet = MultiFernet(fernets)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str, *, label: str = "secret") -> str:
        """The plaintext; `label` names the value in the error (e.g. "token of guild 42")."""
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise _undecryptable(label) from None

    def rotate(self, ciphertext: str, *, label: str = "secret") -> str:
        """The same plaintext re-encrypted under the first key."""
        try:
            return self._fernet.rotate(ciphertext.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise _undecryptable(label) from None


def _undecryptable(label: str) -> UndecryptableSecretError:
    return UndecryptableSecretError(
        f"the stored {label} cannot be decrypted: it is corrupt, or was encrypted with a key "
        "that is not in ENCRYPTION_KEYS (add the old key after the new one)"
    )


def load_vault(settings: Settings) -> Vault:
    """The vault for this deployment: configured keys, else the embedded install's key file."""
    if settings.encryption_keys:
        return Vault(settings.encryption_keys)
    path = Path(settings.encryption_key_file)
    if path.is_file():
        return _vault_from_file(path)
    if not settings.embedded:
        raise KeyConfigurationError(
            "ENCRYPTION_KEYS is required with a shared database (every process must hold the "
            f"same keys): create one with `{KEY_GENERATE_COMMAND}`"
        )
    return _vault_from_file(_generate_key_file(path))


def _vault_from_file(path: Path) -> Vault:
    try:
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeError) as exc:
        raise KeyConfigurationError(
            f"ENCRYPTION_KEY_FILE {path}: cannot read the key ({exc.__class__.__name__})"
        ) from None
    return Vault([key], source=f"ENCRYPTION_KEY_FILE {path}")


def _generate_key_file(path: Path) -> Path:
    """Create the key file (mode 0600); losing a race to another process is fine: its key wins."""
    try:
        created = create_private_file(path, generate_key())
    except OSError as exc:
        raise KeyConfigurationError(
            f"ENCRYPTION_KEY_FILE {path}: cannot create the key file ({exc.strerror}); "
            "set ENCRYPTION_KEYS instead"
        ) from None
    if created:
        logger.warning(
            "generated an encryption key for stored secrets in %s (readable only by you). Back "
            "it up: without it the stored tokens cannot be read. To manage keys yourself, set "
            "ENCRYPTION_KEYS.",
            path.resolve(),
        )
    return path


def create_private_file(path: Path, text: str) -> bool:
    """Write `text` to a new file readable only by its owner (0600); False if it exists.

    Atomic: the file appears whole (written beside it, then hard-linked), so a concurrent
    reader sees all of it or none, and of two concurrent creators exactly one wins.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.unlink(missing_ok=True)  # a leftover of a crash may carry another mode
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(text.strip() + "\n")
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True
