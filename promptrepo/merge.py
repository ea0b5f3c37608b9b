"""Reading a repository and its bases as one: files, routes, the chain, variables and locks.

Layers are applied deepest first, each nearer one adding or replacing files and routes by name,
so the repository's own files and routes win, except where a base `locked:` them: then the
base's file or route serves and the override is an error. Problems inside a base are reported on
the repository's PATH (`base-invalid`), where an annotation can point.
"""

from __future__ import annotations

from collections.abc import Sequence

from .diagnostics import Diagnostic, diagnostic
from .files import PATH_FILE
from .frontmatter import check_includes
from .layers import OWN, Layer
from .pathfile import Route
from .repository import SPECIAL_FILES, Analysis

MAX_REPORTED = 5  # base problems listed per base; the rest are counted


def merge(own: Analysis, bases: Sequence[tuple[Layer, Analysis]]) -> Analysis:
    """`own` (its files not yet followed through includes) over `bases`, nearest first."""
    result = Analysis({path: own.files[path] for path in SPECIAL_FILES if path in own.files})
    result.path_file, result.version, result.version_ok = own.path_file, own.version, own.version_ok
    result.layers = tuple(layer.name for layer, _ in bases)
    result.tests = dict(own.tests)  # the repository's own routing tests, run on all layers
    result.diagnostics = list(own.diagnostics)
    extends_at = _extends_at(own)
    if own.version != "v2":
        result.diagnostics.append(
            diagnostic(
                "extends-syntax",
                PATH_FILE,
                "`extends` needs schema v2: add a `schema-version` file containing `v2`",
                *extends_at,
            )
        )
    for layer, analysis in bases:
        result.diagnostics += _base_problems(layer, analysis, extends_at)
    layers = [*((layer.name, analysis) for layer, analysis in reversed(bases)), (OWN, own)]
    _merge_files(result, layers)
    _merge_routes(result, layers)
    for _, analysis in layers:
        result.variables.update(analysis.variables)
    result.assembly = check_includes(result.sources, set(result.prompt_paths))
    for found in result.assembly.diagnostics:
        if result.is_own(found.path):
            result.diagnostics.append(found)
        elif found.severity == "error":
            result.diagnostics += _as_base_problem(result.owners[found.path], [found], extends_at)
    return result


def _extends_at(analysis: Analysis) -> tuple[int | None, None]:
    """Where problems of the bases are reported: the line of PATH's `extends:`."""
    return (analysis.path_file.extends_line if analysis.path_file else None, None)


def _base_problems(
    layer: Layer, analysis: Analysis, at: tuple[int | None, None]
) -> list[Diagnostic]:
    errors = [d for d in analysis.diagnostics if d.severity == "error"]
    if analysis.version != "v2" or not analysis.version_ok:
        errors.append(
            diagnostic("extends-syntax", PATH_FILE, "a base must use schema v2", severity="error")
        )
    return _as_base_problem(layer.name, errors, at)


def _as_base_problem(
    name: str, found: list[Diagnostic], at: tuple[int | None, None]
) -> list[Diagnostic]:
    out = []
    for problem in found[:MAX_REPORTED]:
        where = ":".join(str(part) for part in (problem.path, problem.line) if part is not None)
        out.append(
            diagnostic("base-invalid", PATH_FILE, f"base {name}: {where}: {problem.message}", *at)
        )
    if len(found) > MAX_REPORTED:
        more = len(found) - MAX_REPORTED
        out.append(diagnostic("base-invalid", PATH_FILE, f"base {name}: {more} more error(s)", *at))
    return out


def _locker(path: str, locks: dict[str, str]) -> str | None:
    """The base locking a path: the path itself, or a directory (ending in `/`) holding it."""
    if path in locks:
        return locks[path]
    for entry, name in locks.items():
        if entry.endswith("/") and path.startswith(entry):
            return name
    return None


def _merge_files(result: Analysis, layers: list[tuple[str, Analysis]]) -> None:
    """Deepest layer first: each path served by the nearest layer having it, locks aside."""
    locks: dict[str, str] = {}
    extends_at = _extends_at(result)
    for name, analysis in layers:
        for path in analysis.prompt_paths:
            locker = _locker(path, locks)
            if locker is not None:
                message = f"this file is locked by {locker}: remove it"
                if name == OWN:  # on the file's first line, where an annotation can point
                    result.diagnostics.append(diagnostic("file-locked", path, message, 1))
                else:
                    problem = diagnostic("file-locked", path, message)
                    result.diagnostics += _as_base_problem(name, [problem], extends_at)
                continue
            result.files[path] = analysis.files[path]
            result.owners[path] = name
            result.sources.pop(path, None)
            result.unreadable.pop(path, None)
            if path in analysis.sources:
                result.sources[path] = analysis.sources[path]
            if path in analysis.unreadable:
                result.unreadable[path] = analysis.unreadable[path]
        routes = {route.name for route in analysis.path_file.defined} if analysis.path_file else ()
        for entry, _line, _column in analysis.path_file.locked if analysis.path_file else ():
            if entry not in routes:
                locks.setdefault(entry, name)


def _merge_routes(result: Analysis, layers: list[tuple[str, Analysis]]) -> None:
    """Routes by name, nearest definition winning unless locked; the nearest explicit chain, or
    a layer's new routes ahead of the chain below it."""
    extends_at = _extends_at(result)
    defined: dict[str, Route] = {}
    locked: dict[str, str] = {}  # route name -> the base locking it
    chain: list[str] = []
    for name, analysis in layers:
        path_file = analysis.path_file
        if path_file is None:
            continue
        mine = name == OWN
        own_routes = {route.name: route for route in path_file.defined}
        for route_name, route in own_routes.items():
            if route_name in locked:
                problem = diagnostic(
                    "route-locked",
                    PATH_FILE,
                    f"route `{route_name}` is locked by {locked[route_name]}: remove it",
                    route.line,
                    route.column,
                )
                if mine:
                    result.diagnostics.append(problem)
                else:
                    result.diagnostics += _as_base_problem(name, [problem], extends_at)
                continue
            defined[route_name] = route
            result.route_owners[route_name] = name
        if path_file.chain is None:
            chain = [n for n in own_routes if n not in chain and n in defined] + chain
        else:
            written: list[str] = []
            for entry in path_file.chain:
                if entry.name in defined and entry.name not in written:
                    written.append(entry.name)
                elif mine and entry.name not in defined:
                    result.diagnostics.append(
                        diagnostic(
                            "chain-undefined-route",
                            PATH_FILE,
                            f"fallback_chain names `{entry.name}`, which neither `routes:` nor "
                            "a base defines",
                            entry.line,
                            entry.column,
                        )
                    )
            for route_name in chain:
                if route_name in locked and route_name not in written:
                    written.append(route_name)  # a locked route stays tried
                    if mine:
                        result.diagnostics.append(
                            diagnostic(
                                "route-locked",
                                PATH_FILE,
                                f"fallback_chain leaves out route `{route_name}`, which is "
                                f"locked by {locked[route_name]}: it is still tried, last",
                            )
                        )
            chain = written
        if not mine:
            for target, _line, _column in path_file.locked:
                if target in own_routes:
                    locked.setdefault(target, name)
    for route_name, route in defined.items():
        if result.route_owners.get(route_name) == OWN and route_name not in chain:
            result.diagnostics.append(
                diagnostic(
                    "route-unused",
                    PATH_FILE,
                    f"route `{route_name}` is not in fallback_chain, so it is never tried",
                    route.line,
                    route.column,
                )
            )
    result.routes = tuple(defined[route_name] for route_name in chain)
    if not result.routes:
        result.diagnostics.append(
            diagnostic(
                "path-no-routes", PATH_FILE, "neither PATH nor its bases define a usable route"
            )
        )
