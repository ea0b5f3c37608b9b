"""`POST /api/github/webhooks`: verify, store, acknowledge. Nothing else, and never GitHub.

GitHub waits 10 seconds for an answer and never retries a failed delivery by itself, so the
request path only checks the request (`webhooks.parse_delivery`: headers 400, size 413,
signature 401, JSON 415) and stores the exact body in the `deliveries` table before answering
202 with the delivery id. The worker does the rest. A GUID already stored (GitHub redelivers
with the same one) is acknowledged with 200 and not stored twice, so it is processed once. When
the database cannot store it the answer is 503: the failure shows in GitHub's delivery log and
the redelivery sweep (or a person) sends it again; a 2xx always means "stored". That includes a
SQLite file locked by something else for more than STORE_WAIT seconds: a prompt 503 beats a 202
GitHub has stopped waiting for.

Nothing of a request that failed verification is logged or stored.
"""

from __future__ import annotations

import logging
from functools import partial

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from github_app import metrics
from github_app.runtime import Runtime
from github_app.store import deliveries
from github_app.store.errors import DatabaseUnavailableError
from github_app.store.models import utcnow
from github_app.webhooks import MAX_PAYLOAD_BYTES, Delivery, WebhookError, parse_delivery

log = logging.getLogger("guildprompts.intake")

WEBHOOK_PATH = "/api/github/webhooks"
_INTERNAL_PREFIX = "guildprompts."  # internal work items' events: never accepted from outside
_COLUMN_MAX = 64  # event and action columns
STORE_WAIT = 3.0  # seconds intake waits for the database's write lock (GitHub waits 10)
_MAX_ID = 2**63 - 1  # GitHub's ids are stored in BIGINT columns


def webhook_route(runtime: Runtime) -> Route:
    """The intake route for the web app."""
    return Route(
        WEBHOOK_PATH, partial(receive_webhook, runtime), methods=["POST"], name="github_webhooks"
    )


async def receive_webhook(runtime: Runtime, request: Request) -> JSONResponse:
    if not await runtime.refresh_credentials():
        return _error(503, "App not configured: open /setup")
    event_header = request.headers.get("x-github-event", "")
    try:
        body = await _read_body(request, MAX_PAYLOAD_BYTES)
        delivery = parse_delivery(request.headers, body, runtime.credentials.webhook_secrets)
        _check_storable(delivery)
    except WebhookError as exc:
        metrics.count_delivery(event_header, "rejected")
        log.warning("refused a webhook request (%d): %s", exc.status_code, exc.message)
        return _error(exc.status_code, exc.message)
    except ClientDisconnect:
        return _error(400, "the request body was cut short")
    try:
        stored = await runtime.run_db_within(
            STORE_WAIT,
            deliveries.record_delivery,
            delivery.guid,
            delivery.event,
            delivery.action,
            delivery.installation_id,
            delivery.repository_id,
            body,
            ref=delivery.ref if delivery.event == "push" else None,
            received_at=utcnow(),
        )
    except DatabaseUnavailableError as exc:
        return _unavailable(delivery, str(exc))
    except Exception as exc:
        # The message of an arbitrary database error may quote the payload: name the type only.
        return _unavailable(delivery, type(exc).__name__)
    if not stored:
        metrics.count_delivery(delivery.event, "duplicate")
        log.info(
            "delivery %s (%s) was already stored: acknowledged, not processed again",
            delivery.guid,
            delivery.event,
        )
        return JSONResponse({"delivery_id": delivery.guid, "duplicate": True}, status_code=200)
    metrics.count_delivery(delivery.event, "stored")
    runtime.wake_worker()
    return JSONResponse({"delivery_id": delivery.guid}, status_code=202)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) as soon as it is known to exceed `limit`, before reading it all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise WebhookError(413, f"payload is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WebhookError(413, f"payload is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_storable(delivery: Delivery) -> None:
    if delivery.event.startswith(_INTERNAL_PREFIX):
        raise WebhookError(400, f"{delivery.event} is not a GitHub event")
    if len(delivery.event) > _COLUMN_MAX:
        raise WebhookError(400, "malformed X-GitHub-Event header")
    if len(delivery.guid) > _COLUMN_MAX:
        raise WebhookError(400, "malformed X-GitHub-Delivery header")
    if delivery.action is not None and len(delivery.action) > _COLUMN_MAX:
        raise WebhookError(400, "payload `action` is too long")
    for field, value in (
        ("installation.id", delivery.installation_id),
        ("repository.id", delivery.repository_id),
    ):
        if value is not None and not 0 < value <= _MAX_ID:
            raise WebhookError(
                400, f"payload `{field}` {value} is not a GitHub id (a positive 64-bit integer)"
            )


def _unavailable(delivery: Delivery, reason: str) -> JSONResponse:
    metrics.count_delivery(delivery.event, "rejected")
    log.error(
        "could not store delivery %s (%s): %s; answered 503 so GitHub shows the failure",
        delivery.guid,
        delivery.event,
        reason,
    )
    return _error(503, "the delivery could not be stored; redeliver it once the service is back")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
