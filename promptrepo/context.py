"""The routing context: what the bot knows about the conversation it summarises.

Every value is normalised before it can reach a path, as the earlier bot did: whitespace stripped,
NFC, lowercase, Unicode letters and digits kept, `-` and `_` kept, anything else (`.`, `/`,
spaces, punctuation) becomes `_`, at most 100 characters; so no context value can ever name a file
outside the repository (no `..`, no `/`), and `général` routes to `général.md`. The values as the
bot gave them (stripped) are kept beside for rendering: a prompt says `#General Chat`, not
`general_chat`.

`locale` is a lower-case BCP 47 tag for routing (`pt_BR` -> `pt-br`) and the tag in its usual
casing for rendering (`pt-BR`), taken from the context's `locale`, else its `guild_locale` (what
Discord sends with an interaction).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from .variables import (
    ALIASES,
    CATEGORIES,
    GUILD_LOCALE,
    LOCALE,
    MAX_NAME_LENGTH,
    SUMMARY_TYPES,
    canonical,
)

MAX_VALUE_LENGTH = 100
_OUTSIDE = re.compile(r"[^\w-]")  # \w: Unicode letters and digits, and _
_KEY_RE = re.compile(r"[a-z_][a-z0-9_]*")
# A BCP 47 language tag, lower-cased: a 2-8 letter language, then subtags of 1-8 letters/digits.
_LOCALE_RE = re.compile(r"[a-z]{2,8}(?:-[a-z0-9]{1,8})*")


class ContextError(ValueError):
    """A context key or value that cannot be used for routing."""


def display_value(value: object) -> str:
    """The value as given, for rendering: text, stripped of surrounding whitespace."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value).strip()
    raise ContextError(f"a context value must be text or a number, not {type(value).__name__}")


def normalise_value(value: object) -> str:
    """Stripped, NFC, lowercase; Unicode letters, digits, `-` and `_` kept, anything else `_`;
    cut to 100 characters."""
    text = unicodedata.normalize("NFC", display_value(value)).lower()
    return _OUTSIDE.sub("_", text)[:MAX_VALUE_LENGTH]


def normalise_locale(value: object) -> str:
    """A language tag in lower case with `-` (`pt_BR` -> `pt-br`); "" when it is not one.

    A value that is not a tag counts as no locale at all: it could never name a translation.
    """
    if not isinstance(value, str):
        return ""
    text = value.strip()[:MAX_VALUE_LENGTH].lower().replace("_", "-")
    return text if _LOCALE_RE.fullmatch(text) else ""


def display_locale(tag: str) -> str:
    """A normalised tag in its usual casing, for prompts: `pt-br` -> `pt-BR`, `zh-hant` ->
    `zh-Hant`, `es-419` stays."""
    language, *subtags = tag.split("-")
    shown = [language]
    for subtag in subtags:
        if len(subtag) == 2 and subtag.isalpha():
            shown.append(subtag.upper())
        elif len(subtag) == 4 and subtag.isalpha():
            shown.append(subtag.title())
        else:
            shown.append(subtag)
    return "-".join(shown)


def locale_fallbacks(tag: str | None) -> tuple[str, ...]:
    """The tags to try for a locale, best first: `pt-br` -> (`pt-br`, `pt`); none -> ()."""
    if not tag:
        return ()
    language = tag.split("-", 1)[0]
    return (tag,) if language == tag else (tag, language)


def normalise_variable(key: str, value: object) -> str:
    """A value for a canonical context key: a language tag for the locales, else as any value."""
    return normalise_locale(value) if key in (LOCALE, GUILD_LOCALE) else normalise_value(value)


def normalise_key(key: object) -> str:
    """Context keys are lowercase identifiers; aliases become their canonical name."""
    if not isinstance(key, str):
        raise ContextError(f"a context key must be text, not {type(key).__name__}")
    name = key.strip().lower()
    if len(name) > MAX_NAME_LENGTH or not _KEY_RE.fullmatch(name):
        raise ContextError(
            f"invalid context key {key[:80]!r}: use letters, digits and _, starting with a letter"
        )
    return canonical(name)


@dataclass(frozen=True)
class Context:
    """A normalised, immutable, hashable routing context. Build it with `from_mapping`.

    `raw` holds the values as given where they differ from the normalised ones (only for keys
    in `items`): routing uses `items`, rendering `rendering()`.
    """

    items: tuple[tuple[str, str], ...] = ()
    raw: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.raw:
            own = dict(self.items)
            kept = tuple(sorted((k, v) for k, v in self.raw if k in own and own[k] != v))
            object.__setattr__(self, "raw", kept)

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, object] | None = None, /, **values: object
    ) -> Context:
        """Normalise keys and values; empty and None values are treated as absent.

        When both an alias and its canonical key are given (`summary_type` and `type`), the
        canonical key wins. `guild_locale` only fills in `locale` when the context has none.
        """
        merged: dict[str, str] = {}
        shown: dict[str, str] = {}
        explicit: set[str] = set()
        source = dict(mapping or {})
        source.update(values)
        for raw_key, raw_value in source.items():
            key = normalise_key(raw_key)
            if raw_value is None:
                continue
            value = normalise_variable(key, raw_value)
            is_alias = raw_key.strip().lower() in ALIASES
            if not value or (is_alias and key in explicit):
                continue
            merged[key] = value
            shown[key] = display_value(raw_value)
            if not is_alias:
                explicit.add(key)
        guild_locale = merged.pop(GUILD_LOCALE, None)
        shown.pop(GUILD_LOCALE, None)
        if guild_locale and LOCALE not in merged:
            merged[LOCALE] = guild_locale
        if LOCALE in merged:
            shown[LOCALE] = display_locale(merged[LOCALE])
        return cls(tuple(sorted(merged.items())), tuple(sorted(shown.items())))

    def get(self, name: str, default: str | None = None) -> str | None:
        wanted = canonical(name)
        for key, value in self.items:
            if key == wanted:
                return value
        return default

    def to_dict(self) -> dict[str, str]:
        return dict(self.items)

    def rendering(self) -> dict[str, str]:
        """The values prompt text is rendered with: as the bot gave them, not path-safe."""
        return {**dict(self.items), **dict(self.raw)}

    def with_defaults(self, defaults: Mapping[str, str]) -> Context:
        """This context over a set of already-normalised defaults (PATH `variables`)."""
        if not defaults:
            return self
        merged = dict(defaults)
        merged.update(self.items)
        return Context(tuple(sorted(merged.items())), self.raw)

    @property
    def key(self) -> str:
        """A stable text key for caches: `category=meeting&type=brief` (and the raw values
        after `|` when they differ: they render differently, so they cannot share an entry)."""
        key = "&".join(f"{key}={value}" for key, value in self.items)
        if self.raw:
            key += "|" + "&".join(f"{k}={v}" for k, v in self.raw)
        return key

    def with_value(self, name: str, value: str | None) -> Context:
        """This context with one (already normalised) value replaced, or removed when None."""
        items = [item for item in self.items if item[0] != name]
        if value:
            items.append((name, value))
        return Context(tuple(sorted(items)), self.raw)

    @property
    def category(self) -> str | None:
        return self.get("category")

    @property
    def type(self) -> str | None:
        return self.get("type")


def common_contexts() -> list[Context]:
    """Every built-in category crossed with every common summary type, for previews."""
    return [
        Context.from_mapping({"category": category, "type": summary_type})
        for category in CATEGORIES
        for summary_type in SUMMARY_TYPES
    ]
