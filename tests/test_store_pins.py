"""The store under pins, history and previews: what serving honours, what retention keeps, and
writes that two requests may race on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from github_app.store import (
    bindings,
    history,
    installations,
    pins,
    previews,
    retention,
    serving,
    snapshots,
)
from github_app.store.models import BindingState, ChannelPreview, GuildActivation, GuildPin
from tests.harness import FULL_NAME, Store, bridge_runtime, open_world, prompt_files

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """On SQLite and on PostgreSQL: the upserts and the history trim are spelled per engine."""
    runtime = bridge_runtime(database_url)
    yield Store(runtime)
    await runtime.aclose()


GUILD = "111"


def _snapshot(store: Store, sha: str):
    return store.db(snapshots.find_snapshot, 1, sha)


def _pin(store: Store, sha: str, actor: str = "42") -> None:
    def write(session) -> None:
        snapshot = snapshots.find_snapshot(session, 1, sha)
        pins.set_pin(session, GUILD, snapshot, actor=actor, reason="pin", keep=10)

    store.db(write)


async def test_serving_honours_a_pin_only_while_the_binding_serves_its_repository(
    store: Store,
) -> None:
    old = store.bound(GUILD, "old")
    new = store.commit(1, prompt_files("new"))
    _pin(store, old)
    state = store.db(serving.guild_state, GUILD)
    assert (state.commit_sha, state.pinned_sha, state.branch_sha) == (old, old, new)
    assert f"pinned to {old[:7]} by 42" in state.status_message

    store.lose_access(GUILD, "the App was uninstalled")
    lost = store.db(serving.guild_state, GUILD)
    assert lost.snapshot_id is None and lost.pinned_sha is None, "no access: no pin either"

    store.db(bindings.set_binding_state, GUILD, BindingState.ACTIVE, "")
    store.repository("octo-org/other", 2)
    store.commit(2, prompt_files("other"))
    store.bind(GUILD, "octo-org/other", 2)
    moved = store.db(serving.guild_state, GUILD)
    assert moved.pinned_sha is None and moved.commit_sha != old, "a pin is per repository"


async def test_repinning_updates_the_one_row_and_invalid_commits_are_refused(store: Store) -> None:
    first = store.bound(GUILD, "first")
    second = store.commit(1, prompt_files("second"))
    _pin(store, first)
    _pin(store, second, actor="7")
    rows = store.db(lambda s: list(s.scalars(select(GuildPin))))
    assert [(row.commit_sha, row.pinned_by) for row in rows] == [(second, "7")]
    broken = store.commit(1, {"PATH": b"routes: [\n"}, valid=False)
    with pytest.raises(ValueError, match="failed validation"):
        _pin(store, broken)


async def test_history_keeps_the_newest_per_guild_and_outlives_pruning(store: Store) -> None:
    def write(session) -> None:
        for number in range(6):
            history.record_activation(session, GUILD, 1, f"{number:040x}", trigger="push", keep=3)
        history.record_activation(session, "222", 1, "f" * 40, trigger="push", keep=3)

    store.db(write)
    kept = store.db(history.guild_history, GUILD, 10)
    assert [row.commit_sha[-1] for row in kept] == ["5", "4", "3"]
    store.db(retention.prune, timedelta(0), None)
    count = store.db(lambda s: s.scalar(select(func.count()).select_from(GuildActivation)))
    assert count == 4, "pruning by age never touches the history"


async def test_pruning_keeps_a_pinned_snapshot(store: Store) -> None:
    old = store.bound(GUILD, "old")
    store.commit(1, prompt_files("new"))
    other = store.commit(1, prompt_files("newer"))
    _pin(store, old)
    store.db(retention.prune, timedelta(0), None)
    assert _snapshot(store, old) is not None, "pinned"
    assert _snapshot(store, other) is not None, "active"
    assert store.db(serving.guild_state, GUILD).commit_sha == old


async def test_closing_a_pull_request_ends_its_previews(store: Store) -> None:
    store.bound(GUILD)
    head = store.commit(1, prompt_files("pr"), branch="feature")
    before = store.generation()
    assert store.db(previews.record_pull_request, 1, 5, head, open_=True) is False
    store.db(previews.set_preview, GUILD, "9", 1, 5, actor="42")
    store.db(previews.set_preview, GUILD, "9", 1, 5, actor="43")  # again: one row
    [active] = store.db(previews.active_previews)
    assert (active.channel_id, active.commit_sha) == ("9", head)
    assert store.db(previews.record_pull_request, 1, 5, head, open_=False) is True
    assert store.generation() > before
    assert store.db(previews.active_previews) == []
    rows = store.db(lambda s: s.scalar(select(func.count()).select_from(ChannelPreview)))
    assert rows == 0


async def test_purging_a_repository_with_a_pin_deletes_the_pin_too(store: Store) -> None:
    old = store.bound(GUILD, "old")
    store.commit(1, prompt_files("new"))
    _pin(store, old)
    report = store.db(installations.purge_repository_content, 1, reason="access lost")
    assert report.snapshots == 2 and store.db(pins.get_pin, GUILD) is None
    state = store.db(serving.guild_state, GUILD)
    assert state.snapshot_id is None and state.pinned_sha is None


async def test_a_request_made_by_name_before_the_repository_was_known_goes_live_with_its_id(
    sqlite_url: str,
) -> None:
    async with open_world(sqlite_url, private=False) as world:
        world.request_binding(GUILD, full_name=FULL_NAME)  # no repository id yet
        assert world.pending(GUILD).repository_id is None
        sha = world.push(prompt_files("named"))
        assert (await world.sync(sha)).activated
        state = world.state(GUILD)
        assert (state.repository_id, state.commit_sha) == (world.repository_id, sha)
