"""WEBHOOK_PROXY_URL: deliveries from a smee.io channel reach the webhook endpoint as GitHub's.

The channel here speaks smee's protocol (server-sent events whose `data` is the delivery's
headers as keys and its parsed `body`); the first stream closes early, as smee's do, so the
forwarder must reconnect to get the second delivery.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from github_app.store import deliveries
from tests.fakegithub import FakeGitHub, serve_on_loopback, sign
from tests.harness import app_env, make_runtime, make_settings, served, wait_for


def smee_event(
    fake: FakeGitHub, payload: dict[str, Any], secret: str | None = None
) -> tuple[str, str]:
    """One delivery as smee streams it; GitHub signs its compact UTF-8 JSON."""
    guid = str(uuid.uuid4())
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    data = {
        "host": "smee.io",
        "content-type": "application/json",
        "user-agent": "GitHub-Hookshot/fake",
        "x-github-event": "ping",
        "x-github-delivery": guid,
        "x-hub-signature-256": sign(body, secret or fake.webhook_secret),
        "body": payload,
        "query": {},
        "timestamp": 1764750000000,
    }
    return guid, f"id: {guid}\ndata: {json.dumps(data)}\n\n"


class Channel:
    """A smee channel: each connection gets `ready`, then the next batch of events."""

    def __init__(self, batches: list[list[str]]) -> None:
        self.batches = batches
        self.connections = 0

    async def stream(self, request: Request) -> StreamingResponse:
        self.connections += 1
        batch = self.batches.pop(0) if self.batches else []
        last = not self.batches

        async def events() -> AsyncIterator[str]:
            yield "event: ready\ndata: {}\n\n"
            for event in batch:
                yield event
            while last:  # the last connection stays open, as a quiet channel does
                await asyncio.sleep(0.05)
                yield ": keep-alive\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


def test_deliveries_from_a_smee_channel_are_verified_and_stored(sqlite_url: str) -> None:
    fake = FakeGitHub()
    first, first_event = smee_event(fake, {"zen": "Keep it logically awesome.", "hook_id": 1})
    forged, forged_event = smee_event(fake, {"zen": "forged"}, secret="not-the-secret-at-all")
    second, second_event = smee_event(fake, {"zen": "Non-ASCII: é ü 漢", "hook_id": 2})
    channel = Channel([[first_event, forged_event], [second_event]])
    smee = Starlette(routes=[Route("/channel", channel.stream)])
    with serve_on_loopback(smee) as smee_url:
        settings = make_settings(
            sqlite_url, **app_env(fake), WEBHOOK_PROXY_URL=f"{smee_url}/channel"
        )
        runtime = make_runtime(settings, fake)
        with served(runtime, run_worker=False):

            def stored(guid: str) -> bool:
                return runtime.in_session(deliveries.get_delivery, guid) is not None

            wait_for(lambda: stored(first) and stored(second), timeout=15, what="both deliveries")
            assert not stored(forged)
    assert channel.connections >= 2
