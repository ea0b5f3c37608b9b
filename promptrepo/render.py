"""Filling `{name}` and `{{name}}` placeholders, in one pass, without ever failing.

Only a brace pair around a plain name is a placeholder; JSON examples (`{"summary": "..."}`),
spaced braces and lone braces are text. A substituted value is never scanned again, so a message
containing `{date}` stays exactly as the user wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .variables import ALIASES

PLACEHOLDER = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")

# Each name and the other spellings that may carry its value (`type` <-> `summary_type`).
_SPELLINGS: dict[str, tuple[str, ...]] = {}
for _alias, _name in ALIASES.items():
    _SPELLINGS[_alias] = (_alias, _name)
    _SPELLINGS[_name] = (_name, _alias)


@dataclass(frozen=True)
class Rendered:
    text: str
    substituted: tuple[str, ...]  # names given a value, in order of first appearance
    unresolved: tuple[str, ...]  # placeholder names left as written, in order of appearance


def render(template: str, variables: Mapping[str, object]) -> Rendered:
    """Replace every placeholder whose name has a value; leave everything else as written."""
    if not isinstance(template, str):
        template = "" if template is None else _text(template) or ""
    substituted: dict[str, None] = {}
    unresolved: dict[str, None] = {}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        value = _lookup(variables, name)
        if value is None:
            unresolved[name] = None
            return match.group(0)
        substituted[name] = None
        return value

    text = PLACEHOLDER.sub(replace, template)
    return Rendered(text, tuple(substituted), tuple(unresolved))


def _lookup(variables: Mapping[str, object], name: str) -> str | None:
    for spelling in _SPELLINGS.get(name, (name,)):
        try:
            value = variables.get(spelling)
        except Exception:  # a hostile mapping must not break rendering
            return None
        if value is not None:
            return _text(value)
    return None


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:  # an object whose __str__ fails is treated as having no value
        return None
