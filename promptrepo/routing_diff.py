"""What a change does to the guilds that follow a branch: the resolutions of two commits compared.

Both commits are resolved for the contexts that matter (every category x summary type x
perspective the routes or built-in prompts know, plus one context per file a route reaches
through another variable, such as a channel's own prompt), and the differences are grouped by
what a guild would notice: which file a context gets, the text of a prompt, placeholders left
unfilled, and model parameters. Pure: two parsed repositories in, a `RoutingDiff` out.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import markdown as md
from . import safeyaml
from .context import Context
from .pathfile import Route
from .render import render
from .repository import PromptRepository, RepositoryError, load_repository
from .resolve import resolve
from .variables import BOT_SUPPLIED_VARIABLES, CATEGORIES, SUMMARY_TYPES, canonical

MAX_CONTEXTS = 5_000  # a bound on work for a repository with very many routed files
DIFF_LINES = 200  # per file in the Markdown and text output (JSON keeps whole diffs)
DIFF_CHARS = 12_000
_VALUE = "[a-z0-9_-]{1,100}"
_GRID = ("category", "type", "perspective")


@dataclass(frozen=True)
class _Answer:
    label: str  # the file, or "(built-in NAME prompt)", or "(error: ...)"
    text: str  # rendered with the context: what the bot would send, before its own variables
    unresolved: frozenset[str]
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class FileChange:
    """One (base answer -> head answer) pair and the contexts that see it."""

    base: str
    head: str
    contexts: tuple[Context, ...]
    diff: str  # unified diff of the prompt text, "" when the text is the same
    parameters: Mapping[str, tuple[Any, Any]]  # name -> (base value, head value); None = unset
    new_unresolved: tuple[str, ...]  # placeholders unfilled in head that base filled or lacked

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "head": self.head,
            "contexts": [context.to_dict() for context in self.contexts],
            "diff": self.diff,
            "parameters": {k: list(v) for k, v in self.parameters.items()},
            "new_unresolved": list(self.new_unresolved),
        }


@dataclass(frozen=True)
class RoutingDiff:
    contexts_compared: int
    changes: tuple[FileChange, ...] = ()  # only pairs where something differs
    base_error: str | None = None  # why the base could not be loaded (served: built-in)
    head_error: str | None = None
    truncated: bool = False  # more contexts than MAX_CONTEXTS: the rest were not compared

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def moved(self) -> tuple[FileChange, ...]:
        """Pairs where contexts now get another file."""
        return tuple(change for change in self.changes if change.base != change.head)

    def to_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "contexts_compared": self.contexts_compared,
            "base_error": self.base_error,
            "head_error": self.head_error,
            "truncated": self.truncated,
            "changes": [change.to_dict() for change in self.changes],
        }


# ---- the contexts that matter ----------------------------------------------------------------


def contexts_for(*repositories: PromptRepository | None) -> tuple[list[Context], bool]:
    """Category x type x perspective over every value the routes and files use, plus one
    context per routed file that names another variable (a channel's own prompt); and whether
    the list was cut at MAX_CONTEXTS."""
    values: dict[str, set[str]] = {
        "category": set(CATEGORIES),
        "type": set(SUMMARY_TYPES),
        "perspective": set(),
    }
    extra: list[dict[str, str]] = []
    for repository in repositories:
        if repository is None:
            continue
        for name in _GRID:
            if name in repository.variables:
                values[name].add(repository.variables[name])
        for route in repository.routes:
            for name, allowed in route.when:
                if name in values:
                    values[name] |= {value for value in allowed if value}
            regex, groups = _route_regex(route)
            for path in repository.files:
                found = _match(regex, groups, path)
                if found is None:
                    continue
                for name, value in found.items():
                    if name in values:
                        values[name].add(value)
                if set(found) - set(_GRID):
                    extra.append(found)
    grid = [
        Context.from_mapping({"category": category, "type": kind, "perspective": perspective})
        for category in sorted(values["category"])
        for kind in sorted(values["type"])
        for perspective in [None, *sorted(values["perspective"])]
    ]
    contexts = list(dict.fromkeys([*grid, *(Context.from_mapping(found) for found in extra)]))
    return contexts[:MAX_CONTEXTS], len(contexts) > MAX_CONTEXTS


def _route_regex(route: Route) -> tuple[re.Pattern[str], list[str]]:
    pieces, groups = [], []
    for index, part in enumerate(route.parts):
        if index % 2 == 0:
            pieces.append(re.escape(part))
        else:
            pieces.append(f"({_VALUE})")
            groups.append(canonical(part))
    return re.compile("".join(pieces)), groups


def _match(regex: re.Pattern[str], groups: list[str], path: str) -> dict[str, str] | None:
    matched = regex.fullmatch(path)
    if matched is None:
        return None
    found: dict[str, str] = {}
    for name, value in zip(groups, matched.groups(), strict=True):
        if found.setdefault(name, value) != value:
            return None  # `{category}/{category}` with two different values
    # `default` is what v1 puts where a value is missing, not a value anyone sends.
    return {name: value for name, value in found.items() if value != "default"}


# ---- comparing -------------------------------------------------------------------------------


def diff_repositories(
    base: PromptRepository | None,
    head: PromptRepository | None,
    *,
    base_error: str | None = None,
    head_error: str | None = None,
) -> RoutingDiff:
    """Compare what every context that matters gets from `base` and from `head` (None: the
    built-in prompts, as a branch with no valid commit serves)."""
    contexts, truncated = contexts_for(base, head)
    # Contexts that PATH defaults make identical in both commits are compared once.
    defaults = [repo.variables if repo is not None else {} for repo in (base, head)]
    effective: dict[tuple[Context, ...], Context] = {}
    for context in contexts:
        effective.setdefault(tuple(context.with_defaults(d) for d in defaults), context)
    contexts = list(effective.values())
    pairs: dict[tuple[str, str], list[tuple[Context, _Answer, _Answer]]] = {}
    for context in contexts:
        before, after = _answer(base, context), _answer(head, context)
        if before == after:
            continue
        pairs.setdefault((before.label, after.label), []).append((context, before, after))
    changes = [_change(seen) for seen in pairs.values()]
    changes.sort(key=lambda change: (change.base == change.head, change.head, change.base))
    return RoutingDiff(len(contexts), tuple(changes), base_error, head_error, truncated)


def diff_files(
    base: Mapping[str, bytes] | None,
    head: Mapping[str, bytes] | None,
    *,
    bases: Mapping[str, Mapping[str, bytes]] | None = None,
) -> RoutingDiff:
    """`diff_repositories` for two sets of files (None: no such commit, the built-in prompts),
    both read over the same `bases` when their PATH `extends` some (what the change does,
    base commits aside)."""
    base_repo, base_error = _load(base, bases)
    head_repo, head_error = _load(head, bases)
    return diff_repositories(base_repo, head_repo, base_error=base_error, head_error=head_error)


def _load(
    files: Mapping[str, bytes] | None, bases: Mapping[str, Mapping[str, bytes]] | None
) -> tuple[PromptRepository | None, str | None]:
    if files is None:
        return None, None
    try:
        return load_repository(files, bases=bases), None
    except RepositoryError as exc:
        return None, str(exc)


def _answer(repository: PromptRepository | None, context: Context) -> _Answer:
    try:
        resolution = resolve(repository, context)
    except RepositoryError as exc:
        return _Answer(f"(error: {exc})", "", frozenset(), {})
    if resolution.file_path is None:
        label = f"(built-in {resolution.metadata.get('builtin', 'global')} prompt)"
    else:
        label = resolution.file_path
    rendered = render(resolution.content, resolution.variables)
    unresolved = frozenset(rendered.unresolved) - BOT_SUPPLIED_VARIABLES
    return _Answer(label, rendered.text, unresolved, safeyaml.thaw(resolution.parameters))


def _change(seen: list[tuple[Context, _Answer, _Answer]]) -> FileChange:
    _, before, after = seen[0]
    diff = ""
    if before.text != after.text:
        diff = "".join(
            difflib.unified_diff(
                before.text.splitlines(keepends=True),
                after.text.splitlines(keepends=True),
                fromfile=f"base/{before.label}",
                tofile=f"head/{after.label}",
            )
        )
    parameters = {
        name: (before.parameters.get(name), after.parameters.get(name))
        for name in sorted(set(before.parameters) | set(after.parameters))
        if before.parameters.get(name) != after.parameters.get(name)
    }
    new = set().union(*(a.unresolved - b.unresolved for _, b, a in seen))
    return FileChange(
        base=before.label,
        head=after.label,
        contexts=tuple(context for context, _, _ in seen),
        diff=diff,
        parameters=parameters,
        new_unresolved=tuple(sorted(new)),
    )


# ---- showing it ------------------------------------------------------------------------------


def describe_context(context: Context) -> str:
    return ", ".join(f"{key}={value}" for key, value in context.items) or "(empty context)"


def _clip_diff(diff: str) -> tuple[str, bool]:
    lines = diff.splitlines(keepends=True)
    kept = "".join(lines[:DIFF_LINES])
    cut = len(lines) > DIFF_LINES
    if len(kept) > DIFF_CHARS:
        kept, cut = kept[:DIFF_CHARS].rsplit("\n", 1)[0] + "\n", True
    return kept, cut


def render_text(result: RoutingDiff) -> str:
    """For a terminal: every change with its contexts, diff and parameters."""
    lines = _error_lines(result)
    if not result.changed:
        lines.append(
            f"No change a guild would see ({md.plural(result.contexts_compared, 'context')} "
            "compared)."
        )
        return "\n".join(lines) + "\n"
    lines.append(
        f"{md.plural(len(result.changes), 'change')} across "
        f"{md.plural(result.contexts_compared, 'context')} compared:"
    )
    for change in result.changes:
        lines.append("")
        lines.append(_heading(change))
        for context in change.contexts[:20]:
            lines.append(f"  - {describe_context(context)}")
        if len(change.contexts) > 20:
            lines.append(f"  - ... and {len(change.contexts) - 20} more")
        for name, (old, new) in change.parameters.items():
            lines.append(f"  parameter {name}: {_value(old)} -> {_value(new)}")
        if change.new_unresolved:
            lines.append(
                "  newly unresolved: " + ", ".join(f"{{{n}}}" for n in change.new_unresolved)
            )
        if change.diff:
            shown, cut = _clip_diff(change.diff)
            lines.append(shown.rstrip("\n"))
            if cut:
                lines.append("  (diff cut; see the JSON output for all of it)")
    return "\n".join(lines) + "\n"


def render_markdown(
    result: RoutingDiff, *, budget: int = 40_000, followers: int | None = None
) -> str:
    """For a check run or a pull request: a table of what moved, then one folded diff per
    changed prompt, within `budget` characters (GitHub cuts a summary at 65,535)."""
    title = "### What guilds would see"
    intro = ""
    if followers is not None:
        intro = f"{md.plural(followers, 'guild')} follow the base branch. "
    errors = [f"- {md.escape(line)}" for line in _error_lines(result)]
    if not result.changed:
        body = (
            f"{intro}**No change a guild would see**: "
            f"{md.plural(result.contexts_compared, 'context')} resolve exactly as before."
        )
        return "\n".join([title, *errors, body])
    parts = [
        title,
        *errors,
        f"{intro}{md.plural(sum(len(c.contexts) for c in result.changes), 'context')} of "
        f"{result.contexts_compared} compared change:",
        "",
        "| Contexts | Base | Head | Text | Parameters | Newly unresolved |",
        "|---|---|---|---|---|---|",
    ]
    for change in result.changes:
        shown = ", ".join(md.code(describe_context(c), table=True) for c in change.contexts[:3])
        more = len(change.contexts) - 3
        if more > 0:
            shown += f" and {more} more"
        params = "; ".join(
            md.cell(f"{name}: {_value(old)} → {_value(new)}")
            for name, (old, new) in change.parameters.items()
        )
        unresolved = ", ".join(md.code(f"{{{name}}}", table=True) for name in change.new_unresolved)
        parts.append(
            f"| {shown} | {md.code(change.base, table=True)} | {md.code(change.head, table=True)} "
            f"| {'changed' if change.diff else 'same'} | {params or '-'} | {unresolved or '-'} |"
        )
    used = sum(len(part) + 1 for part in parts)
    hidden = 0
    for change in result.changes:
        if not change.diff:
            continue
        shown_diff, cut = _clip_diff(change.diff)
        note = "\n_(diff cut)_" if cut else ""
        block = (
            f"\n<details><summary>{md.escape(_heading(change))}</summary>\n\n"
            f"{md.fenced(shown_diff, 'diff')}{note}\n</details>"
        )
        if used + len(block) > budget:
            hidden += 1
            continue
        parts.append(block)
        used += len(block) + 1
    if hidden:
        parts.append(
            f"\n_{md.plural(hidden, 'diff')} not shown to fit GitHub's limit: run "
            "`guildprompts diff` on a checkout for all of them._"
        )
    return "\n".join(parts)


def _heading(change: FileChange) -> str:
    count = md.plural(len(change.contexts), "context")
    if change.base == change.head:
        return f"{change.head} ({count}): prompt changed"
    return f"{change.base} -> {change.head} ({count})"


def _error_lines(result: RoutingDiff) -> list[str]:
    lines = []
    if result.base_error:
        lines.append(f"base cannot be used ({result.base_error}): compared with built-in prompts")
    if result.head_error:
        lines.append(f"head cannot be used ({result.head_error}): compared with built-in prompts")
    if result.truncated:
        lines.append(f"only the first {MAX_CONTEXTS} contexts were compared")
    return lines


def _value(value: Any) -> str:
    return "unset" if value is None else repr(value)
