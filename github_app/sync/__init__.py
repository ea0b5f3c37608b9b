"""Sync: a commit of a prompt repository -> snapshot -> validation -> activation.

`flow` holds the one code path; `request` the types it takes and gives, `access`, `content`,
`records` and `messages` its steps, `jobs` the internal work items that ask for a sync.
"""

from github_app.sync.flow import sync
from github_app.sync.request import TRIGGERS, SyncOutcome, SyncRequest

__all__ = ["TRIGGERS", "SyncOutcome", "SyncRequest", "sync"]
