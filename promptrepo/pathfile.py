"""The PATH routing file: YAML (what real repositories use) or the older one-pattern-per-line form.

Real files arrive with CRLF line endings, a UTF-8 BOM, the whole document indented and lines
padded with trailing spaces; `normalise_lines` removes all of that before either parser runs, and
diagnostics are mapped back to the author's line and column.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from . import safeyaml
from .context import ContextError, normalise_key, normalise_variable
from .diagnostics import Diagnostic, diagnostic, did_you_mean
from .files import PATH_FILE
from .variables import GUILD_LOCALE, LOCALE, canonical, is_valid_name
from .versions import describe_supported, parse_version

KNOWN_KEYS = (
    "version",
    "routes",
    "fallback_chain",
    "variables",
    "allowed_guilds",
    "extends",
    "locked",
)
MAX_BASES = 3  # `extends:` entries in one PATH (and layers below a repository, see layers.py)
ROUTE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_YAML_START = re.compile(r"""(?:---|%|-(?:\s|$)|["']?[A-Za-z0-9_-]+["']?\s*:(?:\s|$))""")
_GUILD_ID = re.compile(r"[0-9]{1,20}")
_DRIVE = re.compile(r"[A-Za-z]:")
# `owner/name@ref`: GitHub's owner and repository name rules, a branch or tag name after `@`.
_BASE_RE = re.compile(
    r"(?P<repository>[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100})"
    r"@(?P<ref>[A-Za-z0-9._][A-Za-z0-9._/-]{0,254})"
)
_NOT_A_TAG = "`{name}: {text}` is not a language tag: write one such as `fr`, `pt-BR` or `es-419`"


class PatternError(ValueError):
    def __init__(self, code: str, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.offset = offset


@dataclass(frozen=True)
class Route:
    """One way to name a prompt file. `parts` alternates literal text and variable names."""

    name: str
    pattern: str
    parts: tuple[str, ...]
    names: tuple[str, ...]  # variables as written, unique, in order of first use
    when: tuple[tuple[str, frozenset[str]], ...] = ()  # canonical name -> allowed values
    is_mapping: bool = False  # written as {path, when}: a v2 form
    line: int | None = None
    column: int | None = None


@dataclass(frozen=True)
class BaseRef:
    """One `extends:` entry: a repository (`owner/name`, lower case) at a branch or tag."""

    repository: str
    ref: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        return f"{self.repository}@{self.ref}"


@dataclass(frozen=True)
class ChainEntry:
    """A `fallback_chain` name as written, kept for repositories whose routes come in layers."""

    name: str
    line: int | None
    column: int | None


@dataclass(frozen=True)
class PathFile:
    routes: tuple[Route, ...]  # the fallback chain, in order, invalid routes left out
    declared_version: str | None = None  # PATH `version:`, normalised
    version_line: int | None = None
    version_unsupported: bool = False
    variables: dict[str, str] = field(default_factory=dict)  # canonical name -> default
    allowed_guilds: tuple[str, ...] = ()
    # Layering (see layers.py): every valid route as defined, in file order; the explicit
    # `fallback_chain` (None when absent); the bases, nearest last as written; what a base locks.
    defined: tuple[Route, ...] = ()
    chain: tuple[ChainEntry, ...] | None = None
    extends: tuple[BaseRef, ...] = ()
    extends_line: int | None = None
    locked: tuple[tuple[str, int | None, int | None], ...] = ()


def normalise_lines(text: str) -> list[str]:
    """Without BOM, CR and trailing whitespace; line i of the result is line i+1 of the file."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return [line.rstrip() for line in text.split("\n")]


def strip_root(raw: str) -> tuple[str, str | None]:
    """A route written from the repository root (`/v1/{category}.md`, as real repositories for
    the earlier bot do): the pattern without the leading `/`, and a notice saying so."""
    if raw.startswith("/") and not raw.startswith("//"):
        rest = raw[1:]
        return rest, f"{raw!r} starts with /: read as {rest!r} from the repository root"
    return raw, None


def parse_pattern(raw: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(normalised pattern, parts, variable names) or PatternError with an offset into `raw`."""
    if not raw.strip():
        raise PatternError("route-pattern", "the path pattern is empty")
    for offset, char in enumerate(raw):
        if ord(char) < 32 or char == "\x7f":
            raise PatternError(
                "route-pattern", "the path pattern contains a control character", offset
            )
    if raw.startswith(("/", "\\", "~")) or _DRIVE.match(raw):
        raise PatternError("route-unsafe-path", f"{raw!r} is an absolute path")
    if "\\" in raw:
        raise PatternError(
            "route-pattern", "use / to separate directories, not \\", raw.index("\\")
        )
    _check_braces(raw)
    segments = raw.split("/")
    for index, segment in enumerate(segments):
        if segment == "..":
            offset = sum(len(s) + 1 for s in segments[:index])
            raise PatternError("route-unsafe-path", f"{raw!r} leaves the repository (`..`)", offset)
    if segments[-1] in ("", "."):
        raise PatternError("route-pattern", f"{raw!r} names a directory, not a file", len(raw) - 1)
    # `./prompts//x.md` means `prompts/x.md`, as it did for the earlier bot's file lookups.
    pattern = "/".join(segment for segment in segments if segment not in ("", "."))
    parts = tuple(re.split(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", pattern))
    names = tuple(dict.fromkeys(parts[1::2]))
    return pattern, parts, names


@functools.lru_cache(maxsize=4096)
def without_variable(route: Route, name: str) -> Route | None:
    """The route with `{name}` left out, for a value that may be absent (the locale).

    A variable that is a whole directory goes with its `/` (`p/{locale}/x.md` -> `p/x.md`), a
    whole file name with the `/` before it (`p/x/{locale}.md` -> `p/x.md`), else with one
    neighbouring `.`, `-` or `_` (`x.{locale}.md` -> `x.md`). None when nothing usable is left.
    """
    token = re.escape("{" + name + "}")
    pattern = re.sub(rf"(?:^|(?<=/)){token}/", "", route.pattern)
    pattern = re.sub(rf"/{token}(?=\.[^/]*$)", "", pattern)
    if re.match(rf"{token}\.[^/]*$", pattern):
        return None  # `{locale}.md` at the top: no file name is left
    pattern = re.sub(rf"[._-]{token}|{token}[._-]|{token}", "", pattern)
    try:
        pattern, parts, names = parse_pattern(pattern)
    except PatternError:
        return None
    return dataclasses.replace(route, pattern=pattern, parts=parts, names=names)


def _check_braces(raw: str) -> None:
    index = 0
    while index < len(raw):
        char = raw[index]
        if char == "}":
            raise PatternError("route-pattern", "`}` without a matching `{`", index)
        if char == "{":
            end = raw.find("}", index + 1)
            nested = raw.find("{", index + 1)
            if end == -1 or (nested != -1 and nested < end):
                raise PatternError("route-pattern", "`{` without a matching `}`", index)
            name = raw[index + 1 : end]
            if not is_valid_name(name):
                raise PatternError("variable-name", f"invalid variable name {{{name}}}", index)
            index = end
        index += 1


def check_relative_path(raw: str) -> str | None:
    """Why a literal repository path (an include) is unusable, or None when it is fine."""
    if not raw.strip():
        return "the path is empty"
    if raw.startswith(("/", "\\", "~")) or _DRIVE.match(raw):
        return f"{raw!r} is an absolute path"
    if "\\" in raw or any(ord(char) < 32 for char in raw):
        return f"{raw!r} is not a plain relative path (use / between directories)"
    if ".." in raw.split("/"):
        return f"{raw!r} leaves the repository (`..`)"
    return None


def parse_path_file(text: str) -> tuple[PathFile | None, list[Diagnostic]]:
    """Parse PATH; None when it cannot route anything (the diagnostics say why)."""
    lines = normalise_lines(text)
    content = [
        (number, line)
        for number, line in enumerate(lines, 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not content:
        return None, [diagnostic("path-empty", PATH_FILE, "PATH has no routes: it is empty")]
    first = content[0][1].lstrip()
    if _YAML_START.match(first):
        return _YamlPath(lines).parse()
    return _parse_lines(content)


def path_file_of(files: Mapping[str, bytes]) -> PathFile | None:
    """The parsed PATH of a repository's files, without reading the rest of it (None when it
    has no usable PATH): for what PATH alone says, such as `extends` and `allowed_guilds`."""
    data = files.get(PATH_FILE)
    if data is None:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return parse_path_file(text)[0]


def _parse_lines(content: list[tuple[int, str]]) -> tuple[PathFile | None, list[Diagnostic]]:
    routes: list[Route] = []
    diagnostics: list[Diagnostic] = []
    for number, line in content:
        indent = len(line) - len(line.lstrip())
        raw, rooted = strip_root(line.strip())
        if rooted:
            diagnostics.append(
                diagnostic("route-leading-slash", PATH_FILE, f"line {number}: {rooted}", number)
            )
            indent += 1
        try:
            pattern, parts, names = parse_pattern(raw)
        except PatternError as exc:
            diagnostics.append(
                diagnostic(
                    exc.code,
                    PATH_FILE,
                    f"line {number}: {exc.message}; this line is skipped",
                    number,
                    indent + exc.offset + 1,
                )
            )
            continue
        routes.append(
            Route(f"line {number}", pattern, parts, names, line=number, column=indent + 1)
        )
    if not routes:
        diagnostics.append(
            diagnostic(
                "path-no-routes", PATH_FILE, "PATH has no valid path pattern", content[0][0], 1
            )
        )
        return None, diagnostics
    return PathFile(tuple(routes), defined=tuple(routes)), diagnostics


class _YamlPath:
    """One parse of a YAML PATH: collects diagnostics while reading the node tree."""

    def __init__(self, lines: list[str]) -> None:
        body = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
        self.indent = min(len(line) - len(line.lstrip(" ")) for line in body)
        self.text = "\n".join(
            line[min(self.indent, len(line) - len(line.lstrip(" "))) :] for line in lines
        )
        self.original = "\n".join(lines)
        self.diagnostics: list[Diagnostic] = []

    def report(
        self, code: str, message: str, at: Node | tuple[int | None, int | None] | None = None
    ) -> None:
        """Record a diagnostic at a node, or at an explicit (line, column)."""
        if isinstance(at, Node):
            at = self.where(at)
        line, column = at or (None, None)
        self.diagnostics.append(diagnostic(code, PATH_FILE, message, line, column))

    def where(self, node: Node) -> tuple[int, int]:
        line, column = safeyaml.position(node)
        return line, column + self.indent

    def report_near_miss(
        self,
        code: str,
        node: ScalarNode,
        message: str,
        choices: Iterable[str],
        verb: str = "Rename",
    ) -> None:
        """`message` at `node`, with "did you mean" and the exact edit when one choice is close."""
        meant = did_you_mean(node.value, choices)
        if meant is None:
            self.report(code, message, node)
            return
        line, column = self.where(node)
        hint = f"{verb} `{node.value}` to `{meant}` on line {line} of PATH."
        self.diagnostics.append(
            diagnostic(
                code, PATH_FILE, f"{message}: did you mean `{meant}`?", line, column, hint=hint
            )
        )

    def parse(self) -> tuple[PathFile | None, list[Diagnostic]]:
        try:
            root = safeyaml.compose(self.text)
            if isinstance(root, MappingNode):
                safeyaml.flatten(root)
        except safeyaml.YamlProblem as exc:
            column = None if exc.column is None else exc.column + self.indent
            if exc.limits:
                message, hint = f"PATH is not valid YAML: {exc.message}", None
            else:
                located = safeyaml.YamlProblem(exc.message, exc.line, column)
                message, hint = safeyaml.explain(located, self.original, "PATH")
            code = "yaml-limits" if exc.limits else "path-syntax"
            self.diagnostics.append(
                diagnostic(code, PATH_FILE, message, exc.line, column, hint=hint)
            )
            return None, self.diagnostics
        if not isinstance(root, MappingNode):
            self.report("path-type", "PATH must be a YAML mapping with a `routes:` key", root)
            return None, self.diagnostics
        return self.read(root), self.diagnostics

    def read(self, root: MappingNode) -> PathFile | None:
        entries: dict[str, tuple[Node, Node]] = {}
        for key, value in root.value:
            if not safeyaml.is_str(key):
                self.report("path-type", f"PATH keys are text, found {_show(key)}", key)
                continue
            if key.value in entries:
                self.report("duplicate-key", f"`{key.value}` appears twice in PATH", key)
            elif key.value not in KNOWN_KEYS:
                self.report_near_miss(
                    "path-unknown-key", key, f"unknown PATH key `{key.value}`", KNOWN_KEYS
                )
            entries[key.value] = (key, value)
        version, version_line, unsupported = self.read_version(entries.get("version"))
        extends = self.read_extends(entries.get("extends"))
        locked = self.read_locked(entries.get("locked"))
        if "routes" not in entries and not extends:
            self.report("path-no-routes", "PATH has no `routes:` key", root)
            return None
        defined = self.read_routes(*entries["routes"]) if "routes" in entries else {}
        named = self.read_chain_names(entries.get("fallback_chain"), report=bool(extends))
        if extends:
            # The chain may name the bases' routes: layers.py resolves it with them.
            chain: tuple[Route, ...] = ()
        else:
            chain = self.read_chain(entries.get("fallback_chain"), defined)
            if not chain:
                return None
        return PathFile(
            chain,
            version,
            version_line,
            unsupported,
            self.read_variables(entries.get("variables")),
            self.read_guilds(entries.get("allowed_guilds")),
            defined=tuple(route for route in defined.values() if route is not None),
            chain=named,
            extends=extends,
            extends_line=self.where(entries["extends"][0])[0] if extends else None,
            locked=locked,
        )

    def read_extends(self, entry: tuple[Node, Node] | None) -> tuple[BaseRef, ...]:
        if entry is None or _is_null(entry[1]):
            return ()
        node = entry[1]
        items = node.value if isinstance(node, SequenceNode) else [node]
        bases: list[BaseRef] = []
        for item in items:
            text = _scalar_text(item)
            match = _BASE_RE.fullmatch(text.strip()) if text is not None else None
            if match is None or ".." in match["ref"] or match["ref"].endswith(("/", ".")):
                self.report(
                    "extends-syntax",
                    f"`extends:` entries are `owner/name@branch` (or a tag), found {_show(item)}",
                    item,
                )
                continue
            repository = match["repository"].lower()
            if any(base.repository == repository for base in bases):
                self.report("extends-syntax", f"`extends:` names {repository} twice", item)
                continue
            bases.append(BaseRef(repository, match["ref"], *self.where(item)))
        if not items:
            self.report("extends-syntax", "`extends:` is an empty list", node)
        if len(bases) > MAX_BASES:
            self.report(
                "extends-depth",
                f"`extends:` lists {len(bases)} bases; at most {MAX_BASES} layers are allowed",
                node,
            )
        return tuple(bases)

    def read_locked(
        self, entry: tuple[Node, Node] | None
    ) -> tuple[tuple[str, int | None, int | None], ...]:
        """Route names and file paths (a directory ends with `/`) a repository extending this
        one may not override."""
        locked = []
        for item in self.items(entry, "`locked:` must be a list of route names and file paths"):
            text = _scalar_text(item)
            problem = None if text is None else check_relative_path(text.strip())
            if text is None or problem is not None:
                self.report(
                    "path-type",
                    f"`locked:` entries are route names or file paths: {problem or _show(item)}",
                    item,
                )
                continue
            locked.append((text.strip(), *self.where(item)))
        return tuple(locked)

    def read_chain_names(
        self, entry: tuple[Node, Node] | None, *, report: bool
    ) -> tuple[ChainEntry, ...] | None:
        """The chain as written; `report`: its type problems (read_chain reports them otherwise)."""
        if entry is None:
            return None
        node = entry[1]
        if not isinstance(node, SequenceNode):
            if report:
                self.report("path-type", "`fallback_chain:` must be a list of route names", node)
            return None
        names = []
        for item in node.value:
            if safeyaml.is_str(item):
                names.append(ChainEntry(item.value, *self.where(item)))
            elif report:
                self.report(
                    "path-type",
                    f"fallback_chain entries are route names, found {_show(item)}",
                    item,
                )
        return tuple(names)

    def read_version(self, entry: tuple[Node, Node] | None) -> tuple[str | None, int | None, bool]:
        if entry is None:
            return None, None, False
        node = entry[1]
        version = parse_version(node.value) if isinstance(node, ScalarNode) else None
        if version is None:
            self.report(
                "schema-version-unsupported",
                f"PATH `version: {_show(node)}` is not supported: use {describe_supported()}",
                node,
            )
            return None, self.where(node)[0], True
        return version, self.where(node)[0], False

    def read_routes(self, key: Node, node: Node) -> dict[str, Route | None]:
        """Every defined route name -> its Route, or None when the route is invalid."""
        defined: dict[str, Route | None] = {}
        if not isinstance(node, MappingNode):
            self.report("path-type", "`routes:` must map route names to path patterns", node)
            return defined
        for name_node, value in node.value:
            if not safeyaml.is_str(name_node):
                self.report(
                    "route-name", f"route names are text, found {_show(name_node)}", name_node
                )
                continue
            name = name_node.value
            if not ROUTE_NAME_RE.fullmatch(name):
                self.report("route-name", f"invalid route name {name[:80]!r}", name_node)
                continue
            if name in defined:
                self.report("duplicate-key", f"route `{name}` is defined twice", name_node)
            defined[name] = self.read_route(name, value)
        if not node.value:
            self.report("path-no-routes", "`routes:` defines no route", key)
        return defined

    def read_route(self, name: str, node: Node) -> Route | None:
        when: tuple[tuple[str, frozenset[str]], ...] = ()
        target = node
        if isinstance(node, MappingNode):
            fields = {}
            for key, value in node.value:
                if safeyaml.is_str(key) and key.value in ("path", "when"):
                    fields[key.value] = value
                else:
                    self.report(
                        "path-unknown-key",
                        f"route `{name}`: unknown key {_show(key)} (known: path, when)",
                        key,
                    )
            if "path" not in fields:
                self.report("path-type", f"route `{name}` has no `path:`", node)
                return None
            target = fields["path"]
            if "when" in fields:
                parsed = self.read_when(name, fields["when"])
                if parsed is None:
                    return None
                when = parsed
        if not safeyaml.is_str(target):
            self.report(
                "path-type",
                f"route `{name}` must be a path pattern (text) or, in v2, a "
                f"mapping with `path` and `when`; found {_show(target)}",
                target,
            )
            return None
        raw, rooted = strip_root(target.value.strip())
        if rooted:
            self.report("route-leading-slash", f"route `{name}`: {rooted}", target)
        try:
            pattern, parts, names = parse_pattern(raw)
        except PatternError as exc:
            self.report(exc.code, f"route `{name}`: {exc.message}", target)
            return None
        line, column = self.where(node)
        return Route(name, pattern, parts, names, when, isinstance(node, MappingNode), line, column)

    def read_when(self, name: str, node: Node) -> tuple[tuple[str, frozenset[str]], ...] | None:
        if not isinstance(node, MappingNode):
            self.report(
                "path-type", f"route `{name}`: `when:` maps variable names to lists of values", node
            )
            return None
        conditions: dict[str, frozenset[str]] = {}
        ok = True
        for key, value in node.value:
            if not safeyaml.is_str(key) or not is_valid_name(key.value):
                self.report(
                    "variable-name",
                    f"route `{name}`: invalid variable name {_show(key)} in `when:`",
                    key,
                )
                ok = False
                continue
            items = value.value if isinstance(value, SequenceNode) else [value]
            allowed = [_scalar_text(item) for item in items]
            if not items or any(text is None for text in allowed):
                self.report(
                    "path-type", f"route `{name}`: `when: {key.value}` must list text values", value
                )
                ok = False
                continue
            variable = canonical(key.value)
            values = {t: normalise_variable(variable, t) for t in allowed if t is not None}
            for text, normalised in values.items():
                if not normalised and variable in (LOCALE, GUILD_LOCALE):
                    self.report("path-type", _NOT_A_TAG.format(name=key.value, text=text), value)
            conditions[variable] = frozenset(values.values())
        return tuple(conditions.items()) if ok else None

    def read_chain(
        self, entry: tuple[Node, Node] | None, defined: dict[str, Route | None]
    ) -> tuple[Route, ...]:
        if entry is None:
            return tuple(route for route in defined.values() if route is not None)
        node = entry[1]
        if not isinstance(node, SequenceNode):
            self.report("path-type", "`fallback_chain:` must be a list of route names", node)
            return tuple(route for route in defined.values() if route is not None)
        chain: list[Route] = []
        listed: set[str] = set()
        for item in node.value:
            if not safeyaml.is_str(item):
                self.report(
                    "path-type",
                    f"fallback_chain entries are route names, found {_show(item)}",
                    item,
                )
                continue
            listed.add(item.value)
            if item.value not in defined:
                self.report_near_miss(
                    "chain-undefined-route",
                    item,
                    f"fallback_chain names `{item.value}`, which `routes:` does not define",
                    defined,
                    verb="Change",
                )
                continue
            route = defined[item.value]
            if route is not None and route not in chain:
                chain.append(route)
        for name, route in defined.items():
            if name not in listed and route is not None:
                self.report(
                    "route-unused",
                    f"route `{name}` is not in fallback_chain, so it is never tried",
                    (route.line, route.column),
                )
        if not node.value:
            self.report("path-no-routes", "`fallback_chain:` is empty, so no route is tried", node)
        return tuple(chain)

    def read_variables(self, entry: tuple[Node, Node] | None) -> dict[str, str]:
        if entry is None or _is_null(entry[1]):
            return {}
        node = entry[1]
        if not isinstance(node, MappingNode):
            self.report("path-type", "`variables:` must map variable names to default values", node)
            return {}
        defaults: dict[str, str] = {}
        for key, value in node.value:
            text = _scalar_text(value)
            try:
                if not safeyaml.is_str(key):
                    raise ContextError("variable names are text")
                name = normalise_key(key.value)
            except ContextError:
                self.report(
                    "variable-name", f"invalid variable name {_show(key)} in `variables:`", key
                )
                continue
            if text is None:
                self.report("path-type", f"variable `{key.value}` needs a text default", value)
                continue
            normalised = normalise_variable(name, text)
            if normalised:
                defaults[name] = normalised
            elif name in (LOCALE, GUILD_LOCALE):
                self.report("path-type", _NOT_A_TAG.format(name=key.value, text=text), value)
        return defaults

    def items(self, entry: tuple[Node, Node] | None, wrong_type: str) -> list[Node]:
        """The entries of a list-valued key; none (and `wrong_type` reported) when not a list."""
        if entry is None or _is_null(entry[1]):
            return []
        if not isinstance(entry[1], SequenceNode):
            self.report("path-type", wrong_type, entry[1])
            return []
        return list(entry[1].value)

    def read_guilds(self, entry: tuple[Node, Node] | None) -> tuple[str, ...]:
        guilds: list[str] = []
        for item in self.items(entry, "`allowed_guilds:` must be a list of Discord server ids"):
            text = _scalar_text(item)
            if text is None or not _GUILD_ID.fullmatch(text.strip()):
                self.report(
                    "path-type",
                    f"allowed_guilds entries are Discord server ids (digits), found {_show(item)}",
                    item,
                )
                continue
            guilds.append(text.strip())
        return tuple(dict.fromkeys(guilds))


def _scalar_text(node: Node) -> str | None:
    """The text of a non-null scalar (numbers and booleans as written), else None."""
    if isinstance(node, ScalarNode) and not _is_null(node):
        return str(node.value)
    return None


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _show(node: Node) -> str:
    if isinstance(node, ScalarNode):
        return "nothing" if _is_null(node) else repr(node.value[:80])
    return "a list" if isinstance(node, SequenceNode) else "a mapping"
