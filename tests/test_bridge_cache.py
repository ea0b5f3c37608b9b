"""The resolver cache: answers from memory, switched by activation, bounded, never another guild's.

States are written straight into the store (`tests.harness.Store`), so these tests need
no sync and no worker; the cache is driven through its public methods (`lookup`, `resolve`,
`reload`, `on_activation`, `preview`, `stats`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from github_app import metrics
from github_app.bridge.resolver_cache import QueryError, ResolverCache
from github_app.runtime import Runtime
from github_app.store import installations
from github_app.store.models import BranchStatus
from tests.harness import GITHUB_URL, Store, prompt_files

pytestmark = pytest.mark.anyio

GUILD, OTHER, THIRD = "111", "222", "333"
BRIEF = (("category", "meeting"), ("type", "brief"), ("channel", "standup"))


@pytest.fixture
def queries(runtime: Runtime) -> Iterator[list[str]]:
    """Every SQL statement the runtime's engine runs while the test runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    engine = runtime.database.engine
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def hits() -> float:
    value = metrics.REGISTRY.get_sample_value(
        "guildprompts_resolver_cache_requests_total", {"result": "hit"}
    )
    return value or 0.0


async def answer(cache: ResolverCache, guild: str, query: Any = BRIEF) -> dict[str, Any]:
    return (await cache.resolve(guild, query)).json()


async def test_a_bound_guild_gets_the_pinned_answer(runtime: Runtime, store: Store) -> None:
    sha = store.bound(GUILD)
    cache = ResolverCache(runtime, 100)

    body = await answer(cache, GUILD)

    assert body == {
        "content": "v1 brief meeting in #standup: {messages} {unknown_thing}\n",
        "source": "custom",
        "file_path": "prompts/meeting/brief.md",
        "tried_paths": ["prompts/meeting/brief.md"],
        "route": "by_type",
        "repository": "octo-org/prompts",
        "branch": "main",
        "commit_sha": sha,
        "schema_version": "v2",
        "parameters": {"max_tokens": 300},
        "description": None,
        "metadata": {},
        "github_file_url": f"{GITHUB_URL}/octo-org/prompts/blob/{sha}/prompts/meeting/brief.md",
        "is_stale": False,
        "status_message": f"serving {sha[:7]}",
    }


async def test_routing_variables_are_rendered_and_the_bots_are_left(
    runtime: Runtime, store: Store
) -> None:
    store.bound(GUILD)
    cache = ResolverCache(runtime, 100)

    body = await answer(cache, GUILD, {"category": "Planning!", "messages": "ignored"})

    # The guild comes from the URL; `messages` is the bot's, never a routing variable.
    # rendered with the value as the bot sent it; routed with the path-safe `planning_`
    assert body["content"] == "v1 default for Planning! in 111: {messages}\n"
    assert body["tried_paths"] == ["prompts/planning_/default.md", "prompts/default.md"]


async def test_a_guild_without_binding_gets_the_built_in_defaults(runtime: Runtime) -> None:
    cache = ResolverCache(runtime, 100)

    body = await answer(cache, THIRD, {"category": "meeting"})

    assert body["source"] == "default"
    assert body["content"] and body["commit_sha"] is None and body["repository"] is None
    assert body["github_file_url"] is None and body["is_stale"] is False
    assert "no prompt repository" in body["status_message"]


async def test_a_guild_only_ever_reads_its_own_binding(runtime: Runtime, store: Store) -> None:
    store.bound_apart(GUILD, OTHER)
    cache = ResolverCache(runtime, 100)

    mine = await answer(cache, GUILD, {**dict(BRIEF), "guild": OTHER, "guild_id": OTHER})
    theirs = await answer(cache, OTHER)
    nobody = await answer(cache, THIRD)

    assert mine["content"].startswith("public") and mine["repository"] == "octo-org/prompts"
    assert theirs["content"].startswith("secret")
    assert "secret" not in nobody["content"] and nobody["source"] == "default"


async def test_a_hit_touches_no_database(
    runtime: Runtime, store: Store, queries: list[str]
) -> None:
    store.bound(GUILD)
    cache = ResolverCache(runtime, 100)
    first = await cache.resolve(GUILD, BRIEF)
    before = hits()
    queries.clear()

    def unusable(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the hit path opened a database session")

    runtime.database.session = unusable  # type: ignore[method-assign]
    runtime.database.engine.dispose()
    for _ in range(1000):
        assert cache.lookup(GUILD, BRIEF) is first
    again = await cache.resolve(GUILD, dict(BRIEF))  # another spelling of the same context

    assert again is first
    assert queries == []
    assert hits() - before == 1001


async def test_guilds_on_one_branch_share_one_snapshot(
    runtime: Runtime, store: Store, queries: list[str]
) -> None:
    store.repository()
    store.commit(1, prompt_files("v1"))
    for guild in (GUILD, OTHER, THIRD):
        store.bind(guild)
    cache = ResolverCache(runtime, 100)
    queries.clear()

    for guild in (GUILD, OTHER, THIRD):
        for category in ("meeting", "discussion"):
            await answer(cache, guild, {"category": category})

    assert cache.stats()["repositories_loaded"] == 1
    assert cache.stats()["repositories"] == 1
    assert sum("FROM snapshot_files" in q for q in queries) == 1


async def test_memory_stays_within_the_configured_size(runtime: Runtime) -> None:
    cache = ResolverCache(runtime, 3)

    for channel in range(10):
        await answer(cache, GUILD, {"channel": f"c{channel}"})

    assert cache.stats()["entries"] == 3
    assert cache.lookup(GUILD, (("channel", "c9"),)) is not None
    assert cache.lookup(GUILD, (("channel", "c0"),)) is None


async def test_an_activation_switches_what_is_served(runtime: Runtime, store: Store) -> None:
    store.bound(GUILD)
    cache = ResolverCache(runtime, 100)
    old = await cache.resolve(GUILD, BRIEF)

    sha = store.commit(1, prompt_files("v2"))
    assert cache.lookup(GUILD, BRIEF) is old  # until told: no query per request
    await cache.on_activation(store.generation())

    assert cache.lookup(GUILD, BRIEF) is None
    new = await answer(cache, GUILD)
    assert new["content"].startswith("v2") and new["commit_sha"] == sha
    assert (await cache.resolve(GUILD, BRIEF)).etag != old.etag


async def test_a_rejected_commit_changes_nothing_served(runtime: Runtime, store: Store) -> None:
    good = store.bound(GUILD)
    cache = ResolverCache(runtime, 100)
    before = await answer(cache, GUILD)

    error = {
        "path": "PATH",
        "line": 2,
        "severity": "error",
        "code": "path-syntax",
        "message": "bad",
        "hint": "",
    }
    store.commit(
        1,
        {"PATH": b"routes: [\n"},
        valid=False,
        diagnostics=[error],
        message=f"serving {good[:7]}, broken rejected: 1 error",
    )
    await cache.reload()
    after = await answer(cache, GUILD)

    assert after["content"] == before["content"] and after["commit_sha"] == good
    assert after["is_stale"] is False
    assert "rejected" in after["status_message"]


async def test_a_failing_branch_is_served_stale(runtime: Runtime, store: Store) -> None:
    good = store.bound(GUILD)
    store.branch_status(1, BranchStatus.ERROR, "syncing failed: GitHub unreachable")
    cache = ResolverCache(runtime, 100)

    body = await answer(cache, GUILD)

    assert body["is_stale"] is True and body["commit_sha"] == good
    assert body["source"] == "custom" and "unreachable" in body["status_message"]


async def test_lost_access_falls_back_and_leaves_memory(runtime: Runtime, store: Store) -> None:
    store.repository()
    store.commit(1, prompt_files("secret"))
    store.bind(GUILD)
    cache = ResolverCache(runtime, 100)
    await answer(cache, GUILD)
    assert cache.stats()["repositories"] == 1

    store.db(installations.remove_installation, 77, reason="the App was uninstalled")
    await cache.on_activation(store.generation())
    body = await answer(cache, GUILD)

    assert body["source"] == "fallback" and "secret" not in body["content"]
    assert "uninstalled" in body["status_message"]
    assert cache.stats()["repositories"] == 0
    assert cache.stats()["entries"] == 1  # only the fallback answer is left


async def test_a_bound_guild_not_synced_yet_gets_the_fallback(
    runtime: Runtime, store: Store
) -> None:
    store.repository()
    store.bind(GUILD)
    cache = ResolverCache(runtime, 100)

    body = await answer(cache, GUILD)

    assert body["source"] == "fallback" and body["repository"] == "octo-org/prompts"
    assert "not synced yet" in body["status_message"]


async def test_a_snapshot_purged_behind_the_map_is_never_served(
    runtime: Runtime, store: Store
) -> None:
    store.repository()
    store.commit(1, prompt_files("secret"))
    store.bind(GUILD)
    cache = ResolverCache(runtime, 100)
    await cache.reload()
    store.db(installations.purge_repository_content, 1, reason="access lost")

    body = await answer(cache, GUILD)  # the map still names the purged snapshot

    assert body["source"] == "fallback" and "secret" not in body["content"]


async def test_bad_requests_are_refused_clearly(runtime: Runtime) -> None:
    cache = ResolverCache(runtime, 100)
    with pytest.raises(QueryError, match="invalid guild id"):
        await cache.resolve("12ab", {})
    with pytest.raises(QueryError, match="invalid context key"):
        await cache.resolve(GUILD, {"bad key": "x"})
    with pytest.raises(QueryError, match="text or a number"):
        await cache.resolve(GUILD, {"category": ["meeting"]})
    with pytest.raises(QueryError, match="too many"):
        await cache.resolve(GUILD, {f"k{i}": "x" for i in range(40)})


async def test_preview_caches_nothing(runtime: Runtime, store: Store) -> None:
    store.bound(GUILD)
    cache = ResolverCache(runtime, 100)

    preview = await cache.preview(GUILD, {"category": "meeting"})

    assert preview.answer["content"].startswith("v1 meeting")
    assert preview.context.to_dict() == {"category": "meeting", "guild": GUILD}
    assert preview.state is not None and preview.state.guild_id == GUILD
    assert cache.stats()["entries"] == 0 and cache.stats()["repositories"] == 0


async def test_the_etag_names_the_body(runtime: Runtime) -> None:
    cache = ResolverCache(runtime, 100)
    one = await cache.resolve(GUILD, {"category": "meeting"})
    same = await cache.resolve(OTHER, {"category": "meeting"})
    other = await cache.resolve(GUILD, {"category": "moderation"})
    assert json.loads(one.body)["content"] != json.loads(other.body)["content"]
    assert one.etag == same.etag and one.etag != other.etag
    assert one.headers["ETag"] == one.etag


async def test_guilds_on_one_snapshot_share_answers_unless_prompts_name_the_guild(
    runtime: Runtime, store: Store
) -> None:
    shared = {k: v for k, v in prompt_files("v1").items() if k != "prompts/default.md"}
    shared["prompts/default.md"] = b"v1 default for {category}: {messages}\n"
    store.repository()
    store.commit(1, shared)
    store.repository("octo-org/per-guild", 2)
    store.commit(2, prompt_files("mine"))  # its default prompt says {guild}
    for guild in (GUILD, OTHER):
        store.bind(guild)
    store.bind(THIRD, "octo-org/per-guild", 2)
    store.bind("444", "octo-org/per-guild", 2)
    cache = ResolverCache(runtime, 100)

    first = await answer(cache, GUILD, {"category": "support"})
    second = await answer(cache, OTHER, {"category": "support"})
    assert first == second and cache.stats()["entries"] == 1  # one answer for both guilds
    assert cache.lookup(OTHER, (("category", "support"),)) is not None

    third = await answer(cache, THIRD, {"category": "support"})
    fourth = await answer(cache, "444", {"category": "support"})
    assert third["content"] == f"mine default for support in {THIRD}: {{messages}}\n"
    assert fourth["content"].endswith("in 444: {messages}\n")
    assert cache.stats()["entries"] == 3
