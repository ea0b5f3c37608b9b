"""guildprompts' bot bridge: the bot's side (a client that never fails the bot, the
`/prompt-config` commands) and the service's side (the resolver cache, its invalidation listener,
the `/bridge/v1` routes and the preview page).

The bot's side imports only the standard library, httpx and promptrepo (discord.py only for
`bot_bridge.discord_cog`); the service's modules (`cache`, `invalidation`, `api`,
`binding_store`, `preview`) are never imported from here, so a bot needs none of the server.
The client's names below are re-exported lazily: importing the package (e.g. for
`bot_bridge.results`, or the CLI's `guildprompts validate`) does not load httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see; at runtime `__getattr__` imports on first use
    from .client import AsyncBridgeClient, BridgeClient
    from .results import BridgeError, BridgeEvent, GuildConfig, PreviewResult, ResolvedPrompt

__all__ = [
    "AsyncBridgeClient",
    "BridgeClient",
    "BridgeError",
    "BridgeEvent",
    "GuildConfig",
    "PreviewResult",
    "ResolvedPrompt",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".client", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
