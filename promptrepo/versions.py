"""Schema versions: which rules a repository asks for, from `schema-version` or PATH `version:`."""

from __future__ import annotations

SUPPORTED_VERSIONS: tuple[str, ...] = ("v1", "v2")
DEFAULT_VERSION = "v1"


def parse_version(raw: object) -> str | None:
    """`v1`/`v2` in any case, with stray whitespace or a BOM, or a bare 1/2; None otherwise."""
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return None
    text = str(raw).replace("\ufeff", "").strip().lower()
    if text.isdigit():
        text = "v" + text
    return text if text in SUPPORTED_VERSIONS else None


def describe_supported() -> str:
    return " or ".join(SUPPORTED_VERSIONS)
