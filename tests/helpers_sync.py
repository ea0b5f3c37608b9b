"""A small world for sync and check-run tests: the fake GitHub with one App installation and one
repository, a Runtime reading it in-process, and shortcuts to push, bind and sync."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx

from github_app.runtime import Runtime, build_runtime
from github_app.secrets import generate_key
from github_app.settings import Settings
from github_app.store import bindings, installations, serving
from github_app.store.serving import GuildState
from github_app.sync import SyncOutcome, SyncRequest, sync
from tests.fakegithub import FakeGitHub

T = TypeVar("T")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FULL_NAME = "octo-org/prompts"
GUILD = "111111111111111111"  # listed in VALID's allowed_guilds
OTHER = "222222222222222222"  # not listed

ROUTES = (
    b'routes:\n'
    b'  by_type: "prompts/{category}/{type}.md"\n'
    b'  default: "prompts/default.md"\n'
)
VALID_PATH = ROUTES + f'allowed_guilds: ["{GUILD}"]\n'.encode()
VALID = {
    "PATH": VALID_PATH,
    "prompts/default.md": b"Summarise {messages}\n",
    "prompts/meeting/brief.md": b"Briefly summarise the meeting: {messages}\n",
}
BROKEN_PATH = b"routes: [\n"


@dataclass
class World:
    fake: FakeGitHub
    runtime: Runtime
    installation_id: int | None
    repository_id: int
    full_name: str = FULL_NAME
    announced: list[int] = field(default_factory=list)
    pushes: int = 0

    def push(self, files: Mapping[str, Any], branch: str = "main", **kwargs: Any) -> str:
        self.pushes += 1
        return self.fake.push(self.full_name, branch, dict(files), **kwargs)

    def request(self, sha: str | None, **overrides: Any) -> SyncRequest:
        """A push-like request; head_at advances with every push so ordering is explicit."""
        values: dict[str, Any] = {
            "repository_id": self.repository_id,
            "full_name": self.full_name,
            "branch": "main",
            "sha": sha,
            "trigger": "push",
            "installation_id": self.installation_id,
            "head_at": T0 + timedelta(minutes=self.pushes),
        }
        values.update(overrides)
        return SyncRequest(**values)

    async def sync(self, sha: str | None, **overrides: Any) -> SyncOutcome:
        return await sync(self.runtime, self.request(sha, **overrides))

    def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self.runtime.in_session(fn, *args, **kwargs)

    def bind(self, guild_id: str, *, branch: str | None = None, token: str | None = None) -> None:
        self.db(
            bindings.set_binding, guild_id, repository_full_name=self.full_name,
            repository_id=self.repository_id, branch=branch, actor="admin",
            expected_version=None, token=token, vault=self.runtime.vault,
        )

    def request_binding(self, guild_id: str, *, token: str | None = None) -> None:
        self.db(
            bindings.save_pending, guild_id, repository_full_name=self.full_name,
            repository_id=self.repository_id, branch=None, actor="admin",
            expected_version=None, token=token, vault=self.runtime.vault,
            status_message="waiting for the first sync",
        )

    def state(self, guild_id: str) -> GuildState:
        state = self.db(serving.guild_state, guild_id)
        assert state is not None, f"guild {guild_id} has no live binding"
        return state

    def pending(self, guild_id: str) -> Any:
        return self.db(bindings.get_pending, guild_id)

    def requests_since(self, mark: int) -> list[str]:
        """Endpoints requested since `len(fake.requests)` was `mark` (token mints excluded)."""
        return [r.endpoint for r in self.fake.requests[mark:] if "access_tokens" not in r.path]


def make_world(
    database_url: str,
    *,
    private: bool = True,
    installed: bool = True,
    env: Mapping[str, str] | None = None,
) -> World:
    """The fake GitHub with `octo-org/prompts` (installed unless told), and a Runtime on it."""
    fake = FakeGitHub()
    installation_id = fake.add_installation("octo-org") if installed else None
    repository_id = fake.add_repo(FULL_NAME, private=private, installation=installation_id)
    settings = Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "ENCRYPTION_KEYS": generate_key(),
            "GITHUB_API_URL": "https://api.github.test",
            "GITHUB_APP_ID": str(fake.app_id),
            "GITHUB_PRIVATE_KEY": fake.private_key_pem,
            "GITHUB_WEBHOOK_SECRET": fake.webhook_secret,
            **(env or {}),
        },
        env_file=None,
    )
    runtime = build_runtime(
        settings, transport=httpx.ASGITransport(app=fake), auto_upgrade=True
    )
    world = World(fake, runtime, installation_id, repository_id)
    runtime.on_activation(world.announced.append)
    if installation_id is not None:
        world.db(installations.upsert_installation, installation_id, "octo-org")
    world.db(
        installations.upsert_repository, repository_id, FULL_NAME, private=private,
        default_branch="main", installation_id=installation_id,
    )
    return world


@asynccontextmanager
async def open_world(database_url: str, **options: Any) -> AsyncIterator[World]:
    world = make_world(database_url, **options)
    # The fake's own client: the same App credentials, but retries that do not really sleep.
    await world.runtime.github.aclose()
    world.runtime.github = world.fake.github_client()
    try:
        yield world
    finally:
        await world.runtime.aclose()
