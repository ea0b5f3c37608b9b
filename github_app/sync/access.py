"""Which credentials a sync reads a repository with, and which GitHub errors mean "no access".

Kept apart from the sync's flow because both the orchestration (choose, then classify a failure)
and the records (which bindings relied on the credential that failed) need the same notion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from github_app.github import (
    GitHubClient,
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


@dataclass(frozen=True)
class TokenRefused:
    """Why a personal access token is not accepted, as an HTTP status and a message."""

    status: int
    message: str


async def try_token(
    github: GitHubClient, full_name: str, branch: str | None, token: str
) -> TokenRefused | None:
    """Read the repository and the branch with `token`: None when both worked. A token is
    accepted only after this; GitHub not answering raises (`TransientError`, `RateLimited`)."""
    try:
        repository = await github.get_repository(full_name, token=token)
    except GitHubError as exc:
        if not is_access_problem(exc):
            raise
        return TokenRefused(
            403,
            f"the personal access token cannot read {full_name} (GitHub answered "
            f"{exc.status}): give a token with read access to its contents",
        )
    wanted = branch or str(repository.get("default_branch") or "main")
    try:
        await github.get_branch_head(full_name, wanted, token=token)
    except GitHubError as exc:
        if not is_access_problem(exc):
            raise
        return TokenRefused(
            422,
            f"the personal access token cannot read branch {wanted} of {full_name} "
            f"(GitHub answered {exc.status}): check the branch name and the token's access",
        )
    return None
