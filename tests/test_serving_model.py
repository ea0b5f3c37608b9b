"""The serving invariant, model-based: random interleavings of what GitHub, guilds and workers
do, checked after the queue settles (see `tests/serving_model.py` for the system and model).

After every `settle_and_check` and at the end of each example: every guild serves exactly the
head of its branch when that head is valid and the guild may read it (or a valid commit of
that branch it may read, or nothing); no guild serves content it may not read; every delivered
webhook is stored and done; at most one completed check run per commit.

`LayeredMachine` (below) checks the same promise for a guild repository that may extend a base:
what a guild serves is the pair (its commit, the base's commit).

The CI profile (the default, registered in conftest) stays under two minutes per database;
`--hypothesis-profile=long` runs thousands of steps. Failing examples found once are kept below
as explicit regression tests.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from github_app.store.migrate import open_database
from github_app.sync.records import record_commit
from github_app.worker import Worker
from tests.serving_model import (
    BASE,
    BASE_GUILD,
    BASE_KINDS,
    DEPENDENT,
    DEPENDENT_KINDS,
    GUILDS,
    LAYERED_GUILD,
    OPEN,
    REPOSITORIES,
    SECRET,
    LayeredSystem,
    System,
)

repositories = st.sampled_from(REPOSITORIES)
guilds = st.sampled_from(GUILDS)
allowed = st.frozensets(st.sampled_from(GUILDS), max_size=3)
FAULTS = {
    "5xx": {"status": 502},
    "unavailable": {"status": 503},
    "rate limit": {"status": 429, "retry_after": 60},
    "primary limit": {"status": 403, "reset_in": 120.0},
}
FAULT_PATHS = ("/git/ref/", "/git/trees/", "/git/blobs/", "/check-runs", "/access_tokens")


class _DrivenMachine(RuleBasedStateMachine):
    """A machine driving a `System` (of `system_type`) on an event loop of its own, one per
    example, and counting examples and steps for the run's summary."""

    database_url: str = ""
    examples = 0
    steps = 0
    system_type: type[System] = System

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.system = self.system_type(self.database_url)
        self.run(self.system.start())
        type(self).examples += 1

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    async def final_check(self) -> None:
        await self.system.check()

    def teardown(self) -> None:
        try:
            self.run(self.final_check())
        finally:
            self.run(self.system.close())
            self.loop.close()


class ServingMachine(_DrivenMachine):
    @invariant()
    def count(self) -> None:
        """Counts steps for the run's summary (checked after every rule)."""
        ServingMachine.steps += 1

    # ---- GitHub ------------------------------------------------------------------------------

    @rule(name=repositories, valid=st.booleans(), allowed=allowed)
    def push(self, name: str, valid: bool, allowed: frozenset[str]) -> None:
        self.system.push(name, valid=valid, allowed=allowed)

    @rule(name=repositories, data=st.data())
    def force_push(self, name: str, data: st.DataObject) -> None:
        history = self.system.model.history[name]
        self.system.force_push(name, data.draw(st.sampled_from(history), label="to"))

    @precondition(lambda self: bool(self.system.outbox))
    @rule(data=st.data(), again=st.booleans())
    def deliver(self, data: st.DataObject, again: bool) -> None:
        """Out of order (any waiting webhook), and sometimes delivered twice."""
        index = data.draw(st.integers(0, len(self.system.outbox) - 1), label="webhook")
        self.run(self.system.deliver(index, again=again))

    @precondition(lambda self: any(h.event == "push" for h in self.system.outbox))
    @rule(data=st.data())
    def lose_push(self, data: st.DataObject) -> None:
        """GitHub never delivers a push (the reconcile loop must catch up)."""
        pushes = [i for i, hook in enumerate(self.system.outbox) if hook.event == "push"]
        self.system.outbox.pop(data.draw(st.sampled_from(pushes), label="lost"))

    @rule(kind=st.sampled_from(sorted(FAULTS)), path=st.sampled_from(FAULT_PATHS))
    def github_fails(self, kind: str, path: str) -> None:
        self.system.fake.fail_next(path, times=2, **FAULTS[kind])

    @rule()
    def installation_tokens_expire(self) -> None:
        self.system.fake.clock.advance(3700)

    @rule(name=repositories, private=st.booleans())
    def visibility(self, name: str, private: bool) -> None:
        self.system.set_private(name, private)

    @precondition(lambda self: self.system.installed)
    @rule()
    def uninstall(self) -> None:
        self.run(self.system.uninstall())

    @precondition(lambda self: not self.system.installed)
    @rule()
    def reinstall(self) -> None:
        self.run(self.system.reinstall())

    # ---- guilds --------------------------------------------------------------------------------

    @rule(guild=guilds, name=repositories, token=st.sampled_from(["none", "valid", "bogus"]))
    def bind(self, guild: str, name: str, token: str) -> None:
        secret = None
        if token == "valid":
            secret = self.system.fake.add_pat()
        elif token == "bogus":
            secret = "github_pat_bogus0000000000000000000000"
        response = self.run(self.system.bind(guild, name, secret))
        if response.status_code == 503:  # GitHub failed while the token was tried: not saved
            assert secret is not None, response.text
            return
        if token == "bogus":
            assert response.status_code in (403, 422), response.text
            return
        assert response.status_code in (200, 202, 403, 409, 422), response.text
        self.system.model.accepted[guild] = name
        if secret is None:
            self.system.model.tokens.pop(guild, None)
        else:
            self.system.model.tokens[guild] = secret

    @precondition(lambda self: bool(self.system.model.tokens))
    @rule(data=st.data())
    def revoke_token(self, data: st.DataObject) -> None:
        guild = data.draw(st.sampled_from(sorted(self.system.model.tokens)), label="guild")
        self.system.fake.revoke_pat(self.system.model.tokens[guild])

    @rule(guild=guilds)
    def unbind(self, guild: str) -> None:
        response = self.run(self.system.unbind(guild))
        assert response.status_code in (200, 404), response.text
        self.system.model.accepted.pop(guild, None)
        self.system.model.tokens.pop(guild, None)

    @rule(guild=guilds)
    def refresh(self, guild: str) -> None:
        response = self.run(self.system.refresh(guild))
        assert response.status_code in (200, 202, 403, 404, 409, 422, 502), response.text

    # ---- the service ---------------------------------------------------------------------------

    @rule(count=st.integers(1, 4))
    def process(self, count: int) -> None:
        self.run(self.system.process(count))

    @rule(steps=st.integers(1, 40))
    def worker_crashes(self, steps: int) -> None:
        self.run(self.system.crash(steps))

    @rule()
    def reconcile(self) -> None:
        from github_app.loops import reconcile

        self.run(reconcile(self.system.runtime))

    @rule()
    def settle_and_check(self) -> None:
        self.run(self.system.check())


@pytest.fixture
def upgraded(database_url: str) -> str:
    open_database(database_url, auto_upgrade=True).dispose()
    return database_url


def test_the_serving_invariant_holds(upgraded: str) -> None:
    ServingMachine.database_url = upgraded
    ServingMachine.examples = ServingMachine.steps = 0
    started = time.monotonic()
    run_state_machine_as_test(ServingMachine)
    print(
        f"serving model: {ServingMachine.examples} examples, {ServingMachine.steps} steps "
        f"in {time.monotonic() - started:.0f} s"
    )


__all__ = ["OPEN", "SECRET"]


# ---- failing examples the state machine found, kept as regression tests ------------------------


def _replay(database_url: str, steps: Any) -> None:
    ServingMachine.database_url = database_url
    machine = ServingMachine()
    try:
        steps(machine)
    finally:
        machine.teardown()


def test_a_token_binds_a_repository_made_public_after_the_app_left(upgraded: str) -> None:
    def steps(machine: ServingMachine) -> None:
        machine.visibility(name=SECRET, private=False)
        machine.uninstall()
        machine.settle_and_check()
        machine.bind(guild=GUILDS[0], name=SECRET, token="valid")

    _replay(upgraded, steps)


def test_a_push_delivered_after_the_uninstall_does_not_bring_the_installation_back(
    upgraded: str,
) -> None:
    def steps(machine: ServingMachine) -> None:
        machine.system.push(SECRET, valid=True, allowed=frozenset())
        machine.uninstall()
        machine.run(machine.system.deliver(0, again=False))  # sent before the uninstall
        machine.bind(guild=GUILDS[0], name=SECRET, token="valid")

    _replay(upgraded, steps)


def test_binding_again_without_the_token_stops_serving_a_guild_the_path_does_not_allow(
    upgraded: str,
) -> None:
    def steps(machine: ServingMachine) -> None:
        machine.bind(guild=GUILDS[2], name=SECRET, token="valid")
        machine.settle_and_check()
        machine.bind(guild=GUILDS[2], name=SECRET, token="none")
        machine.settle_and_check()

    _replay(upgraded, steps)


def test_a_revoked_token_stops_serving_after_the_app_left(upgraded: str) -> None:
    """The reconcile loop read the branch with the revoked token itself (the App was gone): its
    401 was logged and the guilds' tokens were never tried, so the guild kept being served."""

    def steps(machine: ServingMachine) -> None:
        machine.bind(guild=GUILDS[2], name=SECRET, token="valid")
        machine.uninstall()
        machine.settle_and_check()
        machine.system.fake.revoke_pat(machine.system.model.tokens[GUILDS[2]])
        machine.settle_and_check()

    _replay(upgraded, steps)


def test_a_revoked_token_does_not_stand_in_for_another_guilds_token(upgraded: str) -> None:
    """Once the revoked token's guild stopped being served, the branch was still read with that
    token (the newest given), so a push never reached the guild whose token works."""

    def steps(machine: ServingMachine) -> None:
        machine.bind(guild=GUILDS[1], name=SECRET, token="valid")
        machine.bind(guild=GUILDS[2], name=SECRET, token="valid")
        machine.uninstall()
        machine.settle_and_check()
        machine.system.fake.revoke_pat(machine.system.model.tokens[GUILDS[2]])
        machine.settle_and_check()
        machine.push(name=SECRET, valid=True, allowed=frozenset())
        machine.settle_and_check()

    _replay(upgraded, steps)


# ---- layered repositories ----------------------------------------------------------------------
#
# The guild repository may extend a base (tests/serving_model.py `LayeredSystem`): a guild serves
# exactly its head composed with the base's newest valid commit when that pair is valid (validity
# computed with promptrepo, not the service); else it keeps its last good pair; at every step what
# it serves is a valid pair, never an older head of either repository than before. The reconcile
# loop runs only when a webhook was lost, so the webhooks alone must bring everything else.

LAYERED_REPOSITORIES = (DEPENDENT, BASE)
LAYERED_CI = {"max_examples": 3, "stateful_step_count": 15}  # a few seconds per database


def layered_settings() -> settings:
    """The CI profile's run is cut to a few seconds; a longer profile is taken as it is."""
    current = settings()
    if current.max_examples > settings.get_profile("ci").max_examples:
        return current
    return settings(current, **LAYERED_CI)


class LayeredMachine(_DrivenMachine):
    system_type = LayeredSystem
    system: LayeredSystem

    @invariant()
    def served_pairs_are_valid(self) -> None:
        LayeredMachine.steps += 1
        self.system.check_step()

    async def final_check(self) -> None:
        await self.system.check_layers()

    # ---- GitHub ------------------------------------------------------------------------------

    @rule(kind=st.sampled_from(BASE_KINDS))
    def push_base(self, kind: str) -> None:
        self.system.push_base(kind)

    @rule(kind=st.sampled_from(DEPENDENT_KINDS))
    def push_dependent(self, kind: str) -> None:
        self.system.push_dependent(kind)

    @rule(name=st.sampled_from(LAYERED_REPOSITORIES), data=st.data())
    def force_push(self, name: str, data: st.DataObject) -> None:
        history = self.system.layered.history[name]
        self.system.force_push(name, data.draw(st.sampled_from(history), label="to"))

    @precondition(lambda self: bool(self.system.outbox))
    @rule(data=st.data(), again=st.booleans())
    def deliver(self, data: st.DataObject, again: bool) -> None:
        index = data.draw(st.integers(0, len(self.system.outbox) - 1), label="webhook")
        self.run(self.system.deliver(index, again=again))

    @precondition(lambda self: bool(self.system.outbox))
    @rule(data=st.data())
    def lose_push(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.system.outbox) - 1), label="lost")
        self.system.outbox.pop(index)
        self.system.lost = True

    @rule(kind=st.sampled_from(sorted(FAULTS)), path=st.sampled_from(FAULT_PATHS))
    def github_fails(self, kind: str, path: str) -> None:
        self.system.fake.fail_next(path, times=2, **FAULTS[kind])

    # ---- guilds --------------------------------------------------------------------------------

    @precondition(lambda self: not self.system.base_bound)
    @rule()
    def bind_base(self) -> None:
        """A guild serves the base itself (the base is then followed as a binding too)."""
        response = self.run(self.system.bind(BASE_GUILD, BASE, None))
        assert response.status_code in (200, 202), response.text
        self.system.base_bound = True

    @precondition(lambda self: self.system.base_bound)
    @rule()
    def unbind_base(self) -> None:
        response = self.run(self.system.unbind(BASE_GUILD))
        assert response.status_code == 200, response.text
        self.system.base_bound = False

    # ---- the service ---------------------------------------------------------------------------

    @rule(count=st.integers(1, 4))
    def process(self, count: int) -> None:
        self.run(self.system.process(count))

    @rule(steps=st.integers(1, 40))
    def worker_crashes(self, steps: int) -> None:
        self.run(self.system.crash(steps))

    @rule()
    def settle_and_check(self) -> None:
        self.run(self.system.check_layers())


def test_a_layered_guild_serves_its_newest_valid_pair(upgraded: str) -> None:
    LayeredMachine.database_url = upgraded
    LayeredMachine.examples = LayeredMachine.steps = 0
    started = time.monotonic()
    run_state_machine_as_test(LayeredMachine, settings=layered_settings())
    print(
        f"layered serving model: {LayeredMachine.examples} examples, {LayeredMachine.steps} "
        f"steps in {time.monotonic() - started:.0f} s"
    )


# ---- failing examples of the layered model, kept as regression tests ---------------------------


def _layered(database_url: str, scenario: Any) -> None:
    async def run() -> None:
        system = LayeredSystem(database_url)
        try:
            await system.start()
            await scenario(system)
        finally:
            await system.close()

    asyncio.run(run())


def test_extending_again_a_base_nobody_followed_meanwhile_reads_its_new_head(upgraded: str) -> None:
    """While nothing extended the base (and no guild bound it) its pushes were not synced; the
    guild repository extending it again was built on the base commit stored before, and served
    it until the reconcile loop came by: (D3, B1) instead of (D3, B2)."""

    async def scenario(system: LayeredSystem) -> None:
        system.push_dependent("standalone")
        await system.check_layers()
        base = system.push_base("valid")  # nobody follows the base: nothing syncs it
        await system.check_layers()
        own = system.push_dependent("plain")
        await system.check_layers()  # no webhook lost: the reconcile loop does not run
        assert system.served(LAYERED_GUILD) == (own, (base,))

    _layered(upgraded, scenario)


def test_a_sync_that_loses_the_branch_to_a_rebase_does_not_bring_back_the_older_base(
    upgraded: str,
) -> None:
    """Two workers. The push of D2 is checked over the base commit B1; before it is recorded,
    the base's push activates B2 and its `rebase` serves (D2, B2). The push's sync then lost the
    branch's conclusion, read the head again (still D2) and recorded the composition it had
    checked: the guild went back to (D2, B1), and nothing would move it again."""

    async def scenario(system: LayeredSystem) -> None:
        reached, release = asyncio.Event(), asyncio.Event()
        run_db = system.runtime.run_db

        async def held(fn: Any, *args: Any, **kwargs: Any) -> Any:
            mine = fn is record_commit and kwargs.get("head") and kwargs["full_name"] == DEPENDENT
            if mine and not reached.is_set():
                reached.set()
                await release.wait()
            return await run_db(fn, *args, **kwargs)

        system.runtime.run_db = held  # type: ignore[method-assign]
        own = system.push_dependent("plain")
        await system.deliver(0, again=False)
        first = asyncio.create_task(system.worker.run_once())
        await asyncio.wait_for(reached.wait(), 30)
        base = system.push_base("valid")
        await system.deliver(0, again=False)
        other = Worker(system.runtime, worker_id="other", clock=lambda: system.now)
        while await other.run_once():  # the base's push, then the rebase it queued
            pass
        assert system.served(LAYERED_GUILD) == (own, (base,))
        release.set()
        await first
        await system.check_layers()
        assert system.served(LAYERED_GUILD) == (own, (base,))

    _layered(upgraded, scenario)


def test_binding_again_a_branch_nobody_followed_meanwhile_serves_its_new_head(
    upgraded: str,
) -> None:
    """While no guild bound the base (and nothing extended it) its push was not synced; binding
    it again found the stored commit `ok` and live, went live on it at once without a sync, and
    served the older commit until the reconcile loop came by. Only a followed branch binds at
    once now."""

    async def scenario(system: LayeredSystem) -> None:
        system.push_dependent("standalone")  # nothing extends the base
        assert (await system.bind(BASE_GUILD, BASE, None)).status_code in (200, 202)
        await system.check_layers()
        assert (await system.unbind(BASE_GUILD)).status_code == 200
        head = system.push_base("valid")
        await system.check_layers()  # delivered; nobody follows the base: not synced
        assert (await system.bind(BASE_GUILD, BASE, None)).status_code in (200, 202)
        await system.settle(reconcile_loop=False)
        assert system.served(BASE_GUILD) == (head, ())

    _layered(upgraded, scenario)
