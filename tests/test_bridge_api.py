"""The bridge's HTTP API through HTTP (httpx.ASGITransport on the routes).

The first part sets states up directly in the store; the second runs the whole path (PUT -> the
queued sync -> the worker -> the fake GitHub -> the answer) with a worker in the background.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from github_app.bridge.repository_url import RepositoryNameError, parse_repository
from github_app.bridge.resolver_cache import ResolverCache
from github_app.runtime import Runtime
from github_app.store import audit, bindings, deliveries
from github_app.store.errors import DatabaseUnavailableError
from github_app.store.models import BindingState, DeliveryRow
from tests.harness import (
    GITHUB_URL,
    PATH_FILE,
    TOKEN,
    Store,
    bearer,
    bridge_app,
    bridge_runtime,
    bridge_world,
    eventually,
    prompt_files,
    running_bridge,
)
from tests.harness import BridgeWorld as World

pytestmark = pytest.mark.anyio

GUILD, OTHER, THIRD = "111", "222", "333"
ERROR = {
    "path": "prompts/meeting/brief.md",
    "line": 3,
    "column": 1,
    "severity": "error",
    "code": "template-syntax",
    "message": "unclosed placeholder",
    "hint": "close it with }",
}


@pytest.fixture
async def bridge(runtime: Runtime) -> AsyncIterator[tuple[httpx.AsyncClient, ResolverCache]]:
    async with running_bridge(runtime) as pair:
        yield pair


@pytest.fixture
def http(bridge: tuple[httpx.AsyncClient, ResolverCache]) -> httpx.AsyncClient:
    return bridge[0]


# ---- authentication ------------------------------------------------------------------------


async def test_every_endpoint_needs_a_valid_bearer_token(http: httpx.AsyncClient) -> None:
    paths = [
        ("GET", "prompt"),
        ("GET", "config"),
        ("PUT", "config"),
        ("DELETE", "config"),
        ("POST", "refresh"),
        ("POST", "test"),
        ("GET", "events"),
        ("GET", "nowhere"),
    ]
    for method, suffix in paths:
        for headers in (
            {"Authorization": ""},
            bearer("wrong-token"),
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": "Bearer "},
        ):
            response = await http.request(
                method, f"/bridge/v1/guilds/{GUILD}/{suffix}", headers=headers
            )
            assert response.status_code == 401, (method, suffix, headers)
            assert response.json()["error"] == "unauthorized"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert TOKEN not in response.text
    unknown = await http.get("/bridge/v1/nowhere")
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"


async def test_every_error_is_message_and_error(
    bridge: tuple[httpx.AsyncClient, ResolverCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    http, cache = bridge
    wrong_method = await http.post(f"/bridge/v1/guilds/{GUILD}/config", json={})
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {
        "message": "use GET, HEAD, PUT, DELETE here",
        "error": "method_not_allowed",
    }
    assert set(wrong_method.headers["Allow"].replace(" ", "").split(",")) >= {
        "GET",
        "PUT",
        "DELETE",
    }

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug with a secret-looking detail")

    monkeypatch.setattr(cache, "resolve", broken)
    failed = await http.get(f"/bridge/v1/guilds/{GUILD}/prompt", params={"category": "x"})
    assert failed.status_code == 500
    assert failed.json()["error"] == "internal" and "secret" not in failed.text


async def test_without_bridge_tokens_the_bridge_says_what_is_missing(postgres_url: str) -> None:
    # A shared database: no token is generated (an embedded install generates one instead).
    runtime = bridge_runtime(postgres_url, BRIDGE_TOKENS="")
    try:
        transport = httpx.ASGITransport(app=bridge_app(runtime, ResolverCache(runtime, 10)))
        async with httpx.AsyncClient(transport=transport, base_url="http://b.test") as http:
            response = await http.get(f"/bridge/v1/guilds/{GUILD}/prompt", headers=bearer())
    finally:
        await runtime.aclose()
    assert response.status_code == 401
    assert "BRIDGE_TOKENS is unset" in response.json()["message"]


# ---- GET prompt ----------------------------------------------------------------------------


async def test_prompt_answers_with_an_etag_and_304(store: Store, http: httpx.AsyncClient) -> None:
    sha = store.bound(GUILD)

    response = await http.get(
        f"/bridge/v1/guilds/{GUILD}/prompt",
        params={"category": "meeting", "type": "brief", "channel": "ops"},
    )
    body = response.json()
    etag = response.headers["ETag"]
    again = await http.get(
        f"/bridge/v1/guilds/{GUILD}/prompt",
        params={"type": "brief", "category": "meeting", "channel": "ops"},
        headers={"If-None-Match": etag},
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert body["content"] == "v1 brief meeting in #ops: {messages} {unknown_thing}\n"
    assert body["commit_sha"] == sha and body["source"] == "custom"
    assert (
        body["github_file_url"]
        == f"{GITHUB_URL}/octo-org/prompts/blob/{sha}/prompts/meeting/brief.md"
    )
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag


async def test_extra_query_variables_reach_the_context(
    store: Store, http: httpx.AsyncClient
) -> None:
    path_file = PATH_FILE.replace(
        b"routes:\n", b'variables: {team: none}\nroutes:\n  by_team: "prompts/teams/{team}.md"\n'
    ).replace(b"fallback_chain: [", b"fallback_chain: [by_team, ")
    files = {**prompt_files("v1", path_file), "prompts/teams/infra.md": b"Infra: {messages}\n"}
    store.repository()
    store.commit(1, files)
    store.bind(GUILD)

    infra = await http.get(f"/bridge/v1/guilds/{GUILD}/prompt", params={"team": "Infra"})
    other = await http.get(f"/bridge/v1/guilds/{GUILD}/prompt", params={"team": "web"})

    assert infra.json()["content"] == "Infra: {messages}\n"
    assert other.json()["tried_paths"][0] == "prompts/teams/web.md"


async def test_discord_locales_route_and_render(store: Store, http: httpx.AsyncClient) -> None:
    path_file = PATH_FILE.replace(
        b"routes:\n", b'routes:\n  by_locale: "prompts/{locale}/{category}.md"\n'
    ).replace(b"fallback_chain: [", b"fallback_chain: [by_locale, ")
    files = {
        **prompt_files("v1", path_file),
        "prompts/pt/meeting.md": b"Reuniao ({locale}): {messages}\n",
    }
    store.repository()
    store.commit(1, files)
    store.bind(GUILD)

    async def answer(**query: str) -> dict[str, Any]:
        response = await http.get(
            f"/bridge/v1/guilds/{GUILD}/prompt", params={"category": "meeting", **query}
        )
        assert response.status_code == 200
        return dict(response.json())

    user = await answer(locale="pt-BR", guild_locale="fr")
    server = await answer(guild_locale="pt_BR")
    french = await answer(locale="fr", guild_locale="pt-BR")
    missing = await answer()

    assert user["content"] == server["content"] == "Reuniao (pt-BR): {messages}\n"
    assert user["tried_paths"][:2] == ["prompts/pt-br/meeting.md", "prompts/pt/meeting.md"]
    assert french["tried_paths"][:2] == ["prompts/fr/meeting.md", "prompts/meeting.md"]
    assert french["file_path"] == missing["file_path"] == "prompts/meeting/default.md"
    assert missing["tried_paths"][0] == "prompts/meeting.md"
    # `/prompt-config test` sends both of Discord's locales in its body.
    test = await http.post(
        f"/bridge/v1/guilds/{GUILD}/test",
        json={"category": "meeting", "locale": None, "guild_locale": "pt-BR"},
    )
    assert test.status_code == 200 and test.json()["file_path"] == "prompts/pt/meeting.md"


async def test_bad_guild_ids_and_contexts_get_400(http: httpx.AsyncClient) -> None:
    bad_guild = await http.get("/bridge/v1/guilds/not-a-guild/prompt")
    bad_key = await http.get(f"/bridge/v1/guilds/{GUILD}/prompt", params={"9lives": "x"})
    assert bad_guild.status_code == 400 and "invalid guild id" in bad_guild.json()["message"]
    assert bad_key.status_code == 400 and "invalid context key" in bad_key.json()["message"]


async def test_a_guild_cannot_see_another_guilds_content(
    store: Store, http: httpx.AsyncClient
) -> None:
    store.bound_apart(GUILD, OTHER)

    async def content(url_guild: str, **query: str) -> str:
        response = await http.get(
            f"/bridge/v1/guilds/{url_guild}/prompt", params={"category": "meeting", **query}
        )
        return str(response.json()["content"])

    assert (await content(OTHER)).startswith("secret")
    assert (await content(GUILD, guild=OTHER, guild_id=OTHER)).startswith("public")
    assert "secret" not in await content(THIRD, guild=OTHER)
    for suffix in ("config", "events"):
        response = await http.get(f"/bridge/v1/guilds/{THIRD}/{suffix}")
        assert "secret" not in response.text
    test = await http.post(f"/bridge/v1/guilds/{THIRD}/test", json={"guild": OTHER})
    assert "secret" not in test.text


async def test_without_the_database_hits_still_answer_and_misses_say_503(
    store: Store, runtime: Runtime, http: httpx.AsyncClient
) -> None:
    store.bound(GUILD)
    store.repository("octo-org/other", 2)
    store.commit(2, prompt_files("other"))
    store.bind(OTHER, "octo-org/other", 2)
    warm = await http.get(f"/bridge/v1/guilds/{GUILD}/prompt", params={"category": "meeting"})

    def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise DatabaseUnavailableError("the database at sqlite:///x did not answer (gone)")

    runtime.database.session = unavailable  # type: ignore[method-assign]
    hit = await http.get(f"/bridge/v1/guilds/{GUILD}/prompt", params={"category": "meeting"})
    parsed = await http.get(f"/bridge/v1/guilds/{GUILD}/prompt", params={"category": "other"})
    cold = await http.get(f"/bridge/v1/guilds/{OTHER}/prompt", params={"category": "meeting"})

    assert hit.status_code == 200 and hit.content == warm.content
    assert parsed.status_code == 200  # the snapshot is parsed already: no database needed
    assert cold.status_code == 503 and cold.json()["error"] == "unavailable"
    assert "sqlite" not in cold.text


# ---- config --------------------------------------------------------------------------------


async def test_config_shows_the_binding_and_its_errors(
    store: Store, http: httpx.AsyncClient
) -> None:
    good = store.bound(GUILD)
    store.commit(
        1,
        {"PATH": b"routes: [\n"},
        valid=False,
        diagnostics=[ERROR],
        message=f"serving {good[:7]}, xxx rejected: 1 error",
    )

    response = await http.get(f"/bridge/v1/guilds/{GUILD}/config")
    config = response.json()

    assert response.status_code == 200
    assert config["repository"] == "octo-org/prompts" and config["branch"] is None
    assert config["effective_branch"] == "main" and config["enabled"] is True
    assert (config["state"], config["last_sync_outcome"]) == ("active", "rejected")
    assert config["active_sha"] == good and config["latest_sha"] != good
    assert config["errors"] == [ERROR] and config["is_stale"] is False
    assert config["set_by"] == "42" and config["set_at"] and config["last_sync_at"]
    assert config["repo_url"] == f"{GITHUB_URL}/octo-org/prompts"
    assert config["has_token"] is False and config["pending"] is None


async def test_config_of_an_unbound_guild_is_404(http: httpx.AsyncClient) -> None:
    response = await http.get(f"/bridge/v1/guilds/{GUILD}/config")
    assert response.status_code == 404 and "no prompt repository" in response.json()["message"]


async def test_delete_removes_binding_and_request_with_the_actor_audited(
    store: Store, http: httpx.AsyncClient, runtime: Runtime
) -> None:
    store.bound(GUILD)
    store.db(
        bindings.save_pending,
        GUILD,
        repository_full_name="octo-org/other",
        repository_id=None,
        branch=None,
        actor="7",
        expected_version=1,
    )
    before = await http.get(f"/bridge/v1/guilds/{GUILD}/prompt", params={"category": "meeting"})
    assert before.json()["source"] == "custom"

    missing_actor = await http.request("DELETE", f"/bridge/v1/guilds/{GUILD}/config", json={})
    removed = await http.request(
        "DELETE", f"/bridge/v1/guilds/{GUILD}/config", json={"actor": "99"}
    )
    after = await http.get(f"/bridge/v1/guilds/{GUILD}/prompt", params={"category": "meeting"})
    again = await http.request("DELETE", f"/bridge/v1/guilds/{GUILD}/config", json={"actor": "99"})

    assert missing_actor.status_code == 400 and "actor" in missing_actor.json()["message"]
    assert removed.status_code == 200 and removed.json() == {"removed": True, "guild_id": GUILD}
    assert after.json()["source"] == "default"  # switched at once, in this process
    assert again.status_code == 404
    entry = store.db(audit.audit_entries, GUILD)[0]
    assert (entry.action, entry.actor) == ("binding.delete", "99")
    assert store.db(bindings.get_pending, GUILD) is None


async def test_test_previews_without_caching(
    store: Store, bridge: tuple[httpx.AsyncClient, ResolverCache]
) -> None:
    http, cache = bridge
    long_files = prompt_files("v1")
    long_files["prompts/meeting/default.md"] = ("x" * 5000 + " {messages}").encode()
    store.repository()
    sha = store.commit(1, long_files, diagnostics=[{**ERROR, "severity": "warning"}])
    store.bind(GUILD)
    entries = cache.stats()["entries"]

    short = await http.post(
        f"/bridge/v1/guilds/{GUILD}/test",
        json={"category": "meeting", "type": "brief", "channel": "ops"},
    )
    long = await http.post(f"/bridge/v1/guilds/{GUILD}/test", json={"category": "meeting"})
    bad = await http.post(f"/bridge/v1/guilds/{GUILD}/test", json={"category": ["list"]})

    body = short.json()
    assert body["file_path"] == "prompts/meeting/brief.md" and body["commit_sha"] == sha
    assert body["tried_paths"] == ["prompts/meeting/brief.md"] and body["source"] == "custom"
    assert body["preview"].startswith("v1 brief meeting in #ops") and not body["truncated"]
    assert body["unresolved"] == ["messages", "unknown_thing"]
    assert body["diagnostics"] == [{**ERROR, "severity": "warning"}]
    assert body["context"] == {
        "category": "meeting",
        "channel": "ops",
        "guild": GUILD,
        "type": "brief",
    }
    assert long.json()["truncated"] and len(long.json()["preview"]) == 4000
    assert bad.status_code == 400
    assert cache.stats()["entries"] == entries


async def test_events_report_each_problem_once(store: Store, http: httpx.AsyncClient) -> None:
    sha = store.bound(GUILD)
    for _ in range(3):
        store.db(
            audit.record_sync,
            1,
            trigger="reconcile",
            outcome="rejected",
            commit_sha="b" * 40,
            branch="main",
            message="bbbbbbb rejected: 1 error",
        )
    store.db(
        audit.record_sync,
        1,
        trigger="push",
        outcome="activated",
        commit_sha=sha,
        branch="main",
        message="live",
    )
    store.db(
        audit.record_sync,
        1,
        trigger="push",
        outcome="rejected",
        commit_sha="c" * 40,
        branch="other",
        message="another branch",
    )

    events = (await http.get(f"/bridge/v1/guilds/{GUILD}/events")).json()["events"]

    problems = [event for event in events if event["kind"] == "problem"]
    assert len(problems) == 1
    assert problems[0]["action"] == "sync.rejected" and problems[0]["count"] == 3
    assert problems[0]["after"]["commit_sha"] == "b" * 40
    changes = [event for event in events if event["kind"] == "change"]
    assert changes[0]["action"] == "binding.set" and changes[0]["actor"] == "42"


async def test_lost_access_is_an_event(store: Store, http: httpx.AsyncClient) -> None:
    store.bound(GUILD)
    store.lose_access(GUILD, "the App was uninstalled")
    events = (await http.get(f"/bridge/v1/guilds/{GUILD}/events")).json()["events"]
    assert events[0]["action"] == "access.lost"
    assert events[0]["after"]["message"] == "the App was uninstalled"
    state = (await http.get(f"/bridge/v1/guilds/{GUILD}/config")).json()["state"]
    assert state == BindingState.NO_ACCESS


# ---- the repository argument ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "octo-org/prompts",
        " octo-org/prompts/ ",
        "octo-org/prompts.git",
        "https://github.test/octo-org/prompts",
        "http://github.test/octo-org/prompts/",
        "https://www.github.test/octo-org/prompts.git",
        "HTTPS://GitHub.test/octo-org/prompts",
        "git@github.test:octo-org/prompts.git",
        "ssh://git@github.test/octo-org/prompts",
        "github.test/octo-org/prompts",
    ],
)
def test_every_usual_spelling_names_the_repository(text: str) -> None:
    assert parse_repository(text, GITHUB_URL) == "octo-org/prompts"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("git@gitlab.com:octo-org/prompts.git", "another host"),
        ("ftp://github.test/octo-org/prompts", "ftp:// is not"),
        ("https://github.test/octo-org/prompts?tab=readme", "without ?query"),
        ("https://github.test:8443/octo-org/prompts", "another host"),
        ("octo-org/..", "not a GitHub repository name"),
        ("a" * 40 + "/prompts", "not a GitHub account name"),
        ("", "owner/name"),
    ],
)
def test_what_is_not_a_repository_on_this_host_is_refused(text: str, needle: str) -> None:
    with pytest.raises(RepositoryNameError, match=re.escape(needle)):
        parse_repository(text, GITHUB_URL)


def test_an_enterprise_host_under_a_path_is_understood() -> None:
    ghe = "https://ghe.example.test/github"
    assert (
        parse_repository("https://ghe.example.test/github/team/prompts.git", ghe) == "team/prompts"
    )
    with pytest.raises(RepositoryNameError, match="another host"):
        parse_repository("https://github.com/team/prompts", ghe)


# ---- PUT: what is refused before any sync ---------------------------------------------------


@pytest.mark.parametrize(
    ("repository", "needle"),
    [
        ("https://gitlab.com/octo-org/prompts", "only repositories on github.test"),
        ("octo-org", "owner/name"),
        ("octo-org/prompts/tree/main", "not a file, branch"),
        ("-bad-/prompts", "not a GitHub account name"),
        (None, "owner/name"),
    ],
)
async def test_put_refuses_what_is_not_a_repository(
    http: httpx.AsyncClient, repository: Any, needle: str
) -> None:
    response = await http.put(
        f"/bridge/v1/guilds/{GUILD}/config", json={"repository": repository, "actor": "42"}
    )
    assert response.status_code == 400 and needle in response.json()["message"]


async def test_put_refuses_bad_bodies(http: httpx.AsyncClient) -> None:
    url = f"/bridge/v1/guilds/{GUILD}/config"
    not_json = await http.put(url, content=b"{nope")
    not_object = await http.put(url, json=["octo-org/prompts"])
    no_actor = await http.put(url, json={"repository": "octo-org/prompts"})
    bad_branch = await http.put(
        url, json={"repository": "octo-org/prompts", "actor": "42", "branch": "a..b"}
    )
    huge = await http.put(url, content=b" " * (70 * 1024))
    assert [r.status_code for r in (not_json, not_object, no_actor, bad_branch, huge)] == [
        400,
        400,
        400,
        400,
        413,
    ]
    assert "not a branch name" in bad_branch.json()["message"]


async def test_put_without_an_app_or_token_saves_the_request(
    http: httpx.AsyncClient, store: Store
) -> None:
    response = await http.put(
        f"/bridge/v1/guilds/{GUILD}/config", json={"repository": "octo-org/prompts", "actor": "42"}
    )
    assert response.status_code == 409 and response.json()["error"] == "not_installed"
    assert "setup" in response.json()["message"]
    config = (await http.get(f"/bridge/v1/guilds/{GUILD}/config")).json()
    assert config["state"] == "pending" and config["repository"] == "octo-org/prompts"


async def test_put_with_a_stale_version_is_a_conflict(
    http: httpx.AsyncClient, store: Store
) -> None:
    store.bound(GUILD)
    store.bind(GUILD)  # someone else edited: version 2
    response = await http.put(
        f"/bridge/v1/guilds/{GUILD}/config",
        json={"repository": "octo-org/prompts", "actor": "42", "expected_version": 1},
    )
    assert response.status_code == 409 and response.json()["error"] == "conflict"
    assert "changed by someone else" in response.json()["message"]


# ---- the whole path: PUT -> queued sync -> worker -> fake GitHub -> answer --------------------


@pytest.fixture
async def world(sqlite_url: str) -> AsyncIterator[World]:
    async with bridge_world(sqlite_url) as world:
        yield world


async def test_binding_a_public_repository(world: World) -> None:
    sha = world.push(prompt_files("first"))

    response = await world.bind(GUILD)

    assert response.status_code == 200, response.text
    config = response.json()
    assert (config["repository"], config["active_sha"], config["state"]) == (
        "octo-org/prompts",
        sha,
        "active",
    )
    assert (await world.prompt(GUILD, category="meeting"))["content"].startswith("first")
    entries = world.db(audit.audit_entries, GUILD)
    assert {(e.action, e.actor) for e in entries} >= {("binding.request", "42")}


async def _idle(world: World) -> bool:
    stats = world.db(deliveries.queue_stats)
    return stats.pending == 0 and stats.processing == 0


def _deliveries_stored(session: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(DeliveryRow)))


async def test_binding_to_a_commit_already_live_answers_at_once(sqlite_url: str) -> None:
    async with bridge_world(sqlite_url, private=True) as world:
        allowed = PATH_FILE + f'allowed_guilds: ["{GUILD}", "{THIRD}"]\n'.encode()
        sha = world.push(prompt_files("live", allowed))
        assert (await world.bind(GUILD)).status_code == 200
        await eventually(lambda: _idle(world))  # the first sync's check run, other jobs
        mark = len(world.fake.requests)
        queued = world.db(_deliveries_stored)

        fast = await world.bind(THIRD)

        assert fast.status_code == 200, fast.text
        assert (fast.json()["state"], fast.json()["active_sha"]) == ("active", sha)
        assert world.fake.requests[mark:] == []  # no sync: not one request to GitHub
        assert world.db(_deliveries_stored) == queued  # no sync job either
        assert (await world.prompt(THIRD, category="meeting"))["content"].startswith("live")
        # A guild the PATH does not allow still gets the full check, and its refusal.
        refused = await world.bind(OTHER)
        assert refused.status_code == 403, refused.text


async def test_a_push_switches_and_a_broken_push_changes_nothing(world: World) -> None:
    world.push(prompt_files("first"))
    assert (await world.bind(GUILD)).status_code == 200

    second = await world.pushed(prompt_files("second"))
    await eventually(lambda: _serves(world, "second"))
    broken = await world.pushed({"PATH": b"routes: [\n"})
    config = await eventually(lambda: _config_if(world, "rejected"))

    body = await world.prompt(GUILD, category="meeting")
    assert body["content"].startswith("second") and body["commit_sha"] == second
    assert body["is_stale"] is False
    assert config["active_sha"] == second and config["latest_sha"] == broken
    assert any(error["path"] == "PATH" and error["line"] for error in config["errors"])


async def test_refresh_syncs_from_github_now(world: World) -> None:
    world.push(prompt_files("first"))
    assert (await world.bind(GUILD)).status_code == 200
    sha = world.push(prompt_files("missed"))  # no webhook came

    response = await world.http.post(f"/bridge/v1/guilds/{GUILD}/refresh", json={"actor": "9"})

    assert response.status_code == 200, response.text
    assert response.json()["active_sha"] == sha
    assert (await world.prompt(GUILD, category="meeting"))["content"].startswith("missed")
    assert world.db(audit.audit_entries, GUILD)[0].action == "binding.refresh"
    missing = await world.http.post(f"/bridge/v1/guilds/{OTHER}/refresh", json={"actor": "9"})
    assert missing.status_code == 404


async def test_an_invalid_first_commit_is_refused_with_its_errors(world: World) -> None:
    world.push({"PATH": b"routes: [\n"})
    response = await world.bind(GUILD)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid" and body["diagnostics"][0]["path"] == "PATH"
    assert body["errors"] == body["diagnostics"]


async def test_a_slow_sync_answers_202(sqlite_url: str) -> None:
    async with bridge_world(sqlite_url, wait=0) as world:
        world.push(prompt_files("first"))
        response = await world.bind(GUILD)
        assert response.status_code == 202
        assert response.json()["state"] == "pending"
        await eventually(lambda: _serves(world, "first"))


async def test_a_private_repository_needs_allowed_guilds(sqlite_url: str) -> None:
    async with bridge_world(sqlite_url, private=True) as world:
        allowed = PATH_FILE + f'allowed_guilds: ["{GUILD}"]\n'.encode()
        sha = world.push(prompt_files("private", allowed))
        assert (await world.bind(GUILD)).status_code == 200
        other_store = Store(world.runtime)
        other_store.repository("octo-org/mine", 5)
        other_store.commit(5, prompt_files("mine"))
        other_store.bind(OTHER, "octo-org/mine", 5)
        await world.runtime.announce_activation(other_store.generation())

        refused = await world.bind(OTHER)

        assert refused.status_code == 403, refused.text
        message = refused.json()["message"]
        assert f'allowed_guilds: ["{OTHER}"]' in message and "PATH" in message
        assert (await world.prompt(OTHER, category="meeting"))["content"].startswith("mine")
        assert (await world.prompt(GUILD, category="meeting"))["commit_sha"] == sha


async def test_a_token_binds_a_private_repository_without_the_app(sqlite_url: str) -> None:
    async with bridge_world(sqlite_url, private=True, installed=False) as world:
        token = world.fake.add_pat(repos=["octo-org/prompts"])
        sha = world.push(prompt_files("token"))

        response = await world.bind(GUILD, token=token)

        assert response.status_code == 200, response.text
        assert response.json()["has_token"] is True and response.json()["active_sha"] == sha
        for suffix in ("config", "events"):
            text = (await world.http.get(f"/bridge/v1/guilds/{GUILD}/{suffix}")).text
            assert token not in text


async def test_a_pending_binding_completes_when_the_app_is_installed(sqlite_url: str) -> None:
    async with bridge_world(sqlite_url, installed=False) as world:
        sha = world.push(prompt_files("later"))

        response = await world.bind(GUILD, "https://github.test/octo-org/prompts.git/")

        assert response.status_code == 409, response.text
        assert (
            response.json()["install_url"]
            == f"{GITHUB_URL}/apps/{world.fake.app_slug}/installations/new"
        )
        assert (await world.prompt(GUILD))["source"] == "default"
        installation = world.fake.add_installation("octo-org")
        world.fake.update_repo("octo-org/prompts", installation=installation)
        await world.deliver("installation", world.fake.installation_payload(installation))
        body = await eventually(lambda: _serves(world, "later"), timeout=10)
        assert body["commit_sha"] == sha


async def test_a_failed_attempt_never_replaces_a_working_binding(world: World) -> None:
    world.push(prompt_files("first"))
    assert (await world.bind(GUILD)).status_code == 200
    refused = await world.bind(GUILD, branch="nope")
    assert refused.status_code == 422, refused.text
    assert "branch nope no longer exists" in refused.json()["message"]
    assert (await world.prompt(GUILD, category="meeting"))["content"].startswith("first")
    config = (await world.http.get(f"/bridge/v1/guilds/{GUILD}/config")).json()
    assert config["branch"] is None and config["pending"]["branch"] == "nope"
    assert "branch nope" in config["pending"]["status_message"]


async def _serves(world: World, marker: str) -> dict[str, Any] | None:
    body = await world.prompt(GUILD, category="meeting")
    return body if body["content"].startswith(marker) else None


async def _config_if(world: World, outcome: str) -> dict[str, Any] | None:
    config = json.loads((await world.http.get(f"/bridge/v1/guilds/{GUILD}/config")).text)
    return config if config["last_sync_outcome"] == outcome else None


@pytest.mark.postgres
async def test_bind_and_push_on_postgresql(postgres_url: str) -> None:
    async with bridge_world(postgres_url, GENERATION_POLL_INTERVAL="60") as world:
        world.push(prompt_files("first"))
        response = await world.bind(GUILD)
        assert response.status_code == 200, response.text
        second = await world.pushed(prompt_files("second"))
        await eventually(lambda: _config_if_active(world, second), timeout=15)
        body = await eventually(lambda: _serves(world, "second"), timeout=1.0)
        assert body["commit_sha"] == second


async def _config_if_active(world: World, sha: str) -> dict[str, Any] | None:
    config = (await world.http.get(f"/bridge/v1/guilds/{GUILD}/config")).json()
    return config if config["active_sha"] == sha else None
