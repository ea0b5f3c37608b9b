"""Reading a set of files into a repository once, for both validation and resolution.

`analyse` is the single pass that decodes and parses everything and records what is wrong;
`validate` reports those findings (plus its own checks), `load_repository` keeps the parsed result
so that `resolve` only looks things up. A repository whose PATH `extends` bases is read as one
repository made of layers (`analyse_layers`): each path served by the nearest layer that has it,
unless a base locks it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from .diagnostics import Diagnostic, diagnostic
from .files import (
    PATH_FILE,
    SCHEMA_VERSION_FILE,
    in_nested_repository,
    is_repository_file,
    is_test_file,
    nested_roots,
)
from .frontmatter import Assembly, PromptSource, assemble, check_includes, parse_prompt
from .layers import OWN, Layer, stack
from .pathfile import PathFile, Route, parse_path_file
from .versions import DEFAULT_VERSION, describe_supported, parse_version

SPECIAL_FILES = (PATH_FILE, SCHEMA_VERSION_FILE)


class RepositoryError(ValueError):
    """The repository cannot be used: no readable PATH, or no usable schema version."""


@dataclass
class Analysis:
    files: dict[str, bytes]  # the repository's files only (see is_repository_file)
    path_file: PathFile | None = None
    routes: tuple[Route, ...] = ()  # usable routes in fallback-chain order
    version: str = DEFAULT_VERSION  # the rules prompt files were read with
    version_ok: bool = True
    sources: dict[str, PromptSource] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)  # path -> why
    assembly: Assembly = field(default_factory=Assembly)
    tests: dict[str, str] = field(default_factory=dict)  # routing test files, decoded
    diagnostics: list[Diagnostic] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)  # PATH defaults, all layers
    # Layers (empty for a repository without bases): which layer serves a path or defines a
    # route; a name missing here is the repository's own.
    owners: dict[str, str] = field(default_factory=dict)
    route_owners: dict[str, str] = field(default_factory=dict)
    layers: tuple[str, ...] = ()  # the bases used, nearest first

    def is_own(self, path: str) -> bool:
        return self.owners.get(path, OWN) == OWN

    @property
    def schema_version(self) -> str | None:
        """The version in force, or None when it is unsupported, conflicting or unknown."""
        known = self.path_file is not None or SCHEMA_VERSION_FILE in self.files
        return self.version if self.version_ok and known else None

    @property
    def prompt_paths(self) -> list[str]:
        return [path for path in self.files if path not in SPECIAL_FILES and not is_test_file(path)]


def analyse(
    files: Mapping[str, bytes],
    *,
    max_file_size: int | None = None,
    bases: Mapping[str, Mapping[str, bytes]] | None = None,
    name: str = OWN,
) -> Analysis:
    """Everything about a repository; `bases` are the repositories its PATH may extend, keyed
    `owner/name` or `owner/name@ref` (see layers.stack)."""
    if not bases and not _extends(files):
        result = _read(files, max_file_size)
        result.assembly = check_includes(result.sources, set(result.prompt_paths))
        result.diagnostics += result.assembly.diagnostics
        return result
    layers, problems = stack(files, bases or {}, name)
    if any(d.code == "base-missing" for d in problems):
        # Never serve a repository with a layer missing, and say nothing that layer would settle.
        result = _read(files, max_file_size)
        result.routes = ()
    else:
        result = analyse_layers(layers, max_file_size=max_file_size)
    result.diagnostics += problems
    return result


def analyse_layers(layers: Sequence[Layer], *, max_file_size: int | None = None) -> Analysis:
    """The repository made of `layers` (its own first, then its bases nearest first)."""
    from .merge import merge

    own = _read(layers[0].files, max_file_size)
    if len(layers) == 1 and not (own.path_file and own.path_file.extends):
        own.assembly = check_includes(own.sources, set(own.prompt_paths))
        own.diagnostics += own.assembly.diagnostics
        return own
    return merge(own, [(layer, _read(layer.files, max_file_size)) for layer in layers[1:]])


def _extends(files: Mapping[str, bytes]) -> bool:
    return b"extends" in files.get(PATH_FILE, b"")


def _read(files: Mapping[str, bytes], max_file_size: int | None) -> Analysis:
    """One repository's files decoded and parsed, before includes are followed."""
    nested = nested_roots(files)
    result = Analysis(
        {
            path: data
            for path, data in files.items()
            if is_repository_file(path) and not in_nested_repository(path, nested)
        }
    )
    _read_path(result, max_file_size)
    _read_version(result, max_file_size)
    for path in sorted(filter(is_test_file, result.files)):
        text = _decode(result, path, result.files[path], max_file_size)
        if text is not None:
            result.tests[path] = text
    for path in result.prompt_paths:
        text = _decode(result, path, result.files[path], max_file_size)
        if text is None:
            continue
        if not text.strip():
            result.diagnostics.append(diagnostic("prompt-empty", path, "the file is empty"))
            result.sources[path] = PromptSource(path, "", "", 0)
            continue
        source, found = parse_prompt(path, text, result.version)
        result.diagnostics += found
        if source is None:
            result.unreadable[path] = next(d.message for d in found if d.severity == "error")
        else:
            result.sources[path] = source
    if result.path_file is not None:
        result.variables = dict(result.path_file.variables)
    return result


def _read_path(result: Analysis, max_file_size: int | None) -> None:
    if PATH_FILE not in result.files:
        result.diagnostics.append(
            diagnostic("path-missing", PATH_FILE, "the repository has no PATH file")
        )
        return
    text = _decode(result, PATH_FILE, result.files[PATH_FILE], max_file_size)
    if text is None:
        return
    result.path_file, found = parse_path_file(text)
    result.diagnostics += found
    if result.path_file is not None:
        result.routes = result.path_file.routes


def _read_version(result: Analysis, max_file_size: int | None) -> None:
    """The schema version: `schema-version`, else PATH `version:`, else v1; both must agree."""
    path_file = result.path_file
    declared = path_file.declared_version if path_file else None
    if path_file is not None and path_file.version_unsupported:
        result.version_ok = False
    file_version = None
    if SCHEMA_VERSION_FILE in result.files:
        text = _decode(
            result, SCHEMA_VERSION_FILE, result.files[SCHEMA_VERSION_FILE], max_file_size
        )
        file_version = None if text is None else parse_version(text)
        if file_version is None:
            result.version_ok = False
            if text is not None:
                shown = text.replace("\ufeff", "").strip()[:40]
                result.diagnostics.append(
                    diagnostic(
                        "schema-version-unsupported",
                        SCHEMA_VERSION_FILE,
                        f"schema version {shown!r} is not supported: use {describe_supported()}"
                        if shown
                        else f"the schema-version file is empty: write {describe_supported()}",
                        1,
                        1,
                    )
                )
        elif declared is not None and declared != file_version:
            result.version_ok = False
            line = path_file.version_line if path_file else None
            result.diagnostics.append(
                diagnostic(
                    "schema-version-conflict",
                    SCHEMA_VERSION_FILE,
                    f"schema-version says {file_version} but PATH says `version: {declared}` "
                    f"(line {line})",
                    1,
                    1,
                )
            )
    result.version = file_version or declared or DEFAULT_VERSION
    if result.version == "v1" and path_file is not None:
        for route in result.routes:
            if route.is_mapping:
                result.diagnostics.append(
                    diagnostic(
                        "route-v2-only",
                        PATH_FILE,
                        f"route `{route.name}` uses the v2 "
                        "`path`/`when` form, but the repository uses schema v1",
                        route.line,
                        route.column,
                        hint=_v2_hint(route.name, file_version, declared, path_file),
                    )
                )
        result.routes = tuple(route for route in result.routes if not route.is_mapping)


def _v2_hint(
    route: str, file_version: str | None, declared: str | None, path_file: PathFile
) -> str | None:
    """Where this repository says v1, so the author changes that one place (never a second
    declaration that would conflict with the first)."""
    alternative = f", or write route `{route}` as a string"
    if file_version == "v1":
        return f"Change the `schema-version` file's `v1` to `v2`{alternative}" + (
            f" (and PATH's `version:` on line {path_file.version_line})." if declared else "."
        )
    if declared == "v1":
        line = path_file.version_line
        return f"Change `version: v1` to `version: v2` on line {line} of PATH{alternative}."
    return None


def _decode(result: Analysis, path: str, data: bytes, max_file_size: int | None) -> str | None:
    """UTF-8 text of a file, or None after recording why it cannot be read."""
    problem: Diagnostic | None = None
    if max_file_size is not None and len(data) > max_file_size:
        problem = diagnostic(
            "file-too-large",
            path,
            f"the file is {len(data)} bytes; the limit is {max_file_size} bytes",
        )
    elif b"\x00" in data:
        index = data.index(b"\x00")
        problem = diagnostic(
            "file-nul", path, "the file contains NUL bytes", *_byte_position(data, index)
        )
    else:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = diagnostic(
                "file-encoding",
                path,
                f"the file is not valid UTF-8 (byte 0x{data[exc.start]:02x})",
                *_byte_position(data, exc.start),
            )
    result.diagnostics.append(problem)
    result.unreadable[path] = problem.message
    return None


def _byte_position(data: bytes, index: int) -> tuple[int, int]:
    line_start = data.rfind(b"\n", 0, index) + 1
    column = len(data[line_start:index].decode("utf-8", "replace")) + 1
    return data.count(b"\n", 0, index) + 1, column


@dataclass(frozen=True, eq=False)
class PromptRepository:
    """A parsed, immutable repository: everything `resolve` needs, with no I/O left to do."""

    schema_version: str
    routes: tuple[Route, ...]  # in fallback-chain order
    allowed_guilds: tuple[str, ...]
    files: tuple[str, ...]  # every repository path, sorted
    variables: Mapping[str, str]  # PATH defaults for context variables, normalised
    _sources: Mapping[str, PromptSource] = field(repr=False)
    _includes: Mapping[str, tuple[str, ...]] = field(repr=False)
    _unusable: Mapping[str, str] = field(repr=False)
    _prompt_paths: frozenset[str] = field(repr=False)
    layers: tuple[str, ...] = ()  # the bases it extends (`owner/name`), nearest first
    _owners: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    def has_prompt(self, path: str) -> bool:
        return path in self._prompt_paths

    def layer_of(self, path: str) -> str | None:
        """The base (`owner/name`) a file comes from; None for the repository's own files."""
        return self._owners.get(path) or None

    def prompt(self, path: str) -> tuple[PromptSource, str]:
        """A prompt file and its assembled text; RepositoryError when it has errors."""
        reason = self._unusable.get(path)
        if reason is not None or path not in self._sources:
            raise RepositoryError(f"{path} cannot be used: {reason or 'not a prompt file'}")
        return self._sources[path], assemble(path, self._sources, self._includes)


def load_repository(
    files: Mapping[str, bytes],
    *,
    bases: Mapping[str, Mapping[str, bytes]] | None = None,
    name: str = OWN,
) -> PromptRepository:
    """Parse a repository once; RepositoryError when PATH or the schema version is unusable.

    `bases`: the repositories its PATH `extends`, keyed `owner/name` or `owner/name@ref`.
    A prompt file with errors does not stop loading: resolving to it raises RepositoryError.
    The service only activates commits that `validate` accepts, so that never happens there.
    """
    return repository_from(analyse(files, bases=bases, name=name))


def load_layers(layers: Sequence[Layer]) -> PromptRepository:
    """A repository from its layers, already in order (its own first, bases nearest first)."""
    return repository_from(analyse_layers(layers))


def repository_from(result: Analysis) -> PromptRepository:
    """The repository an analysis describes (see `load_repository`)."""
    if result.path_file is None or not result.version_ok or not result.routes:
        problems = [
            d.message
            for d in result.diagnostics
            if d.severity == "error" and d.path in SPECIAL_FILES
        ]
        detail = "; ".join(problems[:3]) or "PATH defines no usable route"
        raise RepositoryError(f"the repository cannot be used: {detail}")
    unusable = dict(result.unreadable)
    unusable.update(result.assembly.broken)
    return PromptRepository(
        schema_version=result.version,
        routes=result.routes,
        allowed_guilds=result.path_file.allowed_guilds,
        files=tuple(sorted(result.files)),
        variables=MappingProxyType(dict(result.variables)),
        _sources=MappingProxyType(result.sources),
        _includes=MappingProxyType(result.assembly.includes),
        _unusable=MappingProxyType(unusable),
        _prompt_paths=frozenset(result.prompt_paths),
        layers=result.layers,
        _owners=MappingProxyType(dict(result.owners)),
    )
