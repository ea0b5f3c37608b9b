"""The bridge's answer for one (guild, context): one type, its JSON form, and how it is built.

`GET /bridge/v1/guilds/{id}/prompt` (the service and `guildprompts preview`), the bot's HTTP
client and its streaming client all use this module, so the 13 keys of the answer, the way a
request becomes a routing context and the way a served state plus a parsed snapshot becomes an
answer are written once. Pure: standard library and the rest of promptrepo.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from .context import Context, ContextError
from .render import render
from .repository import PromptRepository, RepositoryError
from .resolve import Resolution, builtin_default, resolve
from .variables import BOT_SUPPLIED_VARIABLES

__all__ = [
    "ANSWER_KEYS",
    "GUILD_ID",
    "MAX_QUERY_ITEMS",
    "UNBOUND",
    "Answer",
    "Served",
    "build_answer",
    "routing_context",
    "uses_guild",
]

GUILD_ID = re.compile(r"[0-9]{1,20}")  # a Discord snowflake
MAX_QUERY_ITEMS = 32
_GUILD_WORD = re.compile(rb"\bguild\b")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Answer:
    """The prompt for one context and where it came from: the JSON body of `GET .../prompt`.

    `source`: custom (from the repository), default (built in: no binding, or the fallback
    chain found no file) or fallback (built in because the repository cannot serve right now).
    `content` has the routing variables rendered; the bot fills `{messages}` and the rest.
    """

    content: str
    source: str
    file_path: str | None
    tried_paths: tuple[str, ...]
    route: str | None
    repository: str | None
    branch: str | None
    commit_sha: str | None
    schema_version: int | str | None
    parameters: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    description: str | None = None  # the prompt file's `description:`
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)  # its `metadata:`
    github_file_url: str | None = None
    is_stale: bool = False
    status_message: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The answer as JSON-ready data, keys in the documented order."""
        return {
            "content": self.content,
            "source": self.source,
            "file_path": self.file_path,
            "tried_paths": list(self.tried_paths),
            "route": self.route,
            "repository": self.repository,
            "branch": self.branch,
            "commit_sha": self.commit_sha,
            "schema_version": self.schema_version,
            "parameters": _thaw(self.parameters),
            "description": self.description,
            "metadata": _thaw(self.metadata),
            "github_file_url": self.github_file_url,
            "is_stale": self.is_stale,
            "status_message": self.status_message,
        }

    @classmethod
    def from_json(cls, body: Any) -> Answer | None:
        """Lenient: a mistyped field becomes None or empty (an older or newer server still
        gives something usable); None when there is no `content` at all."""
        if not isinstance(body, Mapping) or not isinstance(body.get("content"), str):
            return None
        version = body.get("schema_version")
        parameters = body.get("parameters")
        metadata = body.get("metadata")
        tried = body.get("tried_paths")
        return cls(
            content=body["content"],
            source=_text(body.get("source")) or "custom",
            file_path=_text(body.get("file_path")),
            tried_paths=tuple(p for p in tried if isinstance(p, str))
            if isinstance(tried, list)
            else (),
            route=_text(body.get("route")),
            repository=_text(body.get("repository")),
            branch=_text(body.get("branch")),
            commit_sha=_text(body.get("commit_sha")),
            schema_version=version
            if isinstance(version, int | str) and not isinstance(version, bool)
            else None,
            parameters=MappingProxyType(dict(parameters))
            if isinstance(parameters, Mapping)
            else _EMPTY,
            description=_text(body.get("description")),
            metadata=MappingProxyType(dict(metadata)) if isinstance(metadata, Mapping) else _EMPTY,
            github_file_url=_text(body.get("github_file_url")),
            is_stale=body.get("is_stale") is True,
            status_message=_text(body.get("status_message")),
        )


ANSWER_KEYS: tuple[str, ...] = tuple(Answer.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class Served:
    """What a guild is served and how it is going: everything an answer needs besides the
    parsed snapshot and the context. `snapshot` identifies the content (the service's
    serving key, the stream's content digest); None serves the built-in defaults. `bases`:
    (`owner/name`, commit sha) of each base the content is built on (`extends`), so that a
    file coming from a base links to that base's commit."""

    snapshot: int | str | None
    repository: str | None
    branch: str | None
    commit_sha: str | None
    is_stale: bool
    status_message: str
    bound: bool  # the guild has a live binding (False: built-in defaults, source "default")
    bases: tuple[tuple[str, str], ...] = ()
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Hashed once: caches key their answers by (Served, context) on every lookup.
        fields = (self.snapshot, self.repository, self.branch, self.commit_sha)
        more = (self.is_stale, self.status_message, self.bound, self.bases)
        object.__setattr__(self, "_hash", hash(fields + more))

    def base_commit(self, name: str) -> str | None:
        """The commit of the base `name` (`owner/name`, any case) this content is built on."""
        wanted = name.lower()
        return next((sha for base, sha in self.bases if base.lower() == wanted), None)

    def __hash__(self) -> int:
        return self._hash

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot,
            "repository": self.repository,
            "branch": self.branch,
            "commit_sha": self.commit_sha,
            "is_stale": self.is_stale,
            "status_message": self.status_message,
            "bound": self.bound,
            "bases": [{"name": name, "commit_sha": sha} for name, sha in self.bases],
        }

    @classmethod
    def from_json(cls, data: Any) -> Served | None:
        """None when `data` is not a served state (the stream then ignores the event)."""
        if not isinstance(data, Mapping):
            return None
        snapshot = data.get("snapshot")
        bases = data.get("bases")
        return cls(
            snapshot=snapshot if isinstance(snapshot, str | int) else None,
            repository=_text(data.get("repository")),
            branch=_text(data.get("branch")),
            commit_sha=_text(data.get("commit_sha")),
            is_stale=data.get("is_stale") is True,
            status_message=_text(data.get("status_message")) or "",
            bound=data.get("bound") is True,
            bases=tuple(
                (base["name"], base["commit_sha"])
                for base in (bases if isinstance(bases, list) else ())
                if isinstance(base, Mapping)
                and _text(base.get("name"))
                and _text(base.get("commit_sha"))
            ),
        )


UNBOUND = Served(
    None,
    None,
    None,
    None,
    False,
    "no prompt repository is bound to this server: built-in defaults",
    False,
)


def build_answer(
    served: Served, context: Context, repository: PromptRepository | None, github_url: str
) -> Answer:
    """The answer for one context, from what the guild is served and its parsed snapshot
    (None when it has none, or when the content is not available here)."""
    status = served.status_message
    unavailable = served.bound and repository is None
    if served.snapshot is not None and repository is None:
        status = "the synced content is not available in this process: built-in defaults"
    try:
        resolution = resolve(repository, context)
    except RepositoryError as exc:  # only for a commit validation accepted: should not happen
        resolution, unavailable = builtin_default(context), True
        status = f"the chosen prompt cannot be used ({exc}): built-in defaults"
    custom = resolution.source == "custom"
    commit = served.commit_sha if repository is not None else None
    return Answer(
        content=render(resolution.content, resolution.variables).text,
        source="custom" if custom else ("fallback" if unavailable else "default"),
        file_path=resolution.file_path,
        tried_paths=resolution.tried_paths,
        route=resolution.route,
        repository=served.repository,
        branch=served.branch,
        commit_sha=commit,
        schema_version=resolution.schema_version,
        parameters=_parameters(resolution),
        description=resolution.description,
        metadata=resolution.metadata,
        github_file_url=_file_url(github_url, served, repository, commit, resolution.file_path)
        if custom
        else None,
        is_stale=served.is_stale and repository is not None,
        status_message=status,
    )


def _file_url(
    github_url: str,
    served: Served,
    repository: PromptRepository | None,
    commit: str | None,
    path: str | None,
) -> str | None:
    """Where the file is on GitHub: in the base it came from, at the base commit served, or in
    the guild's repository (None for a base commit this state does not name)."""
    base = repository.layer_of(path) if repository is not None and path else None
    if base is None:
        return file_url(github_url, served.repository, commit, path)
    return file_url(github_url, base, served.base_commit(base), path)


def file_url(
    github_url: str, repository: str | None, sha: str | None, path: str | None
) -> str | None:
    """The commit-pinned web address of a prompt file."""
    if not (repository and sha and path):
        return None
    return f"{github_url.rstrip('/')}/{repository}/blob/{sha}/{quote(path, safe='/')}"


def routing_context(guild_id: str | None, query: Iterable[tuple[str, Any]]) -> Context:
    """The routing context of a request: the query over the URL's guild.

    The guild always comes from the URL (a `guild` in the query cannot route to another
    guild's files), and variables the bot fills at send time (`messages`, ...) are never
    routing variables, so they neither split caches nor get rendered here. Raises
    `ContextError` (a ValueError) for a bad guild id, key or value.
    """
    pairs = list(query)
    if guild_id is not None and (not isinstance(guild_id, str) or not GUILD_ID.fullmatch(guild_id)):
        shown = str(guild_id)[:40]
        raise ContextError(f"invalid guild id {shown!r}: a Discord server id is 1 to 20 digits")
    if len(pairs) > MAX_QUERY_ITEMS:
        raise ContextError(f"too many context variables (at most {MAX_QUERY_ITEMS})")
    parsed = Context.from_mapping(dict(pairs))
    items = [
        item
        for item in parsed.items
        if item[0] not in BOT_SUPPLIED_VARIABLES
        and not (guild_id is not None and item[0] == "guild")
    ]
    if guild_id is not None:
        items.append(("guild", guild_id))
    raw = tuple(item for item in parsed.raw if item[0] != "guild")  # the URL's guild renders
    return Context(tuple(sorted(items)), raw)


def uses_guild(files: Mapping[str, bytes]) -> bool:
    """Whether answers from these files may depend on which guild asks: any file naming the
    `guild` variable (a route, a condition, a placeholder). When none does, one answer per
    (snapshot, context without the guild) serves every guild on the snapshot."""
    return any(_GUILD_WORD.search(content) for content in files.values())


def without_guild(context: Context) -> Context:
    """The context minus its guild: the key under which guild-independent answers are shared."""
    return Context(tuple(item for item in context.items if item[0] != "guild"), context.raw)


def _parameters(resolution: Resolution) -> Mapping[str, Any]:
    return resolution.to_dict()["parameters"] if resolution.parameters else _EMPTY


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(item) for item in value]
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
