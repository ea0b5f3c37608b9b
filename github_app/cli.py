"""The `guildprompts` command: one parser, each family of subcommands registered by its home.

Registrars only add arguments; heavy imports happen inside the command that needs them, so
`guildprompts validate` starts as fast as the pure format package allows.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence

from promptrepo import console as format_console


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="guildprompts",
        description="Prompt templates for a Discord summarization bot, kept in GitHub.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    format_console.register(commands)
    for module_name in _SERVICE_COMMANDS:
        module = __import__(module_name, fromlist=["register"])
        module.register(commands)
    return parser


# Modules whose `register(subparsers)` adds the service's commands (db, keys, serve, worker, ...).
_SERVICE_COMMANDS: list[str] = [
    "github_app.store.maintenance",
    "github_app.service",
    "github_app.preview",
    "github_app.bridge.tokens",
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("guildprompts")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


# Top-level modules of the `app` extra (pyproject.toml) that every service command imports.
# Checked with find_spec, so the base install (a bot's) never imports them to say they are missing.
_APP_MODULES = (
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "cryptography",
    "jwt",
    "tenacity",
    "prometheus_client",
)


def missing_app_modules() -> list[str]:
    """The service's modules missing here (none once `guildprompts[app]` is installed)."""
    return [name for name in _APP_MODULES if importlib.util.find_spec(name) is None]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in format_console.COMMANDS and missing_app_modules():
        print(
            f"guildprompts {args.command} needs the service: pip install 'guildprompts[app]'",
            file=sys.stderr,
        )
        return 2
    try:
        status = int(args.run(args) or 0)
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader stopped early (`guildprompts resolve ... | head`): that is its choice, not
        # an error. Point stdout at /dev/null so the interpreter's final flush stays quiet.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # last resort: a person reads this, never a traceback
        # A SettingsError can only come from a loaded settings module; importing it here would
        # pull the service's dependencies into a format command.
        settings = sys.modules.get("github_app.settings")
        if settings is not None and isinstance(exc, settings.SettingsError):
            print(f"guildprompts: configuration error: {exc}", file=sys.stderr)
        else:
            print(f"guildprompts: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
