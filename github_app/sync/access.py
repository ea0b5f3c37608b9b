"""Which credentials a sync reads a repository with, and which GitHub errors mean "no access".

Kept apart from the sync's flow because both the orchestration (choose, then classify a failure)
and the records (which bindings relied on the credential that failed) need the same notion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from github_app.github import (
    GitHubError,
    InstallationUnavailable,
    NotFound,
    RateLimited,
    TransientError,
    Unauthorized,
)

if TYPE_CHECKING:
    from github_app.sync.records import RepoState
    from github_app.sync.request import SyncRequest


@dataclass(frozen=True)
class Access:
    """The credentials a sync reads with."""

    kind: str  # "installation", "token" or "anonymous"
    installation_id: int | None = None
    token: str | None = field(default=None, repr=False)

    @property
    def kwargs(self) -> dict[str, Any]:
        if self.installation_id is not None:
            return {"installation_id": self.installation_id}
        return {"token": self.token} if self.token is not None else {}


def requested_access(request: SyncRequest) -> tuple[str, int | None, str | None]:
    if request.installation_id is not None:
        return "installation", request.installation_id, None
    if request.token is not None:
        return "token", None, request.token
    return "anonymous", None, None


def choose_access(request: SyncRequest, state: RepoState) -> Access | None:
    """The request's credentials, else the stored installation, a guild's token, or none for
    a public repository; None when nothing can read it."""
    kind, installation_id, token = requested_access(request)
    if kind != "anonymous":
        return Access(kind, installation_id, token)
    if state.installation_id is not None:
        return Access("installation", state.installation_id)
    if state.token is not None:
        return Access("token", token=state.token)
    return None if state.private else Access("anonymous")


def is_access_problem(exc: GitHubError) -> bool:
    if isinstance(exc, TransientError | RateLimited):
        return False
    return isinstance(exc, InstallationUnavailable | Unauthorized | NotFound) or exc.status == 403
