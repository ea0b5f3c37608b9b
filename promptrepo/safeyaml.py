"""YAML loading that stays fast and small on hostile input.

PyYAML keeps aliases as shared nodes, so an alias bomb ("billion laughs") costs nothing to
compose but explodes when anything walks or merges the result, and very deep nesting crashes the C
parser outright. Documents are therefore composed only after a cheap nesting bound, and measured
(expanded node count, depth, recursive aliases) before anything is constructed from them.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_NODES = 10_000  # expanded (aliases counted each time they are used)
MAX_DEPTH = 64

_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BRACKETS = re.compile(r"[\[\]{}]")


class YamlProblem(Exception):
    """A document that cannot be loaded; `limits` marks one refused for its size or shape."""

    def __init__(
        self,
        message: str,
        line: int | None = None,
        column: int | None = None,
        *,
        limits: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line = line  # 1-based, within the text given
        self.column = column
        self.limits = limits


def compose(text: str) -> Node | None:
    """Parse one YAML document into checked nodes (None for an empty document)."""
    _check_flow_depth(text)
    loader = _FAST_LOADER if _nesting_bound(text) <= MAX_DEPTH else yaml.SafeLoader
    parser = loader(text)
    try:
        node = parser.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise _problem(exc, mark) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(str(exc).strip()) from None
    except RecursionError:
        raise YamlProblem(f"nested more than {MAX_DEPTH} levels deep", limits=True) from None
    finally:
        parser.dispose()
    if node is not None and (loader is yaml.SafeLoader or "*" in text):
        # Without aliases the nodes are bounded by the text, and the fast loader was only
        # chosen when the nesting is shallow, so there is nothing left to measure.
        _check_expansion(node)
    return node


# PyYAML's problems in plain words, and what to do: (fragment of its message, ours, the fix).
_PLAIN_WORDS: tuple[tuple[str, str, str], ...] = (
    (
        "cannot start any token",
        "a character YAML does not allow here",
        "quote a value that starts with `@`, `%` or a backtick",
    ),
    (
        "did not find expected key",
        "this line is indented differently from the keys above it",
        "line the key up with its siblings (same number of spaces)",
    ),
    (
        "mapping values are not allowed",
        "a `: ` where YAML does not expect a key",
        'put the value in quotes ("...") when it contains `: `, or give each key its own line',
    ),
    (
        "did not find expected ',' or ']'",
        "a `[` list is never closed",
        "close the list with `]`, separating its items with commas",
    ),
    (
        "did not find expected ',' or '}'",
        "a `{` mapping is never closed",
        "close the mapping with `}`, separating its entries with commas",
    ),
    (
        "found unexpected end of stream",
        "a quote is never closed",
        "end the quoted value with the same quote it starts with",
    ),
    (
        "found undefined alias",
        "`*name` refers to an anchor `&name` that is not defined",
        "define the anchor first, or quote the value if the `*` is meant literally",
    ),
    (
        "did not find expected '-' indicator",
        "a list item and a key are mixed at the same indentation",
        "start every item of the list with `- `, or indent the key under an item",
    ),
    (
        "could not find expected ':'",
        "a line without `key: value`",
        "write `key: value` (a space after the colon), or quote a multi-line value",
    ),
)


def explain(problem: YamlProblem, text: str, where: str, line_offset: int = 0) -> tuple[str, str]:
    """`problem` as a message in plain words, with the offending line and a caret under the
    position, and a hint saying which line to change; `where` names the file or block."""
    plain, fix = problem.message, "fix the YAML at this position"
    for fragment, words, advice in _PLAIN_WORDS:
        if fragment in problem.message:
            plain, fix = words, advice
            break
    if problem.line is None:
        return f"{where} is not valid YAML: {plain}", f"{fix[0].upper()}{fix[1:]}."
    line = problem.line + line_offset
    lines = text.split("\n")
    shown = lines[problem.line - 1] if 0 < problem.line <= len(lines) else ""
    column = max(1, problem.column or 1)
    if shown[column - 1 : column] == "\t":
        plain, fix = (
            "a tab character: indent with spaces",
            "replace the tab with spaces (YAML refuses tabs)",
        )
    excerpt = ""
    if shown.strip():
        visible = shown.replace("\t", " ")  # a tab would move the caret
        excerpt = f"\n    {visible}\n    {' ' * (column - 1)}^"
    message = f"{where} is not valid YAML on line {line}: {plain}{excerpt}"
    return message, f"On line {line}, column {column}: {fix}."


def construct(node: Node) -> Any:
    """The plain value of a checked node: JSON-like types, dates as ISO text."""
    constructor = SafeConstructor()
    try:
        value = constructor.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise _problem(exc, exc.problem_mark or exc.context_mark) from None
    except (yaml.YAMLError, TypeError, ValueError) as exc:
        raise YamlProblem(str(exc).strip()) from None
    return plain(value)


def flatten(node: MappingNode) -> None:
    """Apply `<<` merge keys in place (safe once `compose` has bounded the document)."""
    try:
        SafeConstructor().flatten_mapping(node)
    except yaml.MarkedYAMLError as exc:
        raise _problem(exc, exc.problem_mark or exc.context_mark) from None


def is_str(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:str"


def position(node: Node) -> tuple[int, int]:
    """1-based line and column where a node starts."""
    return node.start_mark.line + 1, node.start_mark.column + 1


def plain(value: Any) -> Any:
    """JSON-compatible copy: mapping keys as text, dates as ISO text, bytes as text."""
    if isinstance(value, dict):
        return {_key(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(item) for item in value]
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def freeze(value: Any) -> Any:
    """Deep read-only view of a `plain` value, safe to share between cached results."""
    if isinstance(value, dict):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """A fresh mutable copy of a `freeze`d value (for JSON output)."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value


def _key(key: Any) -> str:
    return key if isinstance(key, str) else str(plain(key))


def _problem(exc: yaml.MarkedYAMLError, mark: Any) -> YamlProblem:
    message = exc.problem or exc.context or "invalid YAML"
    if mark is None:
        return YamlProblem(message)
    return YamlProblem(message, mark.line + 1, mark.column + 1)


def _nesting_bound(text: str) -> int:
    """An upper bound on nesting depth: every level needs one of these indicator characters."""
    return sum(text.count(char) for char in "[{-:?")


def _check_flow_depth(text: str) -> None:
    """Refuse `[[[[...` before the parser sees it: deep flow nesting is slow or fatal there."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth = 0
    for match in _BRACKETS.finditer(text):
        depth = depth + 1 if match.group() in "[{" else max(depth - 1, 0)
        if depth > MAX_DEPTH:
            line = text.count("\n", 0, match.start()) + 1
            column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
            raise YamlProblem(
                f"nested more than {MAX_DEPTH} levels deep", line, column, limits=True
            )


def _check_expansion(root: Node) -> None:
    """Count nodes as if every alias were copied out, stopping at the first limit crossed."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Node, depth: int) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if depth > MAX_DEPTH:
            raise _limit(node, f"nested more than {MAX_DEPTH} levels deep")
        if id(node) in active:
            raise _limit(node, "an alias refers to the node that contains it")
        total = 1
        if isinstance(node, SequenceNode | MappingNode):
            active.add(id(node))
            children = (
                node.value
                if isinstance(node, SequenceNode)
                else [child for pair in node.value for child in pair]
            )
            for child in children:
                total += size(child, depth + 1)
                if total > MAX_NODES:
                    raise _limit(node, f"expands to more than {MAX_NODES} values (alias bomb?)")
            active.discard(id(node))
        sizes[id(node)] = total
        return total

    size(root, 0)


def _limit(node: Node, message: str) -> YamlProblem:
    line, column = position(node)
    return YamlProblem(message, line, column, limits=True)
