"""`ping`: GitHub checks the webhook works (sent when the App's webhook is set or edited)."""

from __future__ import annotations

import logging

from github_app.handlers.common import HandlerContext, mapping
from github_app.webhooks import Delivery, Router

log = logging.getLogger("guildprompts.handlers.ping")
router = Router()


@router.register("ping")
async def on_ping(delivery: Delivery, ctx: HandlerContext) -> None:
    """Nothing to do but say so; a hook of another App means GitHub points elsewhere too."""
    hook = mapping(delivery.payload.get("hook"))
    app_id = hook.get("app_id")
    expected = ctx.runtime.credentials.app_id
    if app_id is not None and expected and str(app_id) != str(expected):
        log.warning(
            "ping from the webhook of App %s, but this service is App %s: check the "
            "App's webhook URL",
            app_id,
            expected,
        )
        return
    log.info("ping from GitHub: the App's webhook reaches this service")
