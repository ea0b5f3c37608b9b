"""The one-line texts a sync leaves behind: outcome labels, branch, binding and access statuses.

One home so the bot, the check run and the sync log word the same situation the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from github_app.github import GitHubError, InstallationUnavailable, NotFound
from promptrepo import Diagnostic

if TYPE_CHECKING:
    from github_app.sync.access import Access
    from github_app.sync.content import Validation
    from github_app.sync.records import Recorded
    from github_app.sync.request import SyncRequest


EMPTY_REPOSITORY = "the repository is empty: push a PATH file"


def rate_limit_message(requests: int, remaining: int, reset_in: float) -> str:
    minutes = max(1, round(reset_in / 60))
    return (
        f"waiting for GitHub's rate limit: this sync needs {plural(requests, 'request')} and "
        f"{remaining} are left for this installation this hour; it resumes in about "
        f"{plural(minutes, 'minute')}"
    )


def access_message(exc: GitHubError | None, access: Access, full_name: str) -> str:
    if isinstance(exc, InstallationUnavailable):
        return (
            f"the GitHub App cannot read {full_name} any more (uninstalled or suspended): "
            "install it again, or give a personal access token"
        )
    if access.kind == "token":
        return (
            f"the personal access token for {full_name} was refused or cannot read it "
            "(expired, revoked or missing the contents permission): set a new token"
        )
    if isinstance(exc, NotFound) or exc is None:
        return (
            f"{full_name} cannot be read: it was deleted, or the GitHub App no longer has "
            "access to it"
        )
    return f"GitHub refused to let guildprompts read {full_name}: {exc.message}"


def describe(
    request: SyncRequest,
    branch: str | None,
    sha: str,
    validation: Validation,
    recorded: Recorded,
) -> tuple[str, str]:
    """The outcome label (metrics, sync log) and message of a sync that read the commit."""
    short = sha[:7]
    if not request.activate or branch is None:
        errors = plural(validation.errors, "error")
        verdict = "valid" if validation.valid else f"rejected: {errors}"
        return "checked", f"{short}{f' on {branch}' if branch else ''} checked: {verdict}"
    if recorded.superseded:
        live = recorded.live_sha[:7] if recorded.live_sha else "nothing"
        return (
            "stale",
            f"{short} is not the head of {branch} on GitHub any more "
            f"(serving {live}): not activated",
        )
    labels = recorded.labels
    if recorded.waiting:
        return "waiting", waiting_message(sha, recorded.waiting)
    if not validation.valid:
        return "rejected", rejected_message(
            recorded.live_sha,
            sha,
            validation.errors,
            live_labels=recorded.live_labels,
            labels=labels,
            first=first_error(validation.diagnostics) if labels else "",
        )
    if recorded.activated:
        return "activated", f"{short}{with_bases(labels)} is now live on {branch}"
    return "unchanged", f"{short}{with_bases(labels)} is already live on {branch}"


def with_bases(labels: Sequence[str]) -> str:
    """` with owner/base@abc1234`: the base commits a commit is served or checked with."""
    return f" with {', '.join(labels)}" if labels else ""


def rejected_message(
    live_sha: str | None,
    sha: str,
    errors: int,
    *,
    live_labels: Sequence[str] = (),
    labels: Sequence[str] = (),
    first: str = "",
) -> str:
    """What serves and what was rejected; with bases, both name their base commits (a base
    push can reject a commit that was valid over the previous base commit)."""
    live = f"{live_sha[:7]}{with_bases(live_labels)}" if live_sha else "the built-in defaults"
    detail = f" (first: {first})" if first else ""
    rejected = f"{sha[:7]}{with_bases(labels)}"
    return f"serving {live}, {rejected} rejected: {plural(errors, 'error')}{detail}"


def serving_message(sha: str, diagnostics: Sequence[Diagnostic], labels: Sequence[str] = ()) -> str:
    warnings = sum(1 for item in diagnostics if item.severity == "warning")
    return f"serving {sha[:7]}{with_bases(labels)}" + (
        f" ({plural(warnings, 'warning')})" if warnings else ""
    )


def waiting_message(sha: str, waiting: Sequence[str]) -> str:
    """A commit whose bases have not been read yet: neither valid nor rejected."""
    names = ", ".join(waiting)
    return (
        f"{sha[:7]} waits for its base {names} to be read (guildprompts reads a base through "
        "the GitHub App installed on it, or anonymously when it is public)"
    )


def base_gone_message(base: str) -> str:
    return f"the base {base} cannot be read any more: serving the built-in defaults"


def base_refused_message(guild_id: str, base: str) -> str:
    return f'the base {base} is private: add "{guild_id}" to allowed_guilds in its PATH'


def private_message(guild_id: str) -> str:
    return f'this repository is private: add "{guild_id}" to allowed_guilds in PATH'


def first_error(diagnostics: Sequence[Diagnostic]) -> str:
    for item in diagnostics:
        if item.severity == "error":
            where = item.path + (f":{item.line}" if item.line else "")
            return f"{where}: {item.message}"
    return ""


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
