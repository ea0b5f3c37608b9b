"""Diagnostics: one problem, where it is, and how the author fixes it.

Codes are stable (check-run annotations, CI scripts and docs/prompt-repository.md refer to them);
each has a default severity and a hint, so every call site reports a problem the same way.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

from .variables import BOT_SUPPLIED_VARIABLES

Severity = Literal["error", "warning", "notice"]
SEVERITY_ORDER = {"error": 0, "warning": 1, "notice": 2}


@dataclass(frozen=True)
class Diagnostic:
    path: str
    line: int | None
    column: int | None
    severity: Severity
    code: str
    message: str
    hint: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def sort_key(self) -> tuple[object, ...]:
        return (
            self.path,
            self.line or 0,
            self.column or 0,
            SEVERITY_ORDER[self.severity],
            self.code,
            self.message,
        )


# code -> (default severity, hint)
CODES: dict[str, tuple[Severity, str]] = {
    # The PATH file
    "path-missing": (
        "error",
        "Add a file named PATH at the repository root listing the routes, "
        'e.g. `routes: {global_default: "prompts/default.md"}`.',
    ),
    "path-empty": (
        "error",
        "Write at least one route in PATH (YAML `routes:` or one path pattern per line).",
    ),
    "path-syntax": (
        "error",
        "Fix the YAML at this position; indent with spaces, not tabs, and "
        "quote values that contain `: ` or start with `{`.",
    ),
    "path-type": (
        "error",
        "Give this key the type the format expects (see docs/prompt-repository.md).",
    ),
    "path-unknown-key": (
        "warning",
        "Known PATH keys: version, routes, fallback_chain, "
        "variables, allowed_guilds, extends, locked; check the spelling or remove the key.",
    ),
    "path-no-routes": (
        "error",
        "Define at least one route and list it in fallback_chain (or "
        "leave fallback_chain out to try routes in file order).",
    ),
    "duplicate-key": ("warning", "Remove one of the two entries: only the last one is used."),
    "route-name": (
        "error",
        "Route names are text: letters, digits, `_` and `-`, starting with a letter or `_`.",
    ),
    "route-pattern": (
        "error",
        "Write a relative file path such as "
        "`prompts/{category}/default.md`, with `{name}` for variables.",
    ),
    "variable-name": (
        "error",
        "Variable names use letters, digits and `_`, start with a letter "
        "or `_`, and are written `{name}` in patterns.",
    ),
    "route-leading-slash": (
        "notice",
        "A leading / means the repository root, as for the earlier bot; write the path "
        "without it (e.g. `prompts/{category}.md`).",
    ),
    "route-unsafe-path": (
        "error",
        "Paths are relative to the repository root: remove the leading `/` and any `..` segment.",
    ),
    "route-v2-only": (
        "error",
        "Route mappings with `path`/`when` need schema v2: add `version: v2` to PATH (or a "
        "`schema-version` file containing `v2`), or write the route as a string.",
    ),
    "chain-undefined-route": (
        "error",
        "List only route names defined under `routes:`, or define the missing route.",
    ),
    "route-unused": ("warning", "Add the route to fallback_chain, or delete it."),
    "route-unreachable": (
        "warning",
        "Create a file the pattern can match (file names are "
        "lowercase: a-z, 0-9, `_` and `-`), or remove the route.",
    ),
    "route-variable-unknown": (
        "notice",
        "This variable is neither part of the routing context "
        "nor declared under `variables:`; check the spelling, or declare "
        "a default for it.",
    ),
    # Layers: `extends` and `locked`
    "extends-syntax": (
        "error",
        "Write `extends: owner/name@branch` (or a list of them, nearest last) in a schema v2 PATH.",
    ),
    "extends-depth": (
        "error",
        "A repository may sit on at most 3 layers of bases: extend a base that extends fewer.",
    ),
    "extends-cycle": (
        "error",
        "Bases may not extend each other in a circle: remove one `extends:` entry of the cycle.",
    ),
    "base-missing": (
        "error",
        "Make the base readable (public, or the App installed with this server in its "
        "`allowed_guilds`), fix the name or ref; locally, pass `--base owner/name=DIR`.",
    ),
    "base-invalid": (
        "error",
        "Fix the problem in the base repository (it is reported there too), or extend another "
        "ref of it.",
    ),
    "file-locked": (
        "error",
        "Remove this file: the base locks it, so the base's file serves.",
    ),
    "route-locked": (
        "error",
        "Remove the route from this PATH (or keep it in fallback_chain): the base locks it.",
    ),
    # schema-version
    "schema-version-unsupported": ("error", "Write `v1` or `v2`."),
    "schema-version-conflict": (
        "error",
        "Make the `schema-version` file and PATH's `version:` agree, or remove one of them.",
    ),
    # Files
    "file-too-large": (
        "error",
        "Split the prompt into smaller files joined with `includes:` (v2), or shorten it.",
    ),
    "file-nul": ("error", "Remove the NUL bytes; prompt files are UTF-8 text."),
    "file-encoding": ("error", "Save the file as UTF-8."),
    "prompt-empty": ("error", "Write the prompt text, or delete the file."),
    "front-matter": (
        "error",
        "Front matter is a YAML mapping between a first line `---` and a closing line `---`.",
    ),
    "front-matter-key": (
        "warning",
        "Known keys: description, metadata, parameters, includes "
        "(and prompt in .yaml files); check the spelling or move the value "
        "under `metadata:`.",
    ),
    "front-matter-key-typo": (
        "error",
        "Correct the key's spelling: as written, its value (parameters or includes) would be "
        "ignored and the prompt would ship without it.",
    ),
    "front-matter-v1": (
        "warning",
        "Schema v1 sends this block to the model as prompt text; "
        "add a `schema-version` file containing `v2` to use front matter.",
    ),
    "prompt-yaml": (
        "error",
        "A .yaml prompt file is a mapping with a text `prompt:` key, plus "
        "optional description, metadata, parameters and includes.",
    ),
    "yaml-prompt-v1": (
        "warning",
        "Schema v1 sends .yaml files verbatim; use a .md file, or "
        "switch the repository to schema v2.",
    ),
    "include-missing": (
        "error",
        "Include repository paths of existing .md or .yaml prompt "
        "files, relative to the repository root.",
    ),
    "include-path": (
        "error",
        "Write an include as a relative path such as "
        "`prompts/shared/style.md`, without `..` or a leading `/`.",
    ),
    "include-cycle": (
        "error",
        "Remove one of the includes so that no file includes itself, directly or through others.",
    ),
    "include-depth": (
        "error",
        "Includes may nest at most 5 levels; include the deeper files "
        "directly from a shallower one.",
    ),
    "include-size": ("error", "Include fewer or smaller files: the assembled prompt is too large."),
    "yaml-limits": (
        "error",
        "Simplify the YAML: no deeply nested values and no aliases that "
        "expand into huge documents.",
    ),
    "file-unreachable": (
        "warning",
        "Rename the file to match a route (lowercase names), add a "
        "route for it, include it from a reachable prompt, or delete it.",
    ),
    "placeholder-unknown": (
        "warning",
        "Use a routing variable, a PATH `variables:` entry or a "
        "variable the bot supplies ("
        + ", ".join(sorted(BOT_SUPPLIED_VARIABLES))
        + "); other placeholders stay as written.",
    ),
    # Routing tests (tests/*.yaml)
    "test-invalid": (
        "error",
        "A test file is a YAML list of tests, each with `name`, `context` and `expect` (file, "
        "route, contains, not_contains, max_bytes, parameters); see docs/prompt-repository.md.",
    ),
    "test-failed": (
        "error",
        "Fix the prompt or the routes so the context gets what the test expects, or update the "
        "test if the change is intended (`guildprompts test DIR` runs them locally).",
    ),
    "dangerous-pattern": (
        "warning",
        "Prompts go to a language model and are never executed; if "
        "the text is intended, leave it (strict deployments reject it), "
        "otherwise rephrase it.",
    ),
}


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """The choice `name` is most likely a misspelling of, if one is close enough."""
    found = difflib.get_close_matches(name.lower(), list(choices), n=1, cutoff=0.75)
    return found[0] if found else None


def diagnostic(
    code: str,
    path: str,
    message: str,
    line: int | None = None,
    column: int | None = None,
    *,
    hint: str | None = None,
    severity: Severity | None = None,
) -> Diagnostic:
    default_severity, default_hint = CODES[code]
    return Diagnostic(
        path=path,
        line=line,
        column=column,
        severity=severity or default_severity,
        code=code,
        message=message,
        hint=hint or default_hint,
    )
