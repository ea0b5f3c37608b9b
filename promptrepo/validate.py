"""`validate`: every problem in a repository, precise enough for check-run annotations.

Parsing problems come from the shared analysis (`repository.analyse`); this module adds what only
matters to authors: unreachable routes and files, unknown placeholders, and the earlier bot's
"dangerous pattern" list (warnings, errors only in strict mode: prompts only go to a model).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .diagnostics import Diagnostic, diagnostic, did_you_mean
from .files import PATH_FILE
from .frontmatter import PromptSource, is_yaml_prompt
from .pathfile import Route, without_variable
from .render import PLACEHOLDER
from .repository import Analysis, RepositoryError, analyse, repository_from
from .routing_tests import run_tests
from .variables import ALIASES, CONTEXT_VARIABLES, KNOWN_VARIABLES, LOCALE, canonical

DEFAULT_MAX_FILE_SIZE = 100 * 1024

_DANGEROUS = re.compile(
    r"""
      (?P<script><\s*script\b)
    | (?P<javascript>\bjavascript\s*:)
    | (?P<call>\b(?:eval|exec)\s*\()
    | (?P<dunder>__import__)
    | (?P<dollar>\$\{[^{}\n]*\})
    | (?P<handler><[a-z][^<>\n]*?\son[a-z]+\s*=)
    | (?P<double>\{\{[^{}\n]*\}\})
    """,
    re.IGNORECASE | re.VERBOSE,
)
# Every _DANGEROUS match contains one of these (lowercased): a cheap test that skips the
# regex for the many prompts that contain none.
_TRIGGERS = ("<", "javascript", "eval", "exec", "__import__", "${", "{{")
_DANGER_NAMES = {
    "script": "script tag",
    "javascript": "javascript: URL",
    "call": "code execution call",
    "dunder": "Python import",
    "dollar": "template expression",
    "handler": "HTML event handler",
}
# What a normalised context value can be: Unicode letters and digits, `_`, `-`; lowercase, which
# a regex cannot say for every script, so `_matches` checks the captured values.
_VALUE = r"([\w-]{1,100})"
_LOCALE = "[a-z]{2,8}(?:-[a-z0-9]{1,8})*"  # what a normalised locale can be


@dataclass(frozen=True)
class Report:
    diagnostics: list[Diagnostic]
    schema_version: str | None  # None when unsupported, conflicting or unknown

    @property
    def valid(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


def validate(
    files: Mapping[str, bytes],
    *,
    strict: bool = False,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    bases: Mapping[str, Mapping[str, bytes]] | None = None,
) -> list[Diagnostic]:
    """All diagnostics for a repository given as path -> bytes, sorted by file and line."""
    return validate_report(
        files, strict=strict, max_file_size=max_file_size, bases=bases
    ).diagnostics


def validate_report(
    files: Mapping[str, bytes],
    *,
    strict: bool = False,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    bases: Mapping[str, Mapping[str, bytes]] | None = None,
    name: str = "",
) -> Report:
    """`validate`, plus the schema version the repository was checked against.

    `bases`: the repositories its PATH may extend (`owner/name` or `owner/name@ref` -> files);
    only the repository's own files and routes are checked in detail, a base's errors are
    summarised on PATH (`base-invalid`). `name`: its own `owner/name`, to catch cycles.
    """
    return report_for(
        analyse(files, max_file_size=max_file_size, bases=bases, name=name), strict=strict
    )


def report_for(result: Analysis, *, strict: bool = False) -> Report:
    """The report of an analysis (see `validate_report`)."""
    found = list(result.diagnostics)
    known = _known_names(result)
    for path, source in result.sources.items():
        if result.is_own(path):
            found += _check_text(source, known, strict)
    if result.routes:
        found += _check_route_variables(result)
        found += _check_reachability(result)
    found += _run_routing_tests(result)
    return Report(sorted(found, key=Diagnostic.sort_key), result.schema_version)


def _run_routing_tests(result: Analysis) -> list[Diagnostic]:
    """The repository's own routing tests; a failure is an error, so the commit is rejected."""
    if not result.tests:
        return []
    try:
        repository = repository_from(result)
    except RepositoryError:
        repository = None  # PATH's own errors explain it; no test can run
    return list(run_tests(repository, result.tests).diagnostics)


def _known_names(result: Analysis) -> frozenset[str]:
    names = set(KNOWN_VARIABLES) | set(result.variables)
    for route in result.routes:
        names |= set(route.names) | {name for name, _ in route.when}
    names |= {alias for alias, name in ALIASES.items() if name in names}
    return frozenset(names)


def _check_text(source: PromptSource, known: frozenset[str], strict: bool) -> list[Diagnostic]:
    """Unknown placeholders and dangerous patterns, first occurrence of each, with a count."""
    findings: dict[tuple[str, str], list[re.Match[str]]] = {}
    body = source.body
    for match in PLACEHOLDER.finditer(body):
        name = match.group(2)
        # `${name}` is reported once, as a dangerous pattern, not also as a placeholder.
        dollar = body[match.start() - 1 : match.start()] == "$"
        if name is not None and name not in known and not dollar:
            findings.setdefault(("placeholder", name), []).append(match)
    lowered = body.lower()
    suspicious = any(trigger in lowered for trigger in _TRIGGERS)
    for match in _DANGEROUS.finditer(body) if suspicious else ():
        kind = match.lastgroup or ""
        if kind == "double":
            if match.group()[2:-2] in known:
                continue
            kind = match.group()  # each unknown `{{...}}` separately
        findings.setdefault(("danger", kind), []).append(match)
    out = []
    cursor = 0
    for (group, kind), matches in sorted(findings.items(), key=lambda item: item[1][0].start()):
        first = matches[0]
        line, column, cursor = source.locate(first.start(), first.group(), cursor)
        more = f" ({len(matches)} times in this file)" if len(matches) > 1 else ""
        if group == "placeholder":
            meant = did_you_mean(kind, known)
            out.append(
                diagnostic(
                    "placeholder-unknown",
                    source.path,
                    f"`{{{kind}}}` is not supplied by the "
                    f"routing context, PATH variables or the bot; it stays as written{more}"
                    + (f": did you mean `{{{meant}}}`?" if meant else ""),
                    line,
                    column,
                    hint=f"Write `{{{meant}}}` instead of `{{{kind}}}` on line {line} of "
                    f"{source.path}."
                    if meant
                    else None,
                )
            )
        else:
            out.append(_danger(source.path, kind, first.group(), more, line, column, strict))
    return out


def _danger(
    path: str, kind: str, text: str, more: str, line: int, column: int, strict: bool
) -> Diagnostic:
    shown = text if len(text) <= 60 else text[:57] + "..."
    if kind in _DANGER_NAMES:
        what = f"`{shown}` is on the dangerous-pattern list ({_DANGER_NAMES[kind]})"
    elif text[2:-2].strip() in KNOWN_VARIABLES:
        inner = text[2:-2].strip()
        what = f"`{shown}` is not a placeholder: write `{{{{{inner}}}}}` without spaces"
    else:
        what = f"`{shown}` is not a known variable"
    if not strict:
        return diagnostic("dangerous-pattern", path, what + more, line, column)
    hint = (
        "This deployment runs in strict mode, where these patterns are errors: rephrase the "
        "text (a JSON example needs single braces only)."
    )
    return diagnostic(
        "dangerous-pattern", path, what + more, line, column, hint=hint, severity="error"
    )


def _own_routes(result: Analysis) -> list[Route]:
    return [route for route in result.routes if result.route_owners.get(route.name, "") == ""]


def _check_route_variables(result: Analysis) -> list[Diagnostic]:
    declared = set(result.variables)
    out = []
    for route in _own_routes(result):
        written = list(route.names) + [name for name, _ in route.when]
        for name in dict.fromkeys(written):
            if canonical(name) not in CONTEXT_VARIABLES and canonical(name) not in declared:
                out.append(
                    diagnostic(
                        "route-variable-unknown",
                        PATH_FILE,
                        f"route `{route.name}` uses "
                        f"`{name}`, which the bot only sends as an extra variable",
                        route.line,
                        route.column,
                    )
                )
    return out


def _route_regex(route: Route, version: str) -> re.Pattern[str]:
    """Every path the route can ever propose (with and without the locale, when it has one)."""
    shapes = [_pattern_regex(route, version)]
    bare = without_variable(route, LOCALE) if LOCALE in route.names else None
    if bare is not None and (version == "v1" or LOCALE not in dict(route.when)):
        shapes.append(_pattern_regex(bare, version))
    return re.compile("|".join(f"(?:{shape})" for shape in shapes))


def _pattern_regex(route: Route, version: str) -> str:
    allowed = dict(route.when) if version != "v1" else {}
    pieces = []
    for index, part in enumerate(route.parts):
        if index % 2 == 0:
            pieces.append(re.escape(part))
        elif canonical(part) in allowed:
            values = sorted(value for value in allowed[canonical(part)] if value)
            pieces.append("(?:" + "|".join(map(re.escape, values)) + ")" if values else "(?!)")
        else:
            pieces.append(_LOCALE if part == LOCALE else _VALUE)
    return "".join(pieces)


def _matches(regex: re.Pattern[str], path: str) -> bool:
    match = regex.fullmatch(path)
    # A group of the route's other shape (with or without the locale) did not take part: None.
    return match is not None and all(
        value is None or value == value.lower() for value in match.groups()
    )


def _check_reachability(result: Analysis) -> list[Diagnostic]:
    """Routes no file can satisfy, and prompt files no route (or include) can reach."""
    prompts = result.prompt_paths
    regexes = [(route, _route_regex(route, result.version)) for route in result.routes]
    out = []
    routed: set[str] = set()
    own_routes = _own_routes(result)
    for route, regex in regexes:
        matched = {path for path in prompts if _matches(regex, path)}
        routed |= matched
        if not matched and route in own_routes:
            out.append(
                diagnostic(
                    "route-unreachable",
                    PATH_FILE,
                    f"route `{route.name}`: no file matches `{route.pattern}`",
                    route.line,
                    route.column,
                    hint=_example_hint(route, result.version),
                )
            )
    reachable = _closure(routed, result.sources)
    unrouted: dict[str, list[str]] = {}
    for path in prompts:
        if not result.is_own(path):
            continue
        if path in reachable:
            if result.version == "v1" and is_yaml_prompt(path) and path in routed:
                out.append(
                    diagnostic(
                        "yaml-prompt-v1",
                        path,
                        "a route reaches this .yaml "
                        "file, which schema v1 sends to the model verbatim",
                    )
                )
            continue
        lowered = path.lower()
        if lowered != path and any(_matches(regex, lowered) for _, regex in regexes):
            out.append(
                diagnostic(
                    "file-unreachable",
                    path,
                    "no route can reach this file: routing values are "
                    f"lowercase, so it must be named {lowered}",
                )
            )
        else:
            unrouted.setdefault(path.rpartition("/")[0], []).append(path)
    for folder, paths in unrouted.items():
        out.append(_unreachable(folder, paths))
    return out


def _unreachable(folder: str, paths: list[str]) -> Diagnostic:
    """One finding for the unreachable files of one folder (six perspective files are one
    problem with one fix), with a route that would reach them when the folder says how."""
    paths = sorted(paths)
    if len(paths) == 1:
        message = "no route can reach this file, and no reachable prompt includes it"
    else:
        names = ", ".join(path.rpartition("/")[2] for path in paths)
        message = (
            f"no route can reach these {len(paths)} files in {folder or 'the root'}/ "
            f"({names}), and no reachable prompt includes them"
        )
    variable = _folder_variable(folder)
    if variable is None:
        return diagnostic("file-unreachable", paths[0], message)
    suffix = paths[0].rpartition(".")[2]
    example = f"{folder}/{{{variable}}}.{suffix}"
    them = "it" if len(paths) == 1 else "them"
    hint = (
        f"Add a route for {them} to PATH, e.g. `by_{variable}: {example}` under `routes:` "
        f"(and in `fallback_chain`), or delete {them}."
    )
    return diagnostic("file-unreachable", paths[0], message, hint=hint)


def _folder_variable(folder: str) -> str | None:
    """The context variable a folder's name says its files are named by (`perspectives/`)."""
    name = folder.rpartition("/")[2].lower()
    for variable in CONTEXT_VARIABLES:
        if name in {variable, f"{variable}s", variable.removesuffix("y") + "ies"}:
            return variable
    return None


def _closure(roots: Iterable[str], sources: Mapping[str, PromptSource]) -> set[str]:
    seen = set(roots)
    pending = list(seen)
    while pending:
        source = sources.get(pending.pop())
        for include in source.includes if source else ():
            if include.path not in seen:
                seen.add(include.path)
                pending.append(include.path)
    return seen


_EXAMPLE_VALUES = {
    "category": "discussion",
    "channel": "general",
    "type": "brief",
    "perspective": "general",
    "guild": "123456789012345678",
    "channel_id": "123456789012345678",
    "locale": "fr",
}


def _example_hint(route: Route, version: str) -> str:
    when = dict(route.when) if version != "v1" else {}
    parts = list(route.parts)
    for index in range(1, len(parts), 2):
        name = canonical(parts[index])
        choices = sorted(value for value in when.get(name, ()) if value)
        parts[index] = choices[0] if choices else _EXAMPLE_VALUES.get(name, "default")
    return (
        f"Create a file the pattern matches, such as {''.join(parts)} (file names are "
        "lowercase: a-z, 0-9, `_` and `-`), or remove the route."
    )
