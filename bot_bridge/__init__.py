"""The bot's side of guildprompts: a client that never fails the bot, and `/prompt-config`.

Importable without the service's dependencies (standard library, httpx and promptrepo only);
discord.py is needed only by `bot_bridge.discord_cog`.
"""

from .client import (
    AsyncBridgeClient,
    BridgeClient,
    BridgeError,
    BridgeEvent,
    GuildConfig,
    PreviewResult,
    ResolvedPrompt,
)

__all__ = [
    "AsyncBridgeClient",
    "BridgeClient",
    "BridgeError",
    "BridgeEvent",
    "GuildConfig",
    "PreviewResult",
    "ResolvedPrompt",
]
