"""The serving invariant, model-based: random interleavings of what GitHub, guilds and workers
do, checked after the queue settles (see `tests/serving_model.py` for the system and model).

After every `settle_and_check` and at the end of each example: every guild serves exactly the
head of its branch when that head is valid and the guild may read it (or a valid commit of
that branch it may read, or nothing); no guild serves content it may not read; every delivered
webhook is stored and done; at most one completed check run per commit.

The CI profile (the default, registered in conftest) stays under two minutes per database;
`--hypothesis-profile=long` runs thousands of steps. Failing examples found once are kept below
as explicit regression tests.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from github_app.store.migrate import open_database
from tests.serving_model import GUILDS, OPEN, REPOSITORIES, SECRET, System

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


class ServingMachine(RuleBasedStateMachine):
    database_url: str = ""
    examples = 0
    steps = 0

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.system = System(self.database_url)
        self.run(self.system.start())
        ServingMachine.examples += 1

    @invariant()
    def count(self) -> None:
        """Counts steps for the run's summary (checked after every rule)."""
        ServingMachine.steps += 1

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        try:
            self.run(self.system.check())
        finally:
            self.run(self.system.close())
            self.loop.close()

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
