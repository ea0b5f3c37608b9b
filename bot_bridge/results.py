"""What the bridge's answers become on the bot's side: the result types and their parsing.

Parsing is lenient (a missing or mistyped field becomes None or empty, never an exception), so
an older or newer server still gives the bot something usable. Standard library and promptrepo
only; the clients in `bot_bridge.client` build these from HTTP responses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from promptrepo import Diagnostic
from promptrepo.answer import Answer

__all__ = [
    "BridgeError",
    "BridgeEvent",
    "GuildConfig",
    "PreviewResult",
    "ResolvedPrompt",
]


@dataclass(frozen=True)
class ResolvedPrompt:
    """The prompt for one (guild, context), shaped so the bot can swap it in for its old resolver.

    `resolved_at` is when the bridge produced (or confirmed, by 304) this answer; a stale answer
    keeps the time it was last confirmed, so its age is visible.
    """

    content: str
    source: str  # custom | default | fallback
    version: int | str | None  # the repository's schema version
    commit_sha: str | None
    file_path: str | None
    tried_paths: tuple[str, ...]
    repo_url: str | None
    github_file_url: str | None
    parameters: Mapping[str, Any]
    is_stale: bool
    resolved_at: datetime
    route: str | None = None
    branch: str | None = None
    repository: str | None = None  # owner/name
    status_message: str | None = None
    description: str | None = None  # the prompt file's `description:` (front matter)
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class GuildConfig:
    """A guild's binding and its sync status, as `GET .../config` reports it.

    `state`: active | no_access (lost access: built-in defaults serve) | pending (not live yet,
    e.g. the App is not installed). `last_sync_outcome`: pending | ok | rejected (the latest commit
    failed validation, `active_sha` still serves) | error (GitHub unreachable or fetch failed) |
    deleted (the branch is gone). Times are ISO 8601 text as the server sent them.
    """

    guild_id: str
    repository: str | None
    branch: str | None  # None: the repository's default branch
    enabled: bool
    state: str | None
    last_sync_outcome: str | None
    status_message: str | None
    active_sha: str | None
    latest_sha: str | None
    last_sync_at: str | None
    errors: tuple[Diagnostic, ...]
    set_by: str | None
    set_at: str | None
    repo_url: str | None
    install_url: str | None
    in_progress: bool = False  # the server answered 202: the sync is still running
    # "commit abc1234 live since 14:02:07 UTC, 0.3 s after the push" (None: nothing live)
    freshness: str | None = None
    # the base commits served with active_sha, as `owner/name@abc1234` (PATH `extends`)
    bases: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class PreviewResult:
    """What `POST .../test` found for one context: nothing is cached by the server for it."""

    file_path: str | None
    tried_paths: tuple[str, ...]
    route: str | None
    source: str | None
    commit_sha: str | None
    preview: str
    diagnostics: tuple[Diagnostic, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class BridgeEvent:
    """One audit-log entry of a guild's binding: who changed what, when (never a secret)."""

    at: str | None
    actor: str | None
    action: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


class BridgeError(Exception):
    """An admin call failed; `status_code` is None when the service could not be reached."""

    def __init__(
        self, status_code: int | None, message: str, body: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.body: Mapping[str, Any] = body or {}

    @property
    def install_url(self) -> str | None:
        """Where to install the App (the 409 answer to `set_config`)."""
        return text_field(self.body.get("install_url"))

    @property
    def unreachable(self) -> bool:
        return self.status_code is None

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        """Problems the server listed with its refusal (e.g. a first sync that failed)."""
        return _diagnostics(self.body.get("errors") or self.body.get("diagnostics"))


def _bases(value: Any) -> tuple[str, ...]:
    """`owner/name@abc1234` for each well-formed entry of the config's `bases`."""
    found = []
    for item in value if isinstance(value, list) else ():
        if isinstance(item, Mapping):
            name, sha = text_field(item.get("repository")), text_field(item.get("commit_sha"))
            if name and sha:
                found.append(f"{name}@{sha[:7]}")
    return tuple(found)


def text_field(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _texts(value: Any) -> tuple[str, ...]:
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()


def _repo_url(body: Mapping[str, Any]) -> str | None:
    """The repository's web URL, from the commit-pinned file URL (it carries the right host)."""
    if text_field(body.get("repo_url")):
        return str(body["repo_url"])
    file_url = text_field(body.get("github_file_url"))
    if file_url is None:
        return None
    parts = urlsplit(file_url)
    owner_name = [segment for segment in parts.path.split("/") if segment][:2]
    if len(owner_name) < 2 or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}/{owner_name[0]}/{owner_name[1]}"


def prompt_from_body(body: Mapping[str, Any], resolved_at: datetime) -> ResolvedPrompt | None:
    """The bridge's JSON answer as the bot's result; None when it is not a prompt."""
    answer = Answer.from_json(body)
    if answer is None:
        return None
    return prompt_from_answer(answer, resolved_at, _repo_url(body))


def prompt_from_answer(
    answer: Answer, resolved_at: datetime, repo_url: str | None = None
) -> ResolvedPrompt:
    """An answer (from the bridge, or resolved in this process from the stream) as the bot's
    result: the same fields whichever way it was obtained."""
    return ResolvedPrompt(
        content=answer.content,
        source=answer.source,
        version=answer.schema_version,
        commit_sha=answer.commit_sha,
        file_path=answer.file_path,
        tried_paths=answer.tried_paths,
        repo_url=repo_url or _repo_url({"github_file_url": answer.github_file_url}),
        github_file_url=answer.github_file_url,
        parameters=answer.parameters,
        is_stale=answer.is_stale,
        resolved_at=resolved_at,
        route=answer.route,
        branch=answer.branch,
        repository=answer.repository,
        status_message=answer.status_message,
        description=answer.description,
        metadata=answer.metadata,
    )


def _diagnostics(value: Any) -> tuple[Diagnostic, ...]:
    found = []
    for item in value if isinstance(value, list) else ():
        if not isinstance(item, dict):
            continue
        severity = item.get("severity")
        line, column = item.get("line"), item.get("column")
        found.append(
            Diagnostic(
                path=str(item.get("path") or ""),
                line=line if isinstance(line, int) else None,
                column=column if isinstance(column, int) else None,
                severity=severity if severity in ("error", "warning", "notice") else "error",
                code=str(item.get("code") or ""),
                message=str(item.get("message") or ""),
                hint=str(item.get("hint") or ""),
            )
        )
    return tuple(found)


def config_or_none(guild: str, body: Any, status_code: int) -> GuildConfig | None:
    """None when the guild has no binding (a 404, or an answer without a repository)."""
    config = config_from_body(guild, body, status_code)
    return config if config.repository else None


def config_from_body(guild: str, body: Any, status_code: int) -> GuildConfig:
    body = body if isinstance(body, dict) else {}
    return GuildConfig(
        guild_id=text_field(body.get("guild_id")) or guild,
        repository=text_field(body.get("repository")),
        branch=text_field(body.get("branch")),
        enabled=body.get("enabled") is not False,
        state=text_field(body.get("state")),
        last_sync_outcome=text_field(body.get("last_sync_outcome")),
        status_message=text_field(body.get("status_message")),
        active_sha=text_field(body.get("active_sha")),
        latest_sha=text_field(body.get("latest_sha")),
        last_sync_at=text_field(body.get("last_sync_at")),
        errors=_diagnostics(body.get("errors")),
        set_by=text_field(body.get("set_by")),
        set_at=text_field(body.get("set_at")),
        repo_url=text_field(body.get("repo_url")),
        install_url=text_field(body.get("install_url")),
        in_progress=status_code == 202,
        freshness=text_field((body.get("freshness") or {}).get("text"))
        if isinstance(body.get("freshness"), dict)
        else None,
        bases=_bases(body.get("bases")),
        raw=body,
    )


def preview_from_body(guild: str, body: Any, status_code: int) -> PreviewResult:
    body = body if isinstance(body, dict) else {}
    preview = body.get("preview", body.get("content"))
    return PreviewResult(
        file_path=text_field(body.get("file_path")),
        tried_paths=_texts(body.get("tried_paths")),
        route=text_field(body.get("route")),
        source=text_field(body.get("source")),
        commit_sha=text_field(body.get("commit_sha")),
        preview=preview if isinstance(preview, str) else "",
        diagnostics=_diagnostics(body.get("diagnostics")),
        raw=body,
    )


def events_from_body(guild: str, body: Any, status_code: int) -> list[BridgeEvent]:
    items = body.get("events") if isinstance(body, dict) else body
    return [
        BridgeEvent(
            at=text_field(item.get("at")),
            actor=text_field(item.get("actor")),
            action=text_field(item.get("action")) or "unknown",
            before=item.get("before") if isinstance(item.get("before"), dict) else None,
            after=item.get("after") if isinstance(item.get("after"), dict) else None,
            raw=item,
        )
        for item in (items if isinstance(items, list) else ())
        if isinstance(item, dict)
    ]


def removed_from_body(guild: str, body: Any, status_code: int) -> bool:
    return True
