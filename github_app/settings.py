"""Every configuration variable of guildprompts, with its default, in one place.

Values come from the process environment, then from an optional `.env` file in the working
directory (the environment wins). An invalid value raises `SettingsError` naming the variable, so
start-up stops with a message a person can act on instead of a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.config import Config


class SettingsError(ValueError):
    """A configuration variable has a value guildprompts cannot use."""


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected true or false")


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise ValueError(f"expected a whole number above 0, got {value.strip()!r}")
    return number


def _port(value: str) -> int:
    number = _positive_int(value) if value.strip().isdigit() else 0
    if not 0 < number < 65536:
        raise ValueError(f"expected a port number from 1 to 65535, got {value.strip()!r}")
    return number


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise ValueError(f"expected a number above 0, got {value.strip()!r}")
    return number


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 < number <= 1:
        raise ValueError("expected a number above 0 and at most 1")
    return number


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        lowered = value.strip().lower()
        if lowered not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return lowered

    return parse


def _http_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("expected an http(s) URL")
    return value.strip().rstrip("/")


def _var(
    env: str,
    default: Any,
    parse: Callable[[str], Any] = str,
    doc: str = "",
    aliases: tuple[str, ...] = (),
) -> Any:
    """A setting read from `env`, else from one of `aliases` (Probot's names for the same)."""
    return field(
        default=default, metadata={"env": env, "parse": parse, "doc": doc, "aliases": aliases}
    )


@dataclass(frozen=True)
class Settings:
    """The deployment's configuration; build it with `Settings.from_env()`."""

    # Storage
    database_url: str = _var(
        "DATABASE_URL",
        "sqlite:///guildprompts.db",
        doc="SQLAlchemy URL. Default: an SQLite file in the working directory. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )
    encryption_keys: tuple[str, ...] = _var(
        "ENCRYPTION_KEYS",
        (),
        _csv,
        doc="Comma-separated Fernet keys; the first encrypts, all decrypt. Empty on an embedded "
        "install: a key is generated into ENCRYPTION_KEY_FILE.",
    )
    encryption_key_file: str = _var(
        "ENCRYPTION_KEY_FILE",
        ".guildprompts.key",
        doc="Where an embedded install keeps its generated key (mode 0600).",
    )
    retention_days: int = _var(
        "RETENTION_DAYS",
        30,
        _positive_int,
        doc="Finished deliveries, sync logs and inactive snapshots older than this are pruned.",
    )
    history_keep: int = _var(
        "HISTORY_KEEP",
        50,
        _positive_int,
        doc="Activations kept per guild for `/prompt-config history` (never pruned by age).",
    )

    # GitHub App
    github_app_id: str = _var(
        "GITHUB_APP_ID",
        "",
        doc="The App's numeric id (Probot's APP_ID works too).",
        aliases=("APP_ID",),
    )
    github_app_slug: str = _var("GITHUB_APP_SLUG", "", doc="The App's URL name, for install links.")
    github_private_key: str = _var(
        "GITHUB_PRIVATE_KEY",
        "",
        doc="The App's private key (PEM text; Probot's PRIVATE_KEY works too). Secret.",
        aliases=("PRIVATE_KEY",),
    )
    github_private_key_path: str = _var(
        "GITHUB_PRIVATE_KEY_PATH",
        "",
        doc="Path of a PEM file, instead of GITHUB_PRIVATE_KEY (or PRIVATE_KEY_PATH).",
        aliases=("PRIVATE_KEY_PATH",),
    )
    github_webhook_secrets: tuple[str, ...] = _var(
        "GITHUB_WEBHOOK_SECRET",
        (),
        _csv,
        doc="Webhook secret; several comma-separated secrets allow rotation (Probot's "
        "WEBHOOK_SECRET works too). Secret.",
        aliases=("WEBHOOK_SECRET",),
    )
    github_client_id: str = _var("GITHUB_CLIENT_ID", "", doc="The App's OAuth client id.")
    github_client_secret: str = _var(
        "GITHUB_CLIENT_SECRET", "", doc="The App's OAuth client secret. Secret."
    )
    github_api_url: str = _var(
        "GITHUB_API_URL",
        "https://api.github.com",
        _http_url,
        doc="REST API root; https://HOST/api/v3 for GitHub Enterprise Server.",
    )
    github_url: str = _var(
        "GITHUB_URL",
        "",
        _http_url,
        doc="Web host of GitHub (repository and install links). Default: derived from "
        "GITHUB_API_URL.",
    )
    app_credentials_store: str = _var(
        "APP_CREDENTIALS_STORE",
        "database",
        _choice("database", "env"),
        doc="Where /setup keeps the new App's credentials: `database` (the encrypted secrets "
        "table) or `env` (a `.env` file in the working directory, mode 0600).",
    )
    public_url: str = _var(
        "PUBLIC_URL",
        "",
        _http_url,
        doc="Where GitHub reaches this service (webhook and setup URLs). Default: the request's.",
    )

    webhook_proxy_url: str = _var(
        "WEBHOOK_PROXY_URL",
        "",
        _http_url,
        doc="A smee.io channel (as Probot uses), for trying the App on a machine GitHub cannot "
        "reach: /setup makes it the App's webhook URL and `serve` forwards its deliveries to "
        "its own webhook endpoint.",
    )

    # Processing
    reconcile_interval: float = _var(
        "RECONCILE_INTERVAL",
        60.0,
        _positive_float,
        doc="Seconds between checks of every tracked branch's head (conditional requests).",
    )
    redelivery_interval: float = _var(
        "REDELIVERY_INTERVAL",
        300.0,
        _positive_float,
        doc="Seconds between sweeps asking GitHub to redeliver failed deliveries.",
    )
    max_attempts: int = _var(
        "MAX_ATTEMPTS",
        5,
        _positive_int,
        doc="Attempts before a delivery ends as failed.",
    )
    worker_lease_seconds: float = _var(
        "WORKER_LEASE_SECONDS",
        30.0,
        _positive_float,
        doc="Seconds a worker holds a delivery without renewing; renewed while it works, so a "
        "crashed worker's delivery is taken over within one lease.",
    )
    worker_concurrency: int = _var(
        "WORKER_CONCURRENCY",
        2,
        _positive_int,
        doc="Deliveries one `serve` or `worker` process works on at once, each claimed with its "
        "own lease (so the re-checks a base push queues start while its check run completes).",
    )
    sync_concurrency: int = _var(
        "SYNC_CONCURRENCY", 8, _positive_int, doc="Blob downloads in flight per sync."
    )
    archive_threshold: int = _var(
        "ARCHIVE_THRESHOLD",
        50,
        _positive_int,
        doc="A sync needing more new files than this downloads the commit as one archive.",
    )
    rate_limit_share: float = _var(
        "RATE_LIMIT_SHARE",
        0.5,
        _fraction,
        doc="Largest share of an installation's remaining GitHub rate limit one sync may spend.",
    )
    max_prompt_file_size: int = _var(
        "MAX_PROMPT_FILE_SIZE",
        100 * 1024,
        _positive_int,
        doc="Largest prompt file accepted, in bytes.",
    )
    strict_validation: bool = _var(
        "STRICT_VALIDATION",
        False,
        _bool,
        doc="Dangerous-pattern findings become errors instead of warnings.",
    )

    # Bot bridge
    bridge_tokens: tuple[str, ...] = _var(
        "BRIDGE_TOKENS",
        (),
        _csv,
        doc="Comma-separated bearer tokens the bot presents to /bridge/v1. Secret. Empty on "
        "an embedded install: a token is generated into BRIDGE_TOKEN_FILE "
        "(`guildprompts bridge-token` prints it); empty with a shared database: the bridge is "
        "disabled.",
    )
    bridge_token_file: str = _var(
        "BRIDGE_TOKEN_FILE",
        ".guildprompts.bridge-token",
        doc="Where an embedded install keeps its generated bridge token (mode 0600).",
    )
    resolver_cache_size: int = _var(
        "RESOLVER_CACHE_SIZE",
        10_000,
        _positive_int,
        doc="Resolved prompts kept in memory per process (LRU).",
    )
    snapshot_cache_bytes: int = _var(
        "SNAPSHOT_CACHE_BYTES",
        256 * 1024 * 1024,
        _positive_int,
        doc="Bytes of parsed snapshots (and their streamed form) kept in memory per process (LRU).",
    )
    stream_heartbeat: float = _var(
        "STREAM_HEARTBEAT",
        15.0,
        _positive_float,
        doc="Seconds between heartbeats on GET /bridge/v1/stream (keeps proxies from closing it).",
    )
    generation_poll_interval: float = _var(
        "GENERATION_POLL_INTERVAL",
        1.0,
        _positive_float,
        doc="Seconds between the cheap activation-generation checks (the backstop of NOTIFY).",
    )
    redis_url: str = _var(
        "REDIS_URL", "", doc="When set, cache invalidations travel over Redis pub/sub."
    )

    # Service
    host: str = _var("HOST", "127.0.0.1", doc="Address `serve` binds.")
    port: int = _var("PORT", 8000, _port, doc="Port `serve` listens on.")
    log_format: str = _var(
        "LOG_FORMAT", "text", _choice("text", "json"), doc="text (readable) or json."
    )
    log_level: str = _var(
        "LOG_LEVEL", "info", _choice("debug", "info", "warning", "error"), doc="Log threshold."
    )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
    ) -> Settings:
        """Read every variable; raise `SettingsError` naming the first invalid one."""
        source = os.environ if environ is None else environ
        if env_file is not None and not Path(env_file).is_file():
            env_file = None
        config = Config(env_file=env_file, environ=source)
        values: dict[str, Any] = {}
        for spec in fields(cls):
            env, parse = spec.metadata["env"], spec.metadata["parse"]
            raw = config(env, default=None)
            for alias in spec.metadata["aliases"]:
                if raw is None:
                    env, raw = alias, config(alias, default=None)
            if raw is None or (raw.strip() == "" and parse is not str):
                continue
            try:
                values[spec.name] = parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{env}: invalid value ({exc})") from None
        settings = cls(**values)
        if not settings.github_url:
            settings = replace(settings, github_url=_web_url(settings.github_api_url))
        return settings

    @property
    def embedded(self) -> bool:
        """An SQLite file in one place: this machine may generate its own keys and tokens."""
        return self.database_url.strip().startswith("sqlite")

    @property
    def app_configured(self) -> bool:
        """True when the App can authenticate and verify webhooks."""
        has_key = bool(self.github_private_key or self.github_private_key_path)
        return bool(self.github_app_id and has_key and self.github_webhook_secrets)

    def private_key_pem(self) -> str:
        """The App's private key text, read from the file when only a path is configured."""
        if self.github_private_key:
            return self.github_private_key.replace("\\n", "\n")
        if self.github_private_key_path:
            try:
                return Path(self.github_private_key_path).read_text()
            except OSError as exc:
                raise SettingsError(
                    f"GITHUB_PRIVATE_KEY_PATH: cannot read the file ({exc.strerror})"
                ) from None
        return ""


def _web_url(api_url: str) -> str:
    """https://api.github.com -> https://github.com; https://ghe/api/v3 -> https://ghe."""
    parts = urlsplit(api_url)
    if parts.netloc == "api.github.com":
        return "https://github.com"
    path = parts.path.removesuffix("/").removesuffix("/api/v3")
    return f"{parts.scheme}://{parts.netloc}{path}"


def documented_variables() -> list[tuple[str, str, str]]:
    """(name, default, description) for every variable: the README's configuration table."""
    rows = []
    for spec in fields(Settings):
        default = spec.default
        shown = ",".join(default) if isinstance(default, tuple) else str(default)
        rows.append((spec.metadata["env"], shown, spec.metadata["doc"]))
    return rows
