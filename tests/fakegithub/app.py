"""A fake GitHub for the test suite: an ASGI app with in-memory state that enforces GitHub's rules.

Tests should fail where GitHub would fail, so the fake checks what GitHub checks: App JWTs
(RS256, signature, iat in the past, exp at most 10 minutes ahead) on /app routes; installation
tokens that expire on a controllable clock and only reach their installation's repositories
(private repositories answer 404 to anyone else, as on GitHub); at most 50 annotations per
check-run request and 65,535-character summaries; ETags with free 304s; rate limits.
Git objects are hashed like git does, so an unchanged file keeps its blob sha across pushes.
GitHub's less friendly answers too: `301 Moved Permanently` (307 for other methods) to
`/repositories/{id}` for a renamed or transferred repository's old name, `409 Git Repository is
empty.` on the git routes of a repository without commits, `302 Found` from `tarball/{ref}` to a
signed, short-lived download URL (like codeload.github.com), and pagination without caps.

Use it in-process with `httpx.ASGITransport(app=fake)` or on loopback with
`serve_on_loopback(fake)`. State changes go through methods (`add_installation`, `add_repo`,
`push`, ...); `latency`, `fail_next` and `hang_next` inject trouble; `requests` logs every call.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import inspect
import io
import json
import re
import secrets
import tarfile
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import jwt
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from github_app.auth import AppAuth
from github_app.github import GitHubClient, RetryPolicy
from tests.contract.openapi import with_documented_fields
from tests.fakegithub.git import TAGGER, Repo, Submodule, Symlink, _git_hash
from tests.fakegithub.keys import (
    Clock,
    _iso,
    generate_rsa_key,
    public_key_pem,
    shared_test_key,
    sign,
)

ZERO_SHA = "0" * 40
SUMMARY_LIMIT = 65_535
ANNOTATIONS_PER_REQUEST = 50
DOCS = "https://docs.github.com/rest"
_KEEP = object()


@dataclass
class Installation:
    id: int
    account: str
    account_type: str = "Organization"
    repository_selection: str = "selected"
    suspended: bool = False


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: str
    status: int
    endpoint: str  # the route template, e.g. "GET /repos/{owner}/{repo}/git/trees/{sha}"
    body: bytes = b""  # what the client sent
    answer: bytes = b""  # what the fake answered (for the contract tests)
    content_type: str = ""


@dataclass
class Webhook:
    """A delivery as GitHub would POST it: send `body` with `headers` to the App."""

    event: str
    guid: str
    payload: dict[str, Any]
    body: bytes
    headers: dict[str, str]


@dataclass
class _Fault:
    method: str | None
    pattern: re.Pattern[str]
    times: int
    status: int = 500
    retry_after: int | None = None
    reset_in: float | None = None
    hang: bool = False


@dataclass
class _Identity:
    kind: str  # "anonymous", "app", "installation", "pat"
    key: str  # rate-limit bucket
    installation: int | None = None
    repos: frozenset[str] | None = None  # a PAT's repositories (None: all)


@dataclass
class _Call:
    request: Request
    params: dict[str, str]
    body: bytes
    identity: _Identity
    repo: Repo | None
    background: Callable[[], Awaitable[None]] | None = None  # runs after the answer is sent

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body or b"{}")
        except ValueError:
            raise _Fail(400, "Problems parsing JSON") from None
        if not isinstance(data, dict):
            raise _Fail(400, "Problems parsing JSON")
        return data


class _Fail(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class _Moved(Exception):
    """An old repository name: answered with a redirect to `/repositories/{id}`."""

    def __init__(self, repo: Repo):
        super().__init__(repo.full_name)
        self.repo = repo


# Routes GitHub answers `409 Git Repository is empty.` on while a repository has no commits.
_GIT_ROUTES = frozenset({"ref", "tag", "tree", "blob", "contents", "tarball"})
CODELOAD_PREFIX = "/_codeload"  # where the fake serves archives (codeload.github.com on GitHub)
ARCHIVE_URL_TTL = 300  # seconds a signed archive URL stays valid (GitHub: 5 minutes)

# Access levels of a route.
PUBLIC, APP, INSTALLATION, APP_REPO, READ, WRITE = range(6)

_BY_NAME = "/repos/{owner}/{repo}"
_ROUTES: list[tuple[str, str, str, int]] = [
    ("GET", "/app", "app", APP),
    ("POST", "/app/installations/{installation_id}/access_tokens", "mint", APP),
    ("GET", "/app/hook/deliveries", "deliveries", APP),
    ("POST", "/app/hook/deliveries/{delivery_id}/attempts", "redeliver", APP),
    ("POST", "/app-manifests/{code}/conversions", "conversion", PUBLIC),
    ("GET", "/installation/repositories", "installation_repositories", INSTALLATION),
    ("GET", _BY_NAME + "/installation", "repo_installation", APP_REPO),
    ("GET", _BY_NAME, "repository", READ),
    ("GET", _BY_NAME + "/branches/{branch:path}", "branch", READ),
    ("GET", _BY_NAME + "/git/ref/{ref:path}", "ref", READ),
    ("GET", _BY_NAME + "/git/tags/{sha}", "tag", READ),
    ("GET", _BY_NAME + "/git/trees/{sha}", "tree", READ),
    ("GET", _BY_NAME + "/git/blobs/{sha}", "blob", READ),
    ("GET", _BY_NAME + "/contents/{path:path}", "contents", READ),
    ("GET", _BY_NAME + "/tarball/{ref:path}", "tarball", READ),
    ("POST", _BY_NAME + "/check-runs", "create_check_run", WRITE),
    ("PATCH", _BY_NAME + "/check-runs/{check_run_id}", "update_check_run", WRITE),
    ("GET", _BY_NAME + "/check-runs/{check_run_id}", "check_run", READ),
    ("GET", _BY_NAME + "/check-runs/{check_run_id}/annotations", "annotations", READ),
]


def _compile(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\{(\w+):path\}", r"(?P<\1>.+)", template)
    return re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern))


def _expand_routes() -> list[tuple[str, str, re.Pattern[str], str, int]]:
    """Every repository route also answers under /repositories/{id}, as on GitHub."""
    routes = []
    for method, template, handler, access in _ROUTES:
        variants = [template]
        if template.startswith(_BY_NAME):
            variants.append(template.replace(_BY_NAME, "/repositories/{repository_id}"))
        routes += [(method, t, _compile(t), handler, access) for t in variants]
    return routes


class FakeGitHub:
    """In-memory GitHub serving the REST endpoints guildprompts uses (an ASGI app).

    The fake hosts one App (`app_id`, `private_key_pem`, `webhook_secret`); `api_prefix`
    "/api/v3" makes it answer like GitHub Enterprise Server. Thread-safe, so a test thread can
    change state while the fake serves on loopback.
    """

    routes = _expand_routes()

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        api_prefix: str = "",
        app_id: int = 4242,
        app_slug: str = "guildprompts-test",
        private_key_pem: str | None = None,
        webhook_secret: str = "fake-webhook-secret",
    ):
        self.clock = clock or Clock()
        self.api_prefix = api_prefix.rstrip("/")
        self.app_id = app_id
        self.app_slug = app_slug
        self.client_id = f"Iv1.{secrets.token_hex(8)}"
        self.private_key_pem = private_key_pem or shared_test_key()
        self.webhook_secret = webhook_secret
        self.latency = 0.0  # seconds added to every request
        self.hang_seconds = 30.0  # how long a `hang_next` request stalls
        self.token_ttl = 3600  # installation tokens last an hour, as on GitHub
        self.rate_limit = 5000  # requests per hour per credential (anonymous: 60)
        self.tree_limit: int | None = None  # recursive listings longer than this are truncated
        self.requests: list[LoggedRequest] = []
        self.slept: list[float] = []  # waits passed to `sleep`
        self.installations: dict[int, Installation] = {}
        self.repos: dict[int, Repo] = {}
        self.check_runs: dict[int, dict[str, Any]] = {}
        self.deliveries: list[dict[str, Any]] = []
        self.redelivered: list[Webhook] = []
        self.on_redeliver: Callable[[Webhook], Awaitable[Any] | Any] | None = None
        self._webhooks: dict[str, Webhook] = {}
        self._public_key = public_key_pem(self.private_key_pem)
        self._tokens: dict[str, tuple[int, int]] = {}  # token -> (installation, expires_at)
        self._pats: dict[str, frozenset[str] | None] = {}
        self._manifest_codes: dict[str, dict[str, Any]] = {}
        self._issued_secrets: list[str] = [webhook_secret, self.private_key_pem]
        self._rates: dict[str, tuple[float, int]] = {}  # bucket -> (window reset, used)
        self._faults: list[_Fault] = []
        self._moved: dict[str, int] = {}  # an old "owner/name" (lower case) -> repository id
        self._archives: dict[str, tuple[int, str, float]] = {}  # token -> (repo, sha, expiry)
        self._ids = iter(range(1000, 10**9))
        self._lock = threading.RLock()

    # ---- state helpers ----------------------------------------------------------------------

    def add_installation(
        self,
        account: str = "octo-org",
        *,
        account_type: str = "Organization",
        installation_id: int | None = None,
        repository_selection: str = "selected",
    ) -> int:
        with self._lock:
            iid = installation_id if installation_id is not None else next(self._ids)
            self.installations[iid] = Installation(iid, account, account_type, repository_selection)
            return iid

    def add_repo(
        self,
        full_name: str,
        *,
        private: bool = True,
        installation: int | None = None,
        default_branch: str = "main",
        repo_id: int | None = None,
    ) -> int:
        """Create an empty repository (private unless told: a forgotten token then fails)."""
        with self._lock:
            if installation is not None and installation not in self.installations:
                raise KeyError(f"no installation {installation}")
            rid = repo_id if repo_id is not None else next(self._ids)
            self.repos[rid] = Repo(rid, full_name, private, installation, default_branch)
            return rid

    def add_pat(self, token: str | None = None, *, repos: Iterable[str] | None = None) -> str:
        """A personal access token reaching `repos` (all repositories when None)."""
        with self._lock:
            token = token or "github_pat_" + secrets.token_urlsafe(40)
            self._pats[token] = None if repos is None else frozenset(r.lower() for r in repos)
            self._issued_secrets.append(token)
            return token

    def push(
        self,
        full_name: str,
        branch: str,
        files: dict[str, bytes | str | Symlink | Submodule],
        *,
        remove: Iterable[str] = (),
        message: str = "Update prompts",
    ) -> str:
        """Commit `files` on top of the branch (a new branch starts from the default branch's
        head) with `remove` deleted; return the new commit's sha."""
        with self._lock:
            repo = self.repo(full_name)
            parent = repo.branches.get(branch) or repo.branches.get(repo.default_branch)
            tree = dict(repo.flatten(repo.commits[parent]["tree"])) if parent else {}
            for path in remove:
                if tree.pop(path, None) is None:
                    raise KeyError(f"{path} is not in {full_name}@{branch}")
            for path, value in files.items():
                tree[path.strip("/")] = repo.store(value)
            tree_sha = repo.write_tree(tree)
            now = int(self.clock())
            signature = f"Fake Author <author@example.com> {now} +0000"
            lines = [f"tree {tree_sha}"] + ([f"parent {parent}"] if parent else [])
            text = "\n".join([*lines, f"author {signature}", f"committer {signature}", "", message])
            sha = _git_hash("commit", (text + "\n").encode())
            repo.commits[sha] = {"tree": tree_sha, "parent": parent, "message": message, "at": now}
            repo.branches[branch] = sha
            repo.reflog.setdefault(branch, []).append(sha)
            return sha

    def force_push(self, full_name: str, branch: str, sha: str) -> None:
        """Point the branch at an existing commit (`git push --force`), descendant or not."""
        with self._lock:
            repo = self.repo(full_name)
            if sha not in repo.commits:
                raise KeyError(f"no commit {sha} in {full_name}")
            repo.branches[branch] = sha
            repo.reflog.setdefault(branch, []).append(sha)

    def tag(self, full_name: str, name: str, target: str, *, message: str | None = None) -> str:
        """Create or move (`git tag -f` and `git push --force`) the tag `name` on `target`: a
        branch or any object's sha (a commit; an annotated tag's, making a tag of a tag; even a
        tree's, as git allows). With `message` the tag is annotated (a tag object, as
        `git tag -a`), else lightweight. Return what refs/tags/NAME now points to: the tag
        object's sha, or `target`'s."""
        with self._lock:
            repo = self.repo(full_name)
            sha = repo.branches.get(target, target)
            if repo.kind_of(sha) is None:
                raise KeyError(f"no object {target} in {full_name}")
            if message is not None:
                sha = repo.write_tag(name, sha, message, int(self.clock()))
            repo.tags[name] = sha
            repo.reflog.setdefault(f"refs/tags/{name}", []).append(sha)
            return sha

    def delete_tag(self, full_name: str, name: str) -> str:
        """Delete a tag (`git push --delete origin NAME`); return what it pointed to."""
        with self._lock:
            repo = self.repo(full_name)
            sha = repo.tags.pop(name)
            repo.reflog.setdefault(f"refs/tags/{name}", []).append(ZERO_SHA)
            return sha

    def revoke_pat(self, token: str) -> None:
        """The owner deleted the token: it is refused (401) from now on."""
        with self._lock:
            self._pats.pop(token, None)

    def delete_branch(self, full_name: str, branch: str) -> str:
        """Delete a branch; return the sha it pointed to."""
        with self._lock:
            repo = self.repo(full_name)
            sha = repo.branches.pop(branch)
            repo.reflog.setdefault(branch, []).append(ZERO_SHA)
            return sha

    def update_repo(
        self,
        full_name: str,
        *,
        new_full_name: str | None = None,
        private: bool | None = None,
        default_branch: str | None = None,
        installation: int | object | None = _KEEP,
    ) -> None:
        """Rename, change visibility or default branch, or move between installations
        (`installation=None` removes it from its installation)."""
        with self._lock:
            repo = self.repo(full_name)
            if new_full_name and new_full_name.lower() != repo.full_name.lower():
                self._moved[repo.full_name.lower()] = repo.id  # GitHub redirects the old name
                self._moved.pop(new_full_name.lower(), None)
            repo.full_name = new_full_name or repo.full_name
            repo.private = repo.private if private is None else private
            repo.default_branch = default_branch or repo.default_branch
            if installation is not _KEEP:
                repo.installation = installation  # type: ignore[assignment]

    def delete_repo(self, full_name: str) -> None:
        with self._lock:
            del self.repos[self.repo(full_name).id]

    def suspend_installation(self, installation_id: int, suspended: bool = True) -> None:
        with self._lock:
            self.installations[installation_id].suspended = suspended

    def delete_installation(self, installation_id: int) -> None:
        """Uninstall: its tokens stop working and its repositories become unreachable."""
        with self._lock:
            del self.installations[installation_id]
            self._tokens = {t: v for t, v in self._tokens.items() if v[0] != installation_id}
            for repo in self.repos.values():
                if repo.installation == installation_id:
                    repo.installation = None

    def revoke_tokens(self, installation_id: int | None = None) -> None:
        """Revoke installation tokens (all, or one installation's) before they expire."""
        with self._lock:
            self._tokens = {
                t: v for t, v in self._tokens.items() if installation_id not in (None, v[0])
            }

    def add_manifest_code(self, manifest: dict[str, Any] | None = None) -> str:
        """A one-time code as GitHub hands back after the manifest form (valid for one use)."""
        with self._lock:
            code = secrets.token_hex(10)
            self._manifest_codes[code] = dict(manifest or {})
            return code

    def fail_next(
        self,
        path_pattern: str,
        *,
        status: int = 500,
        times: int = 1,
        method: str | None = None,
        retry_after: int | None = None,
        reset_in: float | None = None,
    ) -> None:
        """The next `times` requests whose path matches the regex answer `status`.

        `retry_after` adds a Retry-After header (429 or 403 secondary limit); `reset_in` answers
        like an exhausted primary rate limit (X-RateLimit-Remaining: 0, reset that far ahead).
        """
        with self._lock:
            self._faults.append(
                _Fault(method, re.compile(path_pattern), times, status, retry_after, reset_in)
            )

    def hang_next(self, path_pattern: str, *, times: int = 1, method: str | None = None) -> None:
        """The next `times` matching requests stall for `hang_seconds` (to test timeouts)."""
        with self._lock:
            self._faults.append(_Fault(method, re.compile(path_pattern), times, hang=True))

    async def sleep(self, seconds: float) -> None:
        """A stand-in for asyncio.sleep that records the wait and moves the fake's clock
        instead of waiting, so retry and rate-limit tests take no time."""
        self.slept.append(seconds)
        self.clock.advance(seconds)
        await anyio.sleep(0)

    def github_client(
        self, api_url: str = "https://api.github.test", **kwargs: Any
    ) -> GitHubClient:
        """A `GitHubClient` wired to this fake in-process: the App's credentials on the fake's
        clock, fast retries sleeping on `sleep`. Keyword arguments override the client's."""
        options: dict[str, Any] = {
            "auth": AppAuth(self.app_id, self.private_key_pem, clock=self.clock),
            "transport": httpx.ASGITransport(app=self),
            "retry": RetryPolicy(backoff=0.01, max_backoff=0.05),
            "sleep": self.sleep,
            "clock": self.clock,
        }
        return GitHubClient(api_url + self.api_prefix, **{**options, **kwargs})

    # ---- inspection -------------------------------------------------------------------------

    def repo(self, full_name: str) -> Repo:
        for repo in self.repos.values():
            if repo.full_name.lower() == full_name.lower():
                return repo
        raise KeyError(f"no repository {full_name}")

    def head(self, full_name: str, branch: str) -> str | None:
        return self.repo(full_name).branches.get(branch)

    def tagged(self, full_name: str, tag: str) -> str | None:
        """The commit a tag points to (an annotated tag dereferenced), None without the tag."""
        repo = self.repo(full_name)
        return repo.peel(repo.tags[tag]) if tag in repo.tags else None

    def files(self, full_name: str, ref: str) -> dict[str, bytes]:
        """The regular files at a branch, a tag or a commit, path -> bytes."""
        repo = self.repo(full_name)
        commit = repo.commits[repo.commit_of(ref)]
        return {
            path: repo.blobs[sha]
            for path, (mode, sha) in repo.flatten(commit["tree"]).items()
            if mode in ("100644", "100755")
        }

    def count(self, path_pattern: str = "", *, method: str | None = None) -> int:
        """How many logged requests match the path regex (and method)."""
        regex = re.compile(path_pattern)
        return sum(
            1
            for r in list(self.requests)
            if regex.search(r.path) and (method is None or r.method == method)
        )

    def issued_secrets(self) -> list[str]:
        """Every secret the fake created or was given, for tests that grep logs for leaks."""
        return list(self._issued_secrets)

    def check_runs_for(self, full_name: str, head_sha: str | None = None) -> list[dict[str, Any]]:
        rid = self.repo(full_name).id
        return [
            run
            for run in self.check_runs.values()
            if run["repository_id"] == rid and head_sha in (None, run["head_sha"])
        ]

    # ---- webhooks ---------------------------------------------------------------------------

    def webhook(
        self,
        event: str,
        payload: dict[str, Any],
        *,
        secret: str | None = None,
        guid: str | None = None,
        status_code: int = 202,
    ) -> Webhook:
        """Sign a delivery like GitHub and record it in the App's delivery log with the answer
        it got (`status_code`; e.g. 502 for one the App never stored)."""
        body = json.dumps(payload).encode()
        guid = guid or str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/fake",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": guid,
            "X-GitHub-Hook-ID": "4242001",
            "X-GitHub-Hook-Installation-Target-ID": str(self.app_id),
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-Hub-Signature-256": sign(body, secret or self.webhook_secret),
        }
        hook = Webhook(event, guid, payload, body, headers)
        with self._lock:
            self._webhooks[guid] = hook
            self._record_delivery(hook, status_code, redelivery=False)
        return hook

    def _record_delivery(self, hook: Webhook, status_code: int, *, redelivery: bool) -> None:
        repository = hook.payload.get("repository") or {}
        self.deliveries.append(
            {
                "id": next(self._ids),
                "guid": hook.guid,
                "delivered_at": _iso(self.clock()),
                "redelivery": redelivery,
                "duration": 0.05,
                "status": "OK"
                if 200 <= status_code < 300
                else f"Invalid HTTP Response: {status_code}",
                "status_code": status_code,
                "event": hook.event,
                "action": hook.payload.get("action"),
                "installation_id": (hook.payload.get("installation") or {}).get("id"),
                "repository_id": repository.get("id"),
                "throttled_at": None,
            }
        )

    def _repo_json(self, repo: Repo) -> dict[str, Any]:
        html = f"https://github.com/{repo.full_name}"
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "owner": {"login": repo.owner, "id": abs(hash(repo.owner)) % 10**8, "type": "User"},
            "html_url": html,
            "url": f"https://api.github.com/repos/{repo.full_name}",
            "default_branch": repo.default_branch,
            "master_branch": repo.default_branch,
            "visibility": "private" if repo.private else "public",
            "fork": False,
            "archived": False,
            "disabled": False,
            "language": None,  # required, and absent from GitHub's own example
        }

    def _event_base(self, repo: Repo | None = None) -> dict[str, Any]:
        base: dict[str, Any] = {
            "sender": {"login": "octocat", "id": 583231, "type": "User"},
        }
        if repo is not None:
            base["repository"] = self._repo_json(repo)
            if repo.installation is not None:
                iid = repo.installation
                base["installation"] = {"id": iid, "node_id": f"I_{iid}"}
        return base

    def push_payload(
        self, full_name: str, branch: str, *, before: str | None = None, after: str | None = None
    ) -> dict[str, Any]:
        """A `push` event for the branch's last change (push or deletion), or for `before`/
        `after`. `branch` may be a full ref: for a tag ("refs/tags/v1"), as GitHub sends it,
        `after` is what the tag points to (an annotated tag's object), `commits` is empty and
        `head_commit` is the tagged commit."""
        repo = self.repo(full_name)
        ref = branch if branch.startswith("refs/") else f"refs/heads/{branch}"
        log = repo.reflog.get(branch, [])
        after = after or (log[-1] if log else ZERO_SHA)
        before = before or (log[-2] if len(log) > 1 else ZERO_SHA)
        head = None
        if after != ZERO_SHA:
            head = self._commit_json(repo, repo.peel(after), repo.peel(before))
        commits = [] if head is None or ref.startswith("refs/tags/") else [head]
        return {
            "ref": ref,
            "before": before,
            "after": after,
            "created": before == ZERO_SHA,
            "deleted": after == ZERO_SHA,
            "forced": False,
            "base_ref": None,
            "compare": f"https://github.com/{repo.full_name}/compare/{before[:12]}...{after[:12]}",
            "commits": commits,
            "head_commit": head,
            "pusher": {"name": "octocat", "email": "octocat@example.com"},
            **self._event_base(repo),
        }

    def _commit_json(self, repo: Repo, sha: str, before: str) -> dict[str, Any]:
        commit = repo.commits.get(sha)
        if commit is None:
            return {"id": sha, "message": "", "added": [], "removed": [], "modified": []}
        new = repo.flatten(commit["tree"])
        old = repo.flatten(repo.commits[before]["tree"]) if before in repo.commits else {}
        person = {"name": "Fake Author", "email": "author@example.com", "username": "octocat"}
        return {
            "id": sha,
            "tree_id": commit["tree"],
            "distinct": True,
            "message": commit["message"],
            "timestamp": _iso(commit["at"]),
            "url": f"https://github.com/{repo.full_name}/commit/{sha}",
            "author": person,
            "committer": person,
            "added": sorted(set(new) - set(old)),
            "removed": sorted(set(old) - set(new)),
            "modified": sorted(p for p in set(new) & set(old) if new[p] != old[p]),
        }

    def delete_payload(self, full_name: str, ref: str, ref_type: str = "branch") -> dict[str, Any]:
        return {
            "ref": ref,
            "ref_type": ref_type,
            "pusher_type": "user",
            **self._event_base(self.repo(full_name)),
        }

    def pull_request_payload(
        self,
        full_name: str,
        head_branch: str,
        *,
        action: str = "opened",
        number: int = 1,
        base_branch: str | None = None,
    ) -> dict[str, Any]:
        repo = self.repo(full_name)
        base_branch = base_branch or repo.default_branch

        def side(branch: str) -> dict[str, Any]:
            return {
                "label": f"{repo.owner}:{branch}",
                "ref": branch,
                "sha": repo.branches.get(branch, ZERO_SHA),
                "repo": self._repo_json(repo),
            }

        pull = {
            "number": number,
            "state": "open",
            "title": "Update prompts",
            "html_url": f"https://github.com/{repo.full_name}/pull/{number}",
            "user": {"login": "octocat", "id": 583231},
            "head": side(head_branch),
            "base": side(base_branch),
        }
        return {"action": action, "number": number, "pull_request": pull, **self._event_base(repo)}

    def check_suite_payload(
        self, full_name: str, head_branch: str, *, action: str = "requested"
    ) -> dict[str, Any]:
        repo = self.repo(full_name)
        sha = repo.branches[head_branch]
        suite = {
            "id": next(self._ids),
            "head_branch": head_branch,
            "head_sha": sha,
            "status": "queued",
            "conclusion": None,
            "before": ZERO_SHA,
            "after": sha,
            "pull_requests": [],
            "app": {"id": self.app_id, "slug": self.app_slug},
        }
        return {"action": action, "check_suite": suite, **self._event_base(repo)}

    def check_run_payload(
        self, check_run_id: int, *, action: str = "rerequested"
    ) -> dict[str, Any]:
        run = self.check_runs[check_run_id]
        repo = self.repos[run["repository_id"]]
        public = {k: v for k, v in run.items() if k not in ("annotations", "repository_id")}
        public["check_suite"] = {
            "id": run["id"],
            "head_sha": run["head_sha"],
            "head_branch": None,
            "pull_requests": [],
        }
        return {"action": action, "check_run": public, **self._event_base(repo)}

    def installation_payload(self, installation_id: int, action: str = "created") -> dict[str, Any]:
        return {
            "action": action,
            "installation": self._installation_json(installation_id),
            "repositories": [self._repo_ref(r) for r in self._installation_repos(installation_id)],
            "requester": None,
            **self._event_base(),
        }

    def installation_repositories_payload(
        self, installation_id: int, *, added: Iterable[str] = (), removed: Iterable[str] = ()
    ) -> dict[str, Any]:
        added_refs = [self._repo_ref(self.repo(name)) for name in added]
        removed_refs = [self._repo_ref(self.repo(name)) for name in removed]
        return {
            "action": "added" if added_refs else "removed",
            "installation": self._installation_json(installation_id),
            "repository_selection": self.installations[installation_id].repository_selection,
            "repositories_added": added_refs,
            "repositories_removed": removed_refs,
            "requester": None,
            **self._event_base(),
        }

    def repository_payload(
        self, full_name: str, action: str, *, changes: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        payload = {"action": action, **self._event_base(self.repo(full_name))}
        if changes is not None:
            payload["changes"] = changes
        return payload

    def ping_payload(self) -> dict[str, Any]:
        hook = {
            "type": "App",
            "id": 4242001,
            "name": "web",
            "active": True,
            "events": ["push", "pull_request"],
            "app_id": self.app_id,
            "config": {
                "content_type": "json",
                "insecure_ssl": "0",
                "url": "https://example.invalid/api/github/webhooks",
            },
        }
        return {
            "zen": "Keep it logically awesome.",
            "hook_id": hook["id"],
            "hook": hook,
            **self._event_base(),
        }

    def app_authorization_payload(self) -> dict[str, Any]:
        return {"action": "revoked", **self._event_base()}

    def _repo_ref(self, repo: Repo) -> dict[str, Any]:
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
        }

    def _installation_repos(self, installation_id: int) -> list[Repo]:
        return [r for r in self.repos.values() if r.installation == installation_id]

    def _installation_json(self, installation_id: int) -> dict[str, Any]:
        inst = self.installations[installation_id]
        return {
            "id": inst.id,
            "app_id": self.app_id,
            "app_slug": self.app_slug,
            "account": {"login": inst.account, "id": inst.id * 7, "type": inst.account_type},
            "repository_selection": inst.repository_selection,
            "target_type": inst.account_type,
            "permissions": {
                "contents": "read",
                "metadata": "read",
                "checks": "write",
                "pull_requests": "read",
            },
            "events": ["push", "pull_request", "check_suite", "check_run", "repository"],
            "suspended_at": _iso(self.clock()) if inst.suspended else None,
            "suspended_by": None,
        }

    # ---- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        request = Request(scope, receive)
        body = await request.body()
        if self.latency:
            await anyio.sleep(self.latency)
        codeload = request.url.path.startswith(CODELOAD_PREFIX + "/")  # not the API
        fault = None
        if not codeload:
            with self._lock:
                fault = self._take_fault(request.method, request.url.path)
        if fault is not None and fault.hang:
            await anyio.sleep(self.hang_seconds)
            fault = None
        with self._lock:
            if codeload:
                response, endpoint = self._codeload(request), "GET codeload"
            else:
                response, endpoint = self._respond(request, body, fault)
            self.requests.append(
                LoggedRequest(
                    request.method,
                    request.url.path,
                    request.url.query,
                    response.status_code,
                    endpoint,
                    body,
                    bytes(response.body),
                    response.headers.get("content-type", ""),
                )
            )
        await response(scope, receive, send)

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.times > 0 and fault.method in (None, method) and fault.pattern.search(path):
                fault.times -= 1
                return fault
        return None

    def _route(self, method: str, path: str) -> tuple[str, str, int, dict[str, str]] | None:
        """(endpoint template, handler name, access level, path parameters) of a request."""
        if self.api_prefix:
            if not path.startswith(self.api_prefix + "/"):
                return None
            path = path[len(self.api_prefix) :]
        for route_method, template, regex, handler, access in self.routes:
            match = regex.fullmatch(path)
            if match and route_method == method:
                return f"{method} {template}", handler, access, match.groupdict()
        return None

    def _respond(self, request: Request, body: bytes, fault: _Fault | None) -> tuple[Response, str]:
        """Answer one request in GitHub's order: route, injected fault, credentials, rate limit,
        access to the resource, the handler, then ETag / 304 and rate-limit accounting."""
        route = self._route(request.method, request.url.path)
        if route is None:
            return _json_response(404, {"message": "Not Found", "documentation_url": DOCS}), "?"
        endpoint, handler, access, params = route
        if fault is not None:
            return self._fault_response(fault), endpoint
        try:
            identity = self._identify(request)
        except _Fail as fail:
            return _json_response(fail.status, _error_body(fail), fail.headers), endpoint
        rate_headers, exhausted = self._rate(identity)
        if exhausted:
            message = {
                "message": f"API rate limit exceeded for {identity.key}.",
                "documentation_url": DOCS,
            }
            return _json_response(403, message, rate_headers), endpoint
        call = _Call(request, params, body, identity, None)
        try:
            call.repo = self._authorize(access, identity, params)
            if handler in _GIT_ROUTES and call.repo is not None and not call.repo.commits:
                raise _Fail(409, "Git Repository is empty.")
            status, data, *extra = getattr(self, f"_h_{handler}")(call)
            if 200 <= status < 300:  # every field GitHub documents for this answer
                path = request.url.path[len(self.api_prefix) :]
                data = with_documented_fields(request.method, path, status, data)
            headers = {**rate_headers, **(extra[0] if extra else {})}
        except _Moved as moved:
            status, data, headers = self._moved_answer(request, moved.repo, rate_headers)
        except _Fail as fail:
            status, data, headers = fail.status, _error_body(fail), {**rate_headers, **fail.headers}
        response = _json_response(status, data, headers)
        etag = response.headers.get("etag")
        if request.method == "GET" and etag and etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers={"ETag": etag, **rate_headers}), endpoint
        if call.background is not None:
            response.background = BackgroundTask(call.background)
        self._spend(identity)
        remaining = int(rate_headers["X-RateLimit-Remaining"]) - 1
        response.headers["X-RateLimit-Remaining"] = str(max(remaining, 0))
        response.headers["X-RateLimit-Used"] = str(int(rate_headers["X-RateLimit-Used"]) + 1)
        return response, endpoint

    def _fault_response(self, fault: _Fault) -> Response:
        headers: dict[str, str] = {}
        message = "Server Error"
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
            message = "You have exceeded a secondary rate limit."
        if fault.reset_in is not None:
            headers["X-RateLimit-Remaining"] = "0"
            headers["X-RateLimit-Reset"] = str(int(self.clock() + fault.reset_in))
            message = "API rate limit exceeded."
        return _json_response(fault.status, {"message": message}, headers)

    # ---- authentication -----------------------------------------------------------------------

    def _identify(self, request: Request) -> _Identity:
        header = request.headers.get("authorization")
        if not header:
            host = request.client.host if request.client else "?"
            return _Identity("anonymous", f"ip {host}")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() not in ("bearer", "token") or not credential:
            raise _Fail(401, "Bad credentials")
        if credential in self._tokens:
            installation_id, expires_at = self._tokens[credential]
            if self.clock() >= expires_at:
                raise _Fail(401, "Bad credentials")
            if self.installations[installation_id].suspended:
                raise _Fail(403, "This installation has been suspended")
            return _Identity("installation", f"installation ID {installation_id}", installation_id)
        if credential in self._pats:
            return _Identity("pat", f"token {credential[-4:]}", repos=self._pats[credential])
        if credential.count(".") == 2 and scheme.lower() == "bearer":
            self._verify_jwt(credential)
            return _Identity("app", f"app {self.app_id}")
        raise _Fail(401, "Bad credentials")

    def _verify_jwt(self, token: str) -> None:
        """GitHub's JWT rules, on the fake's clock: RS256 signed by the App, iss = the App,
        iat in the past, exp in the future and at most 10 minutes after now and after iat."""
        try:
            if jwt.get_unverified_header(token).get("alg") != "RS256":
                raise _Fail(401, "A JSON web token could not be decoded")
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_iss": False,
                    "require": ["iat", "exp", "iss"],
                },
            )
        except jwt.PyJWTError:
            raise _Fail(401, "A JSON web token could not be decoded") from None
        now = self.clock()
        iat, exp = claims["iat"], claims["exp"]
        if str(claims["iss"]) not in (str(self.app_id), self.client_id):
            raise _Fail(401, "'Issuer' claim ('iss') must be the App's id or client id")
        if not isinstance(iat, int) or iat > now:
            raise _Fail(
                401, "'Issued at' claim ('iat') must be an Integer representing a time in the past"
            )
        if not isinstance(exp, int) or exp <= now:
            raise _Fail(
                401,
                "'Expiration time' claim ('exp') must be a numeric value "
                "representing the future time at which the assertion expires",
            )
        if exp - now > 600 or exp - iat > 600:
            raise _Fail(401, "'Expiration time' claim ('exp') is too far in the future")

    def _authorize(self, access: int, identity: _Identity, params: dict[str, str]) -> Repo | None:
        if access == PUBLIC:
            return None
        if access in (APP, APP_REPO) and identity.kind != "app":
            raise _Fail(401, "A JSON web token could not be decoded")
        if access == INSTALLATION:
            if identity.kind == "anonymous":
                raise _Fail(401, "Requires authentication")
            if identity.kind != "installation":
                raise _Fail(403, "You must authenticate with an installation access token")
            return None
        if access == APP:
            return None
        repo, moved = self._find_repo(params)
        if access == APP_REPO:
            if moved:
                raise _Moved(repo)
            return repo
        own = identity.kind == "installation" and repo.installation == identity.installation
        allowed = own or (
            identity.kind == "pat"
            and (identity.repos is None or repo.full_name.lower() in identity.repos)
        )
        if identity.kind == "app":
            raise _Fail(403, "Resource not accessible by integration")
        if not allowed and repo.private:
            raise _Fail(404, "Not Found")
        if moved:
            raise _Moved(repo)  # only to whoever may see the repository
        if access == WRITE and not own:
            if identity.kind == "anonymous":
                raise _Fail(401, "Requires authentication")
            if identity.kind == "pat":
                raise _Fail(403, "You must authenticate via a GitHub App.")
            raise _Fail(403, "Resource not accessible by integration")
        return repo

    def _find_repo(self, params: dict[str, str]) -> tuple[Repo, bool]:
        """The repository a route names, and whether it was named by a former name."""
        moved = False
        if "repository_id" in params:
            repo = (
                self.repos.get(int(params["repository_id"]))
                if params["repository_id"].isdigit()
                else None
            )
        else:
            name = f"{params['owner']}/{params['repo']}"
            try:
                repo = self.repo(name)
            except KeyError:
                repo = self.repos.get(self._moved.get(name.lower(), -1))
                moved = repo is not None
        if repo is None:
            raise _Fail(404, "Not Found")
        return repo, moved

    def _moved_answer(
        self, request: Request, repo: Repo, rate_headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """GitHub's answer to an old name: 301 for GET, 307 for other methods (the client must
        repeat the method), to the same route under `/repositories/{id}`."""
        path = request.url.path[len(self.api_prefix) :]
        rest = path.split("/", 4)[4] if path.count("/") >= 4 else ""
        new_path = f"{self.api_prefix}/repositories/{repo.id}" + (f"/{rest}" if rest else "")
        location = str(request.url.replace(path=new_path))
        status = 301 if request.method in ("GET", "HEAD") else 307
        message = "Moved Permanently" if status == 301 else "Temporary Redirect"
        body = {
            "message": message,
            "url": location,
            "documentation_url": "https://docs.github.com/rest/guides/best-practices-for-using-the-rest-api#follow-redirects",
        }
        return status, body, {**rate_headers, "Location": location}

    def _rate(self, identity: _Identity) -> tuple[dict[str, str], bool]:
        limit = 60 if identity.kind == "anonymous" else self.rate_limit
        now = self.clock()
        reset, used = self._rates.get(identity.key, (now + 3600, 0))
        if now >= reset:
            reset, used = now + 3600, 0
        self._rates[identity.key] = (reset, used)
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(limit - used, 0)),
            "X-RateLimit-Used": str(used),
            "X-RateLimit-Reset": str(int(reset)),
            "X-RateLimit-Resource": "core",
        }
        return headers, used >= limit

    def _spend(self, identity: _Identity) -> None:
        reset, used = self._rates[identity.key]
        self._rates[identity.key] = (reset, used + 1)

    # ---- handlers: App ------------------------------------------------------------------------

    def _h_app(self, call: _Call) -> tuple:
        return 200, {
            "id": self.app_id,
            "slug": self.app_slug,
            "client_id": self.client_id,
            "name": self.app_slug,
            "owner": {"login": "octo-org"},
        }

    def _h_mint(self, call: _Call) -> tuple:
        installation = self.installations.get(_int(call.params["installation_id"]))
        if installation is None:
            raise _Fail(404, "Not Found")
        if installation.suspended:
            raise _Fail(403, "This installation has been suspended")
        token = "ghs_" + secrets.token_urlsafe(45)  # deliberately not 40 characters
        expires_at = int(self.clock()) + self.token_ttl
        self._tokens[token] = (installation.id, expires_at)
        self._issued_secrets.append(token)
        return 201, {
            "token": token,
            "expires_at": _iso(expires_at),
            "permissions": self._installation_json(installation.id)["permissions"],
            "repository_selection": installation.repository_selection,
        }

    def _h_deliveries(self, call: _Call) -> tuple:
        query = call.request.query_params
        per_page = min(_int(query.get("per_page", "30")), 100)
        newest_first = sorted(self.deliveries, key=lambda d: d["id"], reverse=True)
        if cursor := query.get("cursor"):
            before = _int(cursor.removeprefix("v1_"))
            newest_first = [d for d in newest_first if d["id"] < before]
        page = newest_first[:per_page]
        headers = {}
        if len(newest_first) > per_page:
            url = call.request.url.include_query_params(cursor=f"v1_{page[-1]['id']}")
            headers["Link"] = f'<{url}>; rel="next"'
        return 200, [dict(d) for d in page], headers

    def _h_redeliver(self, call: _Call) -> tuple:
        delivery_id = _int(call.params["delivery_id"])
        delivery = next((d for d in self.deliveries if d["id"] == delivery_id), None)
        if delivery is None:
            raise _Fail(404, "Not Found")
        hook = self._webhooks[delivery["guid"]]
        self.redelivered.append(hook)
        if self.on_redeliver is not None:
            call.background = functools.partial(self._redeliver, self.on_redeliver, hook)
        return 202, {}

    async def _redeliver(self, callback: Callable, hook: Webhook) -> None:
        """GitHub's new attempt, after the 202: `on_redeliver(hook)` posts it to the App and
        may return the status code the App answered, which the delivery log records."""
        result = callback(hook)
        if inspect.isawaitable(result):
            result = await result
        with self._lock:
            self._record_delivery(hook, result if isinstance(result, int) else 202, redelivery=True)

    def _h_conversion(self, call: _Call) -> tuple:
        manifest = self._manifest_codes.pop(call.params["code"], None)
        if manifest is None:
            raise _Fail(404, "Not Found")
        self.app_id = next(self._ids)
        self.app_slug = manifest.get("name", "guildprompts").lower().replace(" ", "-")
        self.client_id = f"Iv1.{secrets.token_hex(8)}"
        self.private_key_pem = generate_rsa_key()
        self._public_key = public_key_pem(self.private_key_pem)
        self.webhook_secret = secrets.token_hex(20)
        client_secret = secrets.token_hex(20)
        self._issued_secrets += [self.private_key_pem, self.webhook_secret, client_secret]
        now = _iso(self.clock())
        return 201, {
            "id": self.app_id,
            "slug": self.app_slug,
            "node_id": f"A_{self.app_id}",
            "name": manifest.get("name", "guildprompts"),
            "owner": {"login": "octo-org"},
            "description": manifest.get("description", ""),
            "external_url": manifest.get("url", ""),
            "html_url": f"https://github.com/apps/{self.app_slug}",
            "created_at": now,
            "updated_at": now,
            "permissions": manifest.get("default_permissions", {}),
            "events": manifest.get("default_events", []),
            "client_id": self.client_id,
            "client_secret": client_secret,
            "webhook_secret": self.webhook_secret,
            "pem": self.private_key_pem,
        }

    def _h_installation_repositories(self, call: _Call) -> tuple:
        installation_id = call.identity.installation
        assert installation_id is not None
        repos = self._installation_repos(installation_id)
        query = call.request.query_params
        per_page = min(_int(query.get("per_page", "30")), 100)
        page = max(_int(query.get("page", "1")), 1)
        chunk = repos[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(repos):
            url = call.request.url.include_query_params(page=page + 1)
            headers["Link"] = f'<{url}>; rel="next"'
        return (
            200,
            {
                "total_count": len(repos),
                "repository_selection": self.installations[installation_id].repository_selection,
                "repositories": [self._repo_json(r) for r in chunk],
            },
            headers,
        )

    def _h_repo_installation(self, call: _Call) -> tuple:
        assert call.repo is not None
        if call.repo.installation is None:
            raise _Fail(404, "Not Found")
        return 200, self._installation_json(call.repo.installation)

    # ---- handlers: content ------------------------------------------------------------------

    def _h_repository(self, call: _Call) -> tuple:
        assert call.repo is not None
        return 200, self._repo_json(call.repo)

    def _h_branch(self, call: _Call) -> tuple:
        repo, branch = call.repo, call.params["branch"]
        assert repo is not None
        if branch not in repo.branches:
            raise _Fail(404, "Branch not found")
        sha = repo.branches[branch]
        return 200, {
            "name": branch,
            "protected": False,
            "commit": {"sha": sha, "commit": {"message": repo.commits[sha]["message"]}},
        }

    def _h_ref(self, call: _Call) -> tuple:
        """One ref, named exactly (`heads/NAME` or `tags/NAME`): its object is a commit, or
        for an annotated tag the tag object (`git/tags/{sha}` leads on to the commit)."""
        repo, ref = call.repo, call.params["ref"]
        assert repo is not None
        kind, _, name = ref.partition("/")
        refs = {"heads": repo.branches, "tags": repo.tags}.get(kind, {})
        if name not in refs:
            raise _Fail(404, "Not Found")
        sha = refs[name]
        api = f"https://api.github.com/repos/{repo.full_name}/git"
        what = repo.kind_of(sha)
        return 200, {
            "ref": f"refs/{ref}",
            "node_id": f"REF_{repo.id}_{ref}",
            "url": f"{api}/refs/{ref}",
            "object": {"sha": sha, "type": what, "url": f"{api}/{what}s/{sha}"},
        }

    def _h_tag(self, call: _Call) -> tuple:
        """An annotated tag object: what it points to (a commit, or another tag object)."""
        repo, sha = call.repo, call.params["sha"]
        assert repo is not None
        tag = repo.tag_objects.get(sha)
        if tag is None:
            raise _Fail(404, "Not Found")
        api = f"https://api.github.com/repos/{repo.full_name}/git"
        return 200, {
            "node_id": f"TAG_{sha[:12]}",
            "tag": tag["tag"],
            "sha": sha,
            "url": f"{api}/tags/{sha}",
            "message": tag["message"],
            "tagger": {"name": TAGGER[0], "email": TAGGER[1], "date": _iso(tag["at"])},
            "object": {
                "sha": tag["object"],
                "type": tag["type"],
                "url": f"{api}/{tag['type']}s/{tag['object']}",
            },
            "verification": {
                "verified": False,
                "reason": "unsigned",
                "signature": None,
                "payload": None,
                "verified_at": None,
            },
        }

    def _h_tree(self, call: _Call) -> tuple:
        repo, sha = call.repo, call.params["sha"]
        assert repo is not None
        sha = repo.commit_of(sha)
        if sha in repo.commits:
            sha = repo.commits[sha]["tree"]
        if sha not in repo.trees:
            raise _Fail(404, "Not Found")
        recursive = call.request.query_params.get("recursive") not in (None, "", "0", "false")
        items = self._tree_items(repo, sha, "", recursive)
        truncated = recursive and self.tree_limit is not None and len(items) > self.tree_limit
        if truncated:
            items = items[: self.tree_limit]
        return 200, {"sha": sha, "tree": items, "truncated": truncated}

    def _tree_items(self, repo: Repo, tree_sha: str, base: str, recursive: bool) -> list[dict]:
        items = []
        for mode, name, sha in repo.trees[tree_sha]:
            item: dict[str, Any] = {"path": base + name, "sha": sha}
            if mode == "40000":
                item.update(mode="040000", type="tree")
            elif mode == "160000":
                item.update(mode=mode, type="commit")
            else:
                item.update(mode=mode, type="blob", size=len(repo.blobs[sha]))
            items.append(item)
            if recursive and mode == "40000":
                items.extend(self._tree_items(repo, sha, f"{base}{name}/", True))
        return items

    def _h_blob(self, call: _Call) -> tuple:
        repo, sha = call.repo, call.params["sha"]
        assert repo is not None
        if sha not in repo.blobs:
            raise _Fail(404, "Not Found")
        content = repo.blobs[sha]
        return 200, {
            "sha": sha,
            "node_id": f"B_{sha[:12]}",
            "size": len(content),
            "content": base64.encodebytes(content).decode(),
            "encoding": "base64",
        }

    def _h_contents(self, call: _Call) -> tuple:
        repo, path = call.repo, call.params["path"].strip("/")
        assert repo is not None
        ref = call.request.query_params.get("ref") or repo.default_branch
        commit = repo.commits.get(repo.commit_of(ref))
        if commit is None:
            raise _Fail(404, f"No commit found for the ref {ref}")
        files = repo.flatten(commit["tree"])
        if path in files and files[path][0] != "160000":
            content = repo.blobs[files[path][1]]
            kind = "symlink" if files[path][0] == "120000" else "file"
            return 200, {
                "type": kind,
                "encoding": "base64",
                "size": len(content),
                "name": path.rsplit("/", 1)[-1],
                "path": path,
                "sha": files[path][1],
                "content": base64.encodebytes(content).decode(),
            }
        listing = sorted(
            {p[len(path) + 1 :].split("/", 1)[0] for p in files if p.startswith(path + "/")}
        )
        if not listing:
            raise _Fail(404, "Not Found")
        return 200, [
            {
                "name": name,
                "path": f"{path}/{name}",
                "type": "file" if f"{path}/{name}" in files else "dir",
            }
            for name in listing
        ]

    def _h_tarball(self, call: _Call) -> tuple:
        """302 to a signed URL valid for 5 minutes, as GitHub does (the download itself is not
        an API request and needs no credentials)."""
        repo, ref = call.repo, call.params["ref"]
        assert repo is not None
        sha = repo.commit_of(ref)
        if sha not in repo.commits:
            raise _Fail(404, "Not Found")
        token = secrets.token_urlsafe(16)
        self._archives[token] = (repo.id, sha, self.clock() + ARCHIVE_URL_TTL)
        path = f"{CODELOAD_PREFIX}/{repo.full_name}/legacy.tar.gz/{sha}"
        location = str(call.request.url.replace(path=path, query=f"token={token}"))
        return 302, {}, {"Location": location}

    def _codeload(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        archive = self._archives.get(token)
        if archive is None or self.clock() >= archive[2] or archive[0] not in self.repos:
            return Response(b"404: Not Found", status_code=404, media_type="text/plain")
        repo = self.repos[archive[0]]
        return Response(
            _tarball(repo, archive[1]),
            status_code=200,
            media_type="application/x-gzip",
            headers={
                "Content-Disposition": f"attachment; filename={repo.name}-{archive[1][:7]}.tar.gz"
            },
        )

    # ---- handlers: check runs ---------------------------------------------------------------

    def _h_create_check_run(self, call: _Call) -> tuple:
        repo, data = call.repo, call.json()
        assert repo is not None
        if not isinstance(data.get("name"), str) or not data["name"]:
            raise _Fail(422, 'Invalid request.\n\n"name" wasn\'t supplied.')
        if data.get("head_sha") not in repo.commits:
            raise _Fail(422, f"No commit found for SHA: {data.get('head_sha')}")
        run_id = next(self._ids)
        run: dict[str, Any] = {
            "id": run_id,
            "repository_id": repo.id,
            "name": data["name"],
            "head_sha": data["head_sha"],
            "status": "queued",
            "conclusion": None,
            "started_at": _iso(self.clock()),
            "completed_at": None,
            "external_id": data.get("external_id", ""),
            "details_url": data.get("details_url"),
            "html_url": f"https://github.com/{repo.full_name}/runs/{run_id}",
            "output": {"title": None, "summary": None, "text": None, "annotations_count": 0},
            "app": {"id": self.app_id, "slug": self.app_slug},
            "annotations": [],
        }
        self._apply_check_run(run, data)
        self.check_runs[run_id] = run
        return 201, _public_run(run)

    def _h_update_check_run(self, call: _Call) -> tuple:
        run = self._run(call)
        self._apply_check_run(run, call.json())
        return 200, _public_run(run)

    def _h_check_run(self, call: _Call) -> tuple:
        return 200, _public_run(self._run(call))

    def _h_annotations(self, call: _Call) -> tuple:
        return 200, self._run(call)["annotations"]

    def _run(self, call: _Call) -> dict[str, Any]:
        run = self.check_runs.get(_int(call.params["check_run_id"]))
        if run is None or call.repo is None or run["repository_id"] != call.repo.id:
            raise _Fail(404, "Not Found")
        return run

    def _apply_check_run(self, run: dict[str, Any], data: dict[str, Any]) -> None:
        """Validate everything first (GitHub rejects the whole request), then apply."""
        status = data.get("status", run["status"])
        conclusion = data.get("conclusion", run["conclusion"])
        if data.get("conclusion") is not None:
            status = "completed"
        if status not in ("queued", "in_progress", "completed"):
            raise _Fail(422, f"Invalid request.\n\n{status!r} is not a valid status.")
        if status == "completed" and conclusion not in (
            "action_required",
            "cancelled",
            "failure",
            "neutral",
            "success",
            "skipped",
            "stale",
            "timed_out",
        ):
            raise _Fail(422, "Invalid request.\n\nA completed check run needs a conclusion.")
        output = data.get("output")
        annotations: list[dict[str, Any]] = []
        if output is not None:
            annotations = _check_output(output)
        run["name"] = data.get("name", run["name"])
        run["status"], run["conclusion"] = status, conclusion if status == "completed" else None
        if status == "completed" and run["completed_at"] is None:
            run["completed_at"] = data.get("completed_at") or _iso(self.clock())
        if output is not None:
            run["output"].update(
                title=output["title"], summary=output["summary"], text=output.get("text")
            )
            run["annotations"].extend(annotations)
            run["output"]["annotations_count"] = len(run["annotations"])


def _check_output(output: Any) -> list[dict[str, Any]]:
    """GitHub's limits on a check run's output: title and summary required, summary and text at
    most 65,535 characters, at most 50 annotations per request, each well-formed."""
    if not isinstance(output, dict):
        raise _Fail(422, "Invalid request.\n\nFor 'output', it is not an object.")
    for key in ("title", "summary"):
        if not isinstance(output.get(key), str):
            raise _Fail(422, f'Invalid request.\n\n"{key}" wasn\'t supplied.')
    for key in ("summary", "text"):
        if len(output.get(key) or "") > SUMMARY_LIMIT:
            raise _Fail(
                422,
                f"Invalid request.\n\nOnly {SUMMARY_LIMIT} characters are allowed "
                f"in '{key}'; you sent {len(output[key])}.",
            )
    annotations = output.get("annotations") or []
    if len(annotations) > ANNOTATIONS_PER_REQUEST:
        raise _Fail(
            422,
            f"Invalid request.\n\nOnly {ANNOTATIONS_PER_REQUEST} annotations are "
            f"allowed per request; you sent {len(annotations)}.",
        )
    for note in annotations:
        missing = [
            k
            for k in ("path", "start_line", "end_line", "annotation_level", "message")
            if note.get(k) in (None, "")
        ]
        if missing:
            raise _Fail(422, f"Invalid request.\n\nAnnotation is missing {', '.join(missing)}.")
        if note["annotation_level"] not in ("notice", "warning", "failure"):
            raise _Fail(
                422, "Invalid request.\n\nannotation_level must be notice, warning or failure."
            )
        if not (
            isinstance(note["start_line"], int)
            and isinstance(note["end_line"], int)
            and 1 <= note["start_line"] <= note["end_line"]
        ):
            raise _Fail(422, "Invalid request.\n\nstart_line and end_line must be lines, in order.")
        has_columns = "start_column" in note or "end_column" in note
        if has_columns and note["start_line"] != note["end_line"]:
            raise _Fail(
                422,
                "Invalid request.\n\nAnnotations only support start_column and "
                "end_column on the same line.",
            )
    return [dict(note) for note in annotations]


def _tarball(repo: Repo, sha: str) -> bytes:
    """The commit as GitHub's tarball: one top folder `owner-name-sha7/`, regular files with
    their mode, symbolic links as links, submodules as empty folders."""
    top = f"{repo.owner}-{repo.name}-{sha[:7]}"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        root = tarfile.TarInfo(top + "/")
        root.type, root.mode = tarfile.DIRTYPE, 0o775
        archive.addfile(root)
        for path, (mode, blob) in sorted(repo.flatten(repo.commits[sha]["tree"]).items()):
            info = tarfile.TarInfo(f"{top}/{path}")
            if mode == "160000":
                info.type, info.mode = tarfile.DIRTYPE, 0o775
                archive.addfile(info)
            elif mode == "120000":
                info.type, info.linkname = tarfile.SYMTYPE, repo.blobs[blob].decode()
                archive.addfile(info)
            else:
                content = repo.blobs[blob]
                info.size, info.mode = len(content), 0o775 if mode == "100755" else 0o664
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _public_run(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k not in ("annotations", "repository_id")}


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _Fail(404, "Not Found") from None


def _error_body(fail: _Fail) -> dict[str, Any]:
    return {"message": fail.message, "documentation_url": DOCS, "status": str(fail.status)}


def _json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, sort_keys=True).encode()
    response = Response(
        body, status_code=status, headers=headers, media_type="application/json; charset=utf-8"
    )
    if status == 200:
        response.headers["ETag"] = f'W/"{hashlib.sha256(body).hexdigest()[:40]}"'
    return response
