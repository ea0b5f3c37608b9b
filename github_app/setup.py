"""Creating the GitHub App from its manifest: `GET /setup`, `POST /setup`, `GET /setup/callback`.

`GET /setup` is one form (organisation, App name, Create); `POST /setup` issues a `state` and
posts the manifest on to GitHub. GitHub's manifest flow: a form POSTs the App's manifest to
`{GITHUB_URL}/settings/apps/new` (or an organisation's), the person confirms on GitHub, and
GitHub redirects back with a one-hour, single-use `code` that
`POST /app-manifests/{code}/conversions` exchanges for the App's id, slug, private key, webhook
secret and OAuth client credentials. Nobody copies a key by hand.

The `state` round trip ties the callback to a form this deployment served: states are random,
expire after `SetupConfig.state_ttl` and work once. The service keeps them in its database, so
the callback may reach another web process than the form did.

The manifest is defined here, in `MANIFEST_TEMPLATE`, so it ships with the package;
`manifest/app.yml` shows the same manifest to people browsing the repository and a test keeps
the two equal. URL fields are paths: the deployment's public URL is prefixed when the page is
served.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from github_app.logs import register_secret
from github_app.pages import escape, page

__all__ = [
    "MANIFEST_TEMPLATE",
    "ManifestCredentials",
    "SetupConfig",
    "StateStore",
    "States",
    "build_manifest",
    "default_app_name",
    "setup_routes",
    "write_env_file",
]

log = logging.getLogger(__name__)

MANIFEST_TEMPLATE: dict[str, Any] = {
    "name": "guildprompts",
    "description": "Keeps a Discord community's summarization prompts in a GitHub repository: "
    "every push is validated, checked on the commit and served to the bot within seconds.",
    "url": "/",
    "hook_attributes": {"url": "/api/github/webhooks", "active": True},
    "redirect_url": "/setup/callback",
    "setup_url": "/setup/installed",
    "setup_on_update": False,
    "public": True,
    "default_permissions": {
        "contents": "read",
        "metadata": "read",
        "checks": "write",
        "pull_requests": "read",
    },
    "default_events": [
        "check_run",
        "check_suite",
        "delete",
        "pull_request",
        "push",
        "repository",
    ],
}
# Where MANIFEST_TEMPLATE holds paths that become absolute URLs of this deployment.
_URL_FIELDS: tuple[tuple[str, ...], ...] = (
    ("url",),
    ("hook_attributes", "url"),
    ("redirect_url",),
    ("setup_url",),
)
_ORG_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
_MAX_APP_NAME = 34  # GitHub's limit for App names
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}  # noqa: S104 - compared only


def build_manifest(base_url: str, name: str | None = None, webhook_url: str = "") -> dict[str, Any]:
    """MANIFEST_TEMPLATE with every URL made absolute under `base_url` (and another name);
    `webhook_url` (a WEBHOOK_PROXY_URL channel) replaces the webhook's."""
    manifest = copy.deepcopy(MANIFEST_TEMPLATE)
    base = base_url.rstrip("/")
    for path in _URL_FIELDS:
        holder = manifest
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = base + holder[path[-1]]
    if name:
        manifest["name"] = name
    if webhook_url:
        manifest["hook_attributes"]["url"] = webhook_url
    return manifest


class States(Protocol):
    """Where one-time states live: `issue()` a new one, `consume(state)` is True once."""

    def issue(self) -> str: ...

    def consume(self, state: str) -> bool: ...


class StateStore:
    """Random `state` values for the manifest round trip: short-lived, single use, bounded."""

    def __init__(
        self,
        ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        max_pending: int = 256,
    ) -> None:
        self._ttl, self._clock, self._max = ttl, clock, max_pending
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def issue(self) -> str:
        state = secrets.token_urlsafe(32)
        with self._lock:
            now = self._clock()
            for stale in [key for key, expiry in self._expiry.items() if expiry <= now]:
                del self._expiry[stale]
            while len(self._expiry) >= self._max:
                self._expiry.popitem(last=False)
            self._expiry[state] = now + self._ttl
        return state

    def consume(self, state: str) -> bool:
        """True once for a state this store issued, if it has not expired."""
        with self._lock:
            expiry = self._expiry.pop(state, None)
            return expiry is not None and expiry > self._clock()


@dataclass(frozen=True)
class ManifestCredentials:
    """What GitHub's manifest conversion returns that guildprompts needs, by setting name."""

    app_id: str
    slug: str
    private_key: str
    webhook_secret: str
    client_id: str = ""
    client_secret: str = ""
    webhook_secret_generated: bool = False  # GitHub sent none: the operator must paste it

    @classmethod
    def from_conversion(cls, data: Mapping[str, Any]) -> ManifestCredentials:
        """Check the conversion answer; ValueError names what is missing or malformed.

        GitHub's description allows a null `webhook_secret` (the App was created without one):
        the code is spent by then, so a secret is generated here for the operator to paste into
        the App's settings, instead of failing a setup that cannot be repeated.
        """

        def text(key: str) -> str:
            value = data.get(key)
            return str(value).strip() if isinstance(value, str | int) else ""

        missing = [key for key in ("id", "slug", "pem") if not text(key)]
        if missing:
            raise ValueError(f"GitHub's answer lacks {', '.join(missing)}")
        if not text("id").isdigit():
            raise ValueError("GitHub's answer has a non-numeric App id")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", text("slug")):
            raise ValueError("GitHub's answer has a malformed App slug")
        return cls(
            app_id=text("id"),
            slug=text("slug"),
            private_key=str(data["pem"]),
            webhook_secret=text("webhook_secret") or secrets.token_hex(32),
            client_id=text("client_id"),
            client_secret=text("client_secret"),
            webhook_secret_generated=not text("webhook_secret"),
        )

    def as_settings(self) -> dict[str, str]:
        """The values under their environment variable names (empty ones left out)."""
        values = {
            "GITHUB_APP_ID": self.app_id,
            "GITHUB_APP_SLUG": self.slug,
            "GITHUB_PRIVATE_KEY": self.private_key,
            "GITHUB_WEBHOOK_SECRET": self.webhook_secret,
            "GITHUB_CLIENT_ID": self.client_id,
            "GITHUB_CLIENT_SECRET": self.client_secret,
        }
        return {key: value for key, value in values.items() if value}


def write_env_file(path: str | Path, values: Mapping[str, str]) -> None:
    """Set `values` in the .env file at `path`, keeping its other lines; the file ends up 0600.

    Multi-line values (the PEM key) are written with literal `\\n`, which Settings reads back.
    The new file is written beside the old one and renamed over it, so a crash leaves either.
    """
    target = Path(path)
    kept = []
    if target.exists():
        for line in target.read_text().splitlines():
            key = line.split("=", 1)[0].strip()
            if "=" in line and not line.lstrip().startswith("#") and key in values:
                continue
            kept.append(line)
    for key, value in values.items():
        one_line = value.strip().replace("\r", "").replace("\n", "\\n")
        kept.append(f"{key}={one_line}")
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write("\n".join(kept) + "\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _never_configured() -> bool:
    return False


@dataclass(frozen=True)
class SetupConfig:
    """What the setup routes need from the deployment; the web app builds it.

    `convert(code)` performs `POST /app-manifests/{code}/conversions` and returns GitHub's JSON.
    Credentials go to `save_credentials(values)` (values keyed by setting name, e.g. the
    encrypted secrets table; sync or async) and/or to the `.env` file at `env_file`.
    `is_configured()` says whether an App is already set up: then /setup is closed.
    `states` issues and consumes the one-time `state` values (sync calls, run in a thread): the
    web app passes the database's, so that any web process can finish a flow another started;
    the default keeps them in this process's memory.
    """

    convert: Callable[[str], Awaitable[Mapping[str, Any]]]
    github_url: str = "https://github.com"
    public_url: str = ""
    save_credentials: Callable[[dict[str, str]], Any] | None = None
    env_file: str | Path | None = None
    is_configured: Callable[[], bool | Awaitable[bool]] = _never_configured
    app_name: str = ""
    state_ttl: float = 600.0
    clock: Callable[[], float] = time.monotonic
    states: States | None = None
    webhook_url: str = ""  # WEBHOOK_PROXY_URL: GitHub sends webhooks there, `serve` fetches them

    def __post_init__(self) -> None:
        if self.save_credentials is None and self.env_file is None:
            raise ValueError("SetupConfig needs save_credentials, env_file or both")


def default_app_name(base_url: str) -> str:
    """A name no other deployment picks: GitHub gives each App name to one App only.

    A public address names the deployment (`guildprompts-prompts-example-org`); a local one
    gets a suffix derived from this machine and directory, stable across reloads.
    """
    host = (urlsplit(base_url).hostname or "").lower()
    if host and host not in _LOCAL_HOSTS and not host.endswith(".localhost"):
        label = re.sub(r"[^a-z0-9]+", "-", host).strip("-")
    else:
        seed = f"{socket.gethostname()}:{os.getcwd()}:{base_url}".encode()
        label = hashlib.sha256(seed).hexdigest()[:8]
    return f"guildprompts-{label}"[:_MAX_APP_NAME].rstrip("-")


class _SetupFlow:
    def __init__(self, config: SetupConfig) -> None:
        self.config = config
        self.github_url = config.github_url.rstrip("/")
        self.states = config.states or StateStore(ttl=config.state_ttl, clock=config.clock)
        self.completed = False
        self.lock = anyio.Lock()

    async def configured(self) -> bool:
        if self.completed:
            return True
        check = self.config.is_configured
        if inspect.iscoroutinefunction(check):
            return bool(await check())
        return bool(await run_in_threadpool(check))

    def _base(self, request: Request) -> str:
        return self.config.public_url.rstrip("/") or str(request.base_url).rstrip("/")

    async def page(self, request: Request) -> HTMLResponse:
        """The one form: owner and name above the button that creates the App."""
        if await self.configured():
            return _closed()
        base = self._base(request)
        org = request.query_params.get("org", "").strip()
        name = request.query_params.get("name", "").strip()
        name = name or self.config.app_name or default_app_name(base)
        host = urlsplit(self.github_url).netloc
        hostname = urlsplit(base).hostname or ""
        warning = ""
        local = hostname in _LOCAL_HOSTS or hostname.endswith(".localhost")
        if local and not self.config.webhook_url:
            warning = (
                f'<p class="warn">GitHub cannot reach {escape(base)}: set <code>PUBLIC_URL</code> '
                "to an address it can reach (or <code>WEBHOOK_PROXY_URL</code> to a smee.io "
                "channel for a local trial) and reload this page. You can also create the App "
                "now and change its webhook URL in its settings later.</p>"
            )
        manifest = build_manifest(base, name, self.config.webhook_url)
        permissions = ", ".join(f"{k}: {v}" for k, v in manifest["default_permissions"].items())
        body = f"""
<p>This creates the guildprompts GitHub App on <b>{escape(host)}</b> with the permissions and
events it needs. GitHub asks you to confirm, then sends you back here and guildprompts stores the
App's credentials itself: no key to copy.</p>
{warning}
<form method="post" action="setup" class="create">
  <label>Organisation <input name="org" value="{escape(org)}" maxlength="39"
    placeholder="empty: your personal account"></label>
  <label>App name <input name="name" value="{escape(name)}" maxlength="{_MAX_APP_NAME}"
    required></label>
  <button type="submit">Create the GitHub App on {escape(host)}</button>
</form>
<details><summary>What the App asks for</summary>
<ul>
  <li>Webhook: <code>{escape(manifest["hook_attributes"]["url"])}</code></li>
  <li>Permissions: {escape(permissions)}</li>
  <li>Events: {escape(", ".join(manifest["default_events"]))}</li>
</ul></details>"""
        return _page("Create the GitHub App", 200, body, headers=self._csp())

    async def start(self, request: Request) -> HTMLResponse:
        """The form's answer: a fresh state and the manifest, posted on to GitHub at once."""
        if await self.configured():
            return _closed()
        raw = await request.body()
        if len(raw) > _MAX_FORM_BYTES:
            return _page("Setup", 413, "<p>The form is too large.</p>" + _BACK)
        form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        org = (form.get("org") or [""])[0].strip()
        base = self._base(request)
        name = (form.get("name") or [""])[0].strip() or default_app_name(base)
        if org and not _ORG_NAME.match(org):
            return _page(
                "Setup", 400, f"<p>{escape(org)} is not a GitHub organisation name.</p>" + _BACK
            )
        if len(name) > _MAX_APP_NAME:
            return _page(
                "Setup",
                400,
                f"<p>The App name must be at most {_MAX_APP_NAME} characters.</p>" + _BACK,
            )
        state = await run_in_threadpool(self.states.issue)
        owner_path = f"/organizations/{quote(org)}" if org else ""
        action = f"{self.github_url}{owner_path}/settings/apps/new?{urlencode({'state': state})}"
        owner = f"the organisation <b>{escape(org)}</b>" if org else "your personal account"
        nonce = secrets.token_urlsafe(16)
        manifest = build_manifest(base, name, self.config.webhook_url)
        body = f"""
<p>Taking you to GitHub to create <b>{escape(name)}</b>, owned by {owner}.</p>
<form method="post" action="{escape(action)}" id="to-github">
  <input type="hidden" name="manifest" value="{escape(json.dumps(manifest))}">
  <button type="submit">Continue to GitHub</button>
</form>
<script nonce="{nonce}">document.getElementById("to-github").submit();</script>"""
        return _page("Creating the GitHub App", 200, body, headers=self._csp(nonce))

    def _csp(self, nonce: str = "") -> dict[str, str]:
        script = f"script-src 'nonce-{nonce}'; " if nonce else ""
        return {
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            f"{script}base-uri 'none'; frame-ancestors 'none'; "
            f"form-action 'self' {self.github_url}"
        }

    async def callback(self, request: Request) -> HTMLResponse:
        code = request.query_params.get("code", "")
        state = request.query_params.get("state", "")
        register_secret(code)
        if await self.configured():
            return _closed()
        if not state or not await run_in_threadpool(self.states.consume, state):
            return _page(
                "Setup link expired",
                400,
                "<p>This setup link is missing its state, has expired or was already "
                'used. <a href="../setup">Start again</a>.</p>',
            )
        if not code:
            return _page(
                "Setup incomplete",
                400,
                '<p>GitHub did not send a code back. <a href="../setup">Start again</a>.</p>',
            )
        async with self.lock:
            if await self.configured():
                return _closed()
            try:
                credentials = ManifestCredentials.from_conversion(await self.config.convert(code))
            except Exception as exc:
                log.warning("setup: the manifest conversion failed: %s", exc, exc_info=True)
                return _page(
                    "GitHub refused the code",
                    502,
                    "<p>GitHub did not turn the code into App credentials (a code "
                    "works once, for one hour). "
                    '<a href="../setup">Start again</a>.</p>',
                )
            for secret in (
                credentials.private_key,
                credentials.webhook_secret,
                credentials.client_secret,
            ):
                register_secret(secret)
            try:
                stored_where = await self._save(credentials)
            except Exception:
                log.exception(
                    "setup: the App %s was created but its credentials were not saved",
                    credentials.slug,
                )
                settings_url = f"{self.github_url}/settings/apps/{quote(credentials.slug)}"
                return _page(
                    "Credentials not saved",
                    500,
                    f"""
<p>GitHub created the App <b>{escape(credentials.slug)}</b>, but guildprompts could not store its
credentials (the log says why). In <a href="{escape(settings_url)}">the App's settings</a>,
generate a new private key and webhook secret and configure them with the <code>GITHUB_*</code>
variables.</p>""",
                )
            self.completed = True
        log.info(
            "setup: GitHub App %s (id %s) created; credentials %s",
            credentials.slug,
            credentials.app_id,
            stored_where,
        )
        install = f"{self.github_url}/apps/{quote(credentials.slug)}/installations/new"
        # Credentials only in a .env file reach the processes when they start again.
        restart = self.config.env_file is not None and self.config.save_credentials is None
        next_step = (
            "<p><b>Restart guildprompts</b> so it loads them, then install the App.</p>"
            if restart
            else "<p>Every guildprompts process uses them from now on: no restart needed.</p>"
        )
        if credentials.webhook_secret_generated:
            settings_url = f"{self.github_url}/settings/apps/{quote(credentials.slug)}"
            next_step = (
                f"""
<p><b>GitHub sent no webhook secret</b>, so guildprompts made one. Paste it into
<a href="{escape(settings_url)}">the App's settings</a> under <i>Webhook secret</i> and save;
until then GitHub's deliveries are refused. It is shown only here, once:</p>
<p><code>{escape(credentials.webhook_secret)}</code></p>"""
                + next_step
            )
        return _page(
            "GitHub App created",
            200,
            f"""
<p>The App <b>{escape(credentials.slug)}</b> (id {escape(credentials.app_id)}) exists; its
credentials are {escape(stored_where)}.</p>
{next_step}
<p><a class="button" href="{escape(install)}">Install it on your prompt repositories</a></p>
<p>Then connect a guild from Discord with <code>/prompt-config set owner/repository</code>.</p>""",
            headers={"Referrer-Policy": "no-referrer"},
        )

    async def _save(self, credentials: ManifestCredentials) -> str:
        values = credentials.as_settings()
        where = []
        save = self.config.save_credentials
        if save is not None:
            if inspect.iscoroutinefunction(save):
                await save(values)
            else:
                await run_in_threadpool(save, values)
            where.append("stored encrypted")
        if self.config.env_file is not None:
            await run_in_threadpool(write_env_file, self.config.env_file, values)
            where.append(f"written to {Path(self.config.env_file).name}")
        return " and ".join(where)

    async def installed(self, request: Request) -> HTMLResponse:
        return _page(
            "guildprompts is installed",
            200,
            """
<p>The App can now read the repositories you selected. Connect a Discord guild with
<code>/prompt-config set owner/repository [branch]</code>; a private repository must list the
guild id in its <code>PATH</code> file's <code>allowed_guilds</code>.</p>""",
        )


def setup_routes(config: SetupConfig) -> list[Route]:
    """`/setup`, `/setup/callback` and `/setup/installed`, to mount at the web app's root."""
    flow = _SetupFlow(config)
    return [
        Route("/setup", flow.page, methods=["GET"], name="setup"),
        Route("/setup", flow.start, methods=["POST"], name="setup_start"),
        Route("/setup/callback", flow.callback, methods=["GET"], name="setup_callback"),
        Route("/setup/installed", flow.installed, methods=["GET"], name="setup_installed"),
    ]


_MAX_FORM_BYTES = 4096
_BACK = '<p><a href="setup">Back</a></p>'
_STYLE = """
.create{display:flex;flex-direction:column;gap:.8rem;align-items:start;margin:1.5rem 0}
.create label{display:flex;flex-direction:column;font-size:.9rem}
.create input{padding:.35rem;font:inherit;min-width:18rem}
details{margin:1.5rem 0}"""


def _closed() -> HTMLResponse:
    return _page(
        "Setup is closed",
        410,
        "<p>This deployment already has its GitHub App, so /setup is disabled. To "
        "replace the App, remove its stored credentials and restart guildprompts.</p>",
    )


def _page(
    title: str, status: int, body: str, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    return page(title, body, status, headers=headers, style=_STYLE)
