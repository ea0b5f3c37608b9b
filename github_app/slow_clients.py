"""Bounded read timeouts, so connections from slow or idle clients cannot pile up.

uvicorn closes idle keep-alive connections, but waits forever for a request whose headers or
body trickle in. `BoundedH11Protocol` closes a connection whose request headers are not complete
HEADER_TIMEOUT seconds after it opened (or after its previous response); `BodyReadTimeout`
(ASGI middleware) ends a request whose next body chunk takes longer than BODY_TIMEOUT seconds,
which the app then sees as a client disconnect. `guildprompts serve` uses both.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 10.0


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers."""

    header_timeout = HEADER_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # the headers are in

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


class BodyReadTimeout:
    """Turns a body chunk that does not come within `timeout` seconds into a disconnect."""

    def __init__(self, app: ASGIApp, timeout: float = BODY_TIMEOUT) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def bounded() -> Message:
            try:
                return await asyncio.wait_for(receive(), self.timeout)
            except TimeoutError:
                return {"type": "http.disconnect"}

        await self.app(scope, bounded, send)


def server_options() -> dict[str, Any]:
    """uvicorn options for every guildprompts web process."""
    return {"http": BoundedH11Protocol, "timeout_keep_alive": 5}
