"""The system under the serving-invariant test, and the simple model it is checked against.

`System` is the real thing on one database: the fake GitHub, intake and the bot bridge's HTTP
API in one ASGI app, the real worker (its clock moved by the test, for backoff and leases) and
the reconcile loop. Webhooks GitHub "sends" wait in an outbox, so a test chooses their order,
duplicates some and loses others. `Model` keeps only what the invariant needs: which commits are
valid and whom each one allows. `check` settles the queue and compares the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import delete
from starlette.applications import Starlette

from github_app.bridge.resolver_cache import ResolverCache
from github_app.bridge.routes import bridge_routes
from github_app.intake import webhook_route
from github_app.loops import reconcile
from github_app.runtime import Runtime
from github_app.store import bindings, deliveries, serving
from github_app.store.models import Base, DeliveryRow, DeliveryState
from github_app.worker import Worker
from tests.fakegithub import FakeGitHub, Webhook
from tests.harness import GITHUB_URL, ROUTES, bearer, post_webhook, runtime_for

SECRET = "octo-org/secret"  # private; its installation comes and goes
OPEN = "open-org/prompts"  # public; always installed
REPOSITORIES = (SECRET, OPEN)
GUILDS = ("300000000000000001", "300000000000000002", "300000000000000003")
BRANCH = "main"
SETTLE_ROUNDS = 12


@dataclass(frozen=True)
class Commit:
    valid: bool
    allowed: frozenset[str]


@dataclass
class Model:
    commits: dict[str, Commit] = field(default_factory=dict)
    history: dict[str, list[str]] = field(default_factory=dict)  # repository -> heads, in order
    accepted: dict[str, str] = field(default_factory=dict)  # guild -> repository of its last PUT
    tokens: dict[str, str] = field(default_factory=dict)  # guild -> token of its last PUT


def files(marker: int, valid: bool, allowed: frozenset[str]) -> dict[str, bytes]:
    if not valid:
        return {"PATH": b"routes: [\n", "prompts/default.md": f"broken {marker}\n".encode()}
    listed = f"allowed_guilds: {json.dumps(sorted(allowed))}\n".encode()
    return {
        "PATH": ROUTES + listed,
        "prompts/default.md": f"Version {marker}: summarise {{messages}}\n".encode(),
    }


class System:
    """One example's world; `start` builds it on an upgraded, emptied database."""

    def __init__(self, database_url: str) -> None:
        self.fake = FakeGitHub()
        self.installations = {
            SECRET: self.fake.add_installation("octo-org"),
            OPEN: self.fake.add_installation("open-org"),
        }
        for name in REPOSITORIES:
            self.fake.add_repo(name, private=name == SECRET, installation=self.installations[name])
        self.runtime: Runtime = runtime_for(
            database_url, self.fake, GITHUB_URL=GITHUB_URL, MAX_ATTEMPTS="8"
        )
        self.cache = ResolverCache(self.runtime, 100)
        app = Starlette(
            routes=[webhook_route(self.runtime), *bridge_routes(self.runtime, self.cache, wait=0)]
        )
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://guildprompts.test",
            headers=bearer(),
            timeout=30,
        )
        self.now = datetime(2026, 6, 1, tzinfo=UTC)
        self.worker = Worker(self.runtime, worker_id="worker", clock=lambda: self.now)
        self.model = Model()
        self.outbox: list[Webhook] = []
        self.delivered: set[str] = set()
        self.installed = True
        self.pushes = 0

    async def start(self) -> None:
        self.runtime.in_session(_empty)
        for name in REPOSITORIES:
            await self.deliver_now(
                "installation", self.fake.installation_payload(self.installations[name])
            )
            self.push(name, valid=True, allowed=frozenset(GUILDS[:1]))
        await self.settle()

    async def close(self) -> None:
        await self.http.aclose()
        await self.runtime.aclose()

    # ---- what GitHub does -----------------------------------------------------------------

    def sends(self, name: str) -> bool:
        """GitHub sends a repository's events only while the App is installed on it."""
        return name == OPEN or self.installed

    def push(self, name: str, *, valid: bool, allowed: frozenset[str]) -> str:
        self.pushes += 1
        sha = self.fake.push(name, BRANCH, files(self.pushes, valid, allowed))
        self.model.commits[sha] = Commit(valid, allowed)
        self._moved(name, sha)
        return sha

    def force_push(self, name: str, sha: str) -> None:
        self.fake.force_push(name, BRANCH, sha)
        self._moved(name, sha)

    def _moved(self, name: str, sha: str) -> None:
        self.model.history.setdefault(name, []).append(sha)
        if self.sends(name):
            self.outbox.append(self.fake.webhook("push", self.fake.push_payload(name, BRANCH)))

    def set_private(self, name: str, private: bool) -> None:
        self.fake.update_repo(name, private=private)
        if self.sends(name):
            action = "privatized" if private else "publicized"
            self.outbox.append(
                self.fake.webhook("repository", self.fake.repository_payload(name, action))
            )

    async def uninstall(self) -> None:
        installation = self.installations[SECRET]
        payload = self.fake.installation_payload(installation, "deleted")
        self.fake.delete_installation(installation)
        self.installed = False
        await self.deliver_now("installation", payload)

    async def reinstall(self) -> None:
        installation = self.fake.add_installation(
            "octo-org", installation_id=self.installations[SECRET]
        )
        self.fake.update_repo(SECRET, installation=installation)
        self.installed = True
        await self.deliver_now("installation", self.fake.installation_payload(installation))

    async def deliver(self, index: int, *, again: bool) -> None:
        """POST one waiting webhook (kept in the outbox when GitHub will send it `again`)."""
        hook = self.outbox[index] if again else self.outbox.pop(index)
        response = await post_webhook(self.http, hook)
        assert response.status_code in (200, 202), response.text
        self.delivered.add(hook.guid)

    async def deliver_now(self, event: str, payload: dict[str, Any]) -> None:
        hook = self.fake.webhook(event, payload)
        response = await post_webhook(self.http, hook)
        assert response.status_code == 202, response.text
        self.delivered.add(hook.guid)

    # ---- what guilds and the service do ------------------------------------------------------

    async def bind(self, guild: str, name: str, token: str | None) -> httpx.Response:
        body = {"repository": name, "branch": None, "token": token, "actor": "42"}
        return await self.http.put(f"/bridge/v1/guilds/{guild}/config", json=body)

    async def unbind(self, guild: str) -> httpx.Response:
        return await self.http.request(
            "DELETE", f"/bridge/v1/guilds/{guild}/config", json={"actor": "42"}
        )

    async def refresh(self, guild: str) -> httpx.Response:
        return await self.http.post(f"/bridge/v1/guilds/{guild}/refresh", json={"actor": "42"})

    async def process(self, count: int) -> None:
        for _ in range(count):
            if not await self.worker.run_once():
                return

    async def crash(self, steps: int) -> None:
        """A worker dies (SIGKILL) part-way through a delivery: no outcome is recorded, its
        lease runs out, and a check run it started may be left in progress."""
        doomed = Worker(self.runtime, worker_id="doomed", clock=lambda: self.now)
        task = asyncio.create_task(doomed.run_once())
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def settle(self) -> None:
        """GitHub delivers what is left and stops failing; time passes (backoffs and leases
        end) until the queue is empty and the reconcile loop finds nothing new."""
        while self.outbox:
            await self.deliver(0, again=False)
        self.fake._faults.clear()
        for _ in range(SETTLE_ROUNDS):
            self.now += timedelta(hours=1)
            while await self.worker.run_once():
                pass
            stats = self.runtime.in_session(deliveries.queue_stats, self.now)
            if stats.pending or stats.processing:
                continue
            if not await reconcile(self.runtime):
                return
        raise AssertionError(f"the queue did not settle in {SETTLE_ROUNDS} rounds")

    # ---- the invariant -----------------------------------------------------------------------

    async def check(self) -> None:
        await self.settle()
        await self.cache.check()
        rows = self.runtime.in_session(_deliveries)
        stored = {row.guid for row in rows}
        assert self.delivered <= stored, f"deliveries lost: {self.delivered - stored}"
        failed = [(row.guid, row.event, row.last_error) for row in rows if row.state != "done"]
        assert not failed, f"deliveries not done after settling: {failed}"
        for guild in GUILDS:
            await self._check_guild(guild)
        for name in REPOSITORIES:
            for sha in set(self.model.history.get(name, [])):
                completed = [
                    run
                    for run in self.fake.check_runs_for(name, sha)
                    if run.get("status") == "completed"
                ]
                assert len(completed) <= 1, f"{len(completed)} completed check runs on {sha}"

    async def _check_guild(self, guild: str) -> None:
        response = await self.http.get(f"/bridge/v1/guilds/{guild}/prompt")
        assert response.status_code in (200, 404), response.text
        served = response.json().get("commit_sha") if response.status_code == 200 else None
        state = self.runtime.in_session(serving.guild_state, guild)
        token = self.runtime.in_session(_live_token, guild, self.runtime.vault)
        where = f"guild {guild}"
        if served is not None:
            assert state is not None, f"{where} serves {served} without a live binding"
            name = state.repository_full_name
            commit = self.model.commits.get(served)
            assert commit is not None and served in self.model.history[name], (
                f"{where} serves {served}, not a commit of {name}"
            )
            assert commit.valid, f"{where} serves the invalid commit {served}"
            assert self._may_read(guild, name, commit, token), (
                f"{where} serves {name}@{served[:7]} it may not read (allowed: "
                f"{sorted(commit.allowed)}, private: {self.fake.repo(name).private})"
            )
        name = self.model.accepted.get(guild)
        if name is None:
            return
        head = self.fake.head(name, BRANCH)
        assert head is not None
        commit = self.model.commits[head]
        readable = name == OPEN or self.installed or self._works(self.model.tokens.get(guild))
        wanted_token = self.model.tokens.get(guild)
        if commit.valid and readable and self._may_read(guild, name, commit, wanted_token):
            assert state is not None and state.repository_full_name == name, (
                f"{where} asked for {name} (allowed at its head {head[:7]}) but is bound to "
                f"{state.repository_full_name if state else None}"
            )
            assert served == head, (
                f"{where} serves {served and served[:7]}, not the head {head[:7]} of {name} "
                f"({state.state}: {state.status_message})"
            )

    def _may_read(self, guild: str, name: str, commit: Commit, token: str | None) -> bool:
        return not self.fake.repo(name).private or guild in commit.allowed or self._works(token)

    def _works(self, token: str | None) -> bool:
        return token is not None and token in self.fake._pats


def _empty(session: Any) -> None:
    """Every row of a previous example, except the generation counter (processes poll it)."""
    for table in reversed(Base.metadata.sorted_tables):
        if table.name != "activation_generation":
            session.execute(delete(table))


def _deliveries(session: Any) -> list[DeliveryRow]:
    return list(session.query(DeliveryRow).all())


def _live_token(session: Any, guild: str, vault: Any) -> str | None:
    binding = bindings.get_binding(session, guild)
    if binding is None or binding.token_ciphertext is None:
        return None
    return bindings.binding_token(binding, vault)


__all__ = ["GUILDS", "OPEN", "REPOSITORIES", "SECRET", "DeliveryState", "System"]
