"""Log lines: JSON shape, readable text, context fields, and no secret ever printed."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets
from collections.abc import Iterator

import pytest

from github_app.logs import configure_logging, current_context, log_context, redact, register_secret

log = logging.getLogger("github_app.tests.logs")


class Capture:
    """Logging configured onto a buffer; `lines()` are the lines written so far."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.setup()

    def setup(self, fmt: str = "text", level: str = "info") -> None:
        configure_logging(fmt, level, stream=self.buffer)

    def lines(self) -> list[str]:
        return self.buffer.getvalue().splitlines()


@pytest.fixture
def capture() -> Iterator[Capture]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield Capture()
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def fresh_secret(prefix: str = "secret") -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def test_json_lines_carry_time_level_logger_message_context_and_extras(capture: Capture) -> None:
    capture.setup("json")
    with log_context(
        delivery_id="72d3162e-cc78-11e3",
        installation=42,
        repository="octo/prompts",
        guild="1234567890",
    ):
        log.info("synced %s", "main", extra={"files": 3})
    (line,) = capture.lines()
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["logger"] == "github_app.tests.logs"
    assert entry["message"] == "synced main"
    assert entry["time"].endswith("Z") and "T" in entry["time"]
    assert entry["delivery_id"] == "72d3162e-cc78-11e3"
    assert entry["installation"] == "42"
    assert entry["repository"] == "octo/prompts"
    assert entry["guild"] == "1234567890"
    assert entry["files"] == 3


def test_text_lines_are_readable_and_carry_the_context(capture: Capture) -> None:
    with log_context(delivery_id="d-1", repository="octo/prompts"):
        log.warning("branch %s rejected", "main")
    (line,) = capture.lines()
    assert " WARNING github_app.tests.logs: branch main rejected" in line
    assert line.endswith("[delivery_id=d-1 repository=octo/prompts]")


def test_context_nests_resets_and_does_not_leak_between_tasks(capture: Capture) -> None:
    with log_context(installation=1):
        with log_context(repository="a/b"):
            assert current_context() == {"installation": "1", "repository": "a/b"}
        assert current_context() == {"installation": "1"}
    assert current_context() == {}

    async def handle(guild: str) -> None:
        with log_context(guild=guild):
            await asyncio.sleep(0.01)
            log.info("answered")

    async def both() -> None:
        await asyncio.gather(handle("111"), handle("222"))

    asyncio.run(both())
    lines = capture.lines()
    assert sorted(line.rsplit("[", 1)[1] for line in lines) == ["guild=111]", "guild=222]"]


def test_reserved_context_names_are_refused() -> None:
    with pytest.raises(ValueError, match="message"), log_context(message="x"):
        pass


def test_level_threshold_and_reconfiguration(capture: Capture) -> None:
    log.debug("hidden")
    capture.setup("text", "debug")
    log.debug("shown once")
    assert [line.split(": ", 1)[1] for line in capture.lines()] == ["shown once"]
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        configure_logging("xml", "info")
    with pytest.raises(ValueError, match="LOG_LEVEL"):
        configure_logging("json", "loud")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_registered_secrets_never_reach_a_line(capture: Capture, fmt: str) -> None:
    capture.setup(fmt)
    secret, context_secret, extra_secret = fresh_secret(), fresh_secret(), fresh_secret()
    for value in (secret, context_secret, extra_secret):
        register_secret(value)
    with log_context(repository=context_secret):
        log.info("message %s", secret)
        log.info(f"inline {secret}")
        log.info("in a dict %r", {"webhook_secret": secret})
        log.info("extra", extra={"detail": f"x{extra_secret}x"})
        try:
            raise RuntimeError(f"failed with {secret}")
        except RuntimeError:
            log.exception("boom")
    output = "\n".join(capture.lines())
    assert "[REDACTED]" in output and "boom" in output and "RuntimeError" in output
    for value in (secret, context_secret, extra_secret):
        assert value not in output


def test_a_registered_private_key_is_masked_whole_escaped_and_by_line(capture: Capture) -> None:
    body = [secrets.token_urlsafe(48) for _ in range(3)]
    pem = "-----BEGIN TEST KEY-----\n" + "\n".join(body) + "\n-----END TEST KEY-----\n"
    register_secret(pem.encode())
    log.info("as .env stores it: %s", pem.replace("\n", "\\n"))
    log.info("one line of it: %s", body[1])
    log.info("json: %s", json.dumps({"pem": pem}))
    output = "\n".join(capture.lines())
    for line in body:
        assert line not in output


@pytest.mark.parametrize(
    "leak",
    [
        "ghs_" + "a1B2" * 9,
        "ghs_" + "x" * 90,  # never assume 40 characters
        "ghp_" + "Z9" * 18,
        "gho_" + "q" * 36,
        "ghu_" + "w" * 36,
        "github_pat_11ABCDEFG0123456789_" + "k" * 59,
        "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjMifQ.c2lnbmF0dXJlLWJ5dGVz",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7f1\nabc\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC cut short",
    ],
)
def test_token_shapes_are_masked_without_registration(capture: Capture, leak: str) -> None:
    capture.setup("json")
    log.warning("request failed: %s", leak)
    try:
        raise ValueError(leak)
    except ValueError:
        log.exception("and in a traceback")
    output = "\n".join(capture.lines())
    assert leak not in output
    assert leak.split("\n")[-1][-12:] not in output


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("headers {'Authorization': 'token abcdef123456'}", "headers {'Authorization': '"),
        ("Authorization: Bearer abc.def.ghi", "Authorization: "),
        ("calling with Bearer 0123456789abcdef", "calling with Bearer "),
        (
            "git clone https://x-access-token:s3cr3tvalue@github.com/o/r.git",
            "git clone https://x-access-token:[REDACTED]@github.com/o/r.git",
        ),
        (
            'body {"repository": "o/r", "token": "0123456789abcdef"}',
            'body {"repository": "o/r", "token": "',
        ),
        ("GITHUB_CLIENT_SECRET=abcdef123456 BRIDGE_TOKENS=abc.def.ghi", "GITHUB_CLIENT_SECRET="),
    ],
)
def test_credentials_in_headers_and_urls_are_masked(text: str, kept: str) -> None:
    masked = redact(text)
    assert masked.startswith(kept)
    assert "[REDACTED]" in masked
    for secret in ("abcdef123456", "abc.def.ghi", "0123456789abcdef", "s3cr3tvalue"):
        assert secret not in masked


def test_ordinary_lines_are_left_alone() -> None:
    line = (
        "push to octo/prompts@main 6dcb09b5b57875f334f61aebed695e2e4193db5e: 3 files, "
        "authorization ok, token minted for installation 42, check run 4 created"
    )
    assert redact(line) == line


def test_short_values_are_not_registered() -> None:
    register_secret("ab")
    register_secret("")
    register_secret(None)
    assert redact("tab and ab") == "tab and ab"


@pytest.mark.parametrize(
    "line",
    [
        "guildprompts.secrets: generated an encryption key for stored secrets in /srv/.key",
        "the token: expired, asking for a new one",
        "password: required for this database",
        "webhook secret: missing (GITHUB_WEBHOOK_SECRET)",
    ],
)
def test_logger_names_and_ordinary_words_after_credential_names_are_kept(line: str) -> None:
    assert redact(line) == line


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("password=hunter22", "password=[REDACTED]"),
        ("token: abc.def.ghi", "token: [REDACTED]"),
        ("client_secret=averylongsecretvaluewithoutdigits", "client_secret=[REDACTED]"),
    ],
)
def test_values_that_look_like_credentials_are_masked(line: str, masked: str) -> None:
    assert redact(line) == masked
