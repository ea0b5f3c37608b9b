"""Shared pieces of the bridge's tests: a runtime, store states set up directly, the bridge app.

Most bridge tests need "guild G is bound to repository R whose branch serves commit C" without
running a sync: `Store` writes exactly that through the store's public functions (snapshots,
activation, branch status, bindings), so cache and API tests do not depend on the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from starlette.applications import Starlette

from bot_bridge.api import bridge_routes
from bot_bridge.cache import ResolverCache
from bot_bridge.invalidation import listen
from github_app.intake import WEBHOOK_PATH, webhook_route
from github_app.runtime import Runtime, build_runtime
from github_app.secrets import generate_key
from github_app.settings import Settings
from github_app.store import bindings, branches, installations, snapshots
from github_app.store.models import BindingState, BranchStatus
from github_app.worker import Worker
from tests.fakegithub import FakeGitHub

TOKEN = "bridge-token-7d1c9a0e55f2"
GITHUB_URL = "https://github.test"
INSTALLATION = 77
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

PATH_FILE = (
    b"version: v2\n"
    b"routes:\n"
    b'  by_type: "prompts/{category}/{type}.md"\n'
    b'  by_category: "prompts/{category}/default.md"\n'
    b'  fallback: "prompts/default.md"\n'
    b"fallback_chain: [by_type, by_category, fallback]\n"
)
SCHEMA = b"v2\n"


def prompt_files(marker: str, path_file: bytes = PATH_FILE) -> dict[str, bytes]:
    """A small valid repository whose prompts all start with `marker`."""
    return {
        "PATH": path_file,
        "schema-version": SCHEMA,
        "prompts/default.md": f"{marker} default for {{category}} in {{guild}}: {{messages}}\n"
        .encode(),
        "prompts/meeting/default.md": f"{marker} meeting ({{type}}): {{messages}}\n".encode(),
        "prompts/meeting/brief.md": (
            "---\nparameters: {max_tokens: 300}\n---\n"
            f"{marker} brief meeting in #{{channel}}: {{messages}} {{unknown_thing}}\n"
        ).encode(),
    }


def make_settings(database_url: str, **env: str) -> Settings:
    values = {
        "DATABASE_URL": database_url,
        "ENCRYPTION_KEYS": generate_key(),
        "BRIDGE_TOKENS": TOKEN,
        "GITHUB_API_URL": "https://api.github.test",
        "GITHUB_URL": GITHUB_URL,
        "GITHUB_APP_SLUG": "guildprompts-test",
        "GENERATION_POLL_INTERVAL": "0.2",
        **env,
    }
    return Settings.from_env(values, env_file=None)


def make_runtime(database_url: str, **env: str) -> Runtime:
    return build_runtime(make_settings(database_url, **env), auto_upgrade=True)


@dataclass
class Store:
    """Writes bridge-relevant states straight into the store of `runtime`."""

    runtime: Runtime
    pushes: int = 0

    def db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.runtime.in_session(fn, *args, **kwargs)

    def repository(
        self, full_name: str = "octo-org/prompts", repository_id: int = 1, *,
        private: bool = False, installed: bool = True, default_branch: str = "main",
    ) -> int:
        def write(session: Any) -> None:
            if installed:
                installations.upsert_installation(session, INSTALLATION, "octo-org")
            installations.upsert_repository(
                session, repository_id, full_name, private=private,
                default_branch=default_branch,
                installation_id=INSTALLATION if installed else None,
            )

        self.db(write)
        return repository_id

    def commit(
        self, repository_id: int, files: Mapping[str, bytes], *, branch: str = "main",
        valid: bool = True, diagnostics: list[dict[str, Any]] | None = None,
        status: BranchStatus | None = None, message: str | None = None,
    ) -> str:
        """Store a commit of `files` on `branch`; a valid one becomes active (like a sync)."""
        self.pushes += 1
        blob_ids = {path: snapshots.git_blob_sha(content) for path, content in files.items()}
        sha = snapshots.git_blob_sha(repr((repository_id, branch, self.pushes,
                                           sorted(blob_ids.items()))).encode())
        found = diagnostics or []

        def write(session: Any) -> None:
            snapshots.store_blobs(session, {blob_ids[p]: c for p, c in files.items()})
            snapshot = snapshots.create_snapshot(
                session, repository_id, sha, blob_ids, valid=valid, diagnostics=found
            )
            branches.note_head(session, repository_id, branch, sha,
                               T0 + timedelta(minutes=self.pushes))
            if valid:
                branches.activate(session, repository_id, branch, snapshot.id,
                                  T0 + timedelta(minutes=self.pushes))
            chosen = status or (BranchStatus.OK if valid else BranchStatus.REJECTED)
            text = message if message is not None else (
                f"serving {sha[:7]}" if valid else f"{sha[:7]} rejected"
            )
            branches.set_branch_status(session, repository_id, branch, chosen, text,
                                       diagnostics=found, synced_at=T0)

        self.db(write)
        return sha

    def bind(
        self, guild_id: str, full_name: str = "octo-org/prompts", repository_id: int | None = 1,
        *, branch: str | None = None, actor: str = "42", token: str | None = None,
    ) -> None:
        current = self.db(bindings.get_binding, guild_id)
        self.db(
            bindings.set_binding, guild_id, repository_full_name=full_name,
            repository_id=repository_id, branch=branch, actor=actor,
            expected_version=current.version if current is not None else None,
            token=token, vault=self.runtime.vault,
        )

    def branch_status(self, repository_id: int, status: BranchStatus, message: str,
                      branch: str = "main") -> None:
        def write(session: Any) -> None:
            branches.set_branch_status(session, repository_id, branch, status, message)
            branches.bump_generation(session)

        self.db(write)

    def lose_access(self, guild_id: str, message: str) -> None:
        self.db(bindings.set_binding_state, guild_id, BindingState.NO_ACCESS, message)

    def generation(self) -> int:
        return int(self.db(branches.current_generation))


def bridge_app(runtime: Runtime, cache: ResolverCache, **options: Any) -> Starlette:
    return Starlette(routes=bridge_routes(runtime, cache, **options))


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def running_bridge(
    runtime: Runtime, *, size: int = 1000, **options: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, ResolverCache]]:
    """The bridge routes in-process (ASGI) with the invalidation listener running."""
    cache = ResolverCache(runtime, size)
    stop = asyncio.Event()
    listener = asyncio.create_task(listen(runtime, cache, stop))
    transport = httpx.ASGITransport(app=bridge_app(runtime, cache, **options))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge.test",
                                     headers=bearer()) as client:
            yield client, cache
    finally:
        stop.set()
        await asyncio.wait_for(listener, 10)


async def eventually(probe: Any, timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Await `probe()` until it returns something truthy; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while loop.time() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s: last value {last!r}")


# ---- a world with the fake GitHub, intake, the worker and the bridge --------------------------

FULL_NAME = "octo-org/prompts"


@dataclass
class World:
    """The fake GitHub, one runtime, and one ASGI app with intake and the bridge, while a worker
    and the cache's invalidation listener run in the background (as in `serve`)."""

    fake: FakeGitHub
    runtime: Runtime
    http: httpx.AsyncClient
    cache: ResolverCache
    installation_id: int | None
    repository_id: int

    def push(self, files: Mapping[str, Any], branch: str = "main", **options: Any) -> str:
        """Commit on the fake only (no webhook: as if it were missed)."""
        return self.fake.push(FULL_NAME, branch, dict(files), **options)

    async def deliver(self, event: str, payload: Mapping[str, Any]) -> httpx.Response:
        hook = self.fake.webhook(event, dict(payload))
        response = await self.http.post(WEBHOOK_PATH, content=hook.body, headers=hook.headers)
        assert response.status_code == 202, response.text
        return response

    async def pushed(self, files: Mapping[str, Any], branch: str = "main") -> str:
        """Commit on the fake and deliver its push webhook; returns the commit sha."""
        sha = self.push(files, branch)
        await self.deliver("push", self.fake.push_payload(FULL_NAME, branch))
        return sha

    async def prompt(self, guild: str, **query: str) -> dict[str, Any]:
        response = await self.http.get(f"/bridge/v1/guilds/{guild}/prompt", params=query)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def bind(self, guild: str, repository: str = FULL_NAME, **body: Any) -> httpx.Response:
        payload = {"repository": repository, "branch": None, "token": None, "actor": "42", **body}
        return await self.http.put(f"/bridge/v1/guilds/{guild}/config", json=payload)

    def db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.runtime.in_session(fn, *args, **kwargs)


@contextlib.asynccontextmanager
async def bridge_world(
    database_url: str, *, private: bool = False, installed: bool = True, wait: float = 8.0,
    **env: str,
) -> AsyncIterator[World]:
    """`octo-org/prompts` on the fake (public unless told; installed unless told, with its
    installation event already delivered, as in production)."""

    fake = FakeGitHub()
    installation_id = fake.add_installation("octo-org") if installed else None
    repository_id = fake.add_repo(FULL_NAME, private=private, installation=installation_id)
    runtime = build_runtime(
        make_settings(database_url, GITHUB_APP_ID=str(fake.app_id),
                      GITHUB_PRIVATE_KEY=fake.private_key_pem,
                      GITHUB_WEBHOOK_SECRET=fake.webhook_secret,
                      GITHUB_APP_SLUG=fake.app_slug, **env),
        transport=httpx.ASGITransport(app=fake), auto_upgrade=True,
    )
    runtime.github = fake.github_client()  # the fake's clock; retries that do not really sleep
    runtime.auth = runtime.github.auth
    cache = ResolverCache(runtime, 1000)
    app = Starlette(routes=[webhook_route(runtime), *bridge_routes(runtime, cache, wait=wait)])
    stop = asyncio.Event()
    tasks = [asyncio.create_task(listen(runtime, cache, stop)),
             asyncio.create_task(Worker(runtime, poll_interval=0.05).run(stop))]
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge.test",
                                     headers=bearer(), timeout=30) as http:
            world = World(fake, runtime, http, cache, installation_id, repository_id)
            if installation_id is not None:
                await world.deliver("installation", fake.installation_payload(installation_id))
            yield world
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
        await runtime.aclose()
