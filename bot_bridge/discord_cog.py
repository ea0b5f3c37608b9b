"""`/prompt-config` for discord.py: a thin adapter from interactions to `bot_bridge.commands`.

It only reads who called from where, defers (admin calls may outlast Discord's 3 s), and sends
the `Reply` back privately with mentions disabled. discord.py is the optional `discord` extra, so
only this module imports it. Add it to a bot with
`await bot.add_cog(PromptConfigCog(AsyncBridgeClient(url, token), manager_roles=[role_id]))`.

Given `bot=` it also runs `alerts.AlertWatcher` while loaded (started in `cog_load`, cancelled in
`cog_unload`), posting each problem to the channel `/prompt-config alerts` set; pass
`alert_store=AlertStore("alerts.json")` to keep channels and announced problems across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection

import discord
from discord import app_commands
from discord.ext import commands as ext

from . import commands
from .alerts import DEFAULT_INTERVAL, Alert, AlertStore, AlertWatcher, set_alert_channel
from .client import AsyncBridgeClient
from .commands import Caller, Reply

logger = logging.getLogger(__name__)

CONFIRM_TIMEOUT = 60.0
UNEXPECTED = Reply("Something went wrong while handling this command; the bot's log has details.")

Run = Callable[[Caller], Awaitable[Reply]]


def caller_of(interaction: discord.Interaction) -> Caller:
    """The command functions' view of an interaction (a DM has no guild and no permissions)."""
    user = interaction.user
    permissions = getattr(user, "guild_permissions", None)
    return Caller(
        user_id=str(user.id),
        guild_id=str(interaction.guild_id) if interaction.guild_id else None,
        administrator=bool(permissions and permissions.administrator),
        manage_guild=bool(permissions and permissions.manage_guild),
        role_ids=frozenset(str(role.id) for role in getattr(user, "roles", ())),
        channel_id=str(interaction.channel_id) if interaction.channel_id else None,
        channel_name=getattr(interaction.channel, "name", None),
        locale=_tag(interaction.locale),
        guild_locale=_tag(interaction.guild_locale),
    )


def _tag(locale: discord.Locale | None) -> str | None:
    """`discord.Locale.brazil_portuguese` -> `pt-BR`; a DM has no guild locale."""
    return None if locale is None else str(locale)


async def _reply_for(run: Run, interaction: discord.Interaction) -> Reply:
    try:
        return await run(caller_of(interaction))
    except Exception:  # the user gets a sentence, the operator the traceback
        logger.exception("/prompt-config failed")
        return UNEXPECTED


# The `token` option's description (Discord allows 100 characters).
_PAT_HELP = (
    "Private repository without the App: a token that can read it (kept encrypted, never shown)"
)


@app_commands.guild_only()
class PromptConfigCog(
    ext.GroupCog,
    group_name="prompt-config",
    group_description="Where this server's summary prompts come from (a GitHub repository).",
):
    def __init__(
        self,
        client: AsyncBridgeClient,
        *,
        manager_roles: Collection[int | str] = (),
        bot: discord.Client | None = None,
        alert_store: AlertStore | None = None,
        alert_interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self.client = client
        self.manager_roles = frozenset(str(role) for role in manager_roles)
        self.bot = bot
        self.alert_store = alert_store if alert_store is not None else AlertStore()
        self.watcher = AlertWatcher(client, self.alert_store, interval=alert_interval)
        self._alerts_task: asyncio.Task[None] | None = None
        super().__init__()

    async def cog_load(self) -> None:
        if self.bot is None:
            logger.info("no bot given to PromptConfigCog: problem alerts are not posted")
            return
        self._alerts_task = asyncio.create_task(self.watcher.run(self.post_alert))

    async def cog_unload(self) -> None:
        task, self._alerts_task = self._alerts_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def post_alert(self, alert: Alert) -> None:
        """Send one alert to its channel; raising leaves it due, so the next tick tries again."""
        if self.bot is None:
            raise RuntimeError("PromptConfigCog was created without a bot: it cannot post")
        channel_id = int(alert.channel_id)
        channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
        if not isinstance(channel, discord.abc.Messageable):  # a category or a forum
            raise RuntimeError(f"channel {channel_id} cannot receive messages")
        await channel.send(alert.text, allowed_mentions=discord.AllowedMentions.none())

    async def _respond(self, interaction: discord.Interaction, run: Run) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        reply = await _reply_for(run, interaction)
        mentions = discord.AllowedMentions.none()
        if reply.needs_confirmation:
            await interaction.followup.send(
                reply.text,
                ephemeral=reply.ephemeral,
                allowed_mentions=mentions,
                view=ConfirmRemoval(self, interaction.user.id),
            )
        else:
            await interaction.followup.send(
                reply.text, ephemeral=reply.ephemeral, allowed_mentions=mentions
            )

    @app_commands.command(name="set", description="Use a GitHub repository for this server.")
    @app_commands.describe(
        repository="owner/name or the repository's GitHub URL",
        branch="Branch to follow (default: the repository's default branch)",
        token=_PAT_HELP,
    )
    async def set_repository(
        self,
        interaction: discord.Interaction,
        repository: str,
        branch: str | None = None,
        token: str | None = None,
    ) -> None:
        await self._respond(
            interaction,
            lambda caller: commands.set_binding(
                self.client,
                caller,
                repository,
                branch,
                token=token,
                manager_roles=self.manager_roles,
            ),
        )

    @app_commands.command(name="status", description="Show the repository and what it serves.")
    async def status(self, interaction: discord.Interaction) -> None:
        await self._respond(interaction, lambda caller: commands.show_status(self.client, caller))

    @app_commands.command(name="remove", description="Stop using the repository (asks first).")
    async def remove(self, interaction: discord.Interaction) -> None:
        await self._respond(
            interaction,
            lambda caller: commands.remove_binding(
                self.client, caller, manager_roles=self.manager_roles
            ),
        )

    @app_commands.command(name="refresh", description="Sync from GitHub now.")
    async def refresh(self, interaction: discord.Interaction) -> None:
        await self._respond(
            interaction,
            lambda caller: commands.refresh_binding(
                self.client, caller, manager_roles=self.manager_roles
            ),
        )

    @app_commands.command(name="test", description="Show which prompt a summary here would use.")
    @app_commands.rename(summary_type="type")
    @app_commands.describe(
        category="e.g. discussion, meeting, moderation",
        summary_type="e.g. brief, detailed, comprehensive",
        perspective="e.g. neutral",
    )
    async def test(
        self,
        interaction: discord.Interaction,
        category: str | None = None,
        summary_type: str | None = None,
        perspective: str | None = None,
    ) -> None:
        await self._respond(
            interaction,
            lambda caller: commands.preview_prompt(
                self.client, caller, category, summary_type, perspective
            ),
        )

    @app_commands.command(name="pin", description="Serve one commit until unpinned.")
    @app_commands.describe(sha="The commit (at least 7 characters of its sha)")
    async def pin(self, interaction: discord.Interaction, sha: str) -> None:
        await self._respond(
            interaction,
            lambda caller: commands.pin_commit(
                self.client, caller, sha, manager_roles=self.manager_roles
            ),
        )

    @app_commands.command(name="unpin", description="Follow the branch's newest commit again.")
    async def unpin(self, interaction: discord.Interaction) -> None:
        await self._respond(
            interaction,
            lambda caller: commands.unpin_commit(
                self.client, caller, manager_roles=self.manager_roles
            ),
        )

    @app_commands.command(name="rollback", description="Serve the previous commit again.")
    async def rollback(self, interaction: discord.Interaction) -> None:
        await self._respond(
            interaction,
            lambda caller: commands.rollback_commit(
                self.client, caller, manager_roles=self.manager_roles
            ),
        )

    @app_commands.command(name="history", description="The last commits this server served.")
    async def history(self, interaction: discord.Interaction) -> None:
        await self._respond(
            interaction,
            lambda caller: commands.show_history(
                self.client, caller, manager_roles=self.manager_roles
            ),
        )

    @app_commands.command(name="preview", description="Try a pull request in one channel.")
    @app_commands.describe(
        pull_request="The pull request's number",
        channel="Channel to try it in (default: this one)",
        off="End the preview (in the channel given, or everywhere)",
    )
    async def preview(
        self,
        interaction: discord.Interaction,
        pull_request: int | None = None,
        channel: discord.TextChannel | None = None,
        off: bool = False,
    ) -> None:
        channel_id = str(channel.id) if channel is not None else None
        await self._respond(
            interaction,
            lambda caller: commands.preview_pull_request(
                self.client,
                caller,
                pull_request,
                channel_id,
                off=off,
                manager_roles=self.manager_roles,
            ),
        )

    @app_commands.command(
        name="alerts", description="Where to post when this server's prompts stop updating."
    )
    @app_commands.describe(
        channel="Channel for the alerts (leave out to see the current one)",
        off="Turn the alerts off",
    )
    async def alerts(
        self,
        interaction: discord.Interaction,
        channel: discord.TextChannel | None = None,
        off: bool = False,
    ) -> None:
        channel_id = str(channel.id) if channel is not None else None
        await self._respond(
            interaction,
            lambda caller: set_alert_channel(
                self.alert_store, caller, channel_id, off=off, manager_roles=self.manager_roles
            ),
        )


class ConfirmRemoval(discord.ui.View):
    """Remove / Cancel buttons under the private confirmation question."""

    def __init__(self, cog: PromptConfigCog, user_id: int) -> None:
        super().__init__(timeout=CONFIRM_TIMEOUT)
        self.cog = cog
        self.user_id = user_id

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return interaction.user.id == self.user_id

    @discord.ui.button(label="Remove", style=discord.ButtonStyle.danger)
    async def confirm(
        self, interaction: discord.Interaction, button: discord.ui.Button[ConfirmRemoval]
    ) -> None:
        self.stop()
        await interaction.response.edit_message(content="Removing…", view=None)
        reply = await _reply_for(
            lambda caller: commands.remove_binding(
                self.cog.client, caller, confirmed=True, manager_roles=self.cog.manager_roles
            ),
            interaction,
        )
        await interaction.edit_original_response(
            content=reply.text, allowed_mentions=discord.AllowedMentions.none()
        )

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(
        self, interaction: discord.Interaction, button: discord.ui.Button[ConfirmRemoval]
    ) -> None:
        self.stop()
        await interaction.response.edit_message(content="Nothing was removed.", view=None)
