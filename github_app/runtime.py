"""What one guildprompts process holds: settings, database, vault, GitHub client, wake-ups.

`serve` and `worker` build one `Runtime` at start-up and hand it to the web app, the worker and
the background loops, so every part shares one engine, one token cache and one client instead of
each opening its own. Database work from async code goes through `run_db`, which runs a function
in a worker thread inside one transaction, so the event loop never waits on a query.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import anyio.to_thread
import httpx

from github_app import metrics
from github_app.auth import AppAuth
from github_app.bridge.tokens import DISABLED, with_bridge_tokens
from github_app.github import GitHubClient
from github_app.logs import register_secret
from github_app.secrets import Vault, load_vault
from github_app.settings import Settings
from github_app.store import credentials
from github_app.store.db import Database
from github_app.store.migrate import open_database

log = logging.getLogger("guildprompts.runtime")

T = TypeVar("T")

GIL_SWITCH_INTERVAL = 0.0005
"""Seconds a thread may hold the GIL before yielding (Python's default is 0.005)."""
CREDENTIALS_RECHECK = 1.0
"""Seconds between reads of stored App credentials while this process has none."""
ActivationListener = Callable[[int], Awaitable[None] | None]


@dataclass(frozen=True)
class AppCredentials:
    """The App's identity: from the environment, else from the manifest flow's stored secrets."""

    app_id: str = ""
    slug: str = ""
    private_key: str = ""
    webhook_secrets: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Enough to authenticate and verify webhooks (what `refresh_credentials` waits for)."""
        return bool(self.app_id and self.private_key and self.webhook_secrets)


@dataclass
class Runtime:
    settings: Settings
    database: Database
    vault: Vault
    credentials: AppCredentials
    github: GitHubClient
    auth: AppAuth | None
    work_available: asyncio.Event = field(default_factory=asyncio.Event)
    _activation_listeners: list[ActivationListener] = field(default_factory=list)
    _credentials_checked: float = 0.0

    @property
    def app_configured(self) -> bool:
        return self.auth is not None and bool(self.credentials.webhook_secrets)

    async def refresh_credentials(self) -> bool:
        """Whether the App is configured, reading credentials another process's /setup stored.

        Every process picks up the App created through /setup at its next request or loop
        turn, without a restart; while none is configured the database is asked at most once
        per CREDENTIALS_RECHECK seconds, so a stream of requests costs nothing.
        """
        if self.app_configured:
            return True
        now = time.monotonic()
        if now - self._credentials_checked < CREDENTIALS_RECHECK:
            return False
        self._credentials_checked = now
        try:
            found = await anyio.to_thread.run_sync(
                _app_credentials, self.settings, self.database, self.vault
            )
            if found.complete and found != self.credentials:
                self.use_credentials(found)
                log.info("the GitHub App %s (id %s) is configured", found.slug, found.app_id)
        except Exception as exc:  # the next check retries; serving goes on meanwhile
            log.warning("could not load the stored App credentials: %s", exc)
        return self.app_configured

    def expect_credentials(self) -> None:
        """New credentials were just stored: the next `refresh_credentials` reads them."""
        self._credentials_checked = 0.0

    def use_credentials(self, found: AppCredentials) -> None:
        """Authenticate as `found` from now on (this process's client included)."""
        self.auth = AppAuth(found.app_id, found.private_key) if found.complete else None
        self.github.auth = self.auth
        self.credentials = found

    async def run_db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(session, *args, **kwargs)` in a thread, in one transaction; its result."""
        return await anyio.to_thread.run_sync(partial(self.in_session, fn, *args, **kwargs))

    def in_session(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.database.session() as session:
            return fn(session, *args, **kwargs)

    async def run_db_within(
        self, wait: float, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """`run_db`, but `DatabaseUnavailableError` when the write lock is not had in `wait` s."""

        def work() -> T:
            with self.database.session(wait=wait) as session:
                return fn(session, *args, **kwargs)

        return await anyio.to_thread.run_sync(work)

    def wake_worker(self) -> None:
        """New work is stored: an in-process worker starts on it now instead of at its next poll."""
        self.work_available.set()

    def on_activation(self, listener: ActivationListener) -> Callable[[], None]:
        """Call `listener(generation)` after every activation this process commits.

        Returns the function that unsubscribes it (for listeners that stop before the process).
        """
        self._activation_listeners.append(listener)
        return lambda: self._activation_listeners.remove(listener)

    async def announce_activation(self, generation: int) -> None:
        """Tell this process's listeners (the resolver cache, the Redis publisher) at once."""
        for listener in list(self._activation_listeners):
            try:
                result = listener(generation)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("an activation listener failed (generation %s)", generation)

    async def aclose(self) -> None:
        await self.github.aclose()
        self.database.dispose()


def build_runtime(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    auto_upgrade: bool | None = None,
) -> Runtime:
    """Open the database (upgrading an embedded one), the vault and the GitHub client.

    `transport` lets tests route the GitHub client to the fake GitHub in-process.
    """
    settings = with_bridge_tokens(settings)
    _register_configured_secrets(settings)
    if not settings.bridge_tokens:
        log.warning(DISABLED)
    database = open_database(settings.database_url, auto_upgrade=auto_upgrade)
    try:
        vault = load_vault(settings)
        app = _app_credentials(settings, database, vault)
    except BaseException:
        database.dispose()
        raise
    auth = AppAuth(app.app_id, app.private_key) if app.app_id and app.private_key else None
    github = GitHubClient(
        settings.github_api_url,
        auth=auth,
        transport=transport,
        on_request=metrics.record_github_request,
        pool_size=settings.sync_concurrency,
    )
    return Runtime(settings, database, vault, app, github, auth)


def _app_credentials(settings: Settings, database: Database, vault: Vault) -> AppCredentials:
    if settings.github_app_id:
        return AppCredentials(
            settings.github_app_id,
            settings.github_app_slug,
            settings.private_key_pem(),
            settings.github_webhook_secrets,
        )
    with database.session() as session:
        stored = {
            name: credentials.get_secret(session, vault, name)
            for name in (
                credentials.APP_ID,
                credentials.APP_SLUG,
                credentials.PRIVATE_KEY,
                credentials.WEBHOOK_SECRET,
            )
        }
    register_secret(stored[credentials.PRIVATE_KEY])
    register_secret(stored[credentials.WEBHOOK_SECRET])
    secret = stored[credentials.WEBHOOK_SECRET]
    return AppCredentials(
        stored[credentials.APP_ID] or "",
        stored[credentials.APP_SLUG] or settings.github_app_slug,
        stored[credentials.PRIVATE_KEY] or "",
        (secret,) if secret else settings.github_webhook_secrets,
    )


def _register_configured_secrets(settings: Settings) -> None:
    """Every secret the settings hold is masked in logs from the first line on."""
    for value in (
        settings.github_private_key,
        settings.github_client_secret,
        *settings.github_webhook_secrets,
        *settings.encryption_keys,
        *settings.bridge_tokens,
    ):
        register_secret(value)
    if settings.github_private_key_path:
        register_secret(settings.private_key_pem())


def save_app_credentials(database: Database, vault: Vault, values: dict[str, str]) -> None:
    """The manifest flow's result, encrypted; `values` is keyed by environment variable name."""
    names = {
        "GITHUB_APP_ID": credentials.APP_ID,
        "GITHUB_APP_SLUG": credentials.APP_SLUG,
        "GITHUB_PRIVATE_KEY": credentials.PRIVATE_KEY,
        "GITHUB_WEBHOOK_SECRET": credentials.WEBHOOK_SECRET,
        "GITHUB_CLIENT_ID": credentials.CLIENT_ID,
        "GITHUB_CLIENT_SECRET": credentials.CLIENT_SECRET,
    }
    with database.session() as session:
        for env_name, value in values.items():
            if env_name in names and value:
                credentials.put_secret(session, vault, names[env_name], value)


def favour_event_loop() -> None:
    """Let the event loop answer HTTP while worker threads do database work.

    `run_db` threads (the in-process worker's claims and syncs) would otherwise hold the GIL for
    5 ms slices and the webhook acknowledgement waits behind them: `bench/bench_webhooks.py`
    measured p99 77-94 ms with the worker in-process at 200 deliveries/s, 14 ms with 0.5 ms.
    """
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
