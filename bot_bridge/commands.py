"""The `/prompt-config` commands as plain async functions: Discord-free, so tests need no Discord.

Each function takes an `AsyncBridgeClient` and the `Caller`, and always returns a `Reply` (never
raises for service errors): every outcome of the bridge API gets a sentence a guild admin can act
on. `discord_cog` only translates interactions into these calls.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from promptrepo import Diagnostic

from .client import AsyncBridgeClient
from .pins import GuildHistory, PinStatus
from .results import BridgeError, GuildConfig, PreviewResult

MAX_REPLY_LENGTH = 2000  # Discord's message limit
MAX_LISTED_PROBLEMS = 8
MAX_PREVIEW_LENGTH = 700

PERMISSION_DENIED = (
    "Changing this server's prompt repository needs the Administrator or Manage Server "
    "permission, or the bot-manager role."
)
NOTHING_TO_REMOVE = "This server has no prompt repository, so there is nothing to remove."
GUILD_ONLY = "Use `/prompt-config` inside a server: the prompt repository belongs to a server."


@dataclass(frozen=True)
class Caller:
    """Who runs a command, and where: what the permission check and the audit log need."""

    user_id: str
    guild_id: str | None
    administrator: bool = False
    manage_guild: bool = False
    role_ids: frozenset[str] = frozenset()
    channel_id: str | None = None
    channel_name: str | None = None
    locale: str | None = None  # Discord's interaction.locale (`pt-BR`), then guild_locale
    guild_locale: str | None = None


@dataclass(frozen=True)
class Reply:
    """What to answer. `needs_confirmation`: show Confirm/Cancel, then call again confirmed."""

    text: str
    ephemeral: bool = True
    needs_confirmation: bool = False

    def __post_init__(self) -> None:
        if len(self.text) > MAX_REPLY_LENGTH:
            cut = self.text[: MAX_REPLY_LENGTH - 16].rstrip()
            object.__setattr__(self, "text", cut + "\n… (truncated)")


def can_manage(caller: Caller, manager_roles: Collection[str | int] = ()) -> bool:
    """Administrator, Manage Server, or one of the configured bot-manager roles."""
    if caller.administrator or caller.manage_guild:
        return True
    wanted = {str(role) for role in manager_roles}
    return not wanted.isdisjoint(caller.role_ids)


def _refuse_unless_manager(caller: Caller, manager_roles: Collection[str | int]) -> Reply | None:
    """The reply refusing an admin subcommand (outside a server, or not a manager); None: go."""
    if caller.guild_id is None:
        return Reply(GUILD_ONLY)
    if not can_manage(caller, manager_roles):
        return Reply(PERMISSION_DENIED)
    return None


async def set_binding(
    client: AsyncBridgeClient,
    caller: Caller,
    repository: str,
    branch: str | None = None,
    *,
    token: str | None = None,
    manager_roles: Collection[str | int] = (),
) -> Reply:
    """`/prompt-config set <repository> [branch] [token]`.

    `token`: a personal access token that can read a private repository the App is not
    installed on. It goes to the service (which stores it encrypted) and is never repeated in a
    reply; the cog's replies are only visible to the caller.
    """
    refused = _refuse_unless_manager(caller, manager_roles)
    if refused is not None:
        return refused
    repository, branch = repository.strip(), (branch or "").strip() or None
    if not repository:
        return Reply(
            "Give the repository as `owner/name` or its GitHub URL, for example "
            "`/prompt-config set octo-org/prompts`."
        )
    try:
        config = await client.set_config(
            caller.guild_id,
            repository,
            branch,
            token=(token or "").strip() or None,
            actor=caller.user_id,
        )
    except BridgeError as exc:
        return Reply(_refusal(exc, caller, repository))
    if config.in_progress:
        return Reply(
            f"Saved: this server will use **{config.repository or repository}**"
            f"{_on_branch(config.branch or branch)}. The first sync is still running; "
            "`/prompt-config status` shows the result in a moment."
        )
    headline = "Prompt repository set." + (
        " The access token was stored encrypted." if (token or "").strip() else ""
    )
    return Reply(_describe(config, headline=headline))


async def show_status(client: AsyncBridgeClient, caller: Caller) -> Reply:
    """`/prompt-config status`: open to everyone in the server, answered privately."""
    if caller.guild_id is None:
        return Reply(GUILD_ONLY)
    try:
        config = await client.get_config(caller.guild_id)
    except BridgeError as exc:
        return Reply(_refusal(exc, caller))
    if config is None:
        return Reply(
            "This server has no prompt repository: the bot uses its built-in prompts. An admin "
            "can bind one with `/prompt-config set owner/name`."
        )
    return Reply(_describe(config))


async def remove_binding(
    client: AsyncBridgeClient,
    caller: Caller,
    *,
    confirmed: bool = False,
    manager_roles: Collection[str | int] = (),
) -> Reply:
    """`/prompt-config remove`: the first call asks for confirmation, the confirmed one removes."""
    refused = _refuse_unless_manager(caller, manager_roles)
    if refused is not None:
        return refused
    try:
        if not confirmed:
            config = await client.get_config(caller.guild_id)
            if config is None:
                return Reply(NOTHING_TO_REMOVE)
            return Reply(
                f"Remove **{config.repository}** from this server? The bot will use its "
                "built-in prompts until a repository is set again.",
                needs_confirmation=True,
            )
        removed = await client.remove_config(caller.guild_id, actor=caller.user_id)
    except BridgeError as exc:
        return Reply(_refusal(exc, caller))
    if not removed:
        return Reply(NOTHING_TO_REMOVE)
    return Reply("Prompt repository removed: the bot uses its built-in prompts from now on.")


async def refresh_binding(
    client: AsyncBridgeClient, caller: Caller, *, manager_roles: Collection[str | int] = ()
) -> Reply:
    """`/prompt-config refresh`: re-sync from GitHub now."""
    refused = _refuse_unless_manager(caller, manager_roles)
    if refused is not None:
        return refused
    try:
        config = await client.refresh(caller.guild_id, actor=caller.user_id)
    except BridgeError as exc:
        return Reply(_refusal(exc, caller))
    if config.in_progress:
        return Reply("Refresh started: `/prompt-config status` shows the result in a moment.")
    return Reply(_describe(config, headline="Refreshed from GitHub."))


async def preview_prompt(
    client: AsyncBridgeClient,
    caller: Caller,
    category: str | None = None,
    summary_type: str | None = None,
    perspective: str | None = None,
) -> Reply:
    """`/prompt-config test [category] [type] [perspective]`, in the caller's channel."""
    if caller.guild_id is None:
        return Reply(GUILD_ONLY)
    given = {
        "category": category,
        "type": summary_type,
        "perspective": perspective,
        "channel": caller.channel_name,
        "channel_id": caller.channel_id,
        "locale": caller.locale,
        "guild_locale": caller.guild_locale,
    }
    context = {key: value for key, value in given.items() if value}
    try:
        result = await client.test(caller.guild_id, context)
    except BridgeError as exc:
        return Reply(_refusal(exc, caller))
    return Reply(_describe_preview(result, context))


async def pin_commit(
    client: AsyncBridgeClient,
    caller: Caller,
    sha: str,
    *,
    manager_roles: Collection[str | int] = (),
) -> Reply:
    """`/prompt-config pin <sha>`: serve that commit until `unpin`, whatever is pushed."""
    refused = _refuse_unless_manager(caller, manager_roles)
    if refused is not None:
        return refused
    sha = sha.strip()
    if not sha:
        return Reply("Give the commit to serve, for example `/prompt-config pin 1a2b3c4`.")
    try:
        status = await client.pin(caller.guild_id, sha, actor=caller.user_id)
    except BridgeError as exc:
        return Reply(_pin_refusal(exc, caller))
    if status.in_progress:
        return Reply(
            f"Commit `{sha[:7]}` is being synced from GitHub; nothing changed yet. Run the "
            "same command again in a moment."
        )
    return Reply(_describe_pin(status, "Pinned."))


async def unpin_commit(
    client: AsyncBridgeClient, caller: Caller, *, manager_roles: Collection[str | int] = ()
) -> Reply:
    """`/prompt-config unpin`: follow the branch's newest valid commit again."""
    refused = _refuse_unless_manager(caller, manager_roles)
    if refused is not None:
        return refused
    try:
        status = await client.unpin(caller.guild_id, actor=caller.user_id)
    except BridgeError as exc:
        if exc.status_code == 404 and exc.body.get("error") == "not_pinned":
            return Reply("This server is not pinned: it already follows its branch.")
        return Reply(_refusal(exc, caller))
    return Reply(_describe_pin(status, "Unpinned."))


async def rollback_commit(
    client: AsyncBridgeClient, caller: Caller, *, manager_roles: Collection[str | int] = ()
) -> Reply:
    """`/prompt-config rollback`: pin the commit served before the current one."""
    refused = _refuse_unless_manager(caller, manager_roles)
    if refused is not None:
        return refused
    try:
        status = await client.rollback(caller.guild_id, actor=caller.user_id)
    except BridgeError as exc:
        return Reply(_pin_refusal(exc, caller))
    return Reply(_describe_pin(status, "Rolled back."))


async def show_history(
    client: AsyncBridgeClient,
    caller: Caller,
    *,
    limit: int = 10,
    manager_roles: Collection[str | int] = (),
) -> Reply:
    """`/prompt-config history`: the last commits this server served, newest first."""
    refused = _refuse_unless_manager(caller, manager_roles)
    if refused is not None:
        return refused
    try:
        history = await client.history(caller.guild_id, limit=limit)
    except BridgeError as exc:
        return Reply(_refusal(exc, caller))
    return Reply(_describe_history(history))


async def preview_pull_request(
    client: AsyncBridgeClient,
    caller: Caller,
    pull_request: int | None,
    channel_id: str | None = None,
    *,
    off: bool = False,
    manager_roles: Collection[str | int] = (),
) -> Reply:
    """`/prompt-config preview <pull request> [channel]` and `preview off [channel]`: one
    channel (the caller's by default) tries the pull request; the rest keeps the branch."""
    refused = _refuse_unless_manager(caller, manager_roles)
    if refused is not None:
        return refused
    channel = channel_id or caller.channel_id
    try:
        if off:
            ended = await client.preview_off(caller.guild_id, channel_id, actor=caller.user_id)
            if not ended:
                return Reply("No pull request is previewed there.")
            shown = ", ".join(f"<#{item}>" for item in ended)
            return Reply(f"Preview off: {shown} use the server's prompts again.")
        if pull_request is None:
            return Reply("Give the pull request number, for example `/prompt-config preview 12`.")
        if channel is None:
            return Reply("Run this in a channel, or name the channel to preview in.")
        result = await client.preview(caller.guild_id, pull_request, channel, actor=caller.user_id)
    except BridgeError as exc:
        return Reply(_pin_refusal(exc, caller))
    head = f" (`{result.head_sha[:7]}`)" if result.head_sha else ""
    waiting = " once its head is synced, in a moment" if result.in_progress else ""
    return Reply(
        f"<#{channel}> now uses pull request #{pull_request}{head}{waiting}, until it closes or "
        "`/prompt-config preview off`. The rest of the server keeps its branch."
    )


# --- wording ------------------------------------------------------------------------------------


def _refusal(exc: BridgeError, caller: Caller, repository: str | None = None) -> str:
    """One sentence per failure of section 2, saying what to do next."""
    if exc.unreachable:
        return (
            f"{exc.message}. The bot keeps answering with the prompts it already has; try again "
            "in a minute."
        )
    status, name = exc.status_code, f"**{repository}**" if repository else "the repository"
    if status == 409 and exc.install_url:
        return (
            f"The guildprompts GitHub App is not installed on {name}. Install it here, choosing "
            f"that repository: {exc.install_url}\nThe binding is saved as pending: it syncs by "
            "itself as soon as the App is installed."
        )
    if status == 403:
        snippet = f'```yaml\nallowed_guilds:\n  - "{caller.guild_id}"\n```'
        return (
            f"{name} is private and does not allow this server. {exc.message}\n"
            f"Add this server's id to `allowed_guilds` in the repository's PATH file, push, "
            f"then run `/prompt-config set` again:\n{snippet}"
        )
    if status == 401:
        return (
            "guildprompts refused the bot's credentials. The bot's operator must check the bridge "
            "token configured for the bot (it must be one of BRIDGE_TOKENS)."
        )
    if status == 404:
        return f"This server has no prompt repository. {exc.message}"
    problems = _problems(exc.diagnostics)
    if problems:
        return f"{exc.message}\n{problems}"
    if status is not None and status >= 500:
        return f"guildprompts failed ({status}: {exc.message}). Try again in a minute."
    return f"That did not work: {exc.message}"


def _describe(config: GuildConfig, headline: str | None = None) -> str:
    """The binding, what it serves, and what (if anything) needs fixing."""
    lines = [headline] if headline else []
    lines.append(f"Repository: **{config.repository}**{_on_branch(config.branch)}")
    if config.repo_url:
        lines.append(f"<{config.repo_url}>")
    lines.append(_serving_line(config))
    if config.status_message:
        lines.append(config.status_message)
    problems = _problems(config.errors)
    if problems:
        lines.append(problems)
    if config.last_sync_at:
        lines.append(f"Last sync: {_when(config.last_sync_at)}")
    if config.set_by:
        when = f" {_when(config.set_at)}" if config.set_at else ""
        lines.append(f"Set by <@{config.set_by}>{when}")
    return "\n".join(lines)


def _serving_line(config: GuildConfig) -> str:
    bases = " with " + ", ".join(f"`{base}`" for base in config.bases) if config.bases else ""
    active = f"`{config.active_sha[:7]}`{bases}" if config.active_sha else None
    latest = f"`{config.latest_sha[:7]}`" if config.latest_sha else "the latest commit"
    if not config.enabled:
        return "Disabled: the bot uses its built-in prompts."
    if config.state == "no_access":
        return (
            "guildprompts lost access to this repository, so its content was deleted and the "
            "bot uses its built-in prompts. Install the App on the repository again to resume."
        )
    if config.state == "pending":
        install = f" Install the App: {config.install_url}" if config.install_url else ""
        return f"Pending: not live yet; the bot uses its built-in prompts meanwhile.{install}"
    outcome = config.last_sync_outcome
    if outcome == "rejected":
        keeps = f"still serving {active}" if active else "the bot uses its built-in prompts"
        return f"Commit {latest} was rejected; {keeps}. Fix the problems below and push again."
    if outcome == "error":
        if active:
            return f"GitHub is unreachable, still serving {active}."
        return "GitHub is unreachable; the bot uses its built-in prompts until a sync succeeds."
    if outcome == "deleted":
        keeps = f"still serving {active}" if active else "the bot uses its built-in prompts"
        return f"The branch was deleted; {keeps}. Push the branch again or set another branch."
    if active and config.freshness:
        return f"Serving {config.freshness}."
    if active:
        return f"Serving commit {active}."
    return "Not synced yet: the bot uses its built-in prompts until the first sync succeeds."


def _problems(diagnostics: Iterable[Diagnostic]) -> str:
    """Errors first, each with file:line and the hint that says how to fix it."""
    ordered = sorted(diagnostics, key=lambda d: (d.severity != "error", d.path, d.line or 0))
    if not ordered:
        return ""
    errors = sum(1 for d in ordered if d.severity == "error")
    lines = [f"Problems: {errors} error(s), {len(ordered) - errors} warning(s) or notice(s)"]
    for item in ordered[:MAX_LISTED_PROBLEMS]:
        where = f"{item.path}:{item.line}" if item.line else item.path or "repository"
        lines.append(f"• {item.severity} `{where}`: {item.message}")
        if item.hint:
            lines.append(f"  fix: {item.hint}")
    if len(ordered) > MAX_LISTED_PROBLEMS:
        hidden = len(ordered) - MAX_LISTED_PROBLEMS
        lines.append(f"… and {hidden} more (the check run on the commit lists them all)")
    return "\n".join(lines)


def _describe_preview(result: PreviewResult, context: dict[str, str]) -> str:
    shown = ", ".join(f"{key}={value}" for key, value in context.items()) or "no context"
    chosen = f"`{result.file_path}`" if result.file_path else "the built-in default"
    lines = [f"For {shown}: {chosen}"]
    details = [
        f"route `{result.route}`" if result.route else "",
        f"source {result.source}" if result.source else "",
        f"commit `{result.commit_sha[:7]}`" if result.commit_sha else "",
    ]
    if any(details):
        lines.append(", ".join(part for part in details if part))
    if result.tried_paths:
        lines.append("Tried: " + " → ".join(f"`{path}`" for path in result.tried_paths))
    preview = result.preview[:MAX_PREVIEW_LENGTH].replace("```", "`\u200b``")
    if len(result.preview) > MAX_PREVIEW_LENGTH:
        preview += "\n…"
    lines.append(f"```\n{preview}\n```")
    problems = _problems(result.diagnostics)
    if problems:
        lines.append(problems)
    return "\n".join(lines)


_PIN_ERRORS = frozenset(
    {
        "not_found",
        "no_access",
        "invalid",
        "no_previous",
        "ambiguous",
        "not_serving",
        "not_synced",
        "closed",
    }
)


def _pin_refusal(exc: BridgeError, caller: Caller) -> str:
    """The service's own sentence for what only pins can hit (an unknown or invalid commit)."""
    if exc.body.get("error") not in _PIN_ERRORS or "no prompt repository" in exc.message:
        return _refusal(exc, caller)
    problems = _problems(exc.diagnostics)
    return f"{exc.message}\n{problems}" if problems else exc.message


def _describe_pin(status: PinStatus, headline: str) -> str:
    lines = [headline]
    bases = f" (with {', '.join(f'`{base}`' for base in status.bases)})" if status.bases else ""
    if status.pinned_sha:
        lines.append(
            f"Serving commit `{status.pinned_sha[:7]}`{bases} until `/prompt-config unpin`, "
            "whatever is pushed meanwhile."
        )
    elif status.active_sha:
        lines.append(
            f"Following the branch again: serving commit `{status.active_sha[:7]}`{bases}."
        )
    if status.branch_sha and status.pinned_sha and status.branch_sha != status.pinned_sha:
        lines.append(f"The branch has `{status.branch_sha[:7]}` meanwhile.")
    return "\n".join(lines)


def _describe_history(history: GuildHistory) -> str:
    if not history.activations:
        return "No activation recorded for this server yet."
    lines = ["Last commits this server served (newest first):"]
    if history.pinned_sha:
        lines.append(
            f"Pinned to `{history.pinned_sha[:7]}`; `/prompt-config unpin` follows the branch."
        )
    for item in history.activations:
        who = f" pushed by {item.pushed_by}" if item.pushed_by else ""
        asked = f" by <@{item.actor}>" if item.actor and item.trigger in _ASKED else ""
        pin = " (pinned)" if item.pinned else ""
        lines.append(f"• `{item.commit_sha[:7]}` {_when(item.at)}: {item.trigger}{who}{asked}{pin}")
    return "\n".join(lines)


_ASKED = frozenset({"pin", "rollback", "unpin"})


def _on_branch(branch: str | None) -> str:
    return f" on branch `{branch}`" if branch else " (default branch)"


def _when(value: str | None) -> str:
    """A Discord timestamp shown in each reader's time zone, or the text as sent."""
    try:
        moment = datetime.fromisoformat(value or "")
    except ValueError:
        return value or ""
    return f"<t:{int(moment.timestamp())}:R>"
