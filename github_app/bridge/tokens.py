"""The bearer tokens the bridge accepts: BRIDGE_TOKENS, or one generated for an embedded install.

A fresh machine (SQLite, no BRIDGE_TOKENS) should serve a bot at once, so the first start
generates a token into BRIDGE_TOKEN_FILE (mode 0600, like the encryption key) and says where;
`guildprompts bridge-token` prints it. A shared database has several processes on several
machines, which would each generate a different token: there the bridge stays disabled until
BRIDGE_TOKENS is set, and start-up, `/` and `/readyz` say so.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `register` runs in every `guildprompts` call, the bot's bare install too
    from github_app.settings import Settings

log = logging.getLogger("guildprompts.bridge")

DISABLED = (
    "the bridge is disabled: BRIDGE_TOKENS is unset and the database is shared, so no token "
    "is generated; set BRIDGE_TOKENS to the token(s) your bot presents"
)


def with_bridge_tokens(settings: Settings) -> Settings:
    """`settings` with the tokens the bridge accepts (generating one on an embedded install)."""
    if settings.bridge_tokens or not settings.embedded:
        return settings
    return replace(settings, bridge_tokens=(embedded_token(settings),))


def embedded_token(settings: Settings) -> str:
    """The embedded install's token from BRIDGE_TOKEN_FILE, created (and announced) once."""
    from github_app.secrets import create_private_file
    from github_app.settings import SettingsError

    path = Path(settings.bridge_token_file)
    try:
        if create_private_file(path, secrets.token_urlsafe(32)):
            log.warning(
                "generated a bridge token for the bot in %s (readable only by you); "
                "`guildprompts bridge-token` prints it. To choose tokens yourself, set "
                "BRIDGE_TOKENS.",
                path.resolve(),
            )
        token = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeError) as exc:
        raise SettingsError(
            f"BRIDGE_TOKEN_FILE {path}: cannot create or read the bridge token "
            f"({getattr(exc, 'strerror', None) or type(exc).__name__}); set BRIDGE_TOKENS instead"
        ) from None
    if not token:
        raise SettingsError(f"BRIDGE_TOKEN_FILE {path} is empty: delete it or set BRIDGE_TOKENS")
    return token


def generated_token_file(settings: Settings) -> Path | None:
    """The file the bridge's token was generated into, None when BRIDGE_TOKENS set it."""
    path = Path(settings.bridge_token_file)
    if not settings.embedded or len(settings.bridge_tokens) != 1:
        return None
    try:
        stored = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeError):
        return None
    return path if stored == settings.bridge_tokens[0] else None


def register(subparsers: Any) -> None:
    command = subparsers.add_parser(
        "bridge-token",
        help="Print the bearer token the bridge accepts (generating one on an embedded install).",
        description="Print the first of BRIDGE_TOKENS or, on an embedded install (SQLite), the "
        "token in BRIDGE_TOKEN_FILE, creating it if needed. Give it to the bot's client.",
    )
    command.set_defaults(run=run_bridge_token)


def run_bridge_token(_args: argparse.Namespace) -> int:
    from github_app.settings import Settings

    settings = Settings.from_env()
    if not settings.bridge_tokens and not settings.embedded:
        print(f"guildprompts bridge-token: {DISABLED}", file=sys.stderr)
        return 2
    print(with_bridge_tokens(settings).bridge_tokens[0])
    return 0
