"""Internal work items: syncs asked for by the App itself, queued like webhooks.

The reconcile loop, the bridge (bind, refresh) and lifecycle handlers (access restored) do not
sync on their own: they store a `guildprompts.sync` item in the same `deliveries` table, inside
the caller's transaction, so every sync goes through the one worker path with its retries,
leases and logs. Call `runtime.wake_worker()` once the transaction has committed.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from github_app.store import deliveries
from github_app.sync.request import JOB_TRIGGERS

SYNC_EVENT = "guildprompts.sync"
SNAPSHOT_ONLY = frozenset({"pin"})  # store and validate the commit, never activate it
_GUID_PREFIX = "sync:"


def enqueue_sync(
    session: Session,
    *,
    full_name: str,
    repository_id: int | None = None,
    branch: str | None = None,
    sha: str | None = None,
    trigger: str,
    guild_id: str | None = None,
) -> str:
    """Queue a sync of `full_name`@`branch` (None: the default branch); returns its GUID.

    `sha` None syncs the branch's current head; `guild_id` names the guild that asked (a bind or
    refresh), so its token is preferred and the logs say whom the sync is for.
    """
    if trigger not in JOB_TRIGGERS:
        expected = ", ".join(sorted(JOB_TRIGGERS))
        raise ValueError(f"unknown sync trigger {trigger!r} (expected one of {expected})")
    full_name = full_name.strip()
    if full_name.count("/") != 1 or not all(full_name.split("/")):
        raise ValueError(f"a repository is 'owner/name', got {full_name!r}")
    guid = f"{_GUID_PREFIX}{uuid.uuid4()}"
    payload: dict[str, Any] = {
        "repository_id": repository_id,
        "full_name": full_name,
        "branch": branch,
        "sha": sha,
        "trigger": trigger,
        "guild_id": guild_id,
    }
    deliveries.record_delivery(session, guid, SYNC_EVENT, None, None, repository_id, payload)
    return guid
