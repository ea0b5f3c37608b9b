"""WEBHOOK_PROXY_URL: webhooks through a smee.io channel, for trying the App on a laptop.

GitHub cannot reach 127.0.0.1. Probot's answer, kept here with its variable name: point the App's
webhook URL at a smee.io channel and let the service read the channel's event stream and replay
each delivery to its own webhook endpoint, with GitHub's headers and body, so that signature
verification, storage and acknowledgement run exactly as for a direct delivery. The replay goes
through the web app in-process (no port to know); the stream is re-opened after any failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.types import ASGIApp

from github_app.intake import WEBHOOK_PATH

log = logging.getLogger("guildprompts.webhook_proxy")

RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)  # seconds before re-opening a closed stream
# The headers of GitHub's request that the endpoint reads; smee sends each as a JSON key.
FORWARDED = ("content-type", "user-agent", "x-github-event", "x-github-delivery")
FORWARDED_PREFIXES = ("x-hub-signature", "x-github-hook-")


async def forward(proxy_url: str, app: ASGIApp, stop: asyncio.Event) -> None:
    """Replay every delivery the channel streams to `app`'s webhook endpoint until `stop`."""
    failures = 0
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as channel,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as web,
    ):
        while not stop.is_set():
            try:
                async for data in _messages(channel, proxy_url, stop):
                    failures = 0
                    await _replay(web, data)
            except (httpx.HTTPError, OSError) as exc:
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                log.warning(
                    "webhook proxy %s: %s; reconnecting in %.0f s",
                    proxy_url,
                    type(exc).__name__,
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)


async def _messages(
    channel: httpx.AsyncClient, url: str, stop: asyncio.Event
) -> AsyncIterator[dict[str, Any]]:
    """Each `message` event's JSON from the channel's server-sent event stream."""
    async with channel.stream("GET", url, headers={"Accept": "text/event-stream"}) as response:
        response.raise_for_status()
        log.info("webhook proxy: forwarding %s to %s", url, WEBHOOK_PATH)
        event, data = "message", []
        async for line in response.aiter_lines():
            if stop.is_set():
                return
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif not line:
                if event == "message" and data:
                    try:
                        parsed = json.loads("\n".join(data))
                    except ValueError:
                        parsed = None
                    if isinstance(parsed, dict) and "body" in parsed:
                        yield parsed
                event, data = "message", []
    raise httpx.ReadError("the channel closed its stream")


async def _replay(web: httpx.AsyncClient, data: dict[str, Any]) -> None:
    """POST the delivery as GitHub sent it: smee hands the body back parsed, so it is written
    again the way GitHub writes JSON (compact, UTF-8), which the signature was computed over."""
    body = json.dumps(data["body"], ensure_ascii=False, separators=(",", ":")).encode()
    headers = {
        key: str(value)
        for key, value in data.items()
        if key.lower() in FORWARDED or key.lower().startswith(FORWARDED_PREFIXES)
    }
    response = await web.post(WEBHOOK_PATH, content=body, headers=headers)
    log.info(
        "webhook proxy: delivery %s (%s) answered %d",
        headers.get("x-github-delivery", "?"),
        headers.get("x-github-event", "?"),
        response.status_code,
    )
