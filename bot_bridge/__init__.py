"""guildprompts' bot bridge, the bot's side: a client that never fails the bot, the result
types, the `/prompt-config` commands, their discord.py cog and the alerts watcher.

It imports only the standard library, httpx, PyYAML and promptrepo (discord.py only for
`bot_bridge.discord_cog`), so `pip install guildprompts` is all a bot needs; the service's side
of the bridge lives in `github_app.bridge`. The client's names below are re-exported lazily:
importing the package (e.g. for `bot_bridge.results`) does not load httpx.
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
