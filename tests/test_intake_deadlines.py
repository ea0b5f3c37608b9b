"""Intake never makes GitHub wait past its deadline: a locked SQLite file gets a prompt 503, and
clients that send their headers or body too slowly are cut off."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from github_app import intake, slow_clients
from tests.harness import harness

pytestmark = pytest.mark.anyio


async def test_a_locked_sqlite_file_gets_a_503_within_a_few_seconds(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intake, "STORE_WAIT", 1.0)
    async with harness(sqlite_url) as world:
        path = sqlite_url.removeprefix("sqlite:///")
        other = sqlite3.connect(path, isolation_level=None)  # another process's writer
        other.execute("BEGIN IMMEDIATE")
        try:
            hook = world.fake.webhook("ping", world.fake.ping_payload())
            started = time.monotonic()
            response = await world.post(hook)
            waited = time.monotonic() - started
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert response.status_code == 503, response.text
        assert waited < 3.0, f"answered after {waited:.1f} s"
        again = await world.post(hook)  # GitHub's redelivery, once the lock is gone
        assert again.status_code == 202, again.text


@pytest.fixture
def slow_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """An app echoing the body size, served as `guildprompts serve` serves (both bounds on)."""
    monkeypatch.setattr(slow_clients.BoundedH11Protocol, "header_timeout", 0.5)

    async def echo(request: Request) -> JSONResponse:
        try:
            body = await request.body()
        except Exception:
            return JSONResponse({"error": "the request body was cut short"}, status_code=400)
        return JSONResponse({"size": len(body)})

    app = slow_clients.BodyReadTimeout(
        Starlette(routes=[Route("/", echo, methods=["POST"])]), timeout=0.5
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", **slow_clients.server_options())
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _closed_within(connection: socket.socket, seconds: float) -> bytes:
    connection.settimeout(seconds)
    chunks = []
    while True:
        chunk = connection.recv(4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_headers_that_trickle_in_are_cut_off(slow_server: int) -> None:
    with socket.create_connection(("127.0.0.1", slow_server)) as connection:
        connection.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        started = time.monotonic()
        assert _closed_within(connection, 5) == b""
        assert time.monotonic() - started < 3


def test_a_body_that_stalls_is_cut_off(slow_server: int) -> None:
    with socket.create_connection(("127.0.0.1", slow_server)) as connection:
        connection.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
        started = time.monotonic()
        connection.settimeout(5)
        answer = connection.recv(4096)
        assert time.monotonic() - started < 3
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_a_prompt_client_is_served(slow_server: int) -> None:
    response = httpx.post(f"http://127.0.0.1:{slow_server}/", content=b"x" * 1000)
    assert response.json() == {"size": 1000}
