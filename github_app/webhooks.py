"""Webhook verification, parsing and routing, without any I/O (the shape of gidgethub).

Intake calls `parse_delivery` on the exact bytes it received: it either gets a verified `Delivery`
or a `WebhookError` carrying the HTTP status to answer. The worker rebuilds deliveries from stored
payloads with `Delivery.from_payload` and hands them to a `Router`. Nothing here logs, stores or
fetches anything, so it can be tested with plain bytes and reused by any transport.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_PAYLOAD_BYTES = 25 * 1024 * 1024  # GitHub drops larger events; a larger body is not GitHub's

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_EVENT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_DELIVERY_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")

Handler = Callable[..., Any]


class WebhookError(Exception):
    """A request intake must refuse; `status_code` is the HTTP status to answer with."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def verify_signature(body: bytes, signature_header: str | None, secrets: Sequence[str]) -> bool:
    """True when `X-Hub-Signature-256` is HMAC-SHA256 of `body` under any of `secrets`.

    Several secrets are accepted so a secret can be rotated without dropping deliveries. Every
    secret is compared in constant time, and a malformed header is simply not a match.
    """
    if isinstance(secrets, str | bytes):  # one secret passed bare: never iterate its characters
        secrets = (secrets,)
    if not signature_header:
        return False
    algorithm, _, digest = signature_header.strip().partition("=")
    if algorithm.lower() != "sha256" or not _HEX_SHA256.fullmatch(digest):
        return False
    provided = digest.lower().encode("ascii")
    matched = False
    for secret in secrets:
        if not secret:
            continue
        key = secret.encode("utf-8") if isinstance(secret, str) else secret
        expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode("ascii")
        matched |= hmac.compare_digest(expected, provided)
    return matched


@dataclass(frozen=True)
class Delivery:
    """One verified webhook (or internal work item) with the fields handlers route on.

    The payload is left out of `repr` and comparisons so a delivery can be logged by its identity
    without ever writing repository content or user data to a log.
    """

    guid: str
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None
    repository: str | None  # owner/name
    ref: str | None  # as GitHub sent it: refs/heads/main for push, main for create/delete
    branch: str | None  # the branch name when `ref` names a branch, else None (tags)
    payload: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_payload(cls, guid: str, event: str, payload: Mapping[str, Any]) -> Delivery:
        """Build a delivery from an already-verified payload (e.g. one read back from storage).

        Fields of an unexpected type become None instead of raising: a handler that needs them
        decides what a delivery without them means.
        """
        installation = _mapping(payload.get("installation"))
        repository = _mapping(payload.get("repository"))
        ref = _text(payload.get("ref"))
        return cls(
            guid=guid,
            event=event,
            action=_text(payload.get("action")),
            installation_id=_integer(installation.get("id")),
            repository_id=_integer(repository.get("id")),
            repository=_text(repository.get("full_name")),
            ref=ref,
            branch=_branch(payload, ref),
            payload=payload,
        )


def parse_delivery(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> Delivery:
    """Check a webhook request in the order that never trusts what is not verified.

    Headers (400), then size (413), then the signature (401), and only then is the body decoded
    as JSON (415 when it is not JSON, 400 when it is not an object). Raises `WebhookError`.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    event = _required_header(lowered, "x-github-event", _EVENT_NAME)
    guid = _required_header(lowered, "x-github-delivery", _DELIVERY_ID)
    if len(body) > max_bytes:
        raise WebhookError(413, f"payload is larger than {max_bytes} bytes")
    signature = lowered.get("x-hub-signature-256")
    if not signature:
        raise WebhookError(401, "missing X-Hub-Signature-256 header")
    if not verify_signature(body, signature, secrets):
        raise WebhookError(401, "signature does not match the webhook secret")
    payload = _json_object(lowered.get("content-type"), body)
    return Delivery.from_payload(guid, event, payload)


class Router:
    """Handlers per event, optionally narrowed to one action (like gidgethub's router).

    `Router(a, b)` merges the registrations of other routers, so each handler module keeps its own
    router and the worker combines them. Unknown events simply have no handler.
    """

    def __init__(self, *others: Router) -> None:
        self._handlers: dict[tuple[str, str | None], list[Handler]] = {}
        for other in others:
            for (event, action), handlers in other._handlers.items():
                for handler in handlers:
                    self.add(handler, event, action)

    def add(self, handler: Handler, event: str, action: str | None = None) -> None:
        """Call `handler(delivery, *args)` for `event` (every action when `action` is None)."""
        self._handlers.setdefault((event, action), []).append(handler)

    def register(self, event: str, action: str | None = None) -> Callable[[Handler], Handler]:
        """Decorator form of `add`: `@router.register("pull_request", action="opened")`."""

        def decorator(handler: Handler) -> Handler:
            self.add(handler, event, action)
            return handler

        return decorator

    def handlers_for(self, event: str, action: str | None = None) -> list[Handler]:
        """Event-wide handlers first, then the action's, each once, in registration order."""
        found = list(self._handlers.get((event, None), ()))
        if action is not None:
            found += self._handlers.get((event, action), ())
        return list(dict.fromkeys(found))

    async def dispatch(self, delivery: Delivery, *args: Any) -> int:
        """Run every matching handler in turn; returns how many ran.

        An exception stops the dispatch and propagates, so the worker retries the whole delivery
        (handlers are idempotent). Handlers may be coroutine functions or plain functions.
        """
        handlers = self.handlers_for(delivery.event, delivery.action)
        for handler in handlers:
            result = handler(delivery, *args)
            if inspect.isawaitable(result):
                await result
        return len(handlers)

    def events(self) -> Iterable[tuple[str, str | None]]:
        """Every (event, action) with a handler, e.g. for a start-up log line."""
        return tuple(self._handlers)


def _required_header(headers: Mapping[str, str], name: str, pattern: re.Pattern[str]) -> str:
    value = (headers.get(name) or "").strip()
    if not value:
        raise WebhookError(400, f"missing {_display(name)} header")
    if not pattern.fullmatch(value):
        raise WebhookError(400, f"malformed {_display(name)} header")
    return value


def _display(name: str) -> str:
    return "-".join("GitHub" if part == "github" else part.capitalize() for part in name.split("-"))


def _json_object(content_type: str | None, body: bytes) -> dict[str, Any]:
    if content_type is not None:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            raise WebhookError(
                415, "payload must be application/json (set the webhook's content type to JSON)"
            )
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WebhookError(415, "payload is not valid UTF-8 JSON") from None
    if not isinstance(payload, dict):
        raise WebhookError(400, "payload must be a JSON object")
    return payload


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _branch(payload: Mapping[str, Any], ref: str | None) -> str | None:
    """push sends refs/heads/<name>; create and delete send the bare name with ref_type."""
    if ref is None:
        return None
    if ref.startswith("refs/heads/"):
        return ref.removeprefix("refs/heads/") or None
    if payload.get("ref_type") == "branch" and not ref.startswith("refs/"):
        return ref
    return None
