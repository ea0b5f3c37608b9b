"""The one test harness: the fake GitHub, a Runtime reading it in-process, and worlds built on them.

Layers, smallest first, so each test takes only what it needs:
- settings and runtimes: `make_settings`, `make_runtime`, `runtime_for` (the fake's own client,
  whose retries do not sleep), `bridge_runtime` (no App, the bridge's URLs);
- `Store`: bridge-relevant states written straight into the store (no sync, no worker);
- `World` (sync and checks), `Harness` (adds the intake route and the worker's `drain`) and
  `BridgeWorld` (intake + bridge routes with a worker and the cache listener in the background);
- small pieces: signed webhooks, `ManifestForm` for /setup, polling helpers, the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeVar

import httpx
from starlette.applications import Starlette

from github_app.bridge.invalidation import listen
from github_app.bridge.resolver_cache import ResolverCache
from github_app.bridge.routes import bridge_routes
from github_app.intake import WEBHOOK_PATH, webhook_route
from github_app.runtime import Runtime, build_runtime
from github_app.secrets import generate_key
from github_app.settings import Settings
from github_app.store import bindings, branches, deliveries, installations, serving, snapshots
from github_app.store.models import BindingState, BranchStatus, DeliveryRow
from github_app.store.serving import GuildState
from github_app.sync import SyncOutcome, SyncRequest, sync
from github_app.worker import Worker
from tests.fakegithub import FakeGitHub, Webhook, serve_on_loopback
from tests.store_helpers import save_binding

T = TypeVar("T")
WEBHOOK_FIXTURES = Path(__file__).parent / "fixtures" / "github-webhooks"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

API_URL = "https://api.github.test"
GITHUB_URL = "https://github.test"
TOKEN = "bridge-token-7d1c9a0e55f2"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FULL_NAME = "octo-org/prompts"
INSTALLATION = 77  # the installation `Store` writes (no fake behind it)
GUILD = "111111111111111111"
OTHER_GUILD = "222222222222222222"

# ---- repository contents ----------------------------------------------------------------------

ROUTES = b'routes:\n  by_type: "prompts/{category}/{type}.md"\n  default: "prompts/default.md"\n'
BROKEN_PATH = b"routes: [\n"


def valid_files(*allowed_guilds: str) -> dict[str, bytes]:
    """A small valid repository whose PATH allows `allowed_guilds`."""
    allowed = f"allowed_guilds: {json.dumps(list(allowed_guilds))}\n".encode()
    return {
        "PATH": ROUTES + allowed,
        "prompts/default.md": b"Summarise {messages}\n",
        "prompts/meeting/brief.md": b"Briefly summarise the meeting: {messages}\n",
    }


VALID = valid_files(GUILD, OTHER_GUILD)
VALID_FOR_GUILD = valid_files(GUILD)  # OTHER_GUILD is not listed

PATH_FILE = (
    b"version: v2\n"
    b"routes:\n"
    b'  by_type: "prompts/{category}/{type}.md"\n'
    b'  by_category: "prompts/{category}/default.md"\n'
    b'  fallback: "prompts/default.md"\n'
    b"fallback_chain: [by_type, by_category, fallback]\n"
)


def prompt_files(marker: str, path_file: bytes = PATH_FILE) -> dict[str, bytes]:
    """A schema-v2 repository whose prompts all start with `marker`."""
    return {
        "PATH": path_file,
        "schema-version": b"v2\n",
        "prompts/default.md": (
            f"{marker} default for {{category}} in {{guild}}: {{messages}}\n".encode()
        ),
        "prompts/meeting/default.md": f"{marker} meeting ({{type}}): {{messages}}\n".encode(),
        "prompts/meeting/brief.md": (
            "---\nparameters: {max_tokens: 300}\n---\n"
            f"{marker} brief meeting in #{{channel}}: {{messages}} {{unknown_thing}}\n"
        ).encode(),
    }


def fixture_payload(event: str, name: str = "payload") -> dict[str, Any]:
    """A real payload example (tests/fixtures/README.md says where they come from)."""
    return json.loads((WEBHOOK_FIXTURES / event / f"{name}.json").read_text())


# ---- settings and runtimes ---------------------------------------------------------------------


def app_env(fake: FakeGitHub) -> dict[str, str]:
    """The variables that configure the fake's App."""
    return {
        "GITHUB_APP_ID": str(fake.app_id),
        "GITHUB_APP_SLUG": fake.app_slug,
        "GITHUB_PRIVATE_KEY": fake.private_key_pem,
        "GITHUB_WEBHOOK_SECRET": fake.webhook_secret,
    }


def make_settings(database_url: str, fake: FakeGitHub | None = None, **env: str) -> Settings:
    """Settings for tests; with `fake`, its App is configured."""
    values = {
        "DATABASE_URL": database_url,
        "ENCRYPTION_KEYS": generate_key(),
        "BRIDGE_TOKENS": TOKEN,
        "GITHUB_API_URL": API_URL,
        "GENERATION_POLL_INTERVAL": "0.2",
        **(app_env(fake) if fake is not None else {}),
    }
    return Settings.from_env({**values, **env}, env_file=None)


def make_runtime(settings: Settings, fake: FakeGitHub | None = None) -> Runtime:
    """A Runtime whose GitHub calls reach `fake` in-process (none without it)."""
    transport = httpx.ASGITransport(app=fake) if fake is not None else None
    return build_runtime(settings, transport=transport, auto_upgrade=True)


def runtime_for(database_url: str, fake: FakeGitHub | None, **env: str) -> Runtime:
    """A Runtime on the fake's App (None: no App configured); its client retries without
    sleeping, on the fake's clock."""
    runtime = make_runtime(make_settings(database_url, fake, **env), fake)
    if fake is not None:
        runtime.github = fake.github_client()
        runtime.auth = runtime.github.auth
    return runtime


def bridge_env(**env: str) -> dict[str, str]:
    """The bridge tests' web URL and App slug, which their answers' links are built from."""
    return {"GITHUB_URL": GITHUB_URL, "GITHUB_APP_SLUG": "guildprompts-test", **env}


def bridge_runtime(database_url: str, **env: str) -> Runtime:
    """A Runtime without the App, for states written through `Store`."""
    return make_runtime(make_settings(database_url, **bridge_env(**env)))


def fake_with_repository(
    *, private: bool, installed: bool = True
) -> tuple[FakeGitHub, int | None, int]:
    """The fake GitHub with `octo-org/prompts` (installed unless told): (fake, installation id,
    repository id)."""
    fake = FakeGitHub()
    installation_id = fake.add_installation("octo-org") if installed else None
    repository_id = fake.add_repo(FULL_NAME, private=private, installation=installation_id)
    return fake, installation_id, repository_id


async def post_webhook(client: httpx.AsyncClient, hook: Webhook) -> httpx.Response:
    """POST a signed delivery to intake, as GitHub does."""
    return await client.post(WEBHOOK_PATH, content=hook.body, headers=hook.headers)


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---- store states without a sync ---------------------------------------------------------------


@dataclass
class Store:
    """Writes bridge-relevant states straight into the store of `runtime`."""

    runtime: Runtime
    pushes: int = 0

    def db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.runtime.in_session(fn, *args, **kwargs)

    def repository(
        self,
        full_name: str = FULL_NAME,
        repository_id: int = 1,
        *,
        private: bool = False,
        installed: bool = True,
        default_branch: str = "main",
    ) -> int:
        def write(session: Any) -> None:
            if installed:
                installations.upsert_installation(session, INSTALLATION, "octo-org")
            installations.upsert_repository(
                session,
                repository_id,
                full_name,
                private=private,
                default_branch=default_branch,
                installation_id=INSTALLATION if installed else None,
            )

        self.db(write)
        return repository_id

    def commit(
        self,
        repository_id: int,
        files: Mapping[str, bytes],
        *,
        branch: str = "main",
        valid: bool = True,
        diagnostics: list[dict[str, Any]] | None = None,
        status: BranchStatus | None = None,
        message: str | None = None,
    ) -> str:
        """Store a commit of `files` on `branch`; a valid one becomes active (like a sync)."""
        self.pushes += 1
        blob_ids = {path: snapshots.git_blob_sha(content) for path, content in files.items()}
        sha = snapshots.git_blob_sha(
            repr((repository_id, branch, self.pushes, sorted(blob_ids.items()))).encode()
        )
        found = diagnostics or []

        def write(session: Any) -> None:
            snapshots.store_blobs(session, {blob_ids[p]: c for p, c in files.items()})
            snapshot = snapshots.create_snapshot(
                session, repository_id, sha, blob_ids, valid=valid, diagnostics=found
            )
            head = branches.head_state(session, repository_id, branch)
            assert branches.conclude_head(session, repository_id, branch, sha, None, head.version)
            if valid:
                branches.activate(session, repository_id, branch, snapshot.id)
            chosen = status or (BranchStatus.OK if valid else BranchStatus.REJECTED)
            text = (
                message
                if message is not None
                else (f"serving {sha[:7]}" if valid else f"{sha[:7]} rejected")
            )
            branches.set_branch_status(
                session, repository_id, branch, chosen, text, diagnostics=found, synced_at=T0
            )

        self.db(write)
        return sha

    def bind(
        self,
        guild_id: str,
        full_name: str = FULL_NAME,
        repository_id: int | None = 1,
        *,
        branch: str | None = None,
        actor: str = "42",
        token: str | None = None,
    ) -> None:
        current = self.db(bindings.get_binding, guild_id)
        self.db(
            save_binding,
            guild_id,
            repository_full_name=full_name,
            repository_id=repository_id,
            branch=branch,
            actor=actor,
            expected_version=current.version if current is not None else None,
            token=token,
            vault=self.runtime.vault,
        )

    def bound(self, guild_id: str, marker: str = "v1", **commit: Any) -> str:
        """`octo-org/prompts` serving `prompt_files(marker)` to `guild_id`; returns the sha."""
        self.repository()
        sha = self.commit(1, prompt_files(marker), **commit)
        self.bind(guild_id)
        return sha

    def bound_apart(self, public_guild: str, secret_guild: str) -> None:
        """Two guilds on two repositories: `octo-org/prompts` (id 1, prompts marked "public")
        and the private `octo-org/secret` (id 2, marked "secret")."""
        self.repository()
        self.repository("octo-org/secret", 2, private=True)
        self.commit(1, prompt_files("public"))
        self.commit(2, prompt_files("secret"))
        self.bind(public_guild)
        self.bind(secret_guild, "octo-org/secret", 2)

    def branch_status(
        self, repository_id: int, status: BranchStatus, message: str, branch: str = "main"
    ) -> None:
        def write(session: Any) -> None:
            branches.set_branch_status(session, repository_id, branch, status, message)
            branches.bump_generation(session)

        self.db(write)

    def lose_access(self, guild_id: str, message: str) -> None:
        self.db(bindings.set_binding_state, guild_id, BindingState.NO_ACCESS, message)

    def generation(self) -> int:
        return int(self.db(branches.current_generation))


# ---- worlds on the fake GitHub -----------------------------------------------------------------


@dataclass
class World:
    """The fake with `octo-org/prompts`, a Runtime on it, and shortcuts to push, bind and sync."""

    fake: FakeGitHub
    runtime: Runtime
    installation_id: int | None
    repository_id: int
    full_name: str = FULL_NAME
    announced: list[int] = field(default_factory=list)
    pushes: int = 0

    def push(self, files: Mapping[str, Any], branch: str = "main", **kwargs: Any) -> str:
        """Commit on the fake only (no webhook); returns the commit sha."""
        self.pushes += 1
        return self.fake.push(self.full_name, branch, dict(files), **kwargs)

    def request(self, sha: str | None, **overrides: Any) -> SyncRequest:
        """A push-like request for `sha` on main."""
        values: dict[str, Any] = {
            "repository_id": self.repository_id,
            "full_name": self.full_name,
            "branch": "main",
            "sha": sha,
            "trigger": "push",
            "installation_id": self.installation_id,
        }
        values.update(overrides)
        return SyncRequest(**values)

    async def sync(self, sha: str | None, **overrides: Any) -> SyncOutcome:
        return await sync(self.runtime, self.request(sha, **overrides))

    def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self.runtime.in_session(fn, *args, **kwargs)

    def bind(
        self, guild_id: str = GUILD, *, branch: str | None = None, token: str | None = None
    ) -> None:
        self.db(
            save_binding,
            guild_id,
            repository_full_name=self.full_name,
            repository_id=self.repository_id,
            branch=branch,
            actor="admin",
            expected_version=None,
            token=token,
            vault=self.runtime.vault,
        )

    def request_binding(
        self,
        guild_id: str = GUILD,
        *,
        full_name: str | None = None,
        repository_id: int | None = None,
        branch: str | None = None,
        token: str | None = None,
    ) -> None:
        """A pending binding; for this world's repository unless `full_name` names another."""
        if full_name is None and repository_id is None:
            repository_id = self.repository_id
        self.db(
            bindings.save_pending,
            guild_id,
            repository_full_name=full_name or self.full_name,
            repository_id=repository_id,
            branch=branch,
            actor="admin",
            expected_version=None,
            token=token,
            vault=self.runtime.vault,
            status_message="waiting for the first sync",
        )

    def bind_private_with_token(
        self, guild_id: str, full_name: str, files: Mapping[str, Any]
    ) -> tuple[str, str]:
        """A private repository the App is not installed on, holding `files`, bound to
        `guild_id` with a personal access token: (commit sha, token)."""
        repository_id = self.fake.add_repo(full_name)
        sha = self.fake.push(full_name, "main", dict(files))
        token = self.fake.add_pat(repos=[full_name])
        self.db(
            installations.upsert_repository,
            repository_id,
            full_name,
            private=True,
            default_branch="main",
            installation_id=None,
        )
        self.db(
            save_binding,
            guild_id,
            repository_full_name=full_name,
            repository_id=repository_id,
            branch=None,
            actor="admin",
            expected_version=None,
            token=token,
            vault=self.runtime.vault,
        )
        return sha, token

    def state(self, guild_id: str = GUILD) -> GuildState:
        state = self.db(serving.guild_state, guild_id)
        assert state is not None, f"guild {guild_id} has no live binding"
        return state

    def pending(self, guild_id: str) -> Any:
        return self.db(bindings.get_pending, guild_id)

    def delivery(self, guid: str) -> DeliveryRow:
        row = self.db(deliveries.get_delivery, guid)
        assert row is not None, f"delivery {guid} is not stored"
        return row

    def check_runs(self, sha: str | None = None) -> list[dict[str, Any]]:
        return self.fake.check_runs_for(self.full_name, sha)

    def requests_since(self, mark: int) -> list[str]:
        """Endpoints requested since `len(fake.requests)` was `mark` (token mints excluded)."""
        return [r.endpoint for r in self.fake.requests[mark:] if "access_tokens" not in r.path]


async def drain(runtime: Runtime, *, max_items: int = 1000, worker: Worker | None = None) -> int:
    """Process every delivery due now (and what processing them queues); returns how many."""
    worker = worker or Worker(runtime, worker_id="drain")
    count = 0
    while count < max_items and await worker.run_once():
        count += 1
    return count


def make_world(
    database_url: str,
    *,
    private: bool = True,
    installed: bool = True,
    env: Mapping[str, str] | None = None,
) -> World:
    """A `World` whose store already knows the installation and the repository."""
    fake, installation_id, repository_id = fake_with_repository(
        private=private, installed=installed
    )
    runtime = runtime_for(database_url, fake, **(env or {}))
    world = World(fake, runtime, installation_id, repository_id)
    runtime.on_activation(world.announced.append)
    if installation_id is not None:
        world.db(installations.upsert_installation, installation_id, "octo-org")
    world.db(
        installations.upsert_repository,
        repository_id,
        FULL_NAME,
        private=private,
        default_branch="main",
        installation_id=installation_id,
    )
    return world


@contextlib.asynccontextmanager
async def open_world(database_url: str, **options: Any) -> AsyncIterator[World]:
    world = make_world(database_url, **options)
    try:
        yield world
    finally:
        await world.runtime.aclose()


@dataclass
class Harness(World):
    """A `World` with the intake route: webhooks go through the real intake (`deliver`) and the
    real worker (`drain`)."""

    client: httpx.AsyncClient = field(kw_only=True)

    async def deliver(
        self, event: str, payload: Mapping[str, Any], **options: Any
    ) -> httpx.Response:
        """Sign a delivery like GitHub and POST it to intake."""
        return await self.post(self.fake.webhook(event, dict(payload), **options))

    async def post(self, hook: Webhook) -> httpx.Response:
        return await post_webhook(self.client, hook)

    async def drain(self) -> int:
        return await drain(self.runtime)

    async def push(
        self,
        files: Mapping[str, Any],
        branch: str = "main",  # type: ignore[override]
        **options: Any,
    ) -> str:
        """Commit on the fake and deliver the push webhook; returns the commit sha."""
        sha = World.push(self, files, branch, **options)
        response = await self.deliver("push", self.fake.push_payload(self.full_name, branch))
        assert response.status_code == 202, response.text
        return sha


def intake_app(runtime: Runtime) -> Starlette:
    return Starlette(routes=[webhook_route(runtime)])


@contextlib.asynccontextmanager
async def harness(database_url: str, *, private: bool = True, **env: str) -> AsyncIterator[Harness]:
    """`octo-org/prompts` installed; the installation event delivered and processed, so the
    store knows both as it would in production."""
    fake, installation_id, repository_id = fake_with_repository(private=private)
    runtime = runtime_for(database_url, fake, **env)
    transport = httpx.ASGITransport(app=intake_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://guildprompts.test") as c:
        world = Harness(fake, runtime, installation_id, repository_id, client=c)
        runtime.on_activation(world.announced.append)
        try:
            response = await world.deliver(
                "installation", fake.installation_payload(installation_id)
            )
            assert response.status_code == 202, response.text
            await world.drain()
            yield world
        finally:
            await runtime.aclose()


# ---- the bridge --------------------------------------------------------------------------------


def bridge_app(runtime: Runtime, cache: ResolverCache, **options: Any) -> Starlette:
    return Starlette(routes=bridge_routes(runtime, cache, **options))


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
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bridge.test", headers=bearer()
        ) as client:
            yield client, cache
    finally:
        stop.set()
        await asyncio.wait_for(listener, 10)


@dataclass
class BridgeWorld:
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
        response = await post_webhook(self.http, self.fake.webhook(event, dict(payload)))
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
        """PUT the guild's config through the bridge, as the bot does."""
        payload = {"repository": repository, "branch": None, "token": None, "actor": "42", **body}
        return await self.http.put(f"/bridge/v1/guilds/{guild}/config", json=payload)

    def db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.runtime.in_session(fn, *args, **kwargs)


@contextlib.asynccontextmanager
async def bridge_world(
    database_url: str,
    *,
    private: bool = False,
    installed: bool = True,
    wait: float = 8.0,
    **env: str,
) -> AsyncIterator[BridgeWorld]:
    """`octo-org/prompts` on the fake (public unless told; installed unless told, with its
    installation event already delivered, as in production)."""
    fake, installation_id, repository_id = fake_with_repository(
        private=private, installed=installed
    )
    runtime = runtime_for(database_url, fake, GITHUB_URL=GITHUB_URL, **env)
    cache = ResolverCache(runtime, 1000)
    app = Starlette(routes=[webhook_route(runtime), *bridge_routes(runtime, cache, wait=wait)])
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(listen(runtime, cache, stop)),
        asyncio.create_task(Worker(runtime, poll_interval=0.05).run(stop)),
    ]
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bridge.test", headers=bearer(), timeout=30
        ) as http:
            world = BridgeWorld(fake, runtime, http, cache, installation_id, repository_id)
            if installation_id is not None:
                await world.deliver("installation", fake.installation_payload(installation_id))
            yield world
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
        await runtime.aclose()


# ---- the web app on loopback, /setup, polling, the command line --------------------------------


@contextlib.contextmanager
def served(runtime: Runtime, *, run_worker: bool = True, port: int = 0) -> Iterator[httpx.Client]:
    """`create_app(runtime)` under uvicorn on loopback (lifespan on, so the background tasks
    start and stop as in `serve`), and a client for it."""
    from github_app.web import create_app

    app = create_app(runtime, run_worker=run_worker)
    with (
        serve_on_loopback(app, lifespan="on", port=port) as url,
        httpx.Client(base_url=url, timeout=15) as client,
    ):
        yield client


class ManifestForm(HTMLParser):
    """The /setup form that posts the manifest to GitHub: its action and the manifest."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.manifest: dict[str, Any] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form" and values.get("method") == "post":
            self.action = values["action"] or ""
        if tag == "input" and values.get("name") == "manifest":
            self.manifest = json.loads(values["value"] or "{}")


def setup_form(client: httpx.Client, **fields: str) -> ManifestForm:
    """/setup's one form submitted with `fields`: the form it posts on to GitHub."""
    page = client.get("/setup")
    assert page.status_code == 200, page.text
    form = ManifestForm()
    form.feed(client.post("/setup", data=fields).text)
    assert form.action and form.manifest, "no manifest form"
    return form


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


def guildprompts(
    *args: str, database_url: str, cwd: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the installed command line as an operator would."""
    environment = {**os.environ, "DATABASE_URL": database_url, **env}
    return subprocess.run(
        [sys.executable, "-m", "github_app.cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=60,
        check=False,
    )


# ---- `guildprompts serve` as a real process ----------------------------------------------------

SERVE_STARTUP_TIMEOUT = 30.0


def guildprompts_command() -> list[str]:
    """The installed console script, else the module (an uninstalled checkout)."""
    script = Path(sys.executable).with_name("guildprompts")
    return [str(script)] if script.exists() else [sys.executable, "-m", "github_app.cli"]


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without any guildprompts variable, plus `values`."""
    from github_app.settings import documented_variables

    ours = {name for name, _, _ in documented_variables()}
    ours |= {alias for spec in dataclasses.fields(Settings) for alias in spec.metadata["aliases"]}
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ours and not key.startswith("GITHUB_")
    }
    return {**env, **values}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def serve_process(
    cwd: Path, env: dict[str, str], *args: str, command: Sequence[str] | None = None
) -> Iterator[Service]:
    """`guildprompts serve` answering /healthz until the block ends, then SIGTERM and a wait.

    `command` is the console script to run (default: this environment's).

    Raises RuntimeError (with the service's log) when it exits early, never answers, or does
    not stop within 20 s of SIGTERM.
    """
    cwd.mkdir(parents=True, exist_ok=True)
    port = int(env.get("PORT") or 0) or free_port()
    argv = [*(command or guildprompts_command()), "serve", *args]
    if "PORT" not in env:
        argv += ["--port", str(port)]
    log_path = cwd.parent / f"{cwd.name}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log_file, stderr=log_file)
    service = Service(f"http://127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + SERVE_STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"serve exited with {process.returncode}:\n{service.log}")
            try:
                if httpx.get(f"{service.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"serve did not answer within {SERVE_STARTUP_TIMEOUT} s:\n{service.log}"
                )
            time.sleep(0.1)
        yield service
    finally:
        if not stop_process(process):
            raise RuntimeError(f"serve did not stop within 20 s of SIGTERM:\n{service.log}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20) -> bool:
    """SIGTERM and wait; killed (and False) when it does not stop within `timeout` s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False
    return True
