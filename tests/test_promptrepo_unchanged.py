"""Repositories that do not use `{locale}` resolve exactly as they did before locales existed.

`fixtures/promptrepo/resolutions.json` was written by `resolutions()` below at commit c2a5614,
before locale routing was added (regenerate it only on purpose:
`python -m tests.test_promptrepo_unchanged > tests/fixtures/promptrepo/resolutions.json`).
Every repository here is resolved for the same grid of contexts now, and once more with Discord
locales added to each context: both must match the recorded answers path for path.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from itertools import product
from pathlib import Path
from typing import Any

from promptrepo import PromptRepository, files_from_directory, load_repository, resolve

ROOT = Path(__file__).resolve().parent.parent
RECORDED = Path(__file__).resolve().parent / "fixtures" / "promptrepo" / "resolutions.json"

REPOSITORIES: dict[str, dict[str, bytes]] = {
    "examples": files_from_directory(ROOT / "examples"),
    "v1-lines": {
        "PATH": b"# the earlier bot's layout\nprompts/{category}/{channel}.md\n"
        b"prompts/{category}/default.md\nprompts/default.md\n",
        "prompts/default.md": b"Global {messages}",
        "prompts/meeting/default.md": b"Meeting {messages}",
        "prompts/meeting/standup.md": b"Standup {messages}",
        "prompts/default/default.md": b"Default category",
    },
    "v1-yaml": {
        "PATH": b"version: v1\nroutes:\n"
        b'  deep: "p/{category}/{type}/{channel}.md"\n'
        b'  typed: "p/{category}-{type}.md"\n'
        b'  perspective: "p/{perspective}/{category}.md"\n'
        b'  global: "p/default.md"\n'
        b"fallback_chain: [deep, typed, perspective, global]\n"
        b"variables: {perspective: general}\n",
        "p/default.md": b"G",
        "p/discussion/brief/general.md": b"DBG",
        "p/discussion/default/default.md": b"DDD",
        "p/meeting-detailed.md": b"MD",
        "p/general/moderation.md": b"GM",
        "p/developer/default.md": b"DevD",
    },
    "v2-when": {
        "schema-version": b"v2",
        "PATH": b"routes:\n"
        b"  dev:\n    path: q/dev/{category}.md\n    when: {perspective: [developer]}\n"
        b'  cat: "q/{category}/{type}.md"\n'
        b'  global: "q/default.md"\n',
        "q/default.md": b"G",
        "q/dev/meeting.md": b"DM",
        "q/discussion/brief.md": b"DB",
    },
}

CONTEXTS: list[dict[str, str]] = [
    {
        key: value
        for key, value in zip(("category", "type", "channel", "perspective"), values, strict=True)
        if value
    }
    for values in product(
        ("", "discussion", "meeting", "moderation"),
        ("", "brief", "detailed"),
        ("", "general", "standup", "announcements"),
        ("", "developer"),
    )
]

LOCALES = ({"locale": "pt-BR"}, {"guild_locale": "fr"}, {"locale": "en_US", "guild_locale": "de"})


@cache
def _loaded(name: str) -> PromptRepository:
    return load_repository(REPOSITORIES[name])


def _answer(name: str, context: dict[str, str]) -> dict[str, Any]:
    result = resolve(_loaded(name), context)
    return {
        "file_path": result.file_path,
        "tried_paths": list(result.tried_paths),
        "route": result.route,
        "source": result.source,
        "content_sha256": hashlib.sha256(result.content.encode()).hexdigest()[:16],
    }


def resolutions() -> dict[str, list[dict[str, Any]]]:
    return {name: [_answer(name, context) for context in CONTEXTS] for name in REPOSITORIES}


def test_repositories_without_locale_routes_resolve_as_recorded_before_locales() -> None:
    recorded = json.loads(RECORDED.read_text(encoding="utf-8"))
    assert set(recorded) == set(REPOSITORIES)
    for name in REPOSITORIES:
        for context, expected in zip(CONTEXTS, recorded[name], strict=True):
            assert _answer(name, context) == expected, (name, context)


def test_discord_locales_change_nothing_for_repositories_without_locale_routes() -> None:
    recorded = json.loads(RECORDED.read_text(encoding="utf-8"))
    for name in REPOSITORIES:
        for (context, expected), locales in product(
            zip(CONTEXTS, recorded[name], strict=True), LOCALES
        ):
            assert _answer(name, {**context, **locales}) == expected, (name, context, locales)


def _dump(recorded: dict[str, list[dict[str, Any]]]) -> str:
    """One answer a line, so a change to the recording reads as a short diff."""
    blocks = []
    for name, answers in recorded.items():
        lines = ",\n".join("  " + json.dumps(answer, ensure_ascii=False) for answer in answers)
        blocks.append(f"{json.dumps(name)}: [\n{lines}\n]")
    return "{\n" + ",\n".join(blocks) + "\n}"


if __name__ == "__main__":
    print(_dump(resolutions()))
