"""The discord.py cog: fake interactions in, private replies out, through the command functions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

discord = pytest.importorskip("discord")

from bot_bridge import AsyncBridgeClient  # noqa: E402
from bot_bridge.alerts import Alert, AlertStore  # noqa: E402
from bot_bridge.commands import PERMISSION_DENIED  # noqa: E402
from bot_bridge.discord_cog import ConfirmRemoval, PromptConfigCog, caller_of  # noqa: E402

pytestmark = pytest.mark.anyio

GUILD = 111
CONFIG = {
    "repository": "octo-org/prompts",
    "branch": None,
    "state": "active",
    "last_sync_outcome": "ok",
    "active_sha": "0123456789abcdef0123456789abcdef01234567",
    "set_by": "999",
}


class FakeInteraction:
    """The parts of discord.Interaction the cog touches, recording what it was sent."""

    def __init__(self, user: Any, guild_id: int | None = GUILD) -> None:
        self.user = user
        self.guild_id = guild_id
        self.channel_id = 42
        self.channel = SimpleNamespace(name="standup")
        self.locale = discord.Locale.brazil_portuguese
        self.guild_locale: Any = discord.Locale.french
        self.deferred: dict[str, Any] | None = None
        self.sent: list[dict[str, Any]] = []
        self.edits: list[dict[str, Any]] = []
        self.response = SimpleNamespace(defer=self._defer, edit_message=self._edit)
        self.followup = SimpleNamespace(send=self._send)

    async def _defer(self, **options: Any) -> None:
        self.deferred = options

    async def _send(self, content: str, **options: Any) -> None:
        self.sent.append({"content": content, **options})

    async def _edit(self, **options: Any) -> None:
        self.edits.append(options)

    async def edit_original_response(self, **options: Any) -> None:
        self.edits.append(options)


def member(user_id: int = 999, *, admin: bool = False, manage: bool = False, roles=()) -> Any:
    return SimpleNamespace(
        id=user_id,
        guild_permissions=SimpleNamespace(administrator=admin, manage_guild=manage),
        roles=[SimpleNamespace(id=role) for role in roles],
    )


PINNED = {"active_sha": "a" * 40, "branch_sha": "b" * 40, "pinned": {"sha": "a" * 40}}


class Bridge:
    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []
        self.answers: dict[tuple[str, str], tuple[int, Any]] = {
            ("GET", "config"): (200, CONFIG),
            ("PUT", "config"): (200, CONFIG),
            ("DELETE", "config"): (200, {}),
            ("POST", "test"): (200, {"file_path": "prompts/meeting.md", "preview": "Hi"}),
            ("PUT", "pin"): (200, PINNED),
            ("GET", "history"): (200, {"activations": [], "pinned": None}),
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        status, body = self.answers[(request.method, request.url.path.rsplit("/", 1)[1])]
        return httpx.Response(status, json=body)


@pytest.fixture
def bridge() -> Bridge:
    return Bridge()


@pytest.fixture
async def cog(bridge: Bridge) -> AsyncIterator[PromptConfigCog]:
    client = AsyncBridgeClient("http://bridge.test", "t", transport=httpx.MockTransport(bridge))
    async with client:
        yield PromptConfigCog(client, manager_roles=[77])


async def test_the_group_and_its_subcommands(cog: PromptConfigCog) -> None:
    group = cog.__cog_app_commands_group__
    assert group is not None and group.name == "prompt-config" and group.guild_only
    assert [command.name for command in group.commands] == [
        "set",
        "status",
        "remove",
        "refresh",
        "test",
        "pin",
        "unpin",
        "rollback",
        "history",
        "preview",
        "alerts",
    ]
    test = group.get_command("test")
    assert [p.display_name for p in test.parameters] == ["category", "type", "perspective"]


async def test_caller_is_read_from_the_interaction() -> None:
    interaction = FakeInteraction(member(5, manage=True, roles=[77, 78]))
    caller = caller_of(interaction)  # type: ignore[arg-type]
    assert (caller.user_id, caller.guild_id, caller.channel_id) == ("5", "111", "42")
    assert caller.manage_guild and not caller.administrator
    assert caller.role_ids == {"77", "78"} and caller.channel_name == "standup"
    assert (caller.locale, caller.guild_locale) == ("pt-BR", "fr")
    dm = FakeInteraction(SimpleNamespace(id=5), guild_id=None)
    dm.guild_locale = None
    direct = caller_of(dm)  # type: ignore[arg-type]
    assert direct.guild_id is None and not direct.administrator and not direct.role_ids
    assert (direct.locale, direct.guild_locale) == ("pt-BR", None)


async def test_set_defers_privately_and_replies_without_mentions(
    cog: PromptConfigCog, bridge: Bridge
) -> None:
    interaction = FakeInteraction(member(admin=True))
    await cog.set_repository.callback(cog, interaction, "octo-org/prompts", "main")
    assert interaction.deferred == {"ephemeral": True, "thinking": True}
    (message,) = interaction.sent
    assert message["ephemeral"] is True
    assert message["allowed_mentions"].everyone is False
    assert "Prompt repository set." in message["content"]
    assert json.loads(bridge.sent[-1].content)["actor"] == "999"


async def test_the_bot_manager_role_counts(cog: PromptConfigCog, bridge: Bridge) -> None:
    manager, stranger = FakeInteraction(member(roles=[77])), FakeInteraction(member(roles=[5]))
    await cog.set_repository.callback(cog, manager, "octo-org/prompts")
    await cog.set_repository.callback(cog, stranger, "octo-org/prompts")
    assert "Prompt repository set." in manager.sent[0]["content"]
    assert stranger.sent[0]["content"] == PERMISSION_DENIED
    assert len(bridge.sent) == 1


async def test_status_and_test_are_open_to_members(cog: PromptConfigCog, bridge: Bridge) -> None:
    status, test = FakeInteraction(member()), FakeInteraction(member())
    await cog.status.callback(cog, status)
    await cog.test.callback(cog, test, "meeting", "brief", None)
    assert "Serving commit `0123456`" in status.sent[0]["content"]
    assert "`prompts/meeting.md`" in test.sent[0]["content"]
    assert json.loads(bridge.sent[-1].content) == {
        "category": "meeting",
        "type": "brief",
        "channel": "standup",
        "channel_id": "42",
        "locale": "pt-BR",
        "guild_locale": "fr",
    }


async def test_remove_confirms_with_buttons(cog: PromptConfigCog, bridge: Bridge) -> None:
    interaction = FakeInteraction(member(admin=True))
    await cog.remove.callback(cog, interaction)
    (question,) = interaction.sent
    view = question["view"]
    assert isinstance(view, ConfirmRemoval) and "**octo-org/prompts**" in question["content"]
    assert [request.method for request in bridge.sent] == ["GET"]
    assert await view.interaction_check(FakeInteraction(member(999)))  # type: ignore[arg-type]
    assert not await view.interaction_check(FakeInteraction(member(1)))  # type: ignore[arg-type]

    click = FakeInteraction(member(admin=True))
    await view.confirm.callback(click)
    assert view.is_finished()
    assert click.edits[0] == {"content": "Removing…", "view": None}
    assert "removed" in click.edits[-1]["content"]
    assert bridge.sent[-1].method == "DELETE"


async def test_cancel_removes_nothing(cog: PromptConfigCog, bridge: Bridge) -> None:
    interaction = FakeInteraction(member(admin=True))
    await cog.remove.callback(cog, interaction)
    click = FakeInteraction(member(admin=True))
    await interaction.sent[0]["view"].cancel.callback(click)
    assert click.edits == [{"content": "Nothing was removed.", "view": None}]
    assert [request.method for request in bridge.sent] == ["GET"]


async def test_an_unexpected_failure_still_gets_a_reply(
    cog: PromptConfigCog, bridge: Bridge
) -> None:
    bridge.answers.pop(("POST", "test"))  # the fake raises KeyError inside the transport
    interaction = FakeInteraction(member())
    await cog.test.callback(cog, interaction)
    assert "Something went wrong" in interaction.sent[0]["content"]


class FakeChannel(discord.abc.Messageable):
    def __init__(self, channel_id: int) -> None:
        self.id = channel_id
        self.sent: list[dict[str, Any]] = []

    async def send(self, content: str, **options: Any) -> None:
        self.sent.append({"content": content, **options})


class FakeBot:
    """`get_channel` knows the cached channels; `fetch_channel` asks Discord for the others."""

    def __init__(self, *channels: FakeChannel, remote: FakeChannel | None = None) -> None:
        self.cached = {channel.id: channel for channel in channels}
        self.remote = remote

    def get_channel(self, channel_id: int) -> FakeChannel | None:
        return self.cached.get(channel_id)

    async def fetch_channel(self, channel_id: int) -> FakeChannel:
        if self.remote is None or self.remote.id != channel_id:
            raise LookupError(f"Unknown Channel {channel_id}")
        return self.remote


async def test_alerts_needs_a_manager_to_set_the_channel(cog: PromptConfigCog) -> None:
    stranger, admin, viewer = (
        FakeInteraction(member()),
        FakeInteraction(member(admin=True)),
        FakeInteraction(member()),
    )
    channel = SimpleNamespace(id=4242)
    await cog.alerts.callback(cog, stranger, channel, False)
    assert stranger.sent[0]["content"] == PERMISSION_DENIED
    assert cog.alert_store.channel(str(GUILD)) is None
    await cog.alerts.callback(cog, admin, channel, False)
    assert admin.deferred == {"ephemeral": True, "thinking": True}
    assert "<#4242>" in admin.sent[0]["content"] and admin.sent[0]["ephemeral"] is True
    assert cog.alert_store.channel(str(GUILD)) == "4242"
    await cog.alerts.callback(cog, viewer, None, False)
    assert "posted in <#4242>" in viewer.sent[0]["content"]


async def test_alerts_are_posted_through_the_bot_without_mentions(bridge: Bridge) -> None:
    cached, remote = FakeChannel(4242), FakeChannel(4343)
    client = AsyncBridgeClient("http://bridge.test", "t", transport=httpx.MockTransport(bridge))
    async with client:
        cog = PromptConfigCog(client, bot=FakeBot(cached, remote=remote))  # type: ignore[arg-type]
        await cog.post_alert(Alert(str(GUILD), "4242", "k", "@everyone look", None))
        await cog.post_alert(Alert(str(GUILD), "4343", "k", "fetched", None))
        with pytest.raises(LookupError):
            await cog.post_alert(Alert(str(GUILD), "1", "k", "nowhere", None))
    (message,) = cached.sent
    assert message["content"] == "@everyone look"
    assert message["allowed_mentions"].everyone is False
    assert remote.sent[0]["content"] == "fetched"


async def test_an_alert_for_a_channel_that_takes_no_messages_stays_due(bridge: Bridge) -> None:
    category = SimpleNamespace(id=4444)  # a category or forum: no `send`
    client = AsyncBridgeClient("http://bridge.test", "t", transport=httpx.MockTransport(bridge))
    async with client:
        cog = PromptConfigCog(client, bot=FakeBot(category))  # type: ignore[arg-type]
        with pytest.raises(RuntimeError, match="cannot receive messages"):
            await cog.post_alert(Alert(str(GUILD), "4444", "k", "hello", None))


async def test_the_watcher_runs_while_the_cog_is_loaded(bridge: Bridge) -> None:
    problem = {
        "at": "2024-05-02T09:00:00+00:00",
        "actor": "guildprompts",
        "action": "sync.rejected",
        "kind": "problem",
        "count": 1,
        "last_at": "2024-05-02T09:00:00+00:00",
        "after": {
            "repository": "octo-org/prompts",
            "branch": "main",
            "commit_sha": "abc1234" + "0" * 33,
            "message": "3 errors",
        },
    }
    bridge.answers[("GET", "events")] = (200, {"events": [problem]})
    bridge.answers[("GET", "config")] = (200, {**CONFIG, "last_sync_outcome": "rejected"})
    channel = FakeChannel(4242)
    store = AlertStore()
    store.set_channel(str(GUILD), "4242")
    client = AsyncBridgeClient("http://bridge.test", "t", transport=httpx.MockTransport(bridge))
    async with client:
        cog = PromptConfigCog(
            client,
            bot=FakeBot(channel),
            alert_store=store,
            alert_interval=0.01,  # type: ignore[arg-type]
        )
        await cog.cog_load()
        await asyncio.sleep(0.1)  # several ticks
        assert cog._alerts_task is not None and not cog._alerts_task.done()
        await cog.cog_unload()
        assert cog._alerts_task is None
    (message,) = channel.sent  # once, however many ticks
    assert "commit `abc1234` on **octo-org/prompts**@main was rejected" in message["content"]
    assert "still serving `0123456`" in message["content"]


async def test_without_a_bot_nothing_is_started(cog: PromptConfigCog) -> None:
    await cog.cog_load()
    assert cog._alerts_task is None
    await cog.cog_unload()


async def test_set_takes_a_token_sends_it_and_never_shows_it(
    cog: PromptConfigCog, bridge: Bridge
) -> None:
    set_command = cog.__cog_app_commands_group__.get_command("set")
    token = next(p for p in set_command.parameters if p.name == "token")
    assert not token.required and len(token.description) <= 100  # Discord's limit
    interaction = FakeInteraction(member(admin=True))
    secret = "github_pat_11AAAAAAA0123456789_abcdefghijklmnop"
    await cog.set_repository.callback(cog, interaction, "someone/private", None, secret)
    assert json.loads(bridge.sent[-1].content)["token"] == secret
    (message,) = interaction.sent
    assert interaction.deferred == {"ephemeral": True, "thinking": True}
    assert message["ephemeral"] is True
    assert secret not in message["content"]
    assert "The access token was stored encrypted." in message["content"]


async def test_pin_and_history_are_for_managers(cog: PromptConfigCog, bridge: Bridge) -> None:
    manager, stranger = FakeInteraction(member(manage=True)), FakeInteraction(member())
    await cog.pin.callback(cog, manager, "aaaaaaa")
    await cog.history.callback(cog, manager)
    await cog.pin.callback(cog, stranger, "aaaaaaa")
    assert manager.sent[0]["content"].startswith("Pinned.\nServing commit `aaaaaaa`")
    assert manager.sent[1]["content"] == "No activation recorded for this server yet."
    assert stranger.sent[0]["content"] == PERMISSION_DENIED
    assert json.loads(bridge.sent[0].content) == {"sha": "aaaaaaa", "actor": "999"}
    assert bridge.sent[1].url.params["limit"] == "10"
