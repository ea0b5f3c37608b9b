"""The system under the serving-invariant test, and the simple model it is checked against.

`System` is the real thing on one database: the fake GitHub, intake and the bot bridge's HTTP
API in one ASGI app, the real worker (its clock moved by the test, for backoff and leases) and
the reconcile loop. Webhooks GitHub "sends" wait in an outbox, so a test chooses their order,
duplicates some and loses others. `Model` keeps only what the invariant needs: which commits are
valid and whom each one allows. `check` settles the queue and compares the two.
`LayeredSystem` is the same world with a base repository the guild repository may extend, and
`LayeredModel` says which pairs (a commit, the base commit under it) promptrepo finds valid.
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

import promptrepo
from github_app.bridge.resolver_cache import ResolverCache
from github_app.bridge.routes import bridge_routes
from github_app.intake import webhook_route
from github_app.loops import reconcile
from github_app.runtime import Runtime
from github_app.store import bindings, deliveries, layers, serving
from github_app.store.models import Base, DeliveryRow, DeliveryState
from github_app.worker import Worker
from promptrepo.layers import extends_of
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

    async def settle(self, *, reconcile_loop: bool = True) -> None:
        """GitHub delivers what is left and stops failing; time passes (backoffs and leases
        end) until the queue is empty and the reconcile loop finds nothing new (without
        `reconcile_loop`: until the queue is empty, what the webhooks alone bring)."""
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
            if not reconcile_loop or not await reconcile(self.runtime):
                return
        raise AssertionError(f"the queue did not settle in {SETTLE_ROUNDS} rounds")

    # ---- the invariant -----------------------------------------------------------------------

    async def check(self) -> None:
        await self.settle()
        await self._check_deliveries()
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

    async def _check_deliveries(self) -> None:
        """Every delivered webhook is stored and done (after settling)."""
        await self.cache.check()
        rows = self.runtime.in_session(_deliveries)
        stored = {row.guid for row in rows}
        assert self.delivered <= stored, f"deliveries lost: {self.delivered - stored}"
        failed = [(row.guid, row.event, row.last_error) for row in rows if row.state != "done"]
        assert not failed, f"deliveries not done after settling: {failed}"

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


# ---- layered repositories: a guild repository that may extend a base ---------------------------

BASE = "base-org/pack"  # public, on its own installation; never bound unless a rule binds it
DEPENDENT = OPEN  # the guild repository, which may extend BASE
BASE_KEY = f"{BASE}@{BRANCH}"
LAYERED_GUILD = GUILDS[0]  # bound to DEPENDENT from the start
BASE_GUILD = GUILDS[1]  # bound to BASE by a rule, sometimes
# valid | valid but locking prompts/house.md | valid but without prompts/shared.md | invalid
BASE_KINDS = ("valid", "locks", "drops", "invalid")
# extending: plain | with a routing test wanting prompts/shared.md | overriding prompts/house.md |
# with a broken prompt of its own; or not extending: standalone | standalone-broken
DEPENDENT_KINDS = ("plain", "tested", "overrides", "broken", "standalone", "standalone-broken")
ROUTING_TEST = (
    b"- name: shared comes from the base\n"
    b"  context: {category: shared}\n"
    b"  expect:\n"
    b"    file: prompts/shared.md\n"
)

Pair = tuple[str, tuple[str, ...]]  # (the guild repository's commit, its base commits)


def base_files(marker: int, kind: str) -> dict[str, bytes]:
    if kind == "invalid":
        return {"PATH": b"routes: [\n", "prompts/default.md": f"broken {marker}\n".encode()}
    path = (
        f"# push {marker}\n".encode()
        + b'routes:\n  category: "prompts/{category}.md"\n  global: "prompts/default.md"\n'
        + b"fallback_chain: [category, global]\n"
    )
    if kind == "locks":
        path += b"locked:\n  - prompts/house.md\n"
    files = {
        "schema-version": b"v2\n",
        "PATH": path,
        "prompts/default.md": f"Base {marker}: summarise {{messages}}\n".encode(),
        "prompts/house.md": b"House rules: {messages}\n",
    }
    if kind != "drops":
        files["prompts/shared.md"] = f"Shared {marker}: {{messages}}\n".encode()
    return files


def dependent_files(marker: int, kind: str) -> dict[str, bytes]:
    if kind == "standalone":
        return {
            "PATH": f"# push {marker}\n".encode() + b'routes:\n  default: "prompts/default.md"\n',
            "prompts/default.md": f"Own {marker}: {{messages}}\n".encode(),
        }
    if kind == "standalone-broken":
        return {"PATH": b"routes: [\n", "prompts/default.md": f"broken {marker}\n".encode()}
    files = {
        "schema-version": b"v2\n",
        "PATH": f"# push {marker}\nextends: {BASE_KEY}\n".encode(),
        "prompts/meeting.md": f"Own {marker}: {{messages}}\n".encode(),
    }
    if kind == "tested":
        files["tests/routing.yaml"] = ROUTING_TEST
    elif kind == "overrides":
        files["prompts/house.md"] = b"Our rules: {messages}\n"
    elif kind == "broken":
        files["prompts/meeting.md"] = b"---\nparameters: [\n---\n{messages}\n"
    return files


@dataclass
class LayeredModel:
    """Each commit's files, and validity computed with promptrepo alone (not the service)."""

    files: dict[str, dict[str, bytes]] = field(default_factory=dict)
    history: dict[str, list[str]] = field(default_factory=dict)  # repository -> heads, in order
    _valid: dict[tuple[str, str | None], bool] = field(default_factory=dict)

    def extends(self, sha: str) -> bool:
        return bool(extends_of(self.files[sha]))

    def valid(self, sha: str, base: str | None = None) -> bool:
        """A commit alone (`base` None), or a commit over that base commit."""
        key = (sha, base)
        if key not in self._valid:
            bases = None if base is None else {BASE_KEY: self.files[base]}
            found = promptrepo.validate(self.files[sha], bases=bases)
            self._valid[key] = not any(item.severity == "error" for item in found)
        return self._valid[key]

    def pair_valid(self, pair: Pair) -> bool:
        """A pair the guild may be served: its commit in the guild repository, valid with the
        base commit it extends (itself valid, in the base's history), or alone without one."""
        sha, below = pair
        if sha not in self.history.get(DEPENDENT, []):
            return False
        if not self.extends(sha):
            return below == () and self.valid(sha)
        if len(below) != 1 or below[0] not in self.history.get(BASE, []):
            return False
        return self.valid(below[0]) and self.valid(sha, below[0])

    def position(self, name: str, sha: str) -> int:
        """When `sha` was last the head of `name` (index in its history)."""
        heads = self.history[name]
        return len(heads) - 1 - heads[::-1].index(sha)


@dataclass
class Seen:
    """What a guild was served at the previous step, and when each commit was last a head."""

    pair: Pair | None = None
    own: int = -1
    base: int = -1


class LayeredSystem(System):
    """The guild repository `DEPENDENT` (bound to LAYERED_GUILD) may extend `BASE`; what it
    serves is the pair (its commit, the base's commit). SECRET stays in the fake, never
    installed: the service never sees it."""

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url)
        self.installations[BASE] = self.fake.add_installation("base-org")
        self.fake.add_repo(BASE, private=False, installation=self.installations[BASE])
        self.layered = LayeredModel()
        self.lost = False  # a webhook was dropped since the last settle: the reconcile loop runs
        self.base_bound = False
        self.seen: dict[str, Seen] = {}
        self.checked: dict[str, Pair | None] = {}  # guild -> pair served at the last check
        self.checked_heads = {DEPENDENT: 0, BASE: 0}  # history lengths at the last check
        self.checked_base: str | None = None  # the base's active commit at the last check

    async def start(self) -> None:
        self.runtime.in_session(_empty)
        for name in (DEPENDENT, BASE):
            await self.deliver_now(
                "installation", self.fake.installation_payload(self.installations[name])
            )
        self.push_base("valid")
        self.push_dependent("plain")
        response = await self.bind(LAYERED_GUILD, DEPENDENT, None)
        assert response.status_code in (200, 202), response.text
        await self.check_layers()

    def sends(self, name: str) -> bool:
        """Both repositories stay installed."""
        return True

    def push_base(self, kind: str) -> str:
        return self._push_layered(BASE, base_files(self.pushes + 1, kind))

    def push_dependent(self, kind: str) -> str:
        return self._push_layered(DEPENDENT, dependent_files(self.pushes + 1, kind))

    def _push_layered(self, name: str, files: dict[str, bytes]) -> str:
        self.pushes += 1
        head = self.fake.head(name, BRANCH)
        gone = set(self.fake.files(name, head)) - set(files) if head else set()
        sha = self.fake.push(name, BRANCH, files, remove=sorted(gone))  # the commit is `files`
        self.layered.files[sha] = files
        self.layered.history.setdefault(name, []).append(sha)
        self.outbox.append(self.fake.webhook("push", self.fake.push_payload(name, BRANCH)))
        return sha

    def force_push(self, name: str, sha: str) -> None:
        self.fake.force_push(name, BRANCH, sha)
        self.layered.history[name].append(sha)
        self.outbox.append(self.fake.webhook("push", self.fake.push_payload(name, BRANCH)))

    def served(self, guild: str) -> Pair | None:
        state = self.runtime.in_session(serving.guild_state, guild)
        if state is None or state.commit_sha is None:
            return None
        return state.commit_sha, tuple(layer.commit_sha for layer in state.layers)

    # ---- at every step ---------------------------------------------------------------------

    def check_step(self) -> None:
        """Whatever is served is a pair the model knows valid, and no guild moves back to an
        older head of either repository (by when each commit was last the head)."""
        for guild, name in ((LAYERED_GUILD, DEPENDENT), (BASE_GUILD, BASE)):
            pair = self.served(guild)
            seen = self.seen.setdefault(guild, Seen())
            if pair is None:
                continue
            sha, below = pair
            if name == BASE:
                assert below == () and sha in self.layered.history[BASE], pair
                assert self.layered.valid(sha), f"{guild} serves the invalid base commit {sha}"
            else:
                assert self.layered.pair_valid(pair), f"{guild} serves the invalid pair {pair}"
            if pair == seen.pair:
                continue
            own = self.layered.position(name, sha)
            assert own >= seen.own, (
                f"{guild} moved back from {seen.pair} to {pair}: {sha[:7]} was last the head "
                f"of {name} before {seen.pair and seen.pair[0][:7]} was"
            )
            seen.pair, seen.own = pair, own
            if below:
                base = self.layered.position(BASE, below[0])
                assert base >= seen.base, (
                    f"{guild} moved back to the older base commit {below[0][:7]}: {pair}"
                )
                seen.base = base

    # ---- after settling ----------------------------------------------------------------------

    async def check_layers(self) -> None:
        """Settle (the reconcile loop only if a webhook was lost), then: the guild serves its
        head composed with the base's newest valid commit when that pair is valid; else what
        it served at the last check, unless something that could make a valid pair arrived."""
        await self.settle(reconcile_loop=self.lost)
        self.lost = False
        await self._check_deliveries()
        self.check_step()
        model = self.layered
        base_head = self.fake.head(BASE, BRANCH)
        head = self.fake.head(DEPENDENT, BRANCH)
        assert base_head is not None and head is not None
        base = self.runtime.in_session(layers.base_state, BASE, BRANCH)
        followed = self.base_bound or model.extends(head)
        if followed:
            assert base.commit_sha is not None, f"{BASE} serves nothing: {base.status_message}"
            assert base.commit_sha in model.history[BASE] and model.valid(base.commit_sha)
            if model.valid(base_head):
                assert base.commit_sha == base_head, (
                    f"{BASE} serves {base.commit_sha[:7]}, not its valid head {base_head[:7]} "
                    f"({base.status}: {base.status_message})"
                )
        if self.base_bound and model.valid(base_head):
            assert self.served(BASE_GUILD) == (base_head, ()), (
                f"{BASE_GUILD} serves {self.served(BASE_GUILD)}, not the base head {base_head[:7]}"
            )
        served = self.served(LAYERED_GUILD)
        state = self.runtime.in_session(serving.guild_state, LAYERED_GUILD)
        assert state is not None
        wanted: Pair | None = None
        if model.extends(head):
            assert base.commit_sha is not None
            if model.valid(head, base.commit_sha):
                wanted = (head, (base.commit_sha,))
        elif model.valid(head):
            wanted = (head, ())
        if wanted is not None:
            assert served == wanted, (
                f"{LAYERED_GUILD} serves {_short(served)}, not {_short(wanted)} (base head "
                f"{base_head[:7]}; {state.branch_status}: {state.status_message})"
            )
        else:
            self._check_kept(served, base.commit_sha)
        self.checked[LAYERED_GUILD] = served
        self.checked_base = base.commit_sha
        self.checked_heads = {name: len(model.history[name]) for name in (DEPENDENT, BASE)}

    def _check_kept(self, served: Pair | None, base: str | None) -> None:
        """The newest pair is invalid: the guild keeps the pair of the last check, unless a
        commit pushed since (or the base commit moving) could have made a valid one, which the
        service may have seen as a head on the way."""
        model = self.layered
        if LAYERED_GUILD not in self.checked or base != self.checked_base:
            return
        if any(model.valid(sha) for sha in model.history[BASE][self.checked_heads[BASE] :]):
            return
        for sha in model.history[DEPENDENT][self.checked_heads[DEPENDENT] :]:
            if model.pair_valid((sha, (base,) if model.extends(sha) and base else ())):
                return
        before = self.checked[LAYERED_GUILD]
        assert served == before, (
            f"{LAYERED_GUILD} went from {_short(before)} to {_short(served)} though nothing "
            "valid was pushed since"
        )


def _short(pair: Pair | None) -> str:
    if pair is None:
        return "nothing"
    sha, below = pair
    return sha[:7] + "".join(f" + {BASE}@{base[:7]}" for base in below)


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
