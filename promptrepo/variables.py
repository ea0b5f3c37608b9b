"""The names prompts and routes may use, kept in one place.

Validation, rendering and resolution all ask this module which variables exist, so the list of
what the bot supplies cannot drift between them.
"""

from __future__ import annotations

import re

# Filled in by the bot when it renders a prompt, never by routing.
BOT_SUPPLIED_VARIABLES: frozenset[str] = frozenset(
    {"messages", "message_count", "date", "time_range", "guild_name", "channel_name"}
)

# The locale routing variable, and Discord's server-wide locale that stands in when the
# context has no `locale` (it never reaches a route or a prompt under its own name).
LOCALE = "locale"
GUILD_LOCALE = "guild_locale"

# The routing context the bot sends with every request.
CONTEXT_VARIABLES: frozenset[str] = frozenset(
    {"guild", "channel", "channel_id", "category", "type", "perspective", LOCALE}
)

# Older spellings accepted everywhere a context variable name is: alias -> canonical name.
ALIASES: dict[str, str] = {"summary_type": "type", "guild_id": "guild"}

# The categories and summary types the built-in defaults and previews know about.
CATEGORIES: tuple[str, ...] = ("discussion", "meeting", "moderation")
SUMMARY_TYPES: tuple[str, ...] = ("brief", "detailed", "comprehensive")

# A variable name as written in `{name}`, a route pattern or a `when:` key.
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_NAME_LENGTH = 64

KNOWN_VARIABLES: frozenset[str] = BOT_SUPPLIED_VARIABLES | CONTEXT_VARIABLES | frozenset(ALIASES)


def canonical(name: str) -> str:
    """The context key a variable name reads (`summary_type` reads `type`)."""
    return ALIASES.get(name, name)


def is_valid_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and len(name) <= MAX_NAME_LENGTH
        and NAME_RE.fullmatch(name) is not None
    )
