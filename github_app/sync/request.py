"""What a sync is asked to do (`SyncRequest`) and what it did (`SyncOutcome`).

Kept apart from the flow so that access, messages and records can name these types without
importing the flow that imports them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from promptrepo import Diagnostic

# Why a sync runs: the service queues the first kind itself (a `guildprompts.sync` job, see
# sync.jobs); webhooks start the second.
# `base`: the first read of a base some branch extends; `rebase`: a base a branch extends moved.
JOB_TRIGGERS = frozenset(
    {"reconcile", "bind", "refresh", "access-restored", "pin", "base", "rebase"}
)
WEBHOOK_TRIGGERS = frozenset({"push", "pull_request", "check_suite", "check_run"})
TRIGGERS = JOB_TRIGGERS | WEBHOOK_TRIGGERS
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")


@dataclass(frozen=True)
class SyncRequest:
    """One commit (or a branch's current head, when `sha` is None) to bring in."""

    repository_id: int
    full_name: str
    branch: str | None  # None: the repository's default branch
    sha: str | None  # None: resolve the branch head (conditional request)
    trigger: str  # one of TRIGGERS
    installation_id: int | None = None
    token: str | None = field(default=None, repr=False)  # PAT when the App has no access
    activate: bool = True  # tracked branch: may become the active snapshot
    check_run: bool = True  # post a `guildprompts` check run on the sha
    received_at: datetime | None = None  # webhook receipt time, for the push-to-live metric
    # What the check run's routing diff compares with: a pull request's base, a push's `before`.
    base_sha: str | None = None
    base_branch: str | None = None  # whose followers the check run counts
    pushed_by: str | None = None  # the pusher's GitHub login, for the guilds' history

    def __post_init__(self) -> None:
        if self.trigger not in TRIGGERS:
            expected = ", ".join(sorted(TRIGGERS))
            raise ValueError(f"unknown sync trigger {self.trigger!r} (expected one of {expected})")
        if self.sha is not None and not _SHA.fullmatch(self.sha):
            raise ValueError(f"sync: {self.sha[:80]!r} is not a commit sha (40 or 64 hex digits)")
        if self.base_sha is not None and not _SHA.fullmatch(self.base_sha):
            raise ValueError(f"sync: base {self.base_sha[:80]!r} is not a commit sha")
        if (
            isinstance(self.repository_id, bool)
            or not isinstance(self.repository_id, int)
            or self.repository_id <= 0
        ):
            raise ValueError(
                f"sync: repository_id must be a positive integer, got {self.repository_id!r}"
            )
        if self.installation_id is not None and self.token is not None:
            raise ValueError("sync: give installation_id or token, not both")


@dataclass(frozen=True)
class SyncOutcome:
    """What a sync did; `message` is the one line for logs and statuses."""

    sha: str | None
    snapshot_id: int | None
    valid: bool | None  # None: nothing was validated (no access, no PATH, branch gone)
    activated: bool
    diagnostics: tuple[Diagnostic, ...]
    message: str
    api_calls: int
    files_fetched: int
