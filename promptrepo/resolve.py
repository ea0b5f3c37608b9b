"""Choosing the prompt for a context: the routes of PATH, then the built-in defaults.

v1 reproduces the earlier bot's choice exactly (see `_v1_candidates`), so repositories written
for it keep behaving the same; v2 adds `when:` conditions and skips routes whose variables the
context lacks. In both, a route with `{locale}` tries the full tag, then its language, then the
route without the locale. Resolution performs no I/O: everything was parsed by `load_repository`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any

from . import safeyaml
from .context import Context, locale_fallbacks
from .pathfile import Route, without_variable
from .repository import PromptRepository
from .variables import CATEGORIES, LOCALE

_EMPTY: Mapping[str, Any] = MappingProxyType({})
GLOBAL_DEFAULT = "global"


def _read_defaults() -> dict[str, str]:
    """The shipped prompts, read once at import so that resolving never touches the disk."""
    folder = resources.files(__package__).joinpath("defaults")
    return {
        name: folder.joinpath(f"{name}.md").read_text(encoding="utf-8")
        for name in (*CATEGORIES, GLOBAL_DEFAULT)
    }


BUILTIN_PROMPTS: Mapping[str, str] = MappingProxyType(_read_defaults())


@dataclass(frozen=True)
class Resolution:
    """Which prompt answers a context, how it was found, and its text (not yet rendered)."""

    file_path: str | None
    tried_paths: tuple[str, ...]
    route: str | None
    source: str  # "custom" (from the repository) | "default" (built into promptrepo)
    schema_version: str | None
    parameters: Mapping[str, Any]
    metadata: Mapping[str, Any]
    description: str | None
    content: str
    # The context with PATH defaults applied: what `render` should fill placeholders from.
    variables: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    # "default" when v1 found the file through the route's `default` expansion (some of the
    # route's variables replaced by `default`), None when through the context's own values.
    expansion: str | None = None

    @property
    def route_label(self) -> str | None:
        """The route as people read it: `channel_specific -> default` for an expansion."""
        if self.route is None or self.expansion is None:
            return self.route
        return f"{self.route} -> {self.expansion}"

    layer: str | None = None  # the base (`owner/name`) the file came from; None: its own

    def to_dict(self) -> dict[str, Any]:
        return {
            "file_path": self.file_path,
            "tried_paths": list(self.tried_paths),
            "route": self.route,
            "source": self.source,
            "schema_version": self.schema_version,
            "parameters": safeyaml.thaw(self.parameters),
            "metadata": safeyaml.thaw(self.metadata),
            "description": self.description,
            "content": self.content,
            "variables": dict(self.variables),
            "expansion": self.expansion,
            "layer": self.layer,
        }


def builtin_default(
    context: Context | Mapping[str, object],
    *,
    tried_paths: tuple[str, ...] = (),
    schema_version: str | None = None,
) -> Resolution:
    """The shipped prompt for the context's category (discussion, meeting, moderation) or the
    global one."""
    context = _as_context(context)
    name = context.category if context.category in CATEGORIES else GLOBAL_DEFAULT
    return Resolution(
        file_path=None,
        tried_paths=tried_paths,
        route=None,
        source="default",
        schema_version=schema_version,
        parameters=_EMPTY,
        metadata=MappingProxyType({"builtin": name}),
        description=f"Built-in {name} prompt",
        content=BUILTIN_PROMPTS[name],
        variables=MappingProxyType(context.rendering()),
    )


def resolve(repo: PromptRepository | None, context: Context | Mapping[str, object]) -> Resolution:
    """The first existing file along the fallback chain, else the built-in default.

    Raises RepositoryError only when the chosen file itself has errors (never for a repository
    that `validate` accepted), and ContextError for an unusable context mapping.
    """
    context = _as_context(context)
    if repo is None:
        return builtin_default(context)
    values = context.with_defaults(repo.variables)
    tried: list[str] = []
    seen: set[str] = set()
    for route in repo.routes:
        for path in candidates(route, values, repo.schema_version):
            if path in seen:
                continue
            seen.add(path)
            tried.append(path)
            if repo.has_prompt(path):
                source, content = repo.prompt(path)
                return Resolution(
                    file_path=path,
                    tried_paths=tuple(tried),
                    route=route.name,
                    source="custom",
                    schema_version=repo.schema_version,
                    parameters=source.parameters,
                    metadata=source.metadata,
                    description=source.description,
                    content=content,
                    variables=MappingProxyType(values.rendering()),
                    expansion=_expansion(route, values, path, repo.schema_version),
                    layer=repo.layer_of(path),
                )
    fallback = builtin_default(values, tried_paths=tuple(tried), schema_version=repo.schema_version)
    return fallback


def candidates(route: Route, context: Context, version: str) -> list[str]:
    """The paths one route proposes for a context, best first.

    A route using `{locale}` is expanded once per locale fallback (`pt-br`, then `pt`), the
    locale kept fixed, and then once without the locale; other routes as their version says.
    """
    if LOCALE not in route.names:
        return _expand(route, context, version)
    paths = []
    for tag in locale_fallbacks(context.get(LOCALE)):
        paths += _expand(route, context.with_value(LOCALE, tag), version, fixed=LOCALE)
    bare = without_variable(route, LOCALE)
    if bare is not None:
        paths += _expand(bare, context.with_value(LOCALE, None), version)
    return paths


def _expand(route: Route, context: Context, version: str, fixed: str | None = None) -> list[str]:
    if version == "v1":
        return _v1_candidates(route, context, fixed)
    for name, allowed in route.when:
        if context.get(name) not in allowed:
            return []
    values = {name: context.get(name) or "" for name in route.names}
    if not all(values.values()):
        return []  # v2: a route whose variables are not all known is skipped
    return [_fill(route, values)]


def _v1_candidates(route: Route, context: Context, fixed: str | None = None) -> list[str]:
    """The earlier bot's order: the full path when every variable has a value, then, for
    i = 0..n-1, the first n-1-i variables kept and the rest replaced by `default`.

    A `fixed` variable (the locale being tried) keeps its value throughout and is not counted.
    """
    names = tuple(name for name in route.names if name != fixed)
    given = {fixed: context.get(fixed) or ""} if fixed else {}
    values = [context.get(name) or "" for name in names]
    paths = []
    if all(values):
        paths.append(_fill(route, {**given, **dict(zip(names, values, strict=True))}))
    count = len(names)
    for i in range(count):
        kept = count - 1 - i
        filled = [value or "default" for value in values[:kept]] + ["default"] * (count - kept)
        paths.append(_fill(route, {**given, **dict(zip(names, filled, strict=True))}))
    return paths


def _expansion(route: Route, context: Context, path: str, version: str) -> str | None:
    """Which of a v1 route's expansions `path` is: None for the context's own values."""
    if version != "v1" or not route.names:
        return None
    values = [context.get(name) or "" for name in route.names]
    if all(values) and path == _fill(route, dict(zip(route.names, values, strict=True))):
        return None
    return "default"


def _fill(route: Route, values: Mapping[str, str]) -> str:
    parts = list(route.parts)
    for index in range(1, len(parts), 2):
        parts[index] = values[parts[index]]
    return "".join(parts)


def _as_context(context: Context | Mapping[str, object]) -> Context:
    return context if isinstance(context, Context) else Context.from_mapping(context)
