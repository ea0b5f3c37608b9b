"""The App's GitHub client: PyGithub for the REST API, one HTTP policy underneath.

What the App asks GitHub goes through PyGithub (installation tokens, installations and their
repositories, repository lookup, trees and blobs, check runs, webhook deliveries and
redeliveries, the manifest conversion): it builds the requests, walks every page
(`PaginatedList`, no cap) and parses the answers. It runs on a bounded thread pool
(`pool_size`), off the event loop, configured for a service: no built-in throttling
(`seconds_between_requests=None`), no urllib3 retries. Its HTTP is handed back to this event loop
(`_GitHubConnection`) and sent by `_send`, the one place that picks the credentials (App JWT,
installation token, a personal access token, or none), retries with tenacity what is worth
retrying (5xx, timeouts, connection errors, primary and secondary rate limits with a bounded
wait), follows a renamed repository's redirect (301/307 to `/repositories/{id}`), reports every
attempt to `on_request` (per-endpoint metrics and the remaining rate limit) and turns failures
into typed errors. So PyGithub adds no second retry or pool policy, and the tests' in-process
fake GitHub (an httpx transport) and vcrpy cassettes serve both paths.

Two content reads stay plain httpx calls of `_send` (docs/github-client.md has the numbers):
the head of a branch or tag ref (a conditional request with the ETag stored in the database: a
304 is free, and PyGithub sends no If-None-Match per call) and the tarball (a 302 to a signed
URL, streamed to memory with a size cap; PyGithub only returns the link).
Error messages name the endpoint template and GitHub's message, never a URL's data, a header or a
token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextvars
import functools
import hashlib
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from github import Github
from github.InstallationAuthorization import InstallationAuthorization
from github.PaginatedList import PaginatedList
from github.Requester import Requester
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from github_app.auth import AppAuth, AuthConfigError, InstallationToken

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
MAX_REDIRECTS = 3
MAX_ARCHIVE_BYTES = 512 * 1024 * 1024  # a repository archive larger than this is refused
ARCHIVE_TIMEOUT = 300.0  # seconds a whole archive download may take
PYGITHUB_CALL_TIMEOUT = 600.0  # seconds one PyGithub request may take, its retries included
MAX_TAG_HOPS = 4  # annotated tags of annotated tags followed to their commit, at most

RequestHook = Callable[[str, int, float, int | str, int | None], None]
"""on_request(endpoint, status, duration_seconds, installation, rate_remaining), once per attempt
(same shape as `github_app.metrics.record_github_request`). `endpoint` is the method and path
template ("GET /repos/{owner}/{repo}/git/trees/{sha}"); `status` is 0 when no HTTP answer came
back (timeout, connection error); `installation` is the installation id whose token was used, or
"app" (JWT), "token" (a personal access token) or "anonymous"."""

RepoRef = str | int
"""A repository: its "owner/name" full name, or its numeric id (which survives renames)."""

RefKind = Literal["heads", "tags"]
"""Where a ref name lives: "heads" (a branch, refs/heads/NAME) or "tags" (refs/tags/NAME)."""


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
class RefHead:
    """What `get_ref_head` read: `sha` the commit (an annotated tag already dereferenced),
    `etag` the ETag of the ref's own answer, `kind` where the name was found. Store `etag` and
    `kind` together and pass both back: the ETag is only valid on that kind's route."""

    sha: str
    etag: str | None
    kind: RefKind


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
        pool_size: int = 8,
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
            limits=httpx.Limits(max_connections=pool_size * 4),
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": user_agent,
            },
        )
        self._prefix = urlsplit(self.api_url).path.rstrip("/")
        self._pool = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="pygithub")
        self._mint_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pygithub-mint")
        # No throttling, no urllib3 retries, no pool of its own: `_send` does all three.
        self._github = Github(
            base_url=self.api_url,
            timeout=int(timeout) + 1,
            user_agent=user_agent,
            per_page=100,
            retry=None,
            seconds_between_requests=None,
            seconds_between_writes=None,
        )

    async def __aenter__(self) -> GitHubClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for pool in (self._pool, self._mint_pool):
            pool.shutdown(wait=False, cancel_futures=True)
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
        auth = self._repo_auth(installation_id, token)
        answer = await self._read_ref(repo, "heads", branch, etag, auth)
        if isinstance(answer, NotModified):
            return NOT_MODIFIED
        _kind, sha, new_etag = answer
        return sha, new_etag

    async def get_ref_head(
        self,
        repo: RepoRef,
        ref: str,
        *,
        kind: RefKind | None = None,
        etag: str | None = None,
        installation_id: int | None = None,
        token: str | None = None,
    ) -> RefHead | NotModified:
        """The commit a followed ref (`owner/name@ref`: a branch or a tag) points to now, or
        NOT_MODIFIED when `etag` still matches (a 304: free, and the commit is unchanged, since
        a tag object never changes).

        `ref` is the bare name ("main", "v1"). `kind` is the `RefHead.kind` of the last read,
        asked first; None asks "heads" first. When that route answers 404 the other one is
        asked, so a branch costs one request (as `get_branch_head`), a tag one more the first
        time and none more once its `kind` is passed back; a moved tag's read is one request
        (lightweight) or one per annotated tag object on the way to the commit
        (`GET .../git/tags/{tag_sha}`, at most MAX_TAG_HOPS). `etag` is sent only to the route
        of `kind` (heads when None), the route it came from. A name that is both a branch and a
        tag is read where it was found first (git itself would pick the tag): a first read picks
        the branch, and a followed tag stays a tag until it is deleted.

        Raises NotFound when neither a branch nor a tag has this name (or the repository is not
        visible), EmptyRepository on a repository without commits, GitHubError when the tag
        points at no commit (a tree or a blob) or nests more than MAX_TAG_HOPS tags.
        """
        auth = self._repo_auth(installation_id, token)
        first: RefKind = kind or "heads"
        other: RefKind = "tags" if first == "heads" else "heads"
        try:
            answer = await self._read_ref(repo, first, ref, etag, auth)
        except NotFound:
            answer = await self._read_ref(repo, other, ref, None, auth)
        if isinstance(answer, NotModified):
            return NOT_MODIFIED
        found, sha, new_etag = answer
        return RefHead(sha, new_etag, found)

    async def _read_ref(
        self, repo: RepoRef, kind: RefKind, name: str, etag: str | None, auth: _Auth
    ) -> tuple[RefKind, str, str | None] | NotModified:
        """(kind, commit sha, ETag) of `refs/{kind}/{name}`: one conditional request, and for
        an annotated tag the tag objects down to its commit."""
        prefix, params = _repo_route(repo)
        field = "branch" if kind == "heads" else "tag"
        params[field] = quote(name, safe="/")
        response = await self._send(
            "GET",
            prefix + f"/git/ref/{kind}/{{{field}}}",
            params,
            auth=auth,
            headers={"If-None-Match": etag} if etag else None,
        )
        if response.status_code == 304:
            return NOT_MODIFIED
        sha, kind_of_object = _target(_json(response), field, response.status_code)
        for _ in range(MAX_TAG_HOPS):
            if kind_of_object != "tag":
                break
            sha, kind_of_object = await self._tag_target(repo, sha, auth)
        if kind_of_object not in ("commit", None):
            what = (
                "nests too many tags"
                if kind_of_object == "tag"
                else f"points to a {kind_of_object}"
            )
            raise GitHubError(200, f"the {field} {what}, not a commit")
        return kind, sha, response.headers.get("etag")

    async def _tag_target(self, repo: RepoRef, tag_sha: str, auth: _Auth) -> tuple[str, str | None]:
        """(sha, type) of what an annotated tag object points to (a commit, or another tag)."""
        url = _repo_url(repo) + f"/git/tags/{quote(tag_sha, safe='')}"
        data = await self._pygithub(auth, lambda gh: _request(gh, "GET", url))
        return _target(data, "tag", 200)

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
        url = _repo_url(repo) + f"/git/blobs/{quote(sha, safe='')}"
        auth = self._repo_auth(installation_id, token)
        data = await self._pygithub(auth, lambda gh: _request(gh, "GET", url))
        try:
            content = base64.b64decode((data or {}).get("content") or "")
        except (binascii.Error, TypeError, AttributeError):
            raise GitHubError(200, "blob content is not base64") from None
        if hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest() != sha:  # noqa: S324
            raise GitHubError(200, "blob content does not match its sha")
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
        """The repository object (id, full_name, private, default_branch, ...); a former name
        is followed (GitHub's 301) to the repository under its name today."""
        auth = self._repo_auth(installation_id, token)
        target = int(repo) if isinstance(repo, int) else _full_name(repo)
        return await self._pygithub(auth, lambda gh: gh.get_repo(target).raw_data)

    # ---- App and installations ----------------------------------------------------------

    async def get_app(self) -> dict[str, Any]:
        """The App itself (App JWT): a cheap check that the App's credentials are valid."""
        return await self._pygithub(_APP, lambda gh: _request(gh, "GET", "/app"))

    async def get_repo_installation(self, repo: RepoRef) -> dict[str, Any] | None:
        """The App's installation on a repository (App JWT), or None when it is not installed."""
        url = _repo_url(repo) + "/installation"
        try:
            return await self._pygithub(_APP, lambda gh: _request(gh, "GET", url))
        except NotFound:
            return None

    async def list_installation_repositories(self, installation_id: int) -> list[dict[str, Any]]:
        """Every repository an installation can access: all pages, however many."""

        def listing(gh: Github) -> list[dict[str, Any]]:
            pages = PaginatedList(
                _Raw,  # type: ignore[type-var]
                gh.requester,
                "/installation/repositories",
                {"per_page": 100},
                list_item="repositories",
            )
            return [repository.data for repository in pages]

        return await self._pygithub(_Auth("installation", installation_id=installation_id), listing)

    async def list_hook_deliveries(
        self, *, since: datetime | None = None, per_page: int = 100, max_pages: int | None = None
    ) -> list[dict[str, Any]]:
        """The App's recent webhook deliveries, newest first (App JWT, cursor pagination).

        Paging stops at the first delivery older than `since` (a naive datetime is taken as
        UTC), or after `max_pages` when given; the older ones are left out.
        """
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        limit = None if max_pages is None else max_pages * per_page

        def listing(gh: Github) -> list[dict[str, Any]]:
            pages = PaginatedList(
                _Raw,  # type: ignore[type-var]
                gh.requester,
                "/app/hook/deliveries",
                {"per_page": per_page},
            )
            deliveries: list[dict[str, Any]] = []
            for delivery in pages:
                data = delivery.data
                delivered = _parse_time(data.get("delivered_at"))
                if since is not None and delivered is not None and delivered < since:
                    break
                deliveries.append(data)
                if limit is not None and len(deliveries) >= limit:
                    break
            return deliveries

        return await self._pygithub(_APP, listing)

    async def redeliver(self, delivery_id: int) -> None:
        """Ask GitHub to send a delivery again (it arrives with the same GUID)."""
        url = f"/app/hook/deliveries/{int(delivery_id)}/attempts"
        await self._pygithub(_APP, lambda gh: _request(gh, "POST", url))

    async def convert_manifest(self, code: str) -> dict[str, Any]:
        """Exchange an App-manifest code for the new App's id, slug, key and secrets (no auth).

        The answer holds secrets: store it, never log it.
        """
        url = f"/app-manifests/{quote(code, safe='')}/conversions"
        return await self._pygithub(_NONE, lambda gh: _request(gh, "POST", url))

    # ---- check runs -----------------------------------------------------------------------

    async def create_check_run(
        self, repo: RepoRef, payload: dict[str, Any], *, installation_id: int
    ) -> dict[str, Any]:
        """Create a check run (payload as GitHub documents it: name, head_sha, status, output)."""
        url = _repo_url(repo) + "/check-runs"
        auth = _Auth("installation", installation_id=installation_id)
        return await self._pygithub(auth, lambda gh: _request(gh, "POST", url, payload))

    async def update_check_run(
        self, repo: RepoRef, check_run_id: int, payload: dict[str, Any], *, installation_id: int
    ) -> dict[str, Any]:
        """Update a check run; annotations in `output` are added to the ones already sent."""
        url = _repo_url(repo) + f"/check-runs/{int(check_run_id)}"
        auth = _Auth("installation", installation_id=installation_id)
        return await self._pygithub(auth, lambda gh: _request(gh, "PATCH", url, payload))

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

    # ---- PyGithub ---------------------------------------------------------------------------

    async def _pygithub(
        self, auth: _Auth, call: Callable[[Github], T], *, pool: ThreadPoolExecutor | None = None
    ) -> T:
        """Run a PyGithub call on the bounded thread pool, its HTTP sent by `_send` on this
        event loop (one policy for credentials, retries, redirects, errors and metrics)."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        context.run(_ROUTE.set, _Route(self, loop, auth))
        return await loop.run_in_executor(pool or self._pool, context.run, call, self._github)

    async def _send_for_pygithub(
        self, method: str, url: str, body: Any, auth: _Auth
    ) -> httpx.Response:
        path = url[len(self._prefix) :] if url.startswith(self._prefix + "/") else url
        template = endpoint_template(path.partition("?")[0])
        content = body if isinstance(body, str | bytes) and body else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        return await self._send(
            method, template, {}, auth=auth, url=path, content=content, headers=headers
        )

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
        url = _repo_url(repo) + f"/git/trees/{quote(sha, safe='')}"
        query = {"recursive": "1"} if recursive else None

        def tree(gh: Github) -> Any:
            return gh.requester.requestJsonAndCheck("GET", url, parameters=query)[1]

        data = await self._pygithub(auth, tree)
        if not isinstance(data, dict):
            raise GitHubError(200, "GitHub's tree answer is not a JSON object")
        return data

    async def _send(
        self,
        method: str,
        template: str,
        params: dict[str, str],
        *,
        auth: _Auth,
        query: dict[str, Any] | None = None,
        content: str | bytes | None = None,
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
        status = 0
        for _ in range(MAX_REDIRECTS + 1):
            args = (method, template, path, auth, query, content, headers)
            response: httpx.Response
            try:
                response = await retrying(self._attempt, await self._authorization(auth), *args)
            except _TokenRejected:
                response = await retrying(self._attempt, await self._authorization(auth), *args)
            status = response.status_code
            location = response.headers.get("location")
            if status not in (301, 307, 308) or not location or not follow:
                return response
            # A renamed or transferred repository: GitHub points at /repositories/{id}; the
            # same method (307/308, or GET for a 301 to a GET) goes there, never off the API.
            if not location.startswith(self.api_url + "/"):
                raise GitHubError(status, f"{method} {template}: redirected off the API")
            path, query = location[len(self.api_url) :], None
            template = _moved_template(template)
        raise GitHubError(status, f"{method} {template}: too many redirects")

    async def _attempt(
        self,
        authorization: str | None,
        method: str,
        template: str,
        path: str,
        auth: _Auth,
        query: dict[str, Any] | None,
        content: str | bytes | None,
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
                    method, path, params=query, content=content, headers=request_headers
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
        url = f"/app/installations/{int(installation_id)}/access_tokens"

        def mint(gh: Github) -> InstallationAuthorization:
            headers, data = gh.requester.requestJsonAndCheck("POST", url)
            return InstallationAuthorization(gh.requester, headers, data)

        try:
            # Its own threads: a call waiting in the pool for a token must not starve the mint.
            minted = await self._pygithub(_APP, mint, pool=self._mint_pool)
        except GitHubError as exc:
            if exc.status in (403, 404) and not isinstance(exc, RateLimited):
                raise InstallationUnavailable(exc.status, exc.message) from None
            raise
        if not minted.token or minted.expires_at is None:
            raise GitHubError(201, "GitHub's access-token answer has no token or expires_at")
        return InstallationToken(minted.token, minted.expires_at.timestamp())

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


# ---- PyGithub's HTTP, sent by `_send` ---------------------------------------------------------


@dataclass(frozen=True)
class _Route:
    client: GitHubClient
    loop: asyncio.AbstractEventLoop
    auth: _Auth


_ROUTE: contextvars.ContextVar[_Route] = contextvars.ContextVar("guildprompts_github_route")


class _Answer:
    """An httpx answer in the shape PyGithub reads (httplib's)."""

    def __init__(self, response: httpx.Response):
        self.status = response.status_code
        self._headers = list(response.headers.items())
        self._text = response.text

    def getheaders(self) -> list[tuple[str, str]]:
        return self._headers

    def read(self) -> str:
        return self._text


class _GitHubConnection:
    """PyGithub's connection class: the request goes back to the event loop of the client whose
    call this is (`_ROUTE`, set per call), and is sent there by `GitHubClient._send`."""

    def __init__(self, host: str, port: int | None = None, *args: Any, **kwargs: Any):
        self.host, self.port = host, port
        self._request: tuple[str, str, Any] | None = None

    def request(
        self, verb: str, url: str, input: Any, headers: dict[str, str], stream: bool = False
    ) -> None:
        self._request = (verb, url, input)

    def getresponse(self) -> _Answer:
        route = _ROUTE.get(None)
        if route is None or self._request is None:
            raise RuntimeError("PyGithub used outside GitHubClient._pygithub")
        verb, url, body = self._request
        sending = route.client._send_for_pygithub(verb, url, body, route.auth)
        future = asyncio.run_coroutine_threadsafe(sending, route.loop)
        try:  # bounded, so a loop that stopped mid-call can never strand a pool thread
            response = future.result(timeout=PYGITHUB_CALL_TIMEOUT)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TransientError(0, f"{verb} {endpoint_template(url)}: timed out") from None
        return _Answer(response)

    def close(self) -> None:
        pass


Requester.injectConnectionClasses(_GitHubConnection, _GitHubConnection)  # type: ignore[arg-type]


class _Raw:
    """A listed item as GitHub sent it: PyGithub's own classes would fetch each object again
    on first access (`raw_data` completes a listed, partial object)."""

    def __init__(self, requester: Requester, headers: dict[str, Any], attributes: Any):
        self.data: dict[str, Any] = attributes if isinstance(attributes, dict) else {}


def _request(gh: Github, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    """One JSON request through PyGithub's requester (for routes it has no method for)."""
    _headers, data = gh.requester.requestJsonAndCheck(method, url, input=body)
    return data


# The endpoints the App calls, as GitHub's description names them: per-endpoint metrics, error
# messages, and the contract tests (tests/contract) check each against the description.
ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("GET", "/app"),
    ("POST", "/app/installations/{installation_id}/access_tokens"),
    ("GET", "/app/hook/deliveries"),
    ("POST", "/app/hook/deliveries/{delivery_id}/attempts"),
    ("POST", "/app-manifests/{code}/conversions"),
    ("GET", "/installation/repositories"),
    ("GET", "/repos/{owner}/{repo}"),
    ("GET", "/repos/{owner}/{repo}/installation"),
    ("GET", "/repos/{owner}/{repo}/git/ref/{ref}"),
    ("GET", "/repos/{owner}/{repo}/git/tags/{tag_sha}"),
    ("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}"),
    ("GET", "/repos/{owner}/{repo}/git/blobs/{file_sha}"),
    ("GET", "/repos/{owner}/{repo}/tarball/{ref}"),
    ("POST", "/repos/{owner}/{repo}/check-runs"),
    ("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}"),
    ("GET", "/repositories/{repository_id}"),
)


@functools.cache
def _template_patterns() -> list[tuple[re.Pattern[str], str]]:
    templates = {t for _, t in ENDPOINTS} | {_moved_template(t) for _, t in ENDPOINTS}
    patterns = []
    for template in sorted(templates, key=len, reverse=True):
        regex = re.escape(template).replace(r"\{ref\}", ".+")
        patterns.append((re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", regex)), template))
    return patterns


def endpoint_template(path: str) -> str:
    """The documented route of a concrete API path ("/repos/o/r/check-runs/5" ->
    "/repos/{owner}/{repo}/check-runs/{check_run_id}"); "other" for a route the App never
    calls (kept out of metrics labels)."""
    for regex, template in _template_patterns():
        if regex.fullmatch(path):
            return template
    return "other"


def _full_name(repo: str) -> str:
    _repo_route(repo)  # validates "owner/name"
    return repo


def _repo_url(repo: RepoRef) -> str:
    prefix, params = _repo_route(repo)
    return prefix.format(**params)


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


def _target(data: Any, what: str, status: int) -> tuple[str, str | None]:
    """(sha, type) of the `object` a ref or tag answer points to; a malformed answer is an
    error naming `what` was read ("branch", "tag")."""
    target = data.get("object") if isinstance(data, dict) else None
    sha = target.get("sha") if isinstance(target, dict) else None
    if not isinstance(target, dict) or not isinstance(sha, str):
        raise GitHubError(status, f"{what} answer has no object.sha")
    kind = target.get("type")
    return sha, kind if isinstance(kind, str) else None


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
