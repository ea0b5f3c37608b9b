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

from github_app.store import deliveries, layers
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


def enqueue_rebases(
    session: Session,
    full_name: str,
    refs: list[str],
    *,
    skip: tuple[int, str] | None = None,
) -> int:
    """Queue a `rebase` sync of every branch whose head extends `full_name` at one of `refs`
    (its base moved, or who may read it changed); returns how many."""
    queued = 0
    for ref in refs:
        for dependent in layers.dependents(session, full_name, ref):
            if (dependent.repository_id, dependent.branch) == skip:
                continue
            enqueue_sync(
                session,
                full_name=dependent.full_name,
                repository_id=dependent.repository_id,
                branch=dependent.branch,
                trigger="rebase",
            )
            queued += 1
    return queued
