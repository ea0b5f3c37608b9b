"""The async GitHub REST client the App uses: auth per call, retries, rate limits, ETags.

Built on httpx rather than PyGithub: PyGithub is synchronous and owns its HTTP stack, so it offers
no per-call conditional requests (ETag / 304), no hook to count requests for metrics, no
injectable transport for the fake GitHub, and no asyncio concurrency for blob downloads.

Every request goes through `_send`: one place that picks the credentials (App JWT, installation
token, a personal access token, or none), retries with tenacity what is worth retrying (5xx,
timeouts, connection errors, rate limits with a bounded wait), reports the attempt to
`on_request`, and turns failures into typed errors. Error messages name the endpoint template
and GitHub's message, never a URL's data, a header or a token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from github_app.auth import AppAuth, AuthConfigError, InstallationToken

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
MAX_REDIRECTS = 3
MAX_ARCHIVE_BYTES = 512 * 1024 * 1024  # a repository archive larger than this is refused
ARCHIVE_TIMEOUT = 300.0  # seconds a whole archive download may take

RequestHook = Callable[[str, int, float, int | str, int | None], None]
"""on_request(endpoint, status, duration_seconds, installation, rate_remaining), once per attempt
(same shape as `github_app.metrics.record_github_request`). `endpoint` is the method and path
template ("GET /repos/{owner}/{repo}/git/trees/{sha}"); `status` is 0 when no HTTP answer came
back (timeout, connection error); `installation` is the installation id whose token was used, or
"app" (JWT), "token" (a personal access token) or "anonymous"."""

RepoRef = str | int
"""A repository: its "owner/name" full name, or its numeric id (which survives renames)."""


class GitHubError(Exception):
    """GitHub answered with an error (or not at all: status 0)."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class NotFound(GitHubError):
    """404: missing, or not visible with these credentials (GitHub hides private repositories)."""


class Unauthorized(GitHubError):
    """401: the credentials were refused (expired, revoked, or a bad JWT)."""


class RateLimited(GitHubError):
    """403/429 for a rate limit; `retry_after` says when trying again makes sense."""


class TransientError(GitHubError):
    """5xx, timeout or connection failure that persisted through the retries."""


class EmptyRepository(GitHubError):
    """409 "Git Repository is empty.": the repository has no commit yet (refs, trees, blobs)."""


class InstallationUnavailable(GitHubError):
    """No token can be minted: the installation was removed (404) or suspended (403)."""


class _TokenRejected(Unauthorized):
    """401 on an installation token: the cached token is dropped and the call tried once more."""


class NotModified:
    """The answer of a conditional request GitHub answered with 304 (it cost no rate limit)."""

    def __repr__(self) -> str:
        return "NOT_MODIFIED"


NOT_MODIFIED = NotModified()


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: `attempts` in all; exponential backoff from `backoff` up to
    `max_backoff` seconds; a rate limit resetting later than `max_rate_limit_wait` seconds is not
    waited for but raised (RateLimited.retry_after tells the worker when to come back)."""

    attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_rate_limit_wait: float = 60.0


@dataclass(frozen=True)
class TreeEntry:
    """One entry of a git tree, with its full path from the repository root."""

    path: str
    mode: str
    type: str  # "blob", "tree" or "commit" (a submodule)
    sha: str
    size: int | None = None

    @property
    def is_symlink(self) -> bool:
        return self.mode == "120000"

    @property
    def is_submodule(self) -> bool:
        return self.type == "commit"


@dataclass(frozen=True)
class _Auth:
    kind: str  # "app", "installation", "token" or "anonymous"
    installation_id: int | None = None
    token: str | None = None


_APP = _Auth("app")
_NONE = _Auth("anonymous")


class GitHubClient:
    """Async client for the REST endpoints guildprompts needs.

    `api_url` is GITHUB_API_URL (https://HOST/api/v3 on Enterprise Server). `transport` lets
    tests plug in the fake GitHub (`httpx.ASGITransport(app=fake)`). `timeout` bounds each
    attempt as a whole, whatever the transport. `sleep` and `clock` are injectable so retry tests
    run without waiting. Use as an async context manager or call `aclose()`.
    """

    def __init__(
        self,
        api_url: str = DEFAULT_API_URL,
        *,
        auth: AppAuth | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        on_request: RequestHook | None = None,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        user_agent: str = "guildprompts",
    ):
        self.api_url = api_url.rstrip("/")
        self.auth = auth
        self._timeout = timeout
        self._on_request = on_request
        self._retry = retry
        self._sleep = sleep
        self._clock = clock
        self._rate: dict[str, tuple[int, float]] = {}  # credential -> (remaining, reset epoch)
        self._http = httpx.AsyncClient(
            base_url=self.api_url,
            transport=transport,
            timeout=timeout,
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": user_agent,
            },
        )

    async def __aenter__(self) -> GitHubClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- repository content -------------------------------------------------------------

    async def get_branch_head(
        self,
        repo: RepoRef,
        branch: str,
        *,
        etag: str | None = None,
        installation_id: int | None = None,
        token: str | None = None,
    ) -> tuple[str, str | None] | NotModified:
        """(head sha, ETag) of a branch, or NOT_MODIFIED when `etag` still matches (free).

        Raises NotFound when the branch (or the repository) does not exist.
        """
        prefix, params = _repo_route(repo)
        params["branch"] = quote(branch, safe="/")
        headers = {"If-None-Match": etag} if etag else None
        response = await self._send(
            "GET",
            prefix + "/git/ref/heads/{branch}",
            params,
            auth=self._repo_auth(installation_id, token),
            headers=headers,
        )
        if response.status_code == 304:
            return NOT_MODIFIED
        sha = (_json(response).get("object") or {}).get("sha")
        if not isinstance(sha, str):
            raise GitHubError(response.status_code, "branch answer has no object.sha")
        return sha, response.headers.get("etag")

    async def get_tree(
        self,
        repo: RepoRef,
        sha: str,
        *,
        installation_id: int | None = None,
        token: str | None = None,
    ) -> list[TreeEntry]:
        """Every entry under the tree of `sha` (a commit or tree sha), with full paths.

        One recursive request when GitHub can list it whole; when GitHub marks the listing
        `truncated`, the sub-trees are walked one level at a time (GitHub's advice).
        Symlinks and submodules are returned as they are, for the caller to diagnose.
        """
        return await self._walk_tree(repo, sha, "", self._repo_auth(installation_id, token))

    async def get_blob(
        self,
        repo: RepoRef,
        sha: str,
        *,
        installation_id: int | None = None,
        token: str | None = None,
    ) -> bytes:
        """A blob's bytes, checked against its git SHA-1 (a snapshot must be exactly `sha`)."""
        prefix, params = _repo_route(repo)
        params["sha"] = quote(sha, safe="")
        response = await self._send(
            "GET", prefix + "/git/blobs/{sha}", params, auth=self._repo_auth(installation_id, token)
        )
        data = _json(response)
        try:
            content = base64.b64decode(data.get("content") or "")
        except (binascii.Error, TypeError):
            raise GitHubError(response.status_code, "blob content is not base64") from None
        if hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest() != sha:  # noqa: S324
            raise GitHubError(response.status_code, "blob content does not match its sha")
        return content

    async def get_tarball(
        self,
        repo: RepoRef,
        sha: str,
        *,
        installation_id: int | None = None,
        token: str | None = None,
        max_bytes: int = MAX_ARCHIVE_BYTES,
    ) -> bytes:
        """The commit as one gzipped tarball: one rate-limited request whatever the size.

        GitHub answers `302 Found` to a signed, short-lived URL (codeload); that download goes
        without our credentials (the signature is the credential; httpx would also drop the
        Authorization header on another host) and is not counted against the rate limit.
        """
        prefix, params = _repo_route(repo)
        params["ref"] = quote(sha, safe="")
        template = prefix + "/tarball/{ref}"
        response = await self._send(
            "GET", template, params, auth=self._repo_auth(installation_id, token), follow=False
        )
        location = response.headers.get("location")
        if response.status_code != 302 or not location:
            raise GitHubError(response.status_code, f"GET {template}: no archive redirect")
        return await self._download(location, max_bytes)

    async def _download(self, url: str, max_bytes: int) -> bytes:
        endpoint = "GET {archive_url}"
        started = time.monotonic()
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(ARCHIVE_TIMEOUT):
                request = self._http.build_request("GET", url)
                request.headers.pop("Authorization", None)
                response = await self._http.send(request, stream=True)
                try:
                    if response.status_code != 200:
                        raise TransientError(
                            response.status_code, f"{endpoint}: {response.status_code}"
                        )
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise GitHubError(200, f"{endpoint}: archive over {max_bytes} bytes")
                        chunks.append(chunk)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            self._report(endpoint, 0, started, _NONE, None)
            raise TransientError(0, f"{endpoint}: timed out") from None
        except httpx.TransportError as exc:
            self._report(endpoint, 0, started, _NONE, None)
            raise TransientError(0, f"{endpoint}: {type(exc).__name__}") from None
        self._report(endpoint, response.status_code, started, _NONE, None)
        return b"".join(chunks)

    async def get_repository(
        self, repo: RepoRef, *, installation_id: int | None = None, token: str | None = None
    ) -> dict[str, Any]:
        """The repository object (id, full_name, private, default_branch, ...)."""
        prefix, params = _repo_route(repo)
        response = await self._send(
            "GET", prefix, params, auth=self._repo_auth(installation_id, token)
        )
        return _json(response)

    # ---- App and installations ----------------------------------------------------------

    async def get_app(self) -> dict[str, Any]:
        """The App itself (App JWT): a cheap check that the App's credentials are valid."""
        return _json(await self._send("GET", "/app", {}, auth=_APP))

    async def get_repo_installation(self, repo: RepoRef) -> dict[str, Any] | None:
        """The App's installation on a repository (App JWT), or None when it is not installed."""
        prefix, params = _repo_route(repo)
        try:
            response = await self._send("GET", prefix + "/installation", params, auth=_APP)
        except NotFound:
            return None
        return _json(response)

    async def list_installation_repositories(self, installation_id: int) -> list[dict[str, Any]]:
        """Every repository an installation can access (all pages)."""
        repositories: list[dict[str, Any]] = []
        async for page in self._pages(
            "/installation/repositories",
            {},
            {"per_page": 100},
            auth=_Auth("installation", installation_id=installation_id),
        ):
            repositories.extend(page.get("repositories", []))
        return repositories

    async def list_hook_deliveries(
        self, *, since: datetime | None = None, per_page: int = 100, max_pages: int | None = None
    ) -> list[dict[str, Any]]:
        """The App's recent webhook deliveries, newest first (App JWT, cursor pagination).

        Paging stops at the first delivery older than `since` (a naive datetime is taken as
        UTC), or after `max_pages` when given; the older ones are left out.
        """
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        deliveries: list[dict[str, Any]] = []
        async for page in self._pages(
            "/app/hook/deliveries",
            {},
            {"per_page": per_page},
            auth=_APP,
            kind=list,
            max_pages=max_pages,
        ):
            for delivery in page:
                delivered = _parse_time(delivery.get("delivered_at"))
                if since is not None and delivered is not None and delivered < since:
                    return deliveries
                deliveries.append(delivery)
        return deliveries

    async def redeliver(self, delivery_id: int) -> None:
        """Ask GitHub to send a delivery again (it arrives with the same GUID)."""
        await self._send(
            "POST",
            "/app/hook/deliveries/{delivery_id}/attempts",
            {"delivery_id": str(int(delivery_id))},
            auth=_APP,
        )

    async def convert_manifest(self, code: str) -> dict[str, Any]:
        """Exchange an App-manifest code for the new App's id, slug, key and secrets (no auth).

        The answer holds secrets: store it, never log it.
        """
        response = await self._send(
            "POST", "/app-manifests/{code}/conversions", {"code": quote(code, safe="")}, auth=_NONE
        )
        return _json(response)

    # ---- check runs -----------------------------------------------------------------------

    async def create_check_run(
        self, repo: RepoRef, payload: dict[str, Any], *, installation_id: int
    ) -> dict[str, Any]:
        """Create a check run (payload as GitHub documents it: name, head_sha, status, output)."""
        prefix, params = _repo_route(repo)
        response = await self._send(
            "POST",
            prefix + "/check-runs",
            params,
            json=payload,
            auth=_Auth("installation", installation_id=installation_id),
        )
        return _json(response)

    async def update_check_run(
        self, repo: RepoRef, check_run_id: int, payload: dict[str, Any], *, installation_id: int
    ) -> dict[str, Any]:
        """Update a check run; annotations in `output` are added to the ones already sent."""
        prefix, params = _repo_route(repo)
        params["check_run_id"] = str(int(check_run_id))
        response = await self._send(
            "PATCH",
            prefix + "/check-runs/{check_run_id}",
            params,
            json=payload,
            auth=_Auth("installation", installation_id=installation_id),
        )
        return _json(response)

    def rate_budget(self, credentials: dict[str, Any]) -> tuple[int, float] | None:
        """(requests left, seconds to the reset) of the credential a sync reads with
        (`installation_id=` or `token=`, as the read methods take), from GitHub's latest
        X-RateLimit headers for it; None before any answer or after the window reset."""
        auth = self._repo_auth(credentials.get("installation_id"), credentials.get("token"))
        known = self._rate.get(_rate_key(auth))
        if known is None:
            return None
        remaining, reset = known
        reset_in = reset - self._clock()
        return None if reset_in <= 0 else (remaining, reset_in)

    # ---- internals --------------------------------------------------------------------------

    def _repo_auth(self, installation_id: int | None, token: str | None) -> _Auth:
        if installation_id is not None and token is not None:
            raise ValueError("pass installation_id or token, not both")
        if installation_id is not None:
            return _Auth("installation", installation_id=installation_id)
        if token is not None:
            return _Auth("token", token=token)
        return _NONE

    async def _walk_tree(self, repo: RepoRef, sha: str, base: str, auth: _Auth) -> list[TreeEntry]:
        data = await self._tree(repo, sha, auth, recursive=True)
        if not data.get("truncated"):
            return [_tree_entry(base, item) for item in data.get("tree", [])]
        data = await self._tree(repo, sha, auth, recursive=False)
        if data.get("truncated"):
            raise GitHubError(0, "a single directory is too large for GitHub to list")
        entries: list[TreeEntry] = []
        for item in data.get("tree", []):
            entry = _tree_entry(base, item)
            entries.append(entry)
            if entry.type == "tree":
                entries.extend(await self._walk_tree(repo, entry.sha, entry.path + "/", auth))
        return entries

    async def _tree(self, repo: RepoRef, sha: str, auth: _Auth, *, recursive: bool) -> dict:
        prefix, params = _repo_route(repo)
        params["sha"] = quote(sha, safe="")
        response = await self._send(
            "GET",
            prefix + "/git/trees/{sha}",
            params,
            auth=auth,
            query={"recursive": "1"} if recursive else None,
        )
        return _json(response)

    async def _pages(
        self,
        template: str,
        params: dict[str, str],
        query: dict[str, Any],
        *,
        auth: _Auth,
        kind: type = dict,
        max_pages: int | None = None,
    ) -> AsyncIterator[Any]:
        """Yield each page's JSON, following the Link header (only within the API's own URL) to
        the last page: no cap unless `max_pages` is given (a cut list is not the whole list)."""
        url: str | None = None
        pages = 0
        while max_pages is None or pages < max_pages:
            pages += 1
            response = await self._send(
                "GET", template, params, auth=auth, query=None if url else query, url=url
            )
            yield _json(response, kind)
            url = response.links.get("next", {}).get("url")
            if not url:
                return
            if not url.startswith(self.api_url + "/"):
                raise GitHubError(response.status_code, "pagination link leaves the API URL")

    async def _send(
        self,
        method: str,
        template: str,
        params: dict[str, str],
        *,
        auth: _Auth,
        query: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        url: str | None = None,
        follow: bool = True,
    ) -> httpx.Response:
        """One logical request: retried per the policy; one fresh token after a 401; a
        repository's redirect (301/307/308 within the API) followed unless `follow` is False.

        Credentials are resolved before the retry loop, so a failing token mint (retried on its
        own) is not retried again by every attempt of the request that needed it.
        """
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retry.attempts),
            wait=self._wait,
            retry=retry_if_exception(self._retryable),
            sleep=self._sleep,
            before_sleep=_log_retry,
            reraise=True,
        )
        path = url or template.format(**params)
        for _ in range(MAX_REDIRECTS + 1):
            args = (method, template, path, auth, query, json, headers)
            try:
                response = await retrying(self._attempt, await self._authorization(auth), *args)
            except _TokenRejected:
                response = await retrying(self._attempt, await self._authorization(auth), *args)
            location = response.headers.get("location")
            if response.status_code not in (301, 307, 308) or not location or not follow:
                return response
            # A renamed or transferred repository: GitHub points at /repositories/{id}; the
            # same method (307/308, or GET for a 301 to a GET) goes there, never off the API.
            if not location.startswith(self.api_url + "/"):
                message = f"{method} {template}: redirected off the API"
                raise GitHubError(response.status_code, message)
            path, query = location[len(self.api_url) :], None
            template = _moved_template(template)
        raise GitHubError(response.status_code, f"{method} {template}: too many redirects")

    async def _attempt(
        self,
        authorization: str | None,
        method: str,
        template: str,
        path: str,
        auth: _Auth,
        query: dict[str, Any] | None,
        json: Any,
        headers: dict[str, str] | None,
    ) -> httpx.Response:
        endpoint = f"{method} {template}"
        request_headers = dict(headers or {})
        if authorization:
            request_headers["Authorization"] = authorization
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._http.request(
                    method, path, params=query, json=json, headers=request_headers
                )
        except (TimeoutError, httpx.TimeoutException):
            self._report(endpoint, 0, started, auth, None)
            raise TransientError(0, f"{endpoint}: timed out") from None
        except httpx.TransportError as exc:
            self._report(endpoint, 0, started, auth, None)
            raise TransientError(0, f"{endpoint}: {type(exc).__name__}") from None
        remaining = _int_header(response, "x-ratelimit-remaining")
        reset = _int_header(response, "x-ratelimit-reset")
        if remaining is not None and reset is not None:
            self._rate[_rate_key(auth)] = (remaining, float(reset))
        self._report(endpoint, response.status_code, started, auth, remaining)
        if response.status_code < 400:
            return response
        raise self._error(endpoint, response, auth)

    def _error(self, endpoint: str, response: httpx.Response, auth: _Auth) -> GitHubError:
        status = response.status_code
        message = f"{endpoint}: {status} {_message(response)}"
        wait = _rate_limit_wait(response, self._clock())
        if wait is not None:
            return RateLimited(status, message, retry_after=wait)
        if status == 401:
            if auth.kind == "installation" and self.auth is not None:
                self.auth.invalidate(auth.installation_id)  # type: ignore[arg-type]
                return _TokenRejected(status, message)
            return Unauthorized(status, message)
        if status == 404:
            return NotFound(status, message)
        if status == 409 and "empty" in message.lower():
            return EmptyRepository(status, message)
        if status >= 500:
            return TransientError(status, message, retry_after=_int_header(response, "retry-after"))
        return GitHubError(status, message)

    async def _authorization(self, auth: _Auth) -> str | None:
        if auth.kind == "anonymous":
            return None
        if auth.kind == "token":
            return f"token {auth.token}"
        if self.auth is None:
            raise AuthConfigError("the GitHub App is not configured (GITHUB_APP_ID, key)")
        if auth.kind == "app":
            return f"Bearer {self.auth.app_jwt()}"
        token = await self.auth.installation_token(auth.installation_id, self._mint)  # type: ignore[arg-type]
        return f"token {token}"

    async def _mint(self, installation_id: int) -> InstallationToken:
        try:
            response = await self._send(
                "POST",
                "/app/installations/{installation_id}/access_tokens",
                {"installation_id": str(int(installation_id))},
                auth=_APP,
            )
        except GitHubError as exc:
            if exc.status in (403, 404) and not isinstance(exc, RateLimited):
                raise InstallationUnavailable(exc.status, exc.message) from None
            raise
        try:
            return InstallationToken.from_response(_json(response))
        except ValueError as exc:
            raise GitHubError(response.status_code, str(exc)) from None

    def _retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, RateLimited):
            return (exc.retry_after or 0) <= self._retry.max_rate_limit_wait
        return isinstance(exc, TransientError)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, GitHubError) and exc.retry_after is not None:
            return min(exc.retry_after, self._retry.max_rate_limit_wait)
        backoff = self._retry.backoff * 2 ** (state.attempt_number - 1)
        return min(self._retry.max_backoff, backoff) * random.uniform(0.5, 1.0)

    def _report(
        self, endpoint: str, status: int, started: float, auth: _Auth, remaining: int | None
    ) -> None:
        if self._on_request is None:
            return
        who = auth.installation_id if auth.installation_id is not None else auth.kind
        try:
            self._on_request(endpoint, status, time.monotonic() - started, who, remaining)
        except Exception:
            log.exception("on_request hook failed for %s", endpoint)


def _repo_route(repo: RepoRef) -> tuple[str, dict[str, str]]:
    """Path prefix and parameters addressing a repository by full name or numeric id."""
    if isinstance(repo, int) and not isinstance(repo, bool):
        return "/repositories/{repository_id}", {"repository_id": str(repo)}
    owner, _, name = str(repo).partition("/")
    if not owner or not name or "/" in name:
        raise ValueError(f"repository must be 'owner/name' or a numeric id, got {repo!r}")
    return "/repos/{owner}/{repo}", {"owner": quote(owner, safe=""), "repo": quote(name, safe="")}


def _rate_key(auth: _Auth) -> str:
    """GitHub's rate-limit bucket of a credential (a token by its digest, never itself)."""
    if auth.kind == "installation":
        return f"installation {auth.installation_id}"
    if auth.kind == "token":
        return "token " + hashlib.sha256((auth.token or "").encode()).hexdigest()[:16]
    return auth.kind


def _moved_template(template: str) -> str:
    """The endpoint a repository redirect leads to (for metrics): same route, by id."""
    if template.startswith("/repos/{owner}/{repo}"):
        return "/repositories/{repository_id}" + template[len("/repos/{owner}/{repo}") :]
    return template


def _tree_entry(base: str, item: Any) -> TreeEntry:
    try:
        return TreeEntry(
            path=base + item["path"],
            mode=item["mode"],
            type=item["type"],
            sha=item["sha"],
            size=item.get("size"),
        )
    except (KeyError, TypeError):
        raise GitHubError(200, "a tree entry lacks path, mode, type or sha") from None


def _json(response: httpx.Response, kind: type = dict) -> Any:
    """The answer's JSON, checked to be a `kind` (a malformed answer is an error, not a crash)."""
    try:
        data = response.json()
    except ValueError:
        raise GitHubError(response.status_code, "GitHub's answer is not JSON") from None
    if not isinstance(data, kind):
        raise GitHubError(response.status_code, f"GitHub's answer is not a JSON {kind.__name__}")
    return data


def _message(response: httpx.Response) -> str:
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or response.reason_phrase)[:300]


def _int_header(response: httpx.Response, name: str) -> int | None:
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        return None


def _rate_limit_wait(response: httpx.Response, now: float) -> float | None:
    """Seconds to wait when a 403/429 is a rate limit (GitHub's documented rules), else None."""
    if response.status_code not in (403, 429):
        return None
    retry_after = _int_header(response, "retry-after")
    if retry_after is not None:
        return float(max(retry_after, 0))
    reset = _int_header(response, "x-ratelimit-reset")
    if response.headers.get("x-ratelimit-remaining") == "0" and reset is not None:
        return max(reset - now, 0.0) + 1.0
    if response.status_code == 429 or "rate limit" in _message(response).lower():
        return 60.0  # a secondary rate limit without headers: GitHub says wait a minute
    return None


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0
    log.warning("GitHub request failed (%s); retry %d in %.1fs", exc, state.attempt_number, wait)
