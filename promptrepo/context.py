"""The routing context: what the bot knows about the conversation it summarises.

Every value is normalised before it can reach a path (lowercase, `[a-z0-9_-]` only, at most 100
characters), so no context value can ever name a file outside the repository, and two spellings of
one channel share one cache entry. `locale` is a lower-case BCP 47 tag (`pt_BR` -> `pt-br`), taken
from the context's `locale`, else its `guild_locale` (what Discord sends with an interaction).
"""

from __future__ import annotations

import re
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
_OUTSIDE = re.compile(r"[^a-z0-9_-]")
_KEY_RE = re.compile(r"[a-z_][a-z0-9_]*")
# A BCP 47 language tag, lower-cased: a 2-8 letter language, then subtags of 1-8 letters/digits.
_LOCALE_RE = re.compile(r"[a-z]{2,8}(?:-[a-z0-9]{1,8})*")


class ContextError(ValueError):
    """A context key or value that cannot be used for routing."""


def normalise_value(value: object) -> str:
    """Lowercase, every character outside `[a-z0-9_-]` becomes `_`, cut to 100 characters."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | int | float):
        text = str(value)
    else:
        raise ContextError(f"a context value must be text or a number, not {type(value).__name__}")
    # Lowercasing never shortens text, so the first 100 characters decide the result.
    text = text.strip()[:MAX_VALUE_LENGTH].lower()
    return _OUTSIDE.sub("_", text)[:MAX_VALUE_LENGTH]


def normalise_locale(value: object) -> str:
    """A language tag in lower case with `-` (`pt_BR` -> `pt-br`); "" when it is not one.

    A value that is not a tag counts as no locale at all: it could never name a translation.
    """
    if not isinstance(value, str):
        return ""
    text = value.strip()[:MAX_VALUE_LENGTH].lower().replace("_", "-")
    return text if _LOCALE_RE.fullmatch(text) else ""


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
    """A normalised, immutable, hashable routing context. Build it with `from_mapping`."""

    items: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, object] | None = None, /, **values: object
    ) -> Context:
        """Normalise keys and values; empty and None values are treated as absent.

        When both an alias and its canonical key are given (`summary_type` and `type`), the
        canonical key wins. `guild_locale` only fills in `locale` when the context has none.
        """
        merged: dict[str, str] = {}
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
            if not is_alias:
                explicit.add(key)
        guild_locale = merged.pop(GUILD_LOCALE, None)
        if guild_locale and LOCALE not in merged:
            merged[LOCALE] = guild_locale
        return cls(tuple(sorted(merged.items())))

    def get(self, name: str, default: str | None = None) -> str | None:
        wanted = canonical(name)
        for key, value in self.items:
            if key == wanted:
                return value
        return default

    def to_dict(self) -> dict[str, str]:
        return dict(self.items)

    def with_defaults(self, defaults: Mapping[str, str]) -> Context:
        """This context over a set of already-normalised defaults (PATH `variables`)."""
        if not defaults:
            return self
        merged = dict(defaults)
        merged.update(self.items)
        return Context(tuple(sorted(merged.items())))

    @property
    def key(self) -> str:
        """A stable text key for caches: `category=meeting&type=brief`."""
        return "&".join(f"{key}={value}" for key, value in self.items)

    def with_value(self, name: str, value: str | None) -> Context:
        """This context with one (already normalised) value replaced, or removed when None."""
        items = [item for item in self.items if item[0] != name]
        if value:
            items.append((name, value))
        return Context(tuple(sorted(items)))

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
