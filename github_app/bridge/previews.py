"""Try a pull request in one channel: the bridge routes behind `/prompt-config preview`.

- `PUT /guilds/{id}/preview` `{"pull_request", "channel_id", "actor"}`: that channel resolves
  from the pull request's head (the newest one its webhooks reported) until the pull request
  closes or the preview is turned off; the rest of the guild keeps its branch. The pull request
  must be one of the bound repository's that guildprompts has seen (its `pull_request` webhooks),
  its head valid, and, for a private repository read without the guild's own token, its PATH
  must list the guild in `allowed_guilds` (the binding's rule). 200 with the preview, 202 when
  the head is not synced yet (the channel switches once it is).
- `DELETE /guilds/{id}/preview` `{"channel_id"?, "actor"}`: preview off (one channel, or all).
- `GET /guilds/{id}/preview`: the guild's previews.

Served by the resolver cache's one preview hook (`ResolverCache._serving_for`).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from github_app.bridge.binding_store import Refusal
from github_app.bridge.pins import (
    BridgeHandlers,
    check_readable,
    check_valid,
    no_binding,
    serving_state,
)
from github_app.store import branches, previews, serving, snapshots

__all__ = ["preview_routes"]

_CHANNEL = re.compile(r"[0-9]{1,20}")


def preview_routes(api: Any) -> list[Route]:
    handlers = _PreviewAPI(api)
    return [
        api.route(
            "preview",
            {"GET": handlers.list, "PUT": handlers.put, "DELETE": handlers.delete},
        )
    ]


class _PreviewAPI(BridgeHandlers):
    async def put(self, request: Request, guild_id: str) -> Response:
        body = await self._body(request)
        actor = self._actor(body)
        number = body.get("pull_request")
        if isinstance(number, str) and number.strip().lstrip("#").isdigit():
            number = int(number.strip().lstrip("#"))
        if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 2**31:
            raise Refusal(400, "bad_request", "pull_request must be a pull request number")
        channel = _channel(body.get("channel_id"), required=True)
        assert channel is not None
        answer, synced = await self.runtime.run_db(_start, guild_id, channel, number, actor)
        await self._switch(answer.pop("generation"))
        return self._json(answer, 200 if synced else 202)

    async def delete(self, request: Request, guild_id: str) -> Response:
        body = await self._body(request, required=False)
        actor = self._actor(body)
        channel = _channel(body.get("channel_id"), required=False)
        ended, generation = await self.runtime.run_db(_stop, guild_id, channel, actor)
        await self._switch(generation)
        return self._json({"guild_id": guild_id, "ended": ended})

    async def list(self, request: Request, guild_id: str) -> Response:
        return self._json(await self.runtime.run_db(_list, guild_id))

    async def _switch(self, generation: int) -> None:
        await self.runtime.announce_activation(generation)
        await self.api.cache.check()  # this process serves the change from now on


def _channel(value: Any, *, required: bool) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not _CHANNEL.fullmatch(value.strip()):
        raise Refusal(400, "bad_request", "channel_id must be a Discord channel id (digits)")
    return value.strip()


def _start(
    session: Session, guild_id: str, channel: str, number: int, actor: str
) -> tuple[dict[str, Any], bool]:
    state = serving_state(session, guild_id)
    assert state.repository_id is not None
    pull = previews.get_pull_request(session, state.repository_id, number)
    if pull is None:
        raise Refusal(
            404,
            "not_found",
            f"guildprompts has not seen pull request #{number} of {state.repository_full_name}: "
            "it learns of pull requests from their webhooks (push to it, or reopen it)",
        )
    if not pull.open:
        raise Refusal(409, "closed", f"pull request #{number} is closed: nothing to preview")
    snapshot = snapshots.find_snapshot(session, state.repository_id, pull.head_sha)
    if snapshot is not None:
        check_valid(snapshot)
        check_readable(session, state, snapshot)
    previews.set_preview(session, guild_id, channel, state.repository_id, number, actor=actor)
    waiting = "" if snapshot is not None else " once its head is synced (in a moment)"
    answer = {
        "guild_id": guild_id,
        "channel_id": channel,
        "pull_request": number,
        "head_sha": pull.head_sha,
        "message": f"channel {channel} resolves from pull request #{number} "
        f"({pull.head_sha[:7]}){waiting} until it closes or the preview is turned off",
        "generation": branches.current_generation(session),
    }
    return answer, snapshot is not None


def _stop(
    session: Session, guild_id: str, channel: str | None, actor: str
) -> tuple[list[str], int]:
    if serving.guild_state(session, guild_id) is None:
        raise no_binding(guild_id)
    ended = previews.clear_previews(session, guild_id, channel, actor=actor)
    if not ended:
        where = f"channel {channel}" if channel else "any channel"
        raise Refusal(404, "not_previewing", f"no pull request is previewed in {where}")
    return ended, branches.current_generation(session)


def _list(session: Session, guild_id: str) -> dict[str, Any]:
    if serving.guild_state(session, guild_id) is None:
        raise no_binding(guild_id)
    return {
        "guild_id": guild_id,
        "previews": [
            {"channel_id": row.channel_id, "pull_request": row.pull_number, "set_by": row.set_by}
            for row in previews.guild_previews(session, guild_id)
        ],
    }
