"""Webhook verification, parsing and routing, on GitHub's own payload examples."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from github_app.webhooks import Delivery, Router, WebhookError, parse_delivery, verify_signature

WEBHOOKS = Path(__file__).parent / "fixtures" / "github-webhooks"
SECRET = "It's a Secret to Everybody"
GUID = "72d3162e-cc78-11e3-81ab-4c9367dc0958"


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def fixture_body(relative: str) -> bytes:
    return (WEBHOOKS / relative).read_bytes()


def headers_for(event: str, body: bytes, **overrides: str | None) -> dict[str, str]:
    headers: dict[str, str | None] = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": GUID,
        "X-Hub-Signature-256": sign(body),
        "Content-Type": "application/json",
    }
    headers.update({name.replace("_", "-"): value for name, value in overrides.items()})
    return {name: value for name, value in headers.items() if value is not None}


def parse(event: str, body: bytes, **overrides: str | None) -> Delivery:
    return parse_delivery(headers_for(event, body, **overrides), body, [SECRET])


# --- signatures -------------------------------------------------------------------------------


def test_signature_matches_githubs_documented_example() -> None:
    # The example from GitHub's "Validating webhook deliveries" documentation.
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert verify_signature(b"Hello, World!", expected, [SECRET])
    uppercase_hex = "sha256=" + expected.removeprefix("sha256=").upper()
    assert verify_signature(b"Hello, World!", uppercase_hex, [SECRET])


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha1=" + "0" * 40,
        "sha256=" + "z" * 64,
        "sha256=" + "0" * 64,
        "sha256=" + "é" * 64,
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    ],
)
def test_malformed_or_wrong_signatures_are_refused(header: str | None) -> None:
    assert not verify_signature(b"Hello, World!", header, [SECRET])


def test_any_of_several_secrets_verifies_so_secrets_can_rotate() -> None:
    body = b'{"zen": "rotate"}'
    assert verify_signature(body, sign(body, "old"), ["new", "old"])
    assert verify_signature(body, sign(body, "new"), ["new", "old"])
    assert not verify_signature(body, sign(body, "older"), ["new", "old"])


def test_a_bare_secret_string_is_one_secret_not_its_characters() -> None:
    body = b"{}"
    assert verify_signature(body, sign(body, "abc"), "abc")  # type: ignore[arg-type]
    assert not verify_signature(body, sign(body, "a"), "abc")  # type: ignore[arg-type]


def test_no_secret_configured_verifies_nothing() -> None:
    body = b"{}"
    assert not verify_signature(body, sign(body, ""), [])
    assert not verify_signature(body, sign(body, ""), [""])


def test_signature_covers_the_exact_bytes() -> None:
    body = fixture_body("ping/with-app_id.payload.json")
    reformatted = json.dumps(json.loads(body)).encode()
    assert not verify_signature(reformatted, sign(body), [SECRET])


# --- parse_delivery: every fixture, and the fields handlers route on ----------------------------


ALL_FIXTURES = sorted(path.relative_to(WEBHOOKS).as_posix() for path in WEBHOOKS.rglob("*.json"))


@pytest.mark.parametrize("relative", ALL_FIXTURES)
def test_every_payload_example_parses(relative: str) -> None:
    body = fixture_body(relative)
    event = relative.split("/", 1)[0]
    delivery = parse(event, body)
    payload = json.loads(body)
    assert delivery.guid == GUID
    assert delivery.event == event
    assert delivery.action == payload.get("action")
    assert delivery.payload == payload
    assert delivery.installation_id == (payload.get("installation") or {}).get("id")
    assert delivery.repository == (payload.get("repository") or {}).get("full_name")


def test_pull_request_fields() -> None:
    delivery = parse("pull_request", fixture_body("pull_request/opened.payload.json"))
    assert (delivery.action, delivery.installation_id) == ("opened", 1)
    assert (delivery.repository_id, delivery.repository) == (186853002, "Codertocat/Hello-World")
    assert delivery.ref is None and delivery.branch is None


def test_tag_push_has_a_ref_but_no_branch() -> None:
    delivery = parse("push", fixture_body("push/with-installation.payload.json"))
    assert delivery.ref == "refs/tags/simple-tag"
    assert delivery.branch is None
    assert delivery.installation_id == 1


def test_branch_push_names_the_branch() -> None:
    payload = json.loads(fixture_body("push/with-installation.payload.json"))
    payload["ref"] = "refs/heads/feature/prompts"
    delivery = parse("push", json.dumps(payload).encode())
    assert delivery.branch == "feature/prompts"


def test_delete_event_uses_ref_type_for_branches() -> None:
    tag = parse("delete", fixture_body("delete/payload.json"))
    assert (tag.ref, tag.branch) == ("simple-tag", None)
    payload = json.loads(fixture_body("delete/payload.json"))
    payload.update(ref="main", ref_type="branch")
    assert parse("delete", json.dumps(payload).encode()).branch == "main"


def test_installation_event_has_no_single_repository() -> None:
    delivery = parse("installation", fixture_body("installation/created.payload.json"))
    assert (delivery.action, delivery.installation_id) == ("created", 957387)
    assert delivery.repository_id is None and delivery.repository is None


def test_unexpected_field_types_become_none() -> None:
    body = json.dumps(
        {"action": 3, "installation": "x", "repository": {"id": True, "full_name": 5}, "ref": []}
    ).encode()
    delivery = parse("push", body)
    assert delivery.action is None and delivery.installation_id is None
    assert delivery.repository_id is None and delivery.repository is None
    assert delivery.ref is None and delivery.branch is None


def test_repr_never_contains_the_payload() -> None:
    delivery = parse("ping", fixture_body("ping/with-app_id.payload.json"))
    assert "dilutes" not in repr(delivery)
    assert GUID in repr(delivery)


def test_header_names_are_case_insensitive() -> None:
    body = fixture_body("ping/with-app_id.payload.json")
    headers = {name.lower(): value for name, value in headers_for("ping", body).items()}
    assert parse_delivery(headers, body, [SECRET]).event == "ping"


# --- parse_delivery: refusals, in the order that never trusts unverified bytes ------------------


def refusal(event: str | None, body: bytes, **overrides: str | None) -> WebhookError:
    headers = headers_for(event or "ping", body, **overrides)
    if event is None:
        headers.pop("X-GitHub-Event")
    with pytest.raises(WebhookError) as caught:
        parse_delivery(headers, body, [SECRET], max_bytes=1024)
    return caught.value


def test_missing_event_header_is_400() -> None:
    error = refusal(None, b"{}")
    assert (error.status_code, error.message) == (400, "missing X-GitHub-Event header")


def test_missing_delivery_header_is_400() -> None:
    error = refusal("ping", b"{}", **{"X-GitHub-Delivery": None})
    assert (error.status_code, error.message) == (400, "missing X-GitHub-Delivery header")


@pytest.mark.parametrize("header", ["X-GitHub-Event", "X-GitHub-Delivery"])
def test_malformed_github_headers_are_400(header: str) -> None:
    assert refusal("ping", b"{}", **{header: "../../etc passwd"}).status_code == 400


def test_headers_are_checked_before_size_and_signature() -> None:
    assert refusal(None, b"x" * 2048, **{"X-Hub-Signature-256": None}).status_code == 400


def test_oversized_body_is_413_before_any_hmac() -> None:
    error = refusal("push", b"{" + b" " * 2048 + b"}")
    assert error.status_code == 413


def test_missing_signature_is_401() -> None:
    error = refusal("ping", b"{}", **{"X-Hub-Signature-256": None})
    assert (error.status_code, error.message) == (401, "missing X-Hub-Signature-256 header")


def test_wrong_signature_is_401_and_the_message_reveals_no_secret() -> None:
    error = refusal("ping", b"{}", **{"X-Hub-Signature-256": sign(b"{}", "guess")})
    assert error.status_code == 401
    assert SECRET not in str(error)


def test_signature_is_checked_before_the_body_is_decoded() -> None:
    # Not JSON and unsigned: the answer is 401, so nothing unverified was ever parsed.
    error = refusal("ping", b"not json", **{"X-Hub-Signature-256": sign(b"other")})
    assert error.status_code == 401


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data"]
)
def test_non_json_content_type_is_415(content_type: str) -> None:
    assert refusal("ping", b"{}", **{"Content-Type": content_type}).status_code == 415


@pytest.mark.parametrize("body", [b"payload=%7B%7D", b"\xff\xfe{}", b"[" * 100_000])
def test_undecodable_body_is_415(body: bytes) -> None:
    headers = headers_for("ping", body)
    with pytest.raises(WebhookError) as caught:
        parse_delivery(headers, body, [SECRET])
    assert caught.value.status_code == 415


def test_json_that_is_not_an_object_is_400() -> None:
    assert refusal("ping", b"[1, 2]").status_code == 400


def test_json_content_type_with_charset_and_missing_content_type_are_accepted() -> None:
    body = fixture_body("ping/with-app_id.payload.json")
    assert parse("ping", body, **{"Content-Type": "application/json; charset=utf-8"})
    assert parse("ping", body, **{"Content-Type": None})


# --- Router -------------------------------------------------------------------------------------


def delivery_for(relative: str) -> Delivery:
    event = relative.split("/", 1)[0]
    return Delivery.from_payload(GUID, event, json.loads(fixture_body(relative)))


@pytest.mark.anyio
async def test_dispatch_calls_event_wide_then_action_handlers_with_extra_arguments() -> None:
    router = Router()
    calls: list[tuple[str, str, object]] = []

    @router.register("pull_request")
    async def any_pull_request(delivery: Delivery, ctx: object) -> None:
        calls.append(("any", delivery.action or "", ctx))

    @router.register("pull_request", action="opened")
    async def opened(delivery: Delivery, ctx: object) -> None:
        calls.append(("opened", delivery.action or "", ctx))

    @router.register("pull_request", action="closed")
    async def closed(delivery: Delivery, ctx: object) -> None:
        calls.append(("closed", delivery.action or "", ctx))

    ran = await router.dispatch(delivery_for("pull_request/opened.payload.json"), "ctx")
    assert ran == 2
    assert calls == [("any", "opened", "ctx"), ("opened", "opened", "ctx")]
    assert router.handlers_for("pull_request", "reopened") == [any_pull_request]


@pytest.mark.anyio
async def test_unknown_events_have_no_handler() -> None:
    router = Router()
    router.add(lambda delivery: None, "push")
    assert router.handlers_for("marketplace_purchase", "purchased") == []
    assert await router.dispatch(delivery_for("ping/with-app_id.payload.json")) == 0


@pytest.mark.anyio
async def test_a_handler_registered_twice_for_the_same_delivery_runs_once() -> None:
    router = Router()
    seen: list[str] = []

    async def handler(delivery: Delivery) -> None:
        seen.append(delivery.event)

    router.add(handler, "installation")
    router.add(handler, "installation", "created")
    assert await router.dispatch(delivery_for("installation/created.payload.json")) == 1
    assert seen == ["installation"]


@pytest.mark.anyio
async def test_plain_function_handlers_are_called_too() -> None:
    router = Router()
    seen: list[int | None] = []
    router.add(lambda delivery: seen.append(delivery.installation_id), "installation", "suspend")
    await router.dispatch(delivery_for("installation/suspend.payload.json"))
    assert seen == [16598467]


@pytest.mark.anyio
async def test_a_failing_handler_stops_dispatch_so_the_delivery_is_retried() -> None:
    router = Router()
    seen: list[str] = []

    @router.register("check_suite")
    async def boom(delivery: Delivery) -> None:
        raise RuntimeError("GitHub said 502")

    @router.register("check_suite", action="requested")
    async def after(delivery: Delivery) -> None:
        seen.append("after")

    with pytest.raises(RuntimeError, match="502"):
        await router.dispatch(delivery_for("check_suite/requested.payload.json"))
    assert seen == []


@pytest.mark.anyio
async def test_routers_merge_so_each_handler_module_keeps_its_own() -> None:
    installs, pushes = Router(), Router()
    installs.add(lambda delivery: None, "installation", "deleted")
    pushes.add(lambda delivery: None, "push")
    combined = Router(installs, pushes)
    assert set(combined.events()) == {("installation", "deleted"), ("push", None)}
    assert len(combined.handlers_for("installation", "deleted")) == 1
    assert installs.handlers_for("push") == []
