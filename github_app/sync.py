"""Sync: a commit of a prompt repository -> immutable snapshot -> validation -> activation.

Every way a commit reaches guildprompts (a push, the reconcile loop, a new binding, a pull
request or a check rerun) goes through `sync`, so there is one place that decides what guilds
are served. The branch's active snapshot is the last known good one: a commit that fails
validation is stored and reported but never served, and an activation never moves the pointer
to an older head (`branches.activate` compares head times), whatever order deliveries arrive in.

Cost is bounded by what changed: the tree is listed once (the client walks truncated trees),
only the blobs not stored yet are downloaded (a bounded number at a time, oversized ones refused
by the tree's size before any download), and a commit already snapshotted costs no content
request at all. A push changing k prompt files costs at most k + 4 requests with a warm token:
the tree, k blobs, and the check run's create and complete.

At-least-once delivery is safe: snapshots are keyed by commit, the activation is idempotent,
statuses are written only when they change, and a check run already completed on a commit is
not posted again (a rerun request posts a new one; one left `in_progress` by a failed attempt is
completed). Errors:
- access problems (the installation is gone, a token is refused, the repository is unreadable)
  end the sync normally: the outcome and the bindings' statuses say why;
- transient GitHub errors (`TransientError`, `RateLimited`) and database errors propagate, so
  the worker retries the delivery later; a retry redoes only what is missing.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio.to_thread
from sqlalchemy.orm import Session

import promptrepo
from github_app import checks, metrics
from github_app.github import (
    NOT_MODIFIED,
    GitHubError,
    InstallationUnavailable,
    NotFound,
    RateLimited,
    TransientError,
    TreeEntry,
    Unauthorized,
)
from github_app.logs import log_context
from github_app.runtime import Runtime
from github_app.secrets import Vault
from github_app.store import (
    audit,
    bindings,
    branches,
    checkruns,
    installations,
    serving,
    snapshots,
)
from github_app.store.errors import ConcurrentUpdateError
from github_app.store.models import (
    UNCHANGED,
    BindingState,
    BranchStatus,
    GuildBinding,
    PendingBinding,
    Repository,
    TrackedBranch,
    utcnow,
)
from promptrepo import Diagnostic, PromptRepository, RepositoryError

log = logging.getLogger(__name__)

TRIGGERS = frozenset({
    "push", "reconcile", "bind", "refresh", "access-restored", "pull_request", "check_suite",
    "check_run",
})
RERUN_TRIGGERS = frozenset({"check_suite", "check_run"})  # a person asked for a new check run
ACTOR = "guildprompts-sync"  # the audit log's actor for promotions made by a sync
PATH_FILE = "PATH"
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")


@dataclass(frozen=True)
class SyncRequest:
    """One commit (or a branch's current head, when `sha` is None) to bring in."""

    repository_id: int
    full_name: str
    branch: str | None  # None: the repository's default branch
    sha: str | None  # None: resolve the branch head (conditional request)
    trigger: str  # one of TRIGGERS
    installation_id: int | None = None
    token: str | None = field(default=None, repr=False)  # PAT when the App has no access
    head_at: datetime | None = None  # pushed_at from the payload, or when the head was seen
    activate: bool = True  # tracked branch: may become the active snapshot
    check_run: bool = True  # post a `guildprompts` check run on the sha
    received_at: datetime | None = None  # webhook receipt time, for the push-to-live metric

    def __post_init__(self) -> None:
        if self.trigger not in TRIGGERS:
            expected = ", ".join(sorted(TRIGGERS))
            raise ValueError(f"unknown sync trigger {self.trigger!r} (expected one of {expected})")
        if self.sha is not None and not _SHA.fullmatch(self.sha):
            raise ValueError(f"sync: {self.sha[:80]!r} is not a commit sha (40 or 64 hex digits)")
        if isinstance(self.repository_id, bool) or not isinstance(self.repository_id, int) \
                or self.repository_id <= 0:
            raise ValueError(f"sync: repository_id must be a positive integer, "
                             f"got {self.repository_id!r}")
        if self.installation_id is not None and self.token is not None:
            raise ValueError("sync: give installation_id or token, not both")


@dataclass(frozen=True)
class SyncOutcome:
    """What a sync did; `message` is the one line for logs and statuses."""

    sha: str | None
    snapshot_id: int | None
    valid: bool | None  # None: nothing was validated (no access, no PATH, branch gone)
    activated: bool
    diagnostics: tuple[Diagnostic, ...]
    message: str
    api_calls: int
    files_fetched: int


async def sync(runtime: Runtime, request: SyncRequest) -> SyncOutcome:
    """Bring one commit in: snapshot, validate, activate if valid, tracked and newer.

    See the module docstring for what is retried and what is reported.
    """
    run = _Run(runtime, request)
    with log_context(repository=request.full_name):
        try:
            return await run.execute()
        except GitHubError as exc:
            await run.failed(exc)
            raise


# ---- what a sync knows and decides --------------------------------------------------------


@dataclass(frozen=True)
class _Access:
    """The credentials a sync reads with."""

    kind: str  # "installation", "token" or "anonymous"
    installation_id: int | None = None
    token: str | None = field(default=None, repr=False)

    @property
    def kwargs(self) -> dict[str, Any]:
        if self.installation_id is not None:
            return {"installation_id": self.installation_id}
        return {"token": self.token} if self.token is not None else {}


@dataclass(frozen=True)
class _RepoState:
    """The repository and the branch as stored before the sync."""

    private: bool
    default_branch: str
    installation_id: int | None  # an installation that can read it (not suspended)
    token: str | None = field(repr=False)  # a guild's token for it
    active_sha: str | None
    latest_sha: str | None
    etag: str | None


@dataclass(frozen=True)
class _Stored:
    """A commit already snapshotted, and whether a check run must be posted on it."""

    snapshot_id: int | None
    diagnostics: tuple[Diagnostic, ...]
    files: Mapping[str, bytes]
    post_check: bool
    open_check_run: int | None  # a run left in progress by a failed attempt


@dataclass(frozen=True)
class _Validation:
    diagnostics: tuple[Diagnostic, ...]
    repository: PromptRepository | None
    load_error: str

    @property
    def errors(self) -> int:
        return sum(1 for item in self.diagnostics if item.severity == "error")

    @property
    def valid(self) -> bool:
        return self.errors == 0


@dataclass(frozen=True)
class _Snapshot:
    """What the transaction records: blobs to store and the snapshot's file list."""

    sha: str
    blob_ids: Mapping[str, str]  # path -> blob sha
    downloaded: Mapping[str, bytes]  # blob sha -> content, new
    validation: _Validation


@dataclass(frozen=True)
class _Recorded:
    snapshot_id: int
    activated: bool
    live_sha: str | None
    superseded: bool  # a later head of the branch was already seen
    generation: int | None  # set when what guilds are served (or their status) changed
    serving: tuple[str, ...]
    pending: tuple[str, ...]


@dataclass
class _Run:
    runtime: Runtime
    request: SyncRequest
    api_calls: int = 0
    files_fetched: int = 0
    started: float = field(default_factory=time.monotonic)
    branch: str | None = None
    sha: str | None = None
    access: _Access | None = None

    @property
    def repo_id(self) -> int:
        return self.request.repository_id

    async def execute(self) -> SyncOutcome:
        request = self.request
        state = await self.runtime.run_db(
            _read_repository, self.runtime.vault, self.repo_id, request.branch
        )
        if state is None:
            try:
                state = await self._discover()
            except GitHubError as exc:
                if not _is_access_problem(exc):
                    raise
                return await self._access_lost(exc, _Access(*_requested(request)))
        # A commit checked without a branch (a fork's pull request) stays branchless.
        needs_branch = request.activate or request.sha is None
        self.branch = request.branch or (state.default_branch if needs_branch else None)
        self.access = _choose_access(request, state)
        if self.access is None:
            message = (f"guildprompts cannot read {request.full_name}: install the GitHub App on "
                       "it, or give a personal access token when binding")
            return await self._access_lost(None, _Access("anonymous"), message)
        try:
            return await self._sync_commit(state)
        except GitHubError as exc:
            if not _is_access_problem(exc):
                raise
            if isinstance(exc, NotFound) and await self._readable():
                return await self._missing(state)
            return await self._access_lost(exc, self.access)

    async def _sync_commit(self, state: _RepoState) -> SyncOutcome:
        request, access = self.request, self.access
        assert access is not None
        etag = None
        sha = request.sha
        if sha is None:
            sha, etag = await self._head(state)
        self.sha = sha
        stored = await self.runtime.run_db(
            _read_commit, self.repo_id, sha, request.trigger,
            can_check=request.check_run and access.installation_id is not None,
        )
        check_run_id = None
        if stored.snapshot_id is not None:
            validation = await _to_thread(_analyse, stored.files, stored.diagnostics)
            snapshot = _Snapshot(sha, {}, {}, validation)
            if stored.post_check:
                check_run_id = await self._start_check(stored)
        else:
            entries = await self._call(self.runtime.github.get_tree(
                self.repo_id, sha, **access.kwargs))
            if not request.activate and not any(e.path == PATH_FILE for e in entries):
                return await self._finish(
                    "skipped", sha, None, False, (),
                    f"{sha[:7]} has no PATH file: not a prompt repository, nothing to check",
                )
            if stored.post_check:
                check_run_id = await self._start_check(stored)
            snapshot = await self._fetch(sha, entries)
        recorded = await self.runtime.run_db(
            _record, self.runtime.vault, self.repo_id, self.branch, snapshot,
            activate=request.activate, head_at=_aware(request.head_at) or utcnow(),
            etag=etag, full_name=request.full_name,
        )
        if recorded.generation is not None:
            await self.runtime.announce_activation(recorded.generation)
        if recorded.activated and request.received_at is not None:
            waited = (utcnow() - _aware(request.received_at)).total_seconds()
            metrics.observe_push_to_live(max(waited, 0.0))
        if check_run_id is not None:
            await self._complete_check(check_run_id, snapshot, recorded)
        validation = snapshot.validation
        label, message = _describe(request, self.branch, sha, validation, recorded)
        return await self._finish(label, sha, recorded.snapshot_id, recorded.activated,
                                  validation.diagnostics, message, valid=validation.valid)

    # ---- GitHub ---------------------------------------------------------------------------

    async def _call(self, awaitable: Any) -> Any:
        """One request of this sync (counted for the sync log)."""
        self.api_calls += 1
        return await awaitable

    async def _discover(self) -> _RepoState:
        """A repository never seen before: ask GitHub what it is and remember it."""
        request = self.request
        access = _Access(*_requested(request))
        data = await self._call(self.runtime.github.get_repository(self.repo_id, **access.kwargs))
        await self.runtime.run_db(
            _remember_repository, self.repo_id, data, request.full_name, access.installation_id
        )
        state = await self.runtime.run_db(
            _read_repository, self.runtime.vault, self.repo_id, request.branch
        )
        assert state is not None
        return state

    async def _head(self, state: _RepoState) -> tuple[str, str | None]:
        """The branch head, with the stored ETag (a 304 costs no rate limit)."""
        assert self.access is not None and self.branch is not None
        github = self.runtime.github
        etag = state.etag if state.latest_sha else None
        answer = await self._call(github.get_branch_head(
            self.repo_id, self.branch, etag=etag, **self.access.kwargs))
        if answer is NOT_MODIFIED:
            assert state.latest_sha is not None
            return state.latest_sha, None
        sha, new_etag = answer
        return sha, new_etag

    async def _readable(self) -> bool:
        """After a 404: is the repository itself still readable (then the commit is gone)?"""
        assert self.access is not None
        try:
            await self._call(self.runtime.github.get_repository(
                self.repo_id, **self.access.kwargs))
        except GitHubError as exc:
            if _is_access_problem(exc):
                return False
            raise
        return True

    async def _fetch(self, sha: str, entries: Sequence[TreeEntry]) -> _Snapshot:
        """Download the missing blobs of the repository files, then validate."""
        settings = self.runtime.settings
        wanted, tree_diagnostics = _select(entries, settings.max_prompt_file_size)
        if PATH_FILE not in wanted:
            wanted = {}  # not a usable prompt repository: `path-missing` needs no download
        missing = await self.runtime.run_db(snapshots.missing_blobs, set(wanted.values()))
        downloaded = await self._download(sorted(missing))
        self.files_fetched = len(downloaded)
        present = set(wanted.values()) - set(downloaded)
        contents = dict(downloaded)
        if present:
            contents.update(await self.runtime.run_db(snapshots.load_blobs, present))
        files = {path: contents[blob] for path, blob in wanted.items()}
        validation = await _to_thread(
            _validate, files, tree_diagnostics, settings.strict_validation,
            settings.max_prompt_file_size,
        )
        return _Snapshot(sha, wanted, downloaded, validation)

    async def _download(self, shas: Sequence[str]) -> dict[str, bytes]:
        assert self.access is not None
        limit = asyncio.Semaphore(self.runtime.settings.sync_concurrency)
        kwargs = self.access.kwargs

        async def fetch(blob: str) -> tuple[str, bytes]:
            async with limit:
                content = await self._call(self.runtime.github.get_blob(
                    self.repo_id, blob, **kwargs))
                return blob, content

        tasks = [asyncio.ensure_future(fetch(blob)) for blob in shas]
        try:
            return dict(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    # ---- check runs -----------------------------------------------------------------------

    async def _start_check(self, stored: _Stored) -> int | None:
        if stored.open_check_run is not None:
            return stored.open_check_run
        assert self.access is not None and self.access.installation_id is not None
        assert self.sha is not None
        try:
            run_id = await self._call(checks.start_check_run(
                self.runtime, self.repo_id, self.sha, self.access.installation_id))
        except GitHubError as exc:
            if isinstance(exc, TransientError | RateLimited):
                raise
            log.warning("could not create the check run on %s: %s", self.sha[:7], exc)
            return None
        return int(run_id)

    async def _complete_check(
        self, check_run_id: int, snapshot: _Snapshot, recorded: _Recorded
    ) -> None:
        assert self.access is not None and self.access.installation_id is not None
        validation = snapshot.validation
        report = checks.CheckReport(
            sha=snapshot.sha,
            diagnostics=validation.diagnostics,
            repository=validation.repository,
            load_error=validation.load_error,
            branch=self.branch,
            tracked=self.request.activate,
            activated=recorded.activated,
            live_sha=recorded.live_sha,
            superseded=recorded.superseded,
            serving=recorded.serving,
            pending=recorded.pending,
        )
        output = await _to_thread(checks.render_output, report)
        try:
            self.api_calls += await checks.finish_check_run(
                self.runtime, self.repo_id, check_run_id, self.access.installation_id, output
            )
        except GitHubError as exc:
            if isinstance(exc, TransientError | RateLimited):
                raise
            log.warning("could not complete check run %s: %s", check_run_id, exc)

    # ---- endings --------------------------------------------------------------------------

    async def _access_lost(
        self, exc: GitHubError | None, access: _Access, message: str | None = None
    ) -> SyncOutcome:
        message = message or _access_message(exc, access, self.request.full_name)
        generation = await self.runtime.run_db(
            _record_access_problem, self.runtime.vault, self.repo_id, self.request.full_name,
            self.branch if self.request.activate else None, message, access,
        )
        if generation is not None:
            await self.runtime.announce_activation(generation)
        return await self._finish("no_access", self.sha, None, False, (), message)

    async def _missing(self, state: _RepoState) -> SyncOutcome:
        """The repository is readable but the commit (or the branch) is not there any more."""
        if self.sha is not None:
            message = (f"commit {self.sha[:7]} no longer exists on GitHub "
                       "(force-pushed away?): nothing to sync")
            return await self._finish("gone", self.sha, None, False, (), message)
        serving_now = state.active_sha[:7] if state.active_sha else "the built-in defaults"
        message = f"branch {self.branch} no longer exists on GitHub: serving {serving_now}"
        if self.request.activate:
            generation = await self.runtime.run_db(
                _record_branch_status, self.repo_id, self.branch, BranchStatus.DELETED, message
            )
            if generation is not None:
                await self.runtime.announce_activation(generation)
        return await self._finish("gone", None, None, False, (), message)

    async def failed(self, exc: GitHubError) -> None:
        """A GitHub error raised to the worker: keep a trace in the sync log and metrics. One
        that retrying will not fix (not transient) also becomes the branch's status."""
        message = f"syncing failed: {exc}"
        try:
            if self.request.activate and self.branch is not None \
                    and not isinstance(exc, TransientError | RateLimited):
                generation = await self.runtime.run_db(
                    _record_branch_status, self.repo_id, self.branch, BranchStatus.ERROR, message
                )
                if generation is not None:
                    await self.runtime.announce_activation(generation)
            await self._log("failed", message)
        except Exception:
            log.exception("could not record the failed sync of %s", self.request.full_name)

    async def _finish(
        self,
        label: str,
        sha: str | None,
        snapshot_id: int | None,
        activated: bool,
        diagnostics: tuple[Diagnostic, ...],
        message: str,
        *,
        valid: bool | None = None,
    ) -> SyncOutcome:
        await self._log(label, message, sha)
        log.info("sync %s of %s@%s: %s", label, self.request.full_name, self.branch, message)
        return SyncOutcome(sha, snapshot_id, valid, activated, diagnostics, message,
                           self.api_calls, self.files_fetched)

    async def _log(self, label: str, message: str, sha: str | None = None) -> None:
        duration_ms = int((time.monotonic() - self.started) * 1000)
        await self.runtime.run_db(
            _record_sync_log, self.repo_id, trigger=self.request.trigger, outcome=label,
            commit_sha=sha or self.sha, branch=self.branch, files_fetched=self.files_fetched,
            api_calls=self.api_calls, duration_ms=duration_ms, message=message[:2000],
        )
        metrics.record_sync(label, self.request.trigger)


# ---- pure helpers -------------------------------------------------------------------------


def _requested(request: SyncRequest) -> tuple[str, int | None, str | None]:
    if request.installation_id is not None:
        return "installation", request.installation_id, None
    if request.token is not None:
        return "token", None, request.token
    return "anonymous", None, None


def _choose_access(request: SyncRequest, state: _RepoState) -> _Access | None:
    """The request's credentials, else the stored installation, a guild's token, or none for
    a public repository; None when nothing can read it."""
    kind, installation_id, token = _requested(request)
    if kind != "anonymous":
        return _Access(kind, installation_id, token)
    if state.installation_id is not None:
        return _Access("installation", state.installation_id)
    if state.token is not None:
        return _Access("token", token=state.token)
    return None if state.private else _Access("anonymous")


def _is_access_problem(exc: GitHubError) -> bool:
    if isinstance(exc, TransientError | RateLimited):
        return False
    return isinstance(exc, InstallationUnavailable | Unauthorized | NotFound) or exc.status == 403


def _access_message(exc: GitHubError | None, access: _Access, full_name: str) -> str:
    if isinstance(exc, InstallationUnavailable):
        return (f"the GitHub App cannot read {full_name} any more (uninstalled or suspended): "
                "install it again, or give a personal access token")
    if access.kind == "token":
        return (f"the personal access token for {full_name} was refused or cannot read it "
                "(expired, revoked or missing the contents permission): set a new token")
    if isinstance(exc, NotFound) or exc is None:
        return (f"{full_name} cannot be read: it was deleted, or the GitHub App no longer has "
                "access to it")
    return f"GitHub refused to let guildprompts read {full_name}: {exc.message}"


def _select(
    entries: Sequence[TreeEntry], max_size: int
) -> tuple[dict[str, str], list[Diagnostic]]:
    """The repository files to snapshot (path -> blob sha) and what the tree itself breaks."""
    wanted: dict[str, str] = {}
    found: list[Diagnostic] = []
    for entry in entries:
        if entry.is_submodule and _visible(entry.path):
            found.append(_diagnostic(
                entry.path, "submodule-ignored", "warning",
                f"{entry.path} is a submodule: guildprompts never follows submodules",
                "Copy the prompts into this repository instead of a submodule.",
            ))
        if entry.type != "blob" or not promptrepo.is_repository_file(entry.path):
            continue
        if entry.is_symlink:
            found.append(_diagnostic(
                entry.path, "symlink-ignored", "warning",
                f"{entry.path} is a symbolic link: guildprompts never follows links, so this "
                "path does not exist for routes",
                "Replace the link with a copy of the file (or point the route at the target).",
            ))
        elif entry.size is not None and entry.size > max_size:
            found.append(_diagnostic(
                entry.path, "file-too-large", "error",
                f"{entry.path} is {entry.size} bytes, over the limit of {max_size} bytes: "
                "it was not downloaded",
                "Split the prompt into smaller files joined with `includes:` (v2), or shorten "
                "it.",
            ))
        else:
            wanted[entry.path] = entry.sha.lower()
    return wanted, found


def _visible(path: str) -> bool:
    return all(part and not part.startswith(".") for part in path.split("/"))


def _diagnostic(path: str, code: str, severity: Any, message: str, hint: str) -> Diagnostic:
    return Diagnostic(path=path, line=None, column=None, severity=severity, code=code,
                      message=message, hint=hint)


def _validate(
    files: Mapping[str, bytes], extra: Sequence[Diagnostic], strict: bool, max_size: int
) -> _Validation:
    found = promptrepo.validate(files, strict=strict, max_file_size=max_size)
    diagnostics = tuple(sorted([*found, *extra], key=Diagnostic.sort_key))
    return _analyse(files, diagnostics)


def _analyse(files: Mapping[str, bytes], diagnostics: tuple[Diagnostic, ...]) -> _Validation:
    """The parsed repository next to its diagnostics (for allowed_guilds and the preview)."""
    try:
        return _Validation(diagnostics, promptrepo.load_repository(files), "")
    except RepositoryError as exc:
        return _Validation(diagnostics, None, str(exc))


def _describe(
    request: SyncRequest, branch: str | None, sha: str, validation: _Validation,
    recorded: _Recorded,
) -> tuple[str, str]:
    """The outcome label (metrics, sync log) and message of a sync that read the commit."""
    short = sha[:7]
    if not request.activate or branch is None:
        errors = _plural(validation.errors, "error")
        verdict = "valid" if validation.valid else f"rejected: {errors}"
        return "checked", f"{short}{f' on {branch}' if branch else ''} checked: {verdict}"
    if recorded.superseded:
        live = recorded.live_sha[:7] if recorded.live_sha else "nothing"
        return "stale", f"{short} is older than the head already seen on {branch} " \
                        f"(serving {live}): not activated"
    if not validation.valid:
        return "rejected", _rejected_message(recorded.live_sha, sha, validation.errors)
    if recorded.activated:
        return "activated", f"{short} is now live on {branch}"
    return "unchanged", f"{short} is already live on {branch}"


def _rejected_message(live_sha: str | None, sha: str, errors: int) -> str:
    live = live_sha[:7] if live_sha else "the built-in defaults"
    return f"serving {live}, {sha[:7]} rejected: {_plural(errors, 'error')}"


def _serving_message(sha: str, diagnostics: Sequence[Diagnostic]) -> str:
    warnings = sum(1 for item in diagnostics if item.severity == "warning")
    return f"serving {sha[:7]}" + (f" ({_plural(warnings, 'warning')})" if warnings else "")


def _private_message(guild_id: str) -> str:
    return f'this repository is private: add "{guild_id}" to allowed_guilds in PATH'


def _first_error(diagnostics: Sequence[Diagnostic]) -> str:
    for item in diagnostics:
        if item.severity == "error":
            where = item.path + (f":{item.line}" if item.line else "")
            return f"{where}: {item.message}"
    return ""


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


async def _to_thread(fn: Any, *args: Any) -> Any:
    """CPU work (validation, rendering) off the event loop."""
    return await anyio.to_thread.run_sync(partial(fn, *args))


# ---- database work (each function runs in one transaction, in a thread) --------------------


def _read_repository(
    session: Session, vault: Vault, repository_id: int, branch: str | None
) -> _RepoState | None:
    repository = installations.get_repository(session, repository_id)
    if repository is None:
        return None
    installation_id = (
        repository.installation_id
        if installations.has_app_access(session, repository_id) else None
    )
    token = (bindings.repository_token(session, vault, repository_id)
             if installation_id is None else None)
    tracked = branches.get_branch(session, repository_id, branch or repository.default_branch)
    return _RepoState(
        private=repository.private,
        default_branch=repository.default_branch,
        installation_id=installation_id,
        token=token,
        active_sha=_active_sha(session, tracked),
        latest_sha=tracked.latest_sha if tracked is not None else None,
        etag=tracked.etag if tracked is not None else None,
    )


def _remember_repository(
    session: Session,
    repository_id: int,
    data: Mapping[str, Any],
    full_name: str,
    installation_id: int | None,
) -> None:
    known = installation_id is not None and installations.get_installation(
        session, installation_id) is not None
    installations.upsert_repository(
        session, repository_id, str(data.get("full_name") or full_name),
        private=bool(data.get("private", True)),
        default_branch=str(data.get("default_branch") or "main"),
        installation_id=installation_id if known else UNCHANGED,
    )


def _read_commit(
    session: Session, repository_id: int, sha: str, trigger: str, *, can_check: bool
) -> _Stored:
    snapshot = snapshots.find_snapshot(session, repository_id, sha)
    post, open_run = False, None
    if can_check:
        runs = checkruns.check_runs_for(session, repository_id, sha)
        completed = any(run.status == "completed" for run in runs)
        post = trigger in RERUN_TRIGGERS or not completed
        open_run = next(
            (run.check_run_id for run in reversed(runs) if run.status != "completed"), None
        )
    if snapshot is None:
        return _Stored(None, (), {}, post, open_run)
    return _Stored(
        snapshot.id,
        tuple(_diagnostics_from(snapshot.diagnostics)),
        snapshots.snapshot_files(session, snapshot.id),
        post,
        open_run,
    )


def _diagnostics_from(stored: Iterable[Mapping[str, Any]]) -> Iterable[Diagnostic]:
    for item in stored:
        try:
            yield Diagnostic(**item)
        except TypeError:
            log.warning("skipping a stored diagnostic of an unknown shape: %r", item)


def _active_sha(session: Session, tracked: TrackedBranch | None) -> str | None:
    if tracked is None or tracked.active_snapshot_id is None:
        return None
    snapshot = snapshots.get_snapshot(session, tracked.active_snapshot_id)
    return snapshot.commit_sha if snapshot is not None else None


def _record(
    session: Session,
    vault: Vault,
    repository_id: int,
    branch: str | None,
    snapshot: _Snapshot,
    *,
    activate: bool,
    head_at: datetime,
    etag: str | None,
    full_name: str,
) -> _Recorded:
    """Store the snapshot, then (tracked branch) activate it and update every status: one
    transaction, so guilds never see a half-applied sync."""
    now = utcnow()
    validation = snapshot.validation
    snapshots.store_blobs(session, snapshot.downloaded, now)
    row = snapshots.create_snapshot(
        session, repository_id, snapshot.sha, snapshot.blob_ids, valid=validation.valid,
        diagnostics=[item.to_dict() for item in validation.diagnostics], now=now,
    )
    if not activate or branch is None:
        following = serving.guilds_for_branch(session, repository_id, branch) if branch else []
        return _Recorded(row.id, False, None, False, None, tuple(following), ())
    repository = installations.get_repository(session, repository_id)
    assert repository is not None
    before = branches.get_branch(session, repository_id, branch)
    status_before = (before.status, before.status_message) if before is not None else None
    active_sha = _active_sha(session, before)
    if etag is not None:
        branches.set_etag(session, repository_id, branch, etag)
    latest = branches.note_head(session, repository_id, branch, snapshot.sha, head_at) or (
        before is not None and before.latest_sha == snapshot.sha
    )
    activated = False
    live_sha = active_sha
    changed = False
    if latest and validation.valid and active_sha != snapshot.sha:
        activated = branches.activate(session, repository_id, branch, row.id, head_at, now)
        latest = activated
        live_sha = snapshot.sha if activated else active_sha
        changed = activated
    if latest:
        if validation.valid:
            status, message = BranchStatus.OK, _serving_message(snapshot.sha,
                                                                validation.diagnostics)
        else:
            status = BranchStatus.REJECTED
            message = _rejected_message(active_sha, snapshot.sha, validation.errors)
        branches.set_branch_status(
            session, repository_id, branch, status, message,
            diagnostics=[item.to_dict() for item in validation.diagnostics], synced_at=now,
        )
        changed = _bindings_follow(session, repository, branch, validation, message) or changed
        changed = _settle_pending(session, repository, branch, snapshot, full_name) or changed
        if status_before != (status.value, message):
            changed = True
            branches.bump_generation(session)
    return _Recorded(
        snapshot_id=row.id,
        activated=activated,
        live_sha=live_sha,
        superseded=not latest,
        generation=branches.current_generation(session) if changed else None,
        serving=tuple(serving.guilds_for_branch(session, repository_id, branch)),
        pending=tuple(serving.guilds_for_branch(session, repository_id, branch, pending=True)),
    )


def _follows(binding: GuildBinding | PendingBinding, repository: Repository, branch: str) -> bool:
    return (binding.branch or repository.default_branch) == branch


def _allowed(binding: GuildBinding | PendingBinding, repository: Repository,
             allowed_guilds: Sequence[str]) -> bool:
    """May this guild read the repository? Public, listed in PATH, or it gave its own token."""
    return (not repository.private or binding.guild_id in allowed_guilds
            or binding.token_ciphertext is not None)


def _bindings_follow(
    session: Session, repository: Repository, branch: str, validation: _Validation, message: str
) -> bool:
    """Live bindings on the branch: the sync's status; with a valid commit, access is checked
    against its allowed_guilds again (the owner may have removed a guild). True if changed."""
    changed = False
    repo = validation.repository
    for binding in bindings.bindings_for_repository(session, repository_id=repository.id):
        if not _follows(binding, repository, branch):
            continue
        if repo is not None and validation.valid:
            if _allowed(binding, repository, repo.allowed_guilds):
                wanted = (BindingState.ACTIVE.value, message)
            else:
                wanted = (BindingState.NO_ACCESS.value, _private_message(binding.guild_id))
        elif binding.state == BindingState.ACTIVE:
            wanted = (BindingState.ACTIVE.value, message)
        else:
            continue
        if (binding.state, binding.status_message) != wanted:
            bindings.set_binding_state(session, binding.guild_id, BindingState(wanted[0]),
                                       wanted[1])
            changed = True
    return changed


def _settle_pending(
    session: Session, repository: Repository, branch: str, snapshot: _Snapshot, full_name: str
) -> bool:
    """Promote the pending requests on this branch that may read it; tell the others why not.
    True if a binding went live."""
    validation = snapshot.validation
    promoted = False
    pending = bindings.pending_for_repository(
        session, repository_id=repository.id, full_name=full_name
    )
    for request in pending:
        if not _follows(request, repository, branch):
            continue
        if not validation.valid or validation.repository is None:
            first = _first_error(validation.diagnostics)
            message = (f"waiting for a valid commit on {branch}: {snapshot.sha[:7]} was rejected "
                       f"({_plural(validation.errors, 'error')}; first: {first})")
        elif not _allowed(request, repository, validation.repository.allowed_guilds):
            message = _private_message(request.guild_id)
        else:
            try:
                bindings.promote_pending(session, request.guild_id, actor=ACTOR)
                promoted = True
                continue
            except ConcurrentUpdateError:
                message = ("the guild's binding was changed since this request was made: "
                           "make the request again")
        if request.status_message != message:
            bindings.set_pending_status(session, request.guild_id, message)
    return promoted


def _uses(binding: GuildBinding, access: _Access, vault: Vault) -> bool:
    """Does this binding depend on the credential that just failed?"""
    if access.kind == "token":
        return (binding.token_ciphertext is not None
                and bindings.binding_token(binding, vault) == access.token)
    return binding.token_ciphertext is None


def _record_access_problem(
    session: Session,
    vault: Vault,
    repository_id: int,
    full_name: str,
    branch: str | None,
    message: str,
    access: _Access,
) -> int | None:
    """Access is per repository: every binding relying on the failed credential serves the
    built-in defaults with `message`, and pending requests say it too; the synced branch (when
    tracked) records the error. Returns the new generation if anything changed."""
    changed = False
    live = bindings.bindings_for_repository(
        session, repository_id=repository_id, full_name=full_name)
    pending = bindings.pending_for_repository(
        session, repository_id=repository_id, full_name=full_name)
    if branch is not None:
        changed = _record_branch_status(
            session, repository_id, branch, BranchStatus.ERROR, message) is not None
    for binding in live:
        wanted = (BindingState.NO_ACCESS.value, message)
        if _uses(binding, access, vault) and (binding.state, binding.status_message) != wanted:
            bindings.set_binding_state(session, binding.guild_id, BindingState.NO_ACCESS,
                                       message)
            changed = True
    for request in pending:
        if request.status_message != message:
            bindings.set_pending_status(session, request.guild_id, message)
    if not changed:
        return None
    return branches.bump_generation(session)


def _record_branch_status(
    session: Session, repository_id: int, branch: str, status: BranchStatus, message: str
) -> int | None:
    """A tracked branch's status (an untracked one stays untracked); the new generation if it
    changed, since the bridge shows it."""
    tracked = branches.get_branch(session, repository_id, branch)
    if tracked is None or (tracked.status, tracked.status_message) == (status.value, message):
        return None
    branches.set_branch_status(session, repository_id, branch, status, message)
    return branches.bump_generation(session)


def _record_sync_log(session: Session, repository_id: int, **fields: Any) -> None:
    """The sync log row (a repository never stored has no row to hang it on)."""
    if installations.get_repository(session, repository_id) is not None:
        audit.record_sync(session, repository_id, **fields)
