"""Which repositories a repository is made of: itself, then the bases its PATH `extends`.

A repository and its bases form an ordered list of layers, the repository first and then each
base nearest first (the last `extends:` entry is the nearest), a base's own bases right after it.
`stack` builds that list from the bases the caller could read, and reports what stops it: a base
that is missing, a cycle, more than 3 layers below the repository. `repository.analyse_layers`
then reads the layers as one repository.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .diagnostics import Diagnostic, diagnostic
from .files import PATH_FILE
from .pathfile import MAX_BASES, BaseRef, path_file_of

MAX_DEPTH = MAX_BASES  # layers below the repository, along any chain of `extends`
OWN = ""  # the name of the repository's own layer


@dataclass(frozen=True)
class Layer:
    """One repository's files in a stack: `name` is `owner/name` (OWN for the repository itself),
    `ref` the `extends:` entry that brought it in."""

    name: str
    files: Mapping[str, bytes]
    ref: BaseRef | None = None


def extends_of(files: Mapping[str, bytes]) -> tuple[BaseRef, ...]:
    """The bases a repository's PATH names, as written (nearest last); () when it has none."""
    path_file = path_file_of(files)
    return path_file.extends if path_file is not None else ()


def find_base(bases: Mapping[str, Mapping[str, bytes]], ref: BaseRef) -> Mapping[str, bytes] | None:
    """A base's files: keyed `owner/name@ref` (exact) or `owner/name` (any ref), any case."""
    wanted = (f"{ref.repository}@{ref.ref}".lower(), ref.repository.lower())
    lowered = {key.lower(): files for key, files in bases.items()}
    for key in wanted:
        if key in lowered:
            return lowered[key]
    return None


def stack(
    files: Mapping[str, bytes], bases: Mapping[str, Mapping[str, bytes]], name: str = OWN
) -> tuple[tuple[Layer, ...], list[Diagnostic]]:
    """The layers of a repository, and the problems of its `extends` (reported on its PATH).

    `name` is the repository's own `owner/name` when known, so that a base extending it back is
    reported as a cycle.
    """
    layers = [Layer(OWN, files)]
    problems: list[Diagnostic] = []

    def report(code: str, message: str, origin: BaseRef) -> None:
        problems.append(diagnostic(code, PATH_FILE, message, origin.line, origin.column))

    def visit(current: Mapping[str, bytes], trail: tuple[str, ...], origin: BaseRef | None) -> None:
        for ref in reversed(extends_of(current)):  # nearest first
            at = origin or ref
            if ref.repository in trail:
                cycle = " -> ".join((*trail, ref.repository)).lstrip(" ->")
                report("extends-cycle", f"`extends` goes round in a circle: {cycle}", at)
                continue
            if len(trail) > MAX_DEPTH:
                path = " -> ".join((*trail, ref.repository)).lstrip(" ->")
                report(
                    "extends-depth",
                    f"more than {MAX_DEPTH} layers of bases: {path}",
                    at,
                )
                continue
            base = find_base(bases, ref)
            if base is None:
                where = "" if origin is None else f" (a base of {trail[-1]})"
                report("base-missing", f"the base {ref}{where} could not be read", at)
                continue
            if all(layer.name != ref.repository for layer in layers):
                layers.append(Layer(ref.repository, base, ref))
            visit(base, (*trail, ref.repository), at)

    visit(files, (name.lower(),), None)
    return tuple(layers), problems
