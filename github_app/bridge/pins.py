"""Pin, unpin, roll back and history: the bridge routes that choose which commit a guild serves.

- `PUT /guilds/{id}/pin` `{"sha", "actor"}`: serve that commit of the bound repository until
  unpinned. A commit already synced is pinned at once (a 7+ character prefix is enough); a full
  sha never seen is synced on demand (stored and validated, never activated) and the answer
  waits for it like PUT .../config does: 200 pinned, 202 still syncing, 404 no such commit,
  422 invalid, 403 a private repository whose commit does not list the guild in
  `allowed_guilds`.
- `DELETE /guilds/{id}/pin` `{"actor"}`: serve the branch's newest valid commit again.
- `POST /guilds/{id}/rollback` `{"actor"}`: pin the commit the guild served before the current
  one (from its history).
- `GET /guilds/{id}/history?limit=N`: the guild's last activations, newest first, and its pin.

A commit whose PATH `extends` bases is pinned with base commits (`store.layers`): the ones the
guild is served with when it pins the commit it serves, else the ones its branch is served with
now. The pin itself lives in `store.pins` and is applied where guild states are read
(`store.serving`), so the resolver cache and every other reader serve it with no hook of their
own. Mounted by `bridge.routes` (`pin_routes`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from github_app.bridge.binding_store import Refusal, pin_view
from github_app.store import branches, deliveries, history, pins, serving, snapshots
from github_app.store.layers import Layers, layers_from
from github_app.store.models import BindingState, DeliveryState, Snapshot
from github_app.store.serving import GuildState
from github_app.sync import jobs

__all__ = ["pin_routes"]

_SHA_PREFIX = re.compile(r"[0-9a-f]{7,64}")
_FULL_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
HISTORY_LIMIT = 100


@dataclass(frozen=True)
class _Queued:
    guid: str
    sha: str


def pin_routes(api: Any) -> list[Route]:
    """The routes, sharing the bridge's authentication and error handling (`api.route`)."""
    handlers = _PinAPI(api)
    return [
        api.route("pin", {"PUT": handlers.put_pin, "DELETE": handlers.delete_pin}),
        api.route("rollback", {"POST": handlers.rollback}),
        api.route("history", {"GET": handlers.history}),
    ]


class BridgeHandlers:
    """Handlers mounted beside `bridge.routes`' own, with its body, actor and JSON helpers."""

    def __init__(self, api: Any) -> None:
        from github_app.bridge import routes  # it imports the modules that subclass this

        self.api = api
        self.runtime = api.runtime
        self._body: Callable[..., Any] = routes._body
        self._actor: Callable[..., str] = routes._actor
        self._json: Callable[..., JSONResponse] = routes._json


class _PinAPI(BridgeHandlers):
    async def put_pin(self, request: Request, guild_id: str) -> Response:
        body = await self._body(request)
        actor = self._actor(body)
        sha = body.get("sha")
        if not isinstance(sha, str) or not _SHA_PREFIX.fullmatch(sha.strip().lower()):
            raise Refusal(
                400, "bad_request", "sha must be a commit sha (at least 7 hexadecimal characters)"
            )
        keep = self.runtime.settings.history_keep
        result = await self.runtime.run_db(_pin, guild_id, sha.strip().lower(), actor, "pin", keep)
        if isinstance(result, _Queued):
            self.runtime.wake_worker()
            result = await self._wait(guild_id, result, actor, keep)
            if result is None:
                return self._json(
                    {
                        "message": f"commit {sha[:7]} is being synced; the pin is not set yet: "
                        "ask again in a moment",
                        "error": "syncing",
                    },
                    202,
                )
        return await self._answer(guild_id, result)

    async def _wait(self, guild_id: str, queued: _Queued, actor: str, keep: int) -> int | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.api.wait
        while True:
            result = await self.runtime.run_db(_pin_when_synced, guild_id, queued, actor, keep)
            if result is not None:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(self.api.poll_interval, remaining))

    async def delete_pin(self, request: Request, guild_id: str) -> Response:
        actor = self._actor(await self._body(request, required=False))
        keep = self.runtime.settings.history_keep
        generation = await self.runtime.run_db(_unpin, guild_id, actor, keep)
        return await self._answer(guild_id, generation)

    async def rollback(self, request: Request, guild_id: str) -> Response:
        actor = self._actor(await self._body(request, required=False))
        keep = self.runtime.settings.history_keep
        generation = await self.runtime.run_db(_rollback, guild_id, actor, keep)
        return await self._answer(guild_id, generation)

    async def history(self, request: Request, guild_id: str) -> Response:
        raw = request.query_params.get("limit", "20")
        if not raw.isdigit() or not 1 <= int(raw) <= HISTORY_LIMIT:
            raise Refusal(400, "bad_request", f"limit must be a number from 1 to {HISTORY_LIMIT}")
        return self._json(await self.runtime.run_db(_history_view, guild_id, int(raw)))

    async def _answer(self, guild_id: str, generation: int) -> Response:
        await self.runtime.announce_activation(generation)
        await self.api.cache.check()  # this process serves the change from now on
        state = await self.runtime.run_db(serving.guild_state, guild_id)
        if state is None:
            raise no_binding(guild_id)
        return self._json(status_view(state))


def status_view(state: GuildState) -> dict[str, Any]:
    """What a pin change answers: what the guild serves now, and why."""
    return {
        "guild_id": state.guild_id,
        "repository": state.repository_full_name,
        "branch": state.effective_branch,
        "active_sha": state.commit_sha,
        "branch_sha": state.branch_sha,
        "bases": [layer.label for layer in state.layers],
        "pinned": pin_view(state),
        "status_message": state.status_message,
    }


# ---- database work (one transaction each) -------------------------------------------------------


def serving_state(session: Session, guild_id: str) -> GuildState:
    state = serving.guild_state(session, guild_id)
    if state is None:
        raise no_binding(guild_id)
    if state.repository_id is None:
        raise Refusal(409, "not_synced", "the bound repository has not been synced yet")
    if not state.enabled or state.state != BindingState.ACTIVE:
        raise Refusal(
            409,
            "not_serving",
            f"the binding cannot serve its repository right now ({state.status_message}): "
            "fix that first",
        )
    return state


def _pin(
    session: Session, guild_id: str, sha: str, actor: str, reason: str, keep: int
) -> int | _Queued:
    """Pin a stored commit (the new generation), or queue the sync of an unknown full sha."""
    state = serving_state(session, guild_id)
    assert state.repository_id is not None
    snapshot = _find(session, state.repository_id, sha)
    if snapshot is None:
        if not _FULL_SHA.fullmatch(sha):
            raise Refusal(
                404,
                "not_found",
                f"no synced commit of {state.repository_full_name} starts with {sha}: give the "
                "full commit sha to sync it",
            )
        guid = jobs.enqueue_sync(
            session,
            full_name=state.repository_full_name,
            repository_id=state.repository_id,
            branch=state.effective_branch,
            sha=sha,
            trigger="pin",
            guild_id=guild_id,
        )
        return _Queued(guid, sha)
    return _apply(session, state, snapshot, actor, reason, keep)


def _pin_when_synced(
    session: Session, guild_id: str, queued: _Queued, actor: str, keep: int
) -> int | None:
    state = serving_state(session, guild_id)
    assert state.repository_id is not None
    snapshot = snapshots.find_snapshot(session, state.repository_id, queued.sha)
    if snapshot is not None:
        return _apply(session, state, snapshot, actor, "pin", keep)
    job = deliveries.get_delivery(session, queued.guid)
    if job is not None and job.state in (DeliveryState.DONE, DeliveryState.FAILED):
        raise Refusal(
            404,
            "not_found",
            f"commit {queued.sha[:7]} could not be synced from {state.repository_full_name}: "
            "check that it exists there",
        )
    return None


def _apply(
    session: Session, state: GuildState, snapshot: Snapshot, actor: str, reason: str, keep: int
) -> int:
    check_valid(snapshot)
    check_readable(session, state, snapshot)
    layers = pinned_layers(session, state, snapshot)
    pins.set_pin(
        session, state.guild_id, snapshot, actor=actor, reason=reason, keep=keep, layers=layers
    )
    return branches.current_generation(session)


def pinned_layers(session: Session, state: GuildState, snapshot: Snapshot) -> Layers:
    """The base commits a pin of `snapshot` is served with: the guild's own when it is the
    commit the guild serves now, else its branch's active ones; none for a commit whose PATH
    extends nothing. 409 when the commit extends a base the branch is not served with (it
    could not be served whole)."""
    if snapshot.id == state.snapshot_id:
        return state.layers
    read = snapshots.path_file(session, snapshot.id)
    extends = read.extends if read is not None else ()
    if not extends:
        return ()
    tracked = branches.get_branch(session, snapshot.repository_id, state.effective_branch or "")
    layers = layers_from(tracked.active_layers if tracked is not None else None)
    served = {layer.name.lower() for layer in layers}
    missing = [str(ref) for ref in extends if ref.repository.lower() not in served]
    if missing:
        raise Refusal(
            409,
            "bases_differ",
            f"commit {snapshot.commit_sha[:7]} extends {', '.join(missing)}, which "
            f"{state.effective_branch or 'the branch'} is not served with: it cannot be pinned",
        )
    return layers


def check_valid(snapshot: Snapshot) -> None:
    """422 unless the commit passed validation: only valid commits are ever served."""
    if not snapshot.valid:
        raise Refusal(
            422,
            "invalid",
            f"commit {snapshot.commit_sha[:7]} failed validation ({snapshot.error_count} errors): "
            "only a valid commit can be served",
            diagnostics=list(snapshot.diagnostics),
        )


def check_readable(session: Session, state: GuildState, snapshot: Snapshot) -> None:
    """The binding's access rule for another commit: a private repository read without the
    guild's own token must list the guild in that commit's `allowed_guilds` (403 otherwise)."""
    if not state.private or state.has_token:
        return
    if state.guild_id not in snapshots.allowed_guilds(session, snapshot.id):
        raise Refusal(
            403,
            "no_access",
            f"commit {snapshot.commit_sha[:7]}'s PATH does not list this server in "
            "allowed_guilds, and the repository is private: it cannot be served here",
        )


def _unpin(session: Session, guild_id: str, actor: str, keep: int) -> int:
    state = serving.guild_state(session, guild_id)
    if state is None:
        raise no_binding(guild_id)
    removed = pins.clear_pin(
        session, guild_id, actor=actor, serving_sha=state.branch_sha, keep=keep
    )
    if removed is None:
        raise Refusal(404, "not_pinned", f"server {guild_id} is not pinned")
    return branches.current_generation(session)


def _rollback(session: Session, guild_id: str, actor: str, keep: int) -> int:
    state = serving_state(session, guild_id)
    assert state.repository_id is not None
    previous = pins.previous_good(session, guild_id, state.repository_id, state.commit_sha)
    if previous is None:
        raise Refusal(
            409,
            "no_previous",
            "this server's history has no earlier valid commit to roll back to",
        )
    return _apply(session, state, previous, actor, "rollback", keep)


def _find(session: Session, repository_id: int, sha: str) -> Snapshot | None:
    if _FULL_SHA.fullmatch(sha):
        return snapshots.find_snapshot(session, repository_id, sha)
    query = (
        select(Snapshot)
        .where(Snapshot.repository_id == repository_id, Snapshot.commit_sha.startswith(sha))
        .limit(2)
    )
    found = list(session.scalars(query))
    if len(found) > 1:
        raise Refusal(400, "ambiguous", f"several synced commits start with {sha}: give more of it")
    return found[0] if found else None


def _history_view(session: Session, guild_id: str, limit: int) -> dict[str, Any]:
    state = serving.guild_state(session, guild_id)
    rows = history.guild_history(session, guild_id, limit)
    if state is None and not rows:
        raise no_binding(guild_id)
    return {
        "guild_id": guild_id,
        "active_sha": state.commit_sha if state is not None else None,
        "branch_sha": state.branch_sha if state is not None else None,
        "pinned": pin_view(state) if state is not None else None,
        "activations": [
            {
                "commit_sha": row.commit_sha,
                "at": row.at.isoformat(),
                "trigger": row.trigger,
                "pushed_by": row.pushed_by,
                "actor": row.actor,
                "pinned": row.pinned,
            }
            for row in rows
        ],
    }


def no_binding(guild_id: str) -> Refusal:
    return Refusal(
        404,
        "not_found",
        f"server {guild_id} has no prompt repository: bind one with PUT .../config",
    )
