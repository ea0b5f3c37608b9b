"""Logging for every guildprompts process: readable text or JSON lines, context, redaction.

- `configure_logging("text"|"json", level)` installs one handler on the root logger, so the
  service's own loggers, uvicorn's and the libraries' all share format, context and redaction.
- `log_context(delivery_id=..., installation=..., repository=..., guild=...)` attaches fields to
  every line logged inside the block. The fields live in a contextvar, so they follow asyncio
  tasks and `run_in_threadpool` calls started inside the block and never leak between requests.
- Redaction: every value passed to `register_secret` and every common token shape (GitHub
  tokens, `Bearer` credentials, `Authorization` headers, JWTs, PEM blocks, passwords in URLs)
  is replaced by `[REDACTED]` in the message, its arguments, exception and stack text and the
  extra fields, before any formatter sees them. `redact(text)` does the same for error messages
  and API responses.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any

__all__ = [
    "REDACTED",
    "ContextFilter",
    "JsonFormatter",
    "RedactingFilter",
    "TextFormatter",
    "configure_logging",
    "current_context",
    "log_context",
    "redact",
    "register_secret",
]

REDACTED = "[REDACTED]"

# --- Redaction -------------------------------------------------------------------------------

# Shorter values would mask ordinary words in every line; such secrets are refused elsewhere.
_MIN_SECRET_LENGTH = 6
# Values a token pattern below masks anyway (installation tokens, minted every hour) are not
# kept; past this many others the oldest are forgotten, so memory and matching time stay bounded.
_MAX_SECRETS = 512

_TOKEN_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM blocks, whole or cut short (a truncated key in an error is still a key).
    (
        re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.DOTALL),
        REDACTED,
    ),
    # GitHub tokens: personal (ghp_), OAuth (gho_), user-to-server (ghu_), installation (ghs_),
    # refresh (ghr_) and fine-grained PATs. Length is not assumed.
    (re.compile(r"\b(?:gh[pousr]_|github_pat_)[A-Za-z0-9_]{8,}"), REDACTED),
    # JWTs (App JWTs, and any other): base64url JSON header and payload.
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), REDACTED),
    # Authorization header values in any spelling: "Authorization: token x", "'authorization': 'x'".
    (
        re.compile(
            r"""(?i)(authorization['"]?\s*[:=]\s*['"]?)(?:(?:bearer|token|basic)\s+)?[^\s'",}]+"""
        ),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + REDACTED),
    # user:password@host in URLs (x-access-token:TOKEN@github.com).
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
    # Values of keys that name a credential: "token": "...", client_secret=..., PASSWORD: ...
    # Only values that look like credentials (a digit, inner punctuation, or 16+ characters):
    # "the token: expired" and a logger named `guildprompts.secrets` stay readable.
    (
        re.compile(
            r"""(?i)((?<![\w.])[A-Za-z_]*(?:token|secret|password|passwd|private_key)s?['"]?"""
            r"""\s*[:=]\s*['"]?)(?!\[REDACTED\])"""
            r"""(?=[^\s'",}]*(?:\d|[A-Za-z0-9][._+/=-][A-Za-z0-9])|[^\s'",}]{16})[^\s'",}]+"""
        ),
        r"\1" + REDACTED,
    ),
)


class _SecretRegistry:
    """The literal values to mask, kept as one alternation pattern rebuilt on change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: OrderedDict[str, None] = OrderedDict()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        with self._lock:
            for variant in _variants(value):
                self._values[variant] = None
                self._values.move_to_end(variant)
            while len(self._values) > _MAX_SECRETS:
                self._values.popitem(last=False)
            self._pattern = None

    def pattern(self) -> re.Pattern[str] | None:
        pattern = self._pattern
        if pattern is None and self._values:
            with self._lock:
                ordered = sorted(self._values, key=len, reverse=True)
                pattern = self._pattern = re.compile("|".join(map(re.escape, ordered)))
        return pattern


def _variants(value: str) -> Iterator[str]:
    """The value, its forms as .env files and JSON write it, and each line of a multi-line one."""
    candidates = {value, value.strip(), json.dumps(value)[1:-1], value.replace("\n", "\\n")}
    if "\n" in value:
        candidates.update(line.strip() for line in value.splitlines())
    for candidate in candidates:
        if len(candidate) >= _MIN_SECRET_LENGTH and redact_shapes(candidate) != REDACTED:
            yield candidate


_SECRETS = _SecretRegistry()


def register_secret(value: str | bytes | None) -> None:
    """Never log `value` (nor any line of it, when it spans several). Empty values are ignored.

    Call it for every secret and token the process handles: private keys, webhook and client
    secrets, encryption keys, bridge tokens, installation tokens as they are minted.
    """
    if value is None:
        return
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if len(value.strip()) >= _MIN_SECRET_LENGTH:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """`text` with registered secrets and token shapes replaced by [REDACTED]."""
    pattern = _SECRETS.pattern()
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return redact_shapes(text)


def redact_shapes(text: str) -> str:
    """`text` with token shapes (no registered values) replaced by [REDACTED]."""
    for token_pattern, replacement in _TOKEN_PATTERNS:
        text = token_pattern.sub(replacement, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
# Not shown as extra fields: the context (shown on its own) and uvicorn's ANSI-coloured copy.
_NOT_EXTRAS = _STANDARD_ATTRS | {"context", "color_message"}
_traceback_formatter = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message, arguments, exception, stack and extra fields.

    Attach it to any handler that may see guildprompts' records; `configure_logging` attaches
    it to the handler it installs. The record is rewritten in place (message merged with its
    arguments, exception text pre-formatted), so handlers later in line see it masked too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad format arguments: keep the evidence, masked
            message = f"{record.msg!r} (unformattable arguments: {record.args!r})"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _traceback_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS:
                setattr(record, key, _redact_value(value))
        return True


# --- Context ---------------------------------------------------------------------------------

_RESERVED = frozenset({"time", "level", "logger", "message", "exception", "stack"})
_context: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "guildprompts_log_context", default=None
)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add `fields` (delivery_id, installation, repository, guild, ...) to lines logged inside.

    Nested blocks add to the outer fields; a None value removes a field for the inner block.
    """
    bad = sorted(name for name in fields if name in _RESERVED)
    if bad:
        raise ValueError(f"log_context: {', '.join(bad)} is a reserved log field name")
    merged = dict(_context.get() or {})
    for name, value in fields.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = str(value)
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, str]:
    """The fields `log_context` blocks have set for the running code."""
    return dict(_context.get() or {})


class ContextFilter(logging.Filter):
    """Copies the current `log_context` fields onto the record as `record.context`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "context"):
            record.context = current_context()
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _NOT_EXTRAS and not key.startswith("_")
    }


# --- Formatters ------------------------------------------------------------------------------


class TextFormatter(logging.Formatter):
    """`2024-05-01 12:00:00,123 INFO github_app.sync: message [repository=o/r guild=1]`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {**getattr(record, "context", {}), **_extras(record)}
        if fields:
            shown = " ".join(f"{key}={value}" for key, value in fields.items())
            head, newline, tail = line.partition("\n")
            line = f"{head} [{shown}]{newline}{tail}"
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context fields, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in {**_extras(record), **getattr(record, "context", {})}.items():
            entry.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(_redact_value(entry), default=str, ensure_ascii=False)


# --- Setup -----------------------------------------------------------------------------------

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# Loggers that install their own handlers by default: routed through ours instead.
_OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def configure_logging(
    format: str = "text",
    level: str | int = "info",
    *,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Route every logger through one redacting handler on the root logger; returns it.

    Calling it again replaces the handler it installed before (other handlers, such as
    pytest's, are left alone). Pass `log_config=None` to uvicorn so it keeps this setup.
    """
    if format not in {"text", "json"}:
        raise ValueError(f"LOG_FORMAT: expected text or json, got {format!r}")
    if isinstance(level, str):
        if level.lower() not in _LEVELS:
            raise ValueError(f"LOG_LEVEL: expected one of {', '.join(_LEVELS)}, got {level!r}")
        level = _LEVELS[level.lower()]
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name("guildprompts")
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == "guildprompts":
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _OWN_HANDLERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # httpx logs every request at INFO and httpcore every socket event at DEBUG.
    chatty = logging.INFO if level <= logging.DEBUG else logging.WARNING
    logging.getLogger("httpx").setLevel(chatty)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # Alembic announces its plugins at INFO on every schema check (every start and /readyz).
    logging.getLogger("alembic").setLevel(chatty)
    return handler
