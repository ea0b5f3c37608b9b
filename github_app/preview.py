"""`guildprompts preview DIR`: a prompt repository checked out locally, served as the bot sees it.

Prompt authors iterate here before pushing: a small page shows the diagnostics the App's check
run would show, which file each common context resolves to, and a form to try any context and
read the rendered prompt; `GET /bridge/v1/guilds/{any}/prompt?...` answers with the bridge's
JSON shape, so a bot under development can point its `BridgeClient` at the preview.

Files are re-read when they change: every request compares the size and modification time of
the repository's files (the paths `promptrepo.is_repository_file` accepts) with the last read,
which costs a directory walk and no file reads. As on the service, a version with errors is not
served: the last valid one keeps answering (marked stale) until the errors are fixed, and the
page says so. With `--base owner/name=DIR` (local checkouts of the bases PATH `extends`), the
page also shows which layer each file comes from. Pure `promptrepo` and Starlette: no database,
no GitHub, no token on loopback.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from github_app.pages import document
from github_app.pages import escape as _e
from promptrepo import (
    Context,
    ContextError,
    Diagnostic,
    PromptRepository,
    RepositoryError,
    Resolution,
    common_contexts,
    files_from_directory,
    is_repository_file,
    load_repository,
    render,
    resolve,
    validate,
)
from promptrepo.answer import Served, build_answer, routing_context
from promptrepo.console import add_base_option
from promptrepo.variables import canonical

if TYPE_CHECKING:  # Starlette is imported when the app is built: `guildprompts --help` stays fast
    from starlette.applications import Starlette
    from starlette.requests import Request

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_TRY_FIELDS = ("category", "channel", "type", "perspective")
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


# ---- the checkout ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    """One read of the directory: what validation found, and what would be served."""

    fingerprint: str
    loaded_at: datetime
    file_count: int
    diagnostics: tuple[Diagnostic, ...]
    read_error: str | None  # the directory could not be read at all
    repository: PromptRepository | None  # the current one if valid, else the last valid one
    serving_last_good: bool  # this version has errors and an older valid one answers
    last_good_at: datetime | None

    @property
    def errors(self) -> int:
        return sum(d.severity == "error" for d in self.diagnostics)

    @property
    def valid(self) -> bool:
        return self.read_error is None and self.errors == 0


class Checkout:
    """A directory holding a prompt repository, re-read whenever one of its files changes."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        strict: bool = False,
        bases: Mapping[str, str | os.PathLike[str]] | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.strict = strict
        # Local checkouts of the bases PATH `extends` (`owner/name` -> directory), re-read too.
        self.bases = {name: Path(path).resolve() for name, path in (bases or {}).items()}
        self._lock = threading.Lock()
        self._version: Version | None = None

    def current(self) -> Version:
        """The version on disk now: re-read only when a file was added, removed or changed."""
        with self._lock:
            try:
                fingerprint = self._fingerprint()
            except OSError as exc:
                return self._failed(f"cannot read {self.root}: {exc.strerror or exc}")
            if self._version is None or self._version.fingerprint != fingerprint:
                self._version = self._load(fingerprint)
            return self._version

    def _fingerprint(self) -> str:
        """Size and modification time of every repository file (the bases' too), hashed (no
        file is read)."""
        digest = hashlib.sha256()
        for label, root in (("", self.root), *sorted(self.bases.items())):
            if not root.is_dir():
                raise NotADirectoryError(20, "not a directory", str(root))
            digest.update(f"layer {label}\n".encode())
            for directory, subdirectories, names in os.walk(root, followlinks=False):
                subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
                base = Path(directory)
                for name in sorted(names):
                    full = base / name
                    relative = full.relative_to(root).as_posix()
                    if full.is_symlink() or not is_repository_file(relative):
                        continue
                    stat = full.stat()
                    digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def _load(self, fingerprint: str) -> Version:
        try:
            files = files_from_directory(self.root)
            bases = {name: files_from_directory(path) for name, path in self.bases.items()}
        except OSError as exc:
            return self._failed(f"cannot read {exc.filename or self.root}: {exc.strerror or exc}")
        diagnostics = tuple(validate(files, strict=self.strict, bases=bases))
        repository: PromptRepository | None = None
        if not any(d.severity == "error" for d in diagnostics):
            try:
                repository = load_repository(files, bases=bases)
            except RepositoryError:  # validate reports the same problem as an error
                repository = None
        now = datetime.now().astimezone()
        if repository is not None:
            return Version(fingerprint, now, len(files), diagnostics, None, repository, False, now)
        previous = self._version
        return Version(
            fingerprint,
            now,
            len(files),
            diagnostics,
            None,
            previous.repository if previous else None,
            bool(previous and previous.repository),
            previous.last_good_at if previous else None,
        )

    def _failed(self, reason: str) -> Version:
        previous = self._version
        version = Version(
            "",
            datetime.now().astimezone(),
            0,
            (),
            reason,
            previous.repository if previous else None,
            bool(previous and previous.repository),
            previous.last_good_at if previous else None,
        )
        self._version = version
        return version


# ---- what the bridge would answer ----------------------------------------------------------


def prompt_body(version: Version, context: Context, root: Path) -> dict[str, Any]:
    """The bridge's `GET .../prompt` answer for this context, from the local files."""
    if version.read_error:
        status = version.read_error
    elif version.serving_last_good:
        status = (
            f"{version.errors} error(s) in {root}: serving the last valid version "
            "(as the service would)"
        )
    else:
        status = f"local preview of {root}"
    served = Served(None, None, None, None, version.serving_last_good, status, False)
    answer = build_answer(served, context, version.repository, "")
    return replace(answer, is_stale=version.serving_last_good).to_json()


# ---- the app ------------------------------------------------------------------------------------


def build_app(
    directory: str | os.PathLike[str],
    *,
    strict: bool = False,
    allowed_hosts: tuple[str, ...] | None = LOOPBACK_HOSTS,
    bases: Mapping[str, str | os.PathLike[str]] | None = None,
) -> Starlette:
    """The preview over `directory`. `allowed_hosts` (default: loopback names) refuses requests
    for other host names, so a web page cannot reach the preview through DNS rebinding."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    checkout = Checkout(directory, strict=strict, bases=bases)

    async def current() -> Version:
        return await run_in_threadpool(checkout.current)

    async def page(request: Request) -> HTMLResponse:
        version = await current()
        query = request.query_params
        values = _trial_values(query) if _wants_trial(query) else None
        document = _page(checkout.root, version, query, values)
        return HTMLResponse(document, headers=_SECURITY_HEADERS)

    async def prompt(request: Request) -> Response:
        try:
            context = _context(request.query_params, request.path_params["guild_id"])
        except ContextError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        body = json.dumps(
            prompt_body(await current(), context, checkout.root), ensure_ascii=False
        ).encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if etag in _etags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    async def fingerprint(request: Request) -> JSONResponse:
        version = await current()
        return JSONResponse(
            {"fingerprint": version.fingerprint, "errors": version.errors},
            headers={"Cache-Control": "no-store"},
        )

    async def script(request: Request) -> Response:
        return Response(
            _RELOAD_SCRIPT, media_type="text/javascript", headers={"Cache-Control": "no-store"}
        )

    middleware = []
    if allowed_hosts:
        names = [*allowed_hosts, *(f"[{host}]" for host in allowed_hosts if ":" in host)]
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=names))
    return Starlette(
        routes=[
            Route("/", page, methods=["GET"]),
            Route("/bridge/v1/guilds/{guild_id}/prompt", prompt, methods=["GET"]),
            Route("/_preview/fingerprint", fingerprint, methods=["GET"]),
            Route("/_preview/reload.js", script, methods=["GET"]),
        ],
        middleware=middleware,
    )


def _etags(header: str) -> set[str]:
    return {part.strip().removeprefix("W/") for part in header.split(",") if part.strip()}


def _context(values: Mapping[str, str], guild: str | None = None) -> Context:
    """The routing context as the bridge builds it (`promptrepo.answer.routing_context`)."""
    return routing_context(guild, values.items())


# ---- trying one context -------------------------------------------------------------------------


def _wants_trial(query: Mapping[str, str]) -> bool:
    return any(query.get(name, "").strip() for name in (*_TRY_FIELDS, "vars"))


def _trial_values(query: Mapping[str, str]) -> dict[str, str]:
    """The form's fields plus its `key=value` lines."""
    values: dict[str, str] = {}
    for line in query.get("vars", "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            values[key.strip()] = value.strip()
    values.update({name: query.get(name, "") for name in _TRY_FIELDS})
    return values


# ---- the page -------------------------------------------------------------------------------


def _page(
    root: Path, version: Version, query: Mapping[str, str], values: Mapping[str, str] | None
) -> str:
    sections = [
        f'<p class="meta"><code>{_e(root)}</code></p>',
        _status(root, version),
        _diagnostics(version),
        _table(version),
        _try_form(version, query, values),
        _api_hint(),
    ]
    return document(
        f"Preview · {root.name}",
        "\n".join(sections),
        heading="guildprompts preview",
        style=_STYLE,
        head='<script src="/_preview/reload.js" defer></script>',
        body_attributes=f' data-fingerprint="{_e(version.fingerprint)}"',
    )


def _status(root: Path, version: Version) -> str:
    warnings = sum(d.severity == "warning" for d in version.diagnostics)
    loaded = version.loaded_at.strftime("%H:%M:%S")
    if version.read_error:
        badge, text = "bad", _e(version.read_error)
    elif version.valid:
        schema = version.repository.schema_version if version.repository else "?"
        badge = "good"
        text = f"Valid (schema {_e(schema)}): {version.file_count} file(s), {warnings} warning(s)."
    else:
        badge = "bad"
        text = (
            f"{version.errors} error(s), {warnings} warning(s): GitHub would reject this "
            "version, and guilds would keep the last valid one."
        )
    if not version.valid:
        if version.serving_last_good and version.last_good_at:
            text += (
                " Below: the last valid version, read at "
                f"{version.last_good_at.strftime('%H:%M:%S')}."
            )
        else:
            text += " Below: the built-in defaults, as no valid version was seen yet."
    return (
        f'<p class="status {badge}" id="status">{text}</p>'
        f'<p class="meta">Read at {loaded}; this page reloads when a file changes.</p>'
    )


def _diagnostics(version: Version) -> str:
    if not version.diagnostics:
        return '<h2>Diagnostics</h2><p id="diagnostics" class="none">No problems found.</p>'
    rows = []
    for d in version.diagnostics:
        where = ":".join(str(part) for part in (d.path, d.line, d.column) if part is not None)
        rows.append(
            f'<tr class="{_e(d.severity)}"><td><span class="sev">{_e(d.severity)}</span></td>'
            f"<td><code>{_e(where)}</code></td><td><code>{_e(d.code)}</code></td>"
            f"<td>{_message(d.message)}<div class=hint>{_e(d.hint)}</div></td></tr>"
        )
    return (
        '<h2>Diagnostics</h2><table id="diagnostics"><thead><tr><th>Severity</th>'
        "<th>Where</th><th>Code</th><th>Problem and fix</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _message(message: str) -> str:
    """The message's first line, and the excerpt with its caret (YAML errors) as code."""
    head, _, excerpt = message.partition("\n")
    return _e(head) + (f'<pre class="excerpt">{_e(excerpt)}</pre>' if excerpt else "")


def _table(version: Version) -> str:
    perspectives = _perspectives(version.repository)
    layered = bool(version.repository and version.repository.layers)
    rows = []
    for context in _table_contexts(perspectives):
        cells = f"<td>{_e(context.category)}</td><td>{_e(context.type)}</td>"
        if perspectives:
            cells += f"<td>{_e(context.get('perspective') or '-')}</td>"
        try:
            resolution = resolve(version.repository, context)
        except RepositoryError as exc:
            rows.append(f'<tr>{cells}<td colspan=3 class="bad">{_e(exc)}</td></tr>')
            continue
        query = {key: value for key, value in context.to_dict().items() if value}
        link = _e("?" + urlencode(query) + "#try")
        chosen = (
            f"<code>{_e(resolution.file_path)}</code>"
            if resolution.file_path
            else f"<i>{_e(resolution.description or 'built-in default')}</i>"
        )
        tried = ", ".join(resolution.tried_paths) or "no route applies"
        source = _e(resolution.source)
        rows.append(
            f'<tr>{cells}<td><a href="{link}" title="tried: {_e(tried)}">{chosen}</a></td>'
            f"<td>{_e(resolution.route_label or '-')}</td>"
            f'<td><span class="src {source}">{source}</span></td>'
            + (f"<td>{_e(_layer(resolution))}</td>" if layered else "")
            + "</tr>"
        )
    perspective = "<th>Perspective</th>" if perspectives else ""
    return (
        '<h2>Which file each context gets</h2><table id="resolution"><thead><tr>'
        f"<th>Category</th><th>Type</th>{perspective}<th>File</th><th>Route</th><th>Source</th>"
        + ("<th>Layer</th>" if layered else "")
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _table_contexts(perspectives: list[str]) -> list[Context]:
    """The common contexts, and each again with every perspective the repository has files for."""
    contexts = common_contexts()
    if not perspectives:
        return contexts
    return [
        Context.from_mapping({**context.to_dict(), **({"perspective": p} if p else {})})
        for context in contexts
        for p in ["", *perspectives]
    ]


def _perspectives(repository: PromptRepository | None) -> list[str]:
    """The `{perspective}` values the repository's files spell out, for routes that use one."""
    if repository is None:
        return []
    found: set[str] = set()
    for route in repository.routes:
        if "perspective" not in (canonical(name) for name in route.names):
            continue
        pieces, named = [], False
        for index, part in enumerate(route.parts):
            if index % 2 == 0:
                pieces.append(re.escape(part))
            elif canonical(part) == "perspective" and not named:
                pieces.append("(?P<p>[a-z0-9_-]+)")
                named = True
            else:
                pieces.append("[a-z0-9_-]+")
        regex = re.compile("".join(pieces))
        for path in repository.files:
            match = regex.fullmatch(path)
            if match and match.group("p") != "default":
                found.add(match.group("p"))
    return sorted(found)


def _layer(resolution: Resolution) -> str:
    """Where the chosen file comes from, in a repository that extends bases."""
    if resolution.file_path is None:
        return "-"
    return f"base {resolution.layer}" if resolution.layer else "this repository"


def _try_form(version: Version, query: Mapping[str, str], values: Mapping[str, str] | None) -> str:
    fields = "".join(
        f'<label><span>{name}</span><input name="{name}" value="{_e(query.get(name, ""))}"></label>'
        for name in _TRY_FIELDS
    )
    form = (
        f'<h2 id="try">Try a context</h2><form method="get" action="#try" class="try">'
        f"{fields}<label class=wide><span>Other variables (one <code>key=value</code> a line)"
        "</span>"
        f'<textarea name="vars" rows="2">{_e(query.get("vars", ""))}</textarea></label>'
        '<button type="submit">Resolve</button></form>'
    )
    if values is None:
        return form
    return form + _trial_result(version, values)


def _trial_result(version: Version, values: Mapping[str, str]) -> str:
    try:
        context = _context(values)
        resolution = resolve(version.repository, context)
    except (ContextError, RepositoryError) as exc:
        return f'<div id="result"><p class="status bad">{_e(exc)}</p></div>'
    rendered = render(resolution.content, resolution.variables)
    parameters = resolution.to_dict()["parameters"]
    chosen = resolution.file_path or f"(none: {resolution.description or 'built-in default'})"
    left = ", ".join(f"{{{name}}}" for name in rendered.unresolved) or "none"
    rows = [
        ("Context", context.key or "(empty)"),
        ("File", chosen),
        ("Route", resolution.route_label or "-"),
        ("Source", resolution.source),
        *(
            (("Layer", _layer(resolution)),)
            if version.repository and version.repository.layers
            else ()
        ),
        ("Tried", ", ".join(resolution.tried_paths) or "-"),
        ("Left for the bot", left),
    ]
    if resolution.description:
        rows.append(("Description", resolution.description))
    if parameters:
        rows.append(("Parameters", json.dumps(parameters, ensure_ascii=False)))
    if resolution.metadata:
        metadata = resolution.to_dict()["metadata"]
        rows.append(("Metadata", json.dumps(metadata, ensure_ascii=False)))
    cells = "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(v)}</code></td></tr>" for k, v in rows)
    return (
        f'<div id="result"><table class="facts">{cells}</table>'
        f'<pre id="content">{_e(rendered.text)}</pre></div>'
    )


def _api_hint() -> str:
    example = "/bridge/v1/guilds/1/prompt?category=discussion&type=brief"
    return (
        f"<h2>For a bot</h2><p>This preview answers the bridge's prompt endpoint: "
        f'<a href="{_e(example)}"><code>GET {_e(example)}</code></a> (any guild id, no '
        "token), so a bot under development can use <code>BridgeClient</code> against "
        "it.</p>"
    )


_STYLE = """
body{max-width:68rem;margin:2rem auto;line-height:1.45}
h1{font-size:1.4rem;margin-bottom:.2rem}
code{background:none;padding:0}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .5rem;
border-bottom:1px solid #d0d7de;vertical-align:top}thead th{background:#f6f8fa}
.status{padding:.5rem .8rem;border-radius:6px}.good{background:#dafbe1}
.bad{background:#ffebe9}
.sev{font-weight:600}.error .sev{color:#cf222e}.warning .sev{color:#9a6700}
.notice .sev{color:#0969da}.hint{color:#656d76;font-size:.85rem}
.src{border-radius:1rem;padding:0 .5rem;font-size:.8rem}.src.custom{background:#ddf4ff}
.src.default{background:#eaeef2}
.try{display:flex;flex-wrap:wrap;gap:.6rem;align-items:end}
.try label{display:flex;flex-direction:column;font-size:.85rem}
.try .wide{flex-basis:100%}input,textarea{padding:.3rem;font:inherit}
button{font-size:.95rem;padding:.45rem 1rem}
.facts{width:auto;margin-top:1rem}.facts th{background:none;color:#656d76}
pre{background:#f6f8fa;padding:1rem;border-radius:6px;white-space:pre-wrap}
pre.excerpt{padding:.3rem .5rem;margin:.3rem 0;white-space:pre}
.none{color:#1a7f37}
"""

# Reloads the page (keeping the form's values, which are in its URL) once the files differ from
# the version it shows: the page carries that version's fingerprint, so an edit made while the
# page was loading is not missed.
_RELOAD_SCRIPT = """(function () {
  var shown = document.body.dataset.fingerprint;
  function check() {
    fetch("/_preview/fingerprint", {cache: "no-store"})
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (data.fingerprint !== shown) { window.location.reload(); }
      })
      .catch(function () {})
      .finally(function () { window.setTimeout(check, 1000); });
  }
  check();
})();
"""


# ---- the command ------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    preview = subparsers.add_parser(
        "preview",
        help="Preview a prompt repository checked out locally, in a browser.",
        description="Serve a page showing DIR's diagnostics and which file each context "
        "resolves to, and the bridge's prompt endpoint over DIR, re-reading files on change.",
    )
    preview.add_argument("directory", metavar="DIR", help="the repository's root directory")
    preview.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: only this machine)"
    )
    preview.add_argument("--port", type=int, default=8008, help="port (default 8008)")
    preview.add_argument(
        "--strict",
        action="store_true",
        help="report dangerous patterns as errors, as strict deployments do",
    )
    add_base_option(preview)
    preview.set_defaults(run=run_preview)


def run_preview(args: argparse.Namespace) -> int:
    root = Path(args.directory)
    if not root.is_dir():
        print(f"guildprompts preview: {args.directory} is not a directory", file=sys.stderr)
        return 2
    if not 0 < args.port < 65536:
        print(f"guildprompts preview: --port {args.port} is not a port number", file=sys.stderr)
        return 2
    import uvicorn

    loopback = args.host in LOOPBACK_HOSTS
    if not loopback:
        print(
            f"guildprompts preview: listening on {args.host}: anyone who can reach it reads "
            f"the prompts in {root.resolve()}",
            file=sys.stderr,
        )
    app = build_app(
        root,
        strict=args.strict,
        allowed_hosts=LOOPBACK_HOSTS if loopback else None,
        bases=dict(args.base),
    )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"Previewing {root.resolve()} at http://{shown}:{args.port}/ (Ctrl-C stops)",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
