"""A harness for intake, worker, handler and loop tests: the fake GitHub with one installation
and one prompt repository, a Runtime reading it in-process, and the intake route as an ASGI app.

Webhooks go through the real intake (`deliver`), are processed by the real worker (`drain`), and
land in the store, so tests check what a guild would be served.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from fakegithub import FakeGitHub, Webhook
from starlette.applications import Starlette

from github_app.intake import WEBHOOK_PATH, webhook_route
from github_app.runtime import Runtime, build_runtime
from github_app.secrets import generate_key
from github_app.settings import Settings
from github_app.store import bindings, deliveries, serving
from github_app.store.models import Delivery as DeliveryRow
from github_app.store.serving import GuildState
from github_app.worker import drain

T = TypeVar("T")
FIXTURES = Path(__file__).parent / "fixtures" / "github-webhooks"
FULL_NAME = "octo-org/prompts"
GUILD = "111111111111111111"  # listed in VALID's allowed_guilds
OTHER_GUILD = "222222222222222222"

VALID_PATH = (
    b'routes:\n'
    b'  by_type: "prompts/{category}/{type}.md"\n'
    b'  default: "prompts/default.md"\n'
    + f'allowed_guilds: ["{GUILD}", "{OTHER_GUILD}"]\n'.encode()
)
VALID = {
    "PATH": VALID_PATH,
    "prompts/default.md": b"Summarise {messages}\n",
    "prompts/meeting/brief.md": b"Briefly summarise the meeting: {messages}\n",
}
BROKEN_PATH = b"routes: [\n"


def fixture_payload(event: str, name: str = "payload") -> dict[str, Any]:
    """A real payload example (tests/fixtures/README.md says where they come from)."""
    return json.loads((FIXTURES / event / f"{name}.json").read_text())


def settings_for(database_url: str, fake: FakeGitHub | None, **env: str) -> Settings:
    values = {
        "DATABASE_URL": database_url,
        "ENCRYPTION_KEYS": generate_key(),
        "GITHUB_API_URL": "https://api.github.test",
    }
    if fake is not None:
        values.update({
            "GITHUB_APP_ID": str(fake.app_id),
            "GITHUB_PRIVATE_KEY": fake.private_key_pem,
            "GITHUB_WEBHOOK_SECRET": fake.webhook_secret,
        })
    return Settings.from_env({**values, **env}, env_file=None)


def runtime_for(database_url: str, fake: FakeGitHub | None, **env: str) -> Runtime:
    """A Runtime on the fake (None: no App configured); its client retries without sleeping."""
    runtime = build_runtime(
        settings_for(database_url, fake, **env),
        transport=httpx.ASGITransport(app=fake) if fake is not None else None,
        auto_upgrade=True,
    )
    if fake is not None:
        runtime.github = fake.github_client()
        runtime.auth = runtime.github.auth
    return runtime


@dataclass
class Harness:
    fake: FakeGitHub
    runtime: Runtime
    client: httpx.AsyncClient
    installation_id: int
    repository_id: int
    full_name: str = FULL_NAME
    announced: list[int] = field(default_factory=list)

    async def deliver(self, event: str, payload: Mapping[str, Any], **options: Any
                      ) -> httpx.Response:
        """Sign a delivery like GitHub and POST it to intake."""
        return await self.post(self.fake.webhook(event, dict(payload), **options))

    async def post(self, hook: Webhook) -> httpx.Response:
        return await self.client.post(WEBHOOK_PATH, content=hook.body, headers=hook.headers)

    async def drain(self) -> int:
        return await drain(self.runtime)

    async def push(self, files: Mapping[str, Any], branch: str = "main", **options: Any) -> str:
        """Commit on the fake and deliver the push webhook; returns the commit sha."""
        sha = self.fake.push(self.full_name, branch, dict(files), **options)
        response = await self.deliver("push", self.fake.push_payload(self.full_name, branch))
        assert response.status_code == 202, response.text
        return sha

    def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self.runtime.in_session(fn, *args, **kwargs)

    def bind(self, guild_id: str = GUILD, *, branch: str | None = None,
             token: str | None = None) -> None:
        self.db(
            bindings.set_binding, guild_id, repository_full_name=self.full_name,
            repository_id=self.repository_id, branch=branch, actor="admin",
            expected_version=None, token=token, vault=self.runtime.vault,
        )

    def request_binding(self, guild_id: str = GUILD, *, full_name: str | None = None,
                        repository_id: int | None = None, branch: str | None = None) -> None:
        self.db(
            bindings.save_pending, guild_id, repository_full_name=full_name or self.full_name,
            repository_id=repository_id, branch=branch, actor="admin", expected_version=None,
            status_message="waiting for the first sync",
        )

    def state(self, guild_id: str = GUILD) -> GuildState:
        state = self.db(serving.guild_state, guild_id)
        assert state is not None, f"guild {guild_id} has no live binding"
        return state

    def delivery(self, guid: str) -> DeliveryRow:
        row = self.db(deliveries.get_delivery, guid)
        assert row is not None, f"delivery {guid} is not stored"
        return row

    def check_runs(self, sha: str | None = None) -> list[dict[str, Any]]:
        return self.fake.check_runs_for(self.full_name, sha)

    def requests_since(self, mark: int) -> list[str]:
        """Endpoints requested since `len(fake.requests)` was `mark` (token mints excluded)."""
        return [r.endpoint for r in self.fake.requests[mark:] if "access_tokens" not in r.path]


def intake_app(runtime: Runtime) -> Starlette:
    return Starlette(routes=[webhook_route(runtime)])


@asynccontextmanager
async def harness(database_url: str, *, private: bool = True, **env: str
                  ) -> AsyncIterator[Harness]:
    """The fake with `octo-org/prompts` installed; the App's installation event delivered and
    processed, so the store knows both as it would in production."""
    fake = FakeGitHub()
    installation_id = fake.add_installation("octo-org")
    repository_id = fake.add_repo(FULL_NAME, private=private, installation=installation_id)
    runtime = runtime_for(database_url, fake, **env)
    transport = httpx.ASGITransport(app=intake_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://guildprompts.test") as c:
        world = Harness(fake, runtime, c, installation_id, repository_id)
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
