"""Prompt files: v2 front matter, `.yaml` prompts, and includes assembled into one text.

A v2 Markdown prompt may open with a YAML block between `---` lines; a `.yaml` prompt holds the
same keys plus `prompt:`. In v1 every file is prompt text, exactly as written.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from . import safeyaml
from .diagnostics import Diagnostic, diagnostic, did_you_mean
from .pathfile import check_relative_path

MAX_INCLUDE_DEPTH = 5
MAX_ASSEMBLED_BYTES = 1024 * 1024
FRONT_MATTER_KEYS = ("description", "metadata", "parameters", "includes")
YAML_SUFFIXES = (".yaml", ".yml")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Include:
    path: str
    line: int
    column: int


@dataclass(frozen=True)
class PromptSource:
    """One parsed prompt file, before its includes are appended."""

    path: str
    text: str  # the whole file: no BOM, LF line endings
    body: str  # the prompt text of this file
    body_start: int  # offset of `body` in `text`; -1 when the body is a YAML value
    body_line: int = 1  # where a YAML `prompt:` value starts (for locating matches)
    description: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    parameters: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    includes: tuple[Include, ...] = ()

    def locate(self, offset: int, token: str, cursor: int = 0) -> tuple[int, int, int]:
        """(line, column, next cursor) in the file of `token` found at `offset` in the body."""
        if self.body_start >= 0:
            index = self.body_start + offset
        else:
            start = max(cursor, _line_offset(self.text, self.body_line))
            index = self.text.find(token, start)
            if index == -1:
                return self.body_line, 1, cursor
        line = self.text.count("\n", 0, index) + 1
        column = index - (self.text.rfind("\n", 0, index) + 1) + 1
        return line, column, index + len(token)


# Keys whose misspelling silently drops what the model receives: an error, not a warning.
_CARRY_VALUES = frozenset({"parameters", "includes"})


def is_yaml_prompt(path: str) -> bool:
    return path.lower().endswith(YAML_SUFFIXES)


def parse_prompt(
    path: str, text: str, version: str
) -> tuple[PromptSource | None, list[Diagnostic]]:
    """Parse one decoded prompt file; None when it has errors (the diagnostics say which)."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    if version == "v1":
        return _parse_v1(path, text)
    if is_yaml_prompt(path):
        return _Reader(path, text, "prompt-yaml", 0).yaml_prompt()
    return _parse_markdown(path, text)


def _parse_v1(path: str, text: str) -> tuple[PromptSource, list[Diagnostic]]:
    diagnostics = []
    if _front_matter_end(text.split("\n")) is not None:
        diagnostics.append(
            diagnostic(
                "front-matter-v1",
                path,
                "this file starts with front matter, but the repository uses schema v1",
                1,
                1,
            )
        )
    return PromptSource(path, text, text, 0), diagnostics


def _front_matter_end(lines: list[str]) -> int | None:
    """Index of the closing `---` line when the file opens with front matter."""
    if not lines or lines[0].rstrip() != "---":
        return None
    for index in range(1, len(lines)):
        if lines[index].rstrip() in ("---", "..."):
            return index
    return None


def _parse_markdown(path: str, text: str) -> tuple[PromptSource | None, list[Diagnostic]]:
    lines = text.split("\n")
    if lines[0].rstrip() != "---":
        return _finish(PromptSource(path, text, text, 0), [])
    end = _front_matter_end(lines)
    if end is None:
        return None, [
            diagnostic(
                "front-matter",
                path,
                "the front matter opened on line 1 is never closed with a `---` line",
                1,
                1,
            )
        ]
    block = "\n".join(lines[1:end])
    start = min(len(text), sum(len(line) + 1 for line in lines[: end + 1]))
    skipped = len(text[start:]) - len(text[start:].lstrip("\n"))
    reader = _Reader(path, block, "front-matter", 1)
    fields = reader.mapping(allow_prompt=False)
    if fields is None:
        return None, reader.diagnostics
    source = PromptSource(path, text, text[start + skipped :], start + skipped, **fields)
    return _finish(source, reader.diagnostics)


def _finish(
    source: PromptSource, diagnostics: list[Diagnostic]
) -> tuple[PromptSource | None, list[Diagnostic]]:
    if not source.body.strip() and not source.includes:
        diagnostics.append(diagnostic("prompt-empty", source.path, "the prompt has no text", 1, 1))
    return source, diagnostics


class _Reader:
    """Reads the YAML keys of one front-matter block or `.yaml` prompt."""

    def __init__(self, path: str, text: str, code: str, line_offset: int) -> None:
        self.path = path
        self.text = text
        self.code = code  # the error code for structural problems
        self.line_offset = line_offset
        self.diagnostics: list[Diagnostic] = []
        self.ok = True

    def report(self, message: str, node: Node | None, code: str | None = None) -> None:
        line, column = (1 + self.line_offset, 1) if node is None else self.where(node)
        self.diagnostics.append(diagnostic(code or self.code, self.path, message, line, column))
        if (code or self.code) != "front-matter-key":
            self.ok = False

    def where(self, node: Node) -> tuple[int, int]:
        line, column = safeyaml.position(node)
        return line + self.line_offset, column

    def unknown_key(self, name: str | None, key: Node, known: Collection[str], what: str) -> None:
        """A warning, with "did you mean" when the key is a near miss; an error when it misses
        `parameters` or `includes`, whose loss changes what the model gets."""
        if name is None:
            self.report(f"unknown key `(not text)` in {what}", key, "front-matter-key")
            return
        meant = did_you_mean(name, known)
        if meant is None:
            self.report(f"unknown key `{name}` in {what}", key, "front-matter-key")
            return
        line, column = self.where(key)
        code = "front-matter-key-typo" if meant in _CARRY_VALUES else "front-matter-key"
        self.diagnostics.append(
            diagnostic(
                code,
                self.path,
                f"unknown key `{name}` in {what}: did you mean `{meant}`?",
                line,
                column,
                hint=f"Rename `{name}` to `{meant}` on line {line} of {self.path}.",
            )
        )
        if code != "front-matter-key":
            self.ok = False

    def yaml_prompt(self) -> tuple[PromptSource | None, list[Diagnostic]]:
        fields = self.mapping(allow_prompt=True)
        if fields is None:
            return None, self.diagnostics
        prompt_node = fields.pop("prompt_node")
        source = PromptSource(
            self.path, self.text, prompt_node.value, -1, self.where(prompt_node)[0], **fields
        )
        return _finish(source, self.diagnostics)

    def mapping(self, *, allow_prompt: bool) -> dict[str, Any] | None:
        what = "the file" if allow_prompt else "the front matter"
        try:
            root = safeyaml.compose(self.text)
            if isinstance(root, MappingNode):
                safeyaml.flatten(root)
        except safeyaml.YamlProblem as exc:
            line = None if exc.line is None else exc.line + self.line_offset
            code = "yaml-limits" if exc.limits else self.code
            if exc.limits:
                message, hint = f"{what} is not valid YAML: {exc.message}", None
            else:
                message, hint = safeyaml.explain(exc, self.text, what, self.line_offset)
                message = message[0].upper() + message[1:]
            self.diagnostics.append(
                diagnostic(code, self.path, message, line, exc.column, hint=hint)
            )
            return None
        if root is None and not allow_prompt:
            return {}
        if not isinstance(root, MappingNode):
            self.report(f"{what} must be a YAML mapping", root)
            return None
        fields: dict[str, Any] = {}
        known = (*FRONT_MATTER_KEYS, "prompt") if allow_prompt else FRONT_MATTER_KEYS
        for key, value in root.value:
            name = key.value if safeyaml.is_str(key) else None
            if name is None or name not in known:
                self.unknown_key(name, key, known, what)
                continue
            self.read(name, value, fields)
        if allow_prompt and "prompt_node" not in fields and self.ok:
            self.report("the file has no `prompt:` key holding the prompt text", root)
        return fields if self.ok else None

    def read(self, name: str, node: Node, fields: dict[str, Any]) -> None:
        if name == "prompt":
            if safeyaml.is_str(node):
                fields["prompt_node"] = node
            else:
                self.report("`prompt:` must be text (use `prompt: |` for several lines)", node)
        elif name == "description":
            if isinstance(node, ScalarNode):
                is_null = node.tag == "tag:yaml.org,2002:null"
                fields["description"] = None if is_null else node.value
            else:
                self.report("`description:` must be text", node)
        elif name in ("metadata", "parameters"):
            if not isinstance(node, MappingNode):
                self.report(f"`{name}:` must be a mapping", node)
                return
            try:
                fields[name] = safeyaml.freeze(safeyaml.construct(node))
            except safeyaml.YamlProblem as exc:
                self.report(f"`{name}:` cannot be read: {exc.message}", node)
        else:
            self.read_includes(node, fields)

    def read_includes(self, node: Node, fields: dict[str, Any]) -> None:
        if not isinstance(node, SequenceNode):
            self.report("`includes:` must be a list of repository paths", node)
            return
        includes = []
        for item in node.value:
            if not safeyaml.is_str(item):
                self.report("`includes:` entries are repository paths (text)", item)
                continue
            problem = check_relative_path(item.value)
            if problem:
                self.report(problem, item, "include-path")
                continue
            path = "/".join(part for part in item.value.split("/") if part not in ("", "."))
            includes.append(Include(path, *self.where(item)))
        fields["includes"] = tuple(includes)


def _line_offset(text: str, line: int) -> int:
    index = 0
    for _ in range(line - 1):
        index = text.find("\n", index) + 1
        if index == 0:
            return len(text)
    return index


@dataclass
class Assembly:
    """Which prompt files can be assembled with their includes, and why the others cannot."""

    includes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # usable files only
    broken: dict[str, str] = field(default_factory=dict)  # path -> reason
    diagnostics: list[Diagnostic] = field(default_factory=list)


def check_includes(sources: Mapping[str, PromptSource], available: Collection[str]) -> Assembly:
    """Walk every include graph once: missing targets, cycles, depth and size limits.

    Iterative (a long include chain must not exhaust the stack) and memoised, so each file is
    visited once however many prompts include it.
    """
    result = Assembly()
    height: dict[str, int] = {}
    size: dict[str, int] = {}
    done: set[str] = set()
    for root in sources:
        if root in done:
            continue
        stack = [(root, iter(sources[root].includes))]
        on_stack = {root}
        while stack:
            path, pending = stack[-1]
            include = next(pending, None)
            if include is not None:
                target = include.path
                if target in on_stack:
                    cycle = [p for p, _ in stack[[p for p, _ in stack].index(target) :]]
                    result.diagnostics.append(
                        diagnostic(
                            "include-cycle",
                            path,
                            "include cycle: " + " -> ".join([*cycle, target]),
                            include.line,
                            include.column,
                        )
                    )
                    result.broken[path] = "its includes form a cycle"
                elif target in sources and target not in done:
                    stack.append((target, iter(sources[target].includes)))
                    on_stack.add(target)
                continue
            stack.pop()
            on_stack.discard(path)
            done.add(path)
            _settle(sources[path], sources, available, height, size, result)
    return result


def _settle(
    source: PromptSource,
    sources: Mapping[str, PromptSource],
    available: Collection[str],
    height: dict[str, int],
    size: dict[str, int],
    result: Assembly,
) -> None:
    """Decide one file once all the files it includes are decided."""
    path = source.path
    deepest: Include | None = None
    total = len(source.body.encode("utf-8", "surrogatepass"))
    for include in source.includes:
        target = include.path
        if target not in sources:
            if target in available:
                reason = f"it includes {target}, which has errors"
            else:
                reason = f"it includes {target}, which does not exist"
                result.diagnostics.append(
                    diagnostic(
                        "include-missing",
                        path,
                        f"included file {target} does not exist or is not a prompt file",
                        include.line,
                        include.column,
                    )
                )
            result.broken.setdefault(path, reason)
            continue
        if target in result.broken:
            result.broken.setdefault(path, f"it includes {target}, which cannot be assembled")
            continue
        if target not in height:  # still being decided: part of a cycle reported above
            result.broken.setdefault(path, "its includes form a cycle")
            continue
        if deepest is None or height[target] > height[deepest.path]:
            deepest = include
        total += 2 + size[target]
    if path in result.broken:
        return
    height[path] = 0 if deepest is None else height[deepest.path] + 1
    size[path] = total
    if deepest is not None and height[path] > MAX_INCLUDE_DEPTH:
        result.diagnostics.append(
            diagnostic(
                "include-depth",
                path,
                f"includes nest {height[path]} levels deep through "
                f"{deepest.path} (at most {MAX_INCLUDE_DEPTH})",
                deepest.line,
                deepest.column,
            )
        )
        result.broken[path] = "its includes nest too deeply"
    elif source.includes and total > MAX_ASSEMBLED_BYTES:
        result.diagnostics.append(
            diagnostic(
                "include-size",
                path,
                f"with its includes this prompt is {total} bytes (at most {MAX_ASSEMBLED_BYTES})",
                1,
                1,
            )
        )
        result.broken[path] = "with its includes it is too large"
    else:
        result.includes[path] = tuple(include.path for include in source.includes)


def assemble(
    path: str, sources: Mapping[str, PromptSource], includes: Mapping[str, tuple[str, ...]]
) -> str:
    """The text the model receives: the body, then each include after a blank line."""
    body = sources[path].body
    if not includes.get(path):
        return body
    parts = [body.rstrip("\n")]
    parts += [assemble(target, sources, includes).strip("\n") for target in includes[path]]
    return "\n\n".join(part for part in parts if part.strip()) + "\n"
