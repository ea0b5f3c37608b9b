"""Every event handler, one small module per event family, merged into one `router`.

The worker dispatches each stored delivery with `router.dispatch(delivery, ctx)`, where `ctx`
is a `HandlerContext`. Events without a handler (or actions nobody registered) are simply done.
"""

from __future__ import annotations

from github_app.handlers import (
    check_requests,
    installation_events,
    ping,
    push,
    repositories,
    sync_jobs,
)
from github_app.handlers.common import HandlerContext
from github_app.webhooks import Router

router = Router(
    push.router,
    check_requests.router,
    installation_events.router,
    repositories.router,
    ping.router,
    sync_jobs.router,
)

__all__ = ["HandlerContext", "router"]
