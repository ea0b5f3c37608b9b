"""`/prompt-config` command logic, with the real async client over a scripted MockTransport."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot_bridge import AsyncBridgeClient
from bot_bridge.commands import (
    GUILD_ONLY,
    MAX_REPLY_LENGTH,
    PERMISSION_DENIED,
    Caller,
    Reply,
    can_manage,
    preview_prompt,
    refresh_binding,
    remove_binding,
    set_binding,
    show_status,
)

pytestmark = pytest.mark.anyio

GUILD = "111"
ACTIVE = "0123456789abcdef0123456789abcdef01234567"
LATEST = "89abcdef" * 5
ADMIN = Caller(user_id="999", guild_id=GUILD, administrator=True)
MEMBER = Caller(user_id="555", guild_id=GUILD, channel_id="42", channel_name="standup")
INSTALL = "https://github.com/apps/guildprompts/installations/new"

CONFIG: dict[str, Any] = {
    "repository": "octo-org/prompts",
    "branch": "main",
    "enabled": True,
    "state": "active",
    "last_sync_outcome": "ok",
    "status_message": "3 routes, 7 prompt files, 1 warning",
    "active_sha": ACTIVE,
    "latest_sha": ACTIVE,
    "last_sync_at": "2024-05-01T10:00:00+00:00",
    "errors": [],
    "set_by": "999",
    "set_at": "2024-05-01T09:00:00+00:00",
}
PATH_ERROR = {
    "path": "PATH",
    "line": 3,
    "column": 5,
    "severity": "error",
    "code": "path-syntax",
    "message": "mapping values are not allowed here",
    "hint": "Fix the YAML at this position; indent with spaces, not tabs.",
}


class Script:
    """Answers per (method, last path segment); records what the commands sent."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], Any] = {}
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        answer = self.answers.get((request.method, request.url.path.rsplit("/", 1)[1]))
        if isinstance(answer, Exception):
            raise answer
        status, body = answer or (404, {"message": "no binding for this guild"})
        return httpx.Response(status, json=body)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.sent[index].content)


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
async def client(script: Script) -> AsyncIterator[AsyncBridgeClient]:
    async with AsyncBridgeClient(
        "http://bridge.test", "token", transport=httpx.MockTransport(script)
    ) as bridge:
        yield bridge


# --- permissions --------------------------------------------------------------------------------


def test_who_may_manage() -> None:
    assert can_manage(Caller("1", GUILD, administrator=True))
    assert can_manage(Caller("1", GUILD, manage_guild=True))
    assert can_manage(Caller("1", GUILD, role_ids=frozenset({"77"})), manager_roles=[77])
    assert not can_manage(Caller("1", GUILD, role_ids=frozenset({"78"})), manager_roles=["77"])
    assert not can_manage(MEMBER)


async def test_changes_need_permission_and_send_nothing_otherwise(
    client: AsyncBridgeClient, script: Script
) -> None:
    replies = [
        await set_binding(client, MEMBER, "octo-org/prompts"),
        await remove_binding(client, MEMBER, confirmed=True),
        await refresh_binding(client, MEMBER),
    ]
    assert [reply.text for reply in replies] == [PERMISSION_DENIED] * 3
    assert all(reply.ephemeral for reply in replies)
    assert script.sent == []


async def test_a_bot_manager_role_may_change_the_binding(
    client: AsyncBridgeClient, script: Script
) -> None:
    script.answers[("POST", "refresh")] = (200, CONFIG)
    manager = Caller("5", GUILD, role_ids=frozenset({"77"}))
    reply = await refresh_binding(client, manager, manager_roles={"77"})
    assert reply.text.startswith("Refreshed from GitHub.")
    assert script.body() == {"actor": "5"}


async def test_commands_outside_a_server(client: AsyncBridgeClient) -> None:
    direct = Caller("1", None, administrator=True)
    assert (await show_status(client, direct)).text == GUILD_ONLY
    assert (await set_binding(client, direct, "a/b")).text == GUILD_ONLY
    assert (await preview_prompt(client, direct)).text == GUILD_ONLY


# --- set ----------------------------------------------------------------------------------------


async def test_set_success_says_what_was_found(client: AsyncBridgeClient, script: Script) -> None:
    script.answers[("PUT", "config")] = (200, CONFIG)
    reply = await set_binding(client, ADMIN, " https://github.com/octo-org/prompts ", " main ")
    assert script.body() == {
        "repository": "https://github.com/octo-org/prompts",
        "branch": "main",
        "token": None,
        "actor": "999",
    }
    assert "**octo-org/prompts** on branch `main`" in reply.text
    assert "Serving commit `0123456`" in reply.text
    assert "3 routes, 7 prompt files" in reply.text
    assert "Set by <@999>" in reply.text


async def test_set_with_the_sync_still_running(client: AsyncBridgeClient, script: Script) -> None:
    script.answers[("PUT", "config")] = (202, {**CONFIG, "last_sync_outcome": "pending"})
    reply = await set_binding(client, ADMIN, "octo-org/prompts")
    assert "still running" in reply.text and "/prompt-config status" in reply.text
    assert script.body()["branch"] is None


async def test_set_without_the_app_installed_gives_the_install_link(
    client: AsyncBridgeClient, script: Script
) -> None:
    body = {"message": "the App is not installed on octo-org/prompts", "install_url": INSTALL}
    script.answers[("PUT", "config")] = (409, body)
    reply = await set_binding(client, ADMIN, "octo-org/prompts")
    assert INSTALL in reply.text
    assert "pending" in reply.text and "**octo-org/prompts**" in reply.text


async def test_set_on_a_private_repository_says_what_to_add_to_allowed_guilds(
    client: AsyncBridgeClient, script: Script
) -> None:
    body = {"message": "octo-org/private is private and its PATH does not list guild 111"}
    script.answers[("PUT", "config")] = (403, body)
    reply = await set_binding(client, ADMIN, "octo-org/private")
    assert "allowed_guilds" in reply.text
    assert 'allowed_guilds:\n  - "111"' in reply.text
    assert body["message"] in reply.text


async def test_set_with_validation_errors_lists_file_line_and_fix(
    client: AsyncBridgeClient, script: Script
) -> None:
    body = {"message": "the first sync found errors", "errors": [PATH_ERROR]}
    script.answers[("PUT", "config")] = (422, body)
    reply = await set_binding(client, ADMIN, "octo-org/prompts")
    assert "`PATH:3`" in reply.text
    assert "mapping values are not allowed here" in reply.text
    assert "fix: Fix the YAML" in reply.text


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (httpx.ConnectError("refused"), "guildprompts is unreachable (connection refused"),
        ((401, {"message": "invalid token"}), "BRIDGE_TOKENS"),
        ((400, {"message": "not a GitHub repository URL"}), "not a GitHub repository URL"),
        ((500, {"message": "boom"}), "guildprompts failed (500: boom)"),
    ],
)
async def test_set_failures_each_have_a_clear_reply(
    client: AsyncBridgeClient, script: Script, answer: Any, expected: str
) -> None:
    script.answers[("PUT", "config")] = answer
    reply = await set_binding(client, ADMIN, "octo-org/prompts")
    assert expected in reply.text


async def test_set_needs_a_repository(client: AsyncBridgeClient, script: Script) -> None:
    reply = await set_binding(client, ADMIN, "   ")
    assert "owner/name" in reply.text
    assert script.sent == []


# --- status -------------------------------------------------------------------------------------


async def test_status_of_an_unbound_server(client: AsyncBridgeClient) -> None:
    reply = await show_status(client, MEMBER)
    assert "no prompt repository" in reply.text and "built-in prompts" in reply.text


async def test_status_of_a_rejected_push_keeps_serving_the_last_good_commit(
    client: AsyncBridgeClient, script: Script
) -> None:
    rejected = {**CONFIG, "last_sync_outcome": "rejected", "latest_sha": LATEST}
    rejected["errors"] = [PATH_ERROR, {**PATH_ERROR, "severity": "warning", "line": 9}]
    script.answers[("GET", "config")] = (200, rejected)
    reply = await show_status(client, MEMBER)
    assert "Commit `89abcde` was rejected; still serving `0123456`" in reply.text
    assert "1 error(s), 1 warning(s)" in reply.text
    assert reply.text.index("error `PATH:3`") < reply.text.index("warning `PATH:9`")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"last_sync_outcome": "error"}, "GitHub is unreachable, still serving `0123456`"),
        ({"last_sync_outcome": "deleted"}, "The branch was deleted; still serving `0123456`"),
        ({"state": "no_access", "active_sha": None}, "lost access"),
        ({"state": "pending", "install_url": INSTALL}, f"Install the App: {INSTALL}"),
        ({"last_sync_outcome": "pending", "active_sha": None}, "Not synced yet"),
        ({"enabled": False}, "Disabled"),
    ],
)
async def test_status_outcomes(
    client: AsyncBridgeClient, script: Script, changes: dict[str, Any], expected: str
) -> None:
    script.answers[("GET", "config")] = (200, {**CONFIG, **changes})
    assert expected in (await show_status(client, MEMBER)).text


async def test_status_shows_how_fresh_the_served_commit_is(
    client: AsyncBridgeClient, script: Script
) -> None:
    text = "commit 0123456 live since 14:02:07 UTC, 0.3 s after the push"
    live = {**CONFIG, "freshness": {"text": text, "after_push_seconds": 0.3}}
    script.answers[("GET", "config")] = (200, live)
    reply = await show_status(client, MEMBER)
    assert f"Serving {text}." in reply.text


async def test_status_of_a_guild_whose_base_broke_names_the_base_commit_it_keeps(
    client: AsyncBridgeClient, script: Script
) -> None:
    """The commit is the same; a base push broke it: the line says which base still serves."""
    base = {"repository": "guildprompts/base-pack", "ref": "main", "commit_sha": LATEST}
    rejected = {**CONFIG, "last_sync_outcome": "rejected", "bases": [base, {"bad": 1}]}
    script.answers[("GET", "config")] = (200, rejected)
    reply = await show_status(client, MEMBER)
    assert "still serving `0123456` with `guildprompts/base-pack@89abcde`" in reply.text


async def test_status_when_guildprompts_is_down(client: AsyncBridgeClient, script: Script) -> None:
    script.answers[("GET", "config")] = httpx.ReadTimeout("slow")
    reply = await show_status(client, MEMBER)
    assert "did not answer" in reply.text and "keeps answering" in reply.text


# --- remove (with confirmation), refresh, test ----------------------------------------------------


async def test_remove_asks_first_then_removes(client: AsyncBridgeClient, script: Script) -> None:
    script.answers[("GET", "config")] = (200, CONFIG)
    script.answers[("DELETE", "config")] = (200, {})
    question = await remove_binding(client, ADMIN)
    assert question.needs_confirmation and "**octo-org/prompts**" in question.text
    assert [request.method for request in script.sent] == ["GET"]
    done = await remove_binding(client, ADMIN, confirmed=True)
    assert not done.needs_confirmation and "removed" in done.text
    assert script.sent[-1].method == "DELETE" and script.body() == {"actor": "999"}


async def test_remove_when_nothing_is_bound(client: AsyncBridgeClient) -> None:
    assert "nothing to remove" in (await remove_binding(client, ADMIN)).text
    assert "nothing to remove" in (await remove_binding(client, ADMIN, confirmed=True)).text


async def test_refresh_in_progress(client: AsyncBridgeClient, script: Script) -> None:
    script.answers[("POST", "refresh")] = (202, CONFIG)
    assert "Refresh started" in (await refresh_binding(client, ADMIN)).text


async def test_preview_shows_file_tried_paths_and_text(
    client: AsyncBridgeClient, script: Script
) -> None:
    script.answers[("POST", "test")] = (
        200,
        {
            "file_path": "prompts/meeting/brief.md",
            "tried_paths": ["prompts/standup/brief.md", "prompts/meeting/brief.md"],
            "route": "by_category",
            "source": "custom",
            "commit_sha": ACTIVE,
            "preview": "Summarise briefly:\n```\n{messages}\n```",
            "diagnostics": [{**PATH_ERROR, "severity": "warning"}],
        },
    )
    reply = await preview_prompt(client, MEMBER, "meeting", "brief")
    assert script.body() == {
        "category": "meeting",
        "type": "brief",
        "channel": "standup",
        "channel_id": "42",
    }
    assert "`prompts/meeting/brief.md`" in reply.text
    assert "Tried: `prompts/standup/brief.md` → `prompts/meeting/brief.md`" in reply.text
    assert "route `by_category`, source custom, commit `0123456`" in reply.text
    assert reply.text.count("```") == 2  # the preview cannot close its own code block
    assert "`PATH:3`" in reply.text


def test_replies_fit_in_a_discord_message() -> None:
    reply = Reply("x" * 5000)
    assert len(reply.text) <= MAX_REPLY_LENGTH and reply.text.endswith("(truncated)")


async def test_a_long_list_of_problems_is_cut(client: AsyncBridgeClient, script: Script) -> None:
    errors = [{**PATH_ERROR, "line": line} for line in range(1, 40)]
    script.answers[("GET", "config")] = (200, {**CONFIG, "errors": errors})
    reply = await show_status(client, MEMBER)
    assert "… and 31 more" in reply.text
    assert len(reply.text) <= MAX_REPLY_LENGTH
