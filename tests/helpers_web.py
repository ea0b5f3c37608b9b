"""Shared pieces of the web app's tests: a runtime over the fake GitHub, the app on loopback.

The app runs under a real uvicorn in a thread (`serve_on_loopback` with its lifespan on), so
requests go through HTTP and the lifespan starts and stops the background tasks as in `serve`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
from fakegithub import FakeGitHub, serve_on_loopback

from github_app.runtime import Runtime, build_runtime
from github_app.secrets import generate_key
from github_app.settings import Settings

BRIDGE_TOKEN = "bridge-token-3c1f0e5a9b7d4e21"
FAKE_API_URL = "https://api.github.test"
T = TypeVar("T")


def app_env(fake: FakeGitHub) -> dict[str, str]:
    """The variables that configure the fake's App."""
    return {
        "GITHUB_APP_ID": str(fake.app_id),
        "GITHUB_APP_SLUG": fake.app_slug,
        "GITHUB_PRIVATE_KEY": fake.private_key_pem,
        "GITHUB_WEBHOOK_SECRET": fake.webhook_secret,
    }


def make_settings(database_url: str, **env: str) -> Settings:
    base = {
        "DATABASE_URL": database_url,
        "ENCRYPTION_KEYS": generate_key(),
        "BRIDGE_TOKENS": BRIDGE_TOKEN,
        "GITHUB_API_URL": FAKE_API_URL,
        "GENERATION_POLL_INTERVAL": "0.2",
    }
    return Settings.from_env({**base, **env}, env_file=None)


def make_runtime(settings: Settings, fake: FakeGitHub | None = None) -> Runtime:
    transport = httpx.ASGITransport(app=fake) if fake is not None else None
    return build_runtime(settings, transport=transport, auto_upgrade=True)


@contextmanager
def served(runtime: Runtime, *, run_worker: bool = True) -> Iterator[httpx.Client]:
    """`create_app(runtime)` under uvicorn on loopback, and a client for it."""
    from github_app.web import create_app

    app = create_app(runtime, run_worker=run_worker)
    with serve_on_loopback(app, lifespan="on") as url, httpx.Client(
        base_url=url, timeout=15
    ) as client:
        yield client


def bearer(token: str = BRIDGE_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for(probe: Callable[[], T | None], timeout: float = 10.0, what: str = "") -> T:
    """Call `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or probe}: {last!r}")
