"""Sync: a commit of a prompt repository -> immutable snapshot -> validation -> activation.

Every way a commit reaches guildprompts (a push, the reconcile loop, a new binding, a pull
request or a check rerun) goes through `sync`, so there is one place that decides what guilds
are served. The branch's active snapshot is the last known good one: a commit that fails
validation is stored and reported but never served.

Ordering is decided by git, in one code path. A tracked branch is only ever concluded (its
pointer moved, its status set) at the commit GitHub reports as the branch head, read with a
conditional request (free when unchanged) after the branch's `head_version` was read; the
conclusion is a compare-and-set on that version (`branches.conclude_head`), so of two syncs of
one branch racing, the one whose reading may be stale loses and reads the head again. A commit
that is not the head any more (a late or redelivered push, a leftover reconcile job, a retry
after backoff) is snapshotted and checked but never activated: the sync follows the newer head
instead (at most MAX_HOPS times, then it queues another). A force push needs nothing special:
the head is what it is, descendant of the active commit or not. Why this and not timestamps or
ancestry: `pushed_at` has one-second resolution and arrival order is GitHub's to shuffle, while
the compare API costs a request per pair and still needs the head to know what is newest; the
head reading is the one fact that settles it, and any push after a reading has its own delivery
(or the reconcile loop: the stored ETag is only replaced by a conclusion) that reads it again.
When the head is invalid, the last valid head concluded keeps serving.

Cost is bounded by what changed: the tree is listed once (the client walks truncated trees),
only the blobs not stored yet are downloaded (a bounded number at a time, oversized ones refused
by the tree's size before any download), and a commit already snapshotted costs no content
request at all. When more than ARCHIVE_THRESHOLD blobs are missing (a first sync of a large
repository), the commit comes as one tarball instead, so cost never grows with the repository's
size; and a sync never spends more than RATE_LIMIT_SHARE of its credential's remaining hourly
limit (it waits for the reset and says so in the branch status). A push changing k prompt
files costs k + 4 requests with a warm token (k + 5 when the routing diff's base commit is not
stored yet): the tree, k blobs, the check run's create and complete, and the branch head, read
beside the downloads so that it adds no round trip to the way to live.

At-least-once delivery is safe: snapshots are keyed by commit, the activation is idempotent,
statuses are written only when they change, and a check run already completed on a commit is
not posted again (a rerun request posts a new one; one left `in_progress` by a failed attempt is
completed). Errors:
- access problems (the installation is gone, a token is refused, the repository is unreadable)
  end the sync normally: the outcome and the bindings' statuses say why;
- transient GitHub errors (`TransientError`, `RateLimited`) and database errors propagate, so
  the worker retries the delivery later; a retry redoes only what is missing.

The steps live in small modules, this one is the flow between them: `access` (which
credentials, which errors mean no access), `content` (tree selection, validation),
`records` (each database transaction), `messages` (the status texts) and `request` (what a
sync is asked to do, and what it did).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread

from github_app import checks, metrics
from github_app.github import (
    NOT_MODIFIED,
    EmptyRepository,
    GitHubError,
    InstallationUnavailable,
    NotFound,
    RateLimited,
    TransientError,
    TreeEntry,
)
from github_app.logs import log_context
from github_app.runtime import Runtime
from github_app.store import installations, serving, snapshots
from github_app.store.branches import head_state
from github_app.store.models import BranchStatus, utcnow
from github_app.sync.access import Access, choose_access, is_access_problem, requested_access
from github_app.sync.archive import ArchiveError, blobs_from_tarball
from github_app.sync.bases import NO_BASES, Composition, compose
from github_app.sync.content import (
    TREE_CODES,
    CommitFiles,
    Validation,
    analyse_commit,
    select_files,
    validate_files,
)
from github_app.sync.jobs import enqueue_sync
from github_app.sync.messages import EMPTY_REPOSITORY, access_message, describe, rate_limit_message
from github_app.sync.records import (
    Concluding,
    Recorded,
    RepoState,
    StoredCommit,
    read_commit,
    read_repository,
    record_access_problem,
    record_branch_status,
    record_commit,
    record_sync_log,
    token_holders,
)
from github_app.sync.request import SyncOutcome, SyncRequest
from promptrepo import Diagnostic, RepositoryError, load_repository
from promptrepo.files import PATH_FILE
from promptrepo.layers import extends_of
from promptrepo.routing_diff import RoutingDiff, diff_repositories

log = logging.getLogger(__name__)

MAX_HOPS = 4  # newer heads followed by one sync before the rest is left to a queued sync
MAX_RACES = 4  # conclusions lost to other syncs of the branch before the worker retries later


class BranchBusy(Exception):
    """Other syncs kept concluding the branch first; the worker retries this one later."""


@dataclass(frozen=True)
class _Reading:
    """The branch head GitHub reported, the branch version read before asking, its ETag."""

    sha: str
    version: int
    etag: str | None
    kind: str | None = None  # "tags": the followed ref is a tag (only a base's may be)


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


# ---- one sync's flow ------------------------------------------------------------------------


@dataclass
class _Run:
    """One sync in progress: what it learned (branch, sha, access) and what it cost."""

    runtime: Runtime
    request: SyncRequest
    api_calls: int = 0
    files_fetched: int = 0
    started: float = field(default_factory=time.monotonic)
    branch: str | None = None
    sha: str | None = None
    access: Access | None = None
    checks_started: list[asyncio.Future[int | None]] = field(default_factory=list)

    @property
    def repo_id(self) -> int:
        return self.request.repository_id

    async def execute(self) -> SyncOutcome:
        request = self.request
        state = await self.runtime.run_db(
            read_repository, self.runtime.vault, self.repo_id, request.branch
        )
        if state is None:
            try:
                state = await self._discover()
            except GitHubError as exc:
                if not is_access_problem(exc):
                    raise
                return await self._access_lost(exc, Access(*requested_access(request)))
        # A commit checked without a branch (a fork's pull request) stays branchless.
        needs_branch = request.activate or request.sha is None
        self.branch = request.branch or (state.default_branch if needs_branch else None)
        self.access = choose_access(request, state)
        if self.access is None:
            message = (
                f"guildprompts cannot read {request.full_name}: install the GitHub App on "
                "it, or give a personal access token when binding"
            )
            return await self._access_lost(None, Access("anonymous"), message)
        try:
            return await self._sync_commit(state)
        except EmptyRepository:
            return await self._empty()
        except GitHubError as exc:
            if not is_access_problem(exc):
                raise
            if isinstance(exc, NotFound) and await self._readable():
                return await self._missing(state)
            return await self._access_lost(exc, self.access)

    async def _sync_commit(self, state: RepoState) -> SyncOutcome:
        """Bring the requested commit in; on a tracked branch, follow GitHub's head until the
        branch is concluded at it (see the module docstring)."""
        try:
            return await self._follow_head(state)
        finally:  # a sync that failed before completing its check run leaves no task behind
            for started in self.checks_started:
                if not started.done():
                    started.cancel()
                elif not started.cancelled():
                    started.exception()  # retrieved: the sync's own error is what propagates

    async def _follow_head(self, state: RepoState) -> SyncOutcome:
        sha, reading = self.request.sha, None
        if sha is None and self.request.trigger == "rebase" and state.latest_sha is not None:
            sha = state.latest_sha  # re-checked while the head is read (`_bring`): it rarely moved
        if sha is None:
            reading = await self._read_head()
            sha = reading.sha
        check = self.request.check_run
        for _hop in range(MAX_HOPS):
            result = await self._bring(state, sha, check, reading)
            if isinstance(result, SyncOutcome):
                return result
            reading = result
            sha = reading.sha
            check = False  # the head's own push (or the reconcile loop) posts its check run
        await self.runtime.run_db(self._requeue)
        self.runtime.wake_worker()
        return await self._finish(
            "stale",
            sha,
            None,
            False,
            (),
            f"the head of {self.branch} kept moving during this sync: another sync is queued",
        )

    def _uninstalled(self, session: Any, installation_id: int, message: str) -> None:
        installations.remove_installation(session, installation_id, reason=message)
        if self.branch is not None and self.request.activate:
            enqueue_sync(
                session,
                full_name=self.request.full_name,
                repository_id=self.repo_id,
                branch=self.branch,
                trigger="access-restored",
            )

    def _requeue(self, session: Any) -> str:
        return enqueue_sync(
            session,
            full_name=self.request.full_name,
            repository_id=self.repo_id,
            branch=self.branch,
            trigger="reconcile",
        )

    async def _bring(
        self, state: RepoState, sha: str, check: bool, reading: _Reading | None
    ) -> SyncOutcome | _Reading:
        """Snapshot and validate `sha`, then conclude the branch if it is the head; else the
        newer head reading to follow."""
        if not (self.request.activate and self.branch is not None) or reading is not None:
            return await self._bring_reading(state, sha, check, reading)
        # The head is read beside the content downloads rather than after them: a reading only
        # has to follow the version it is compared against (`_read_head`), and this takes one
        # GitHub round trip off every push's way to live.
        early = asyncio.ensure_future(self._read_head())
        try:
            return await self._bring_reading(state, sha, check, early)
        finally:
            if not early.done():
                early.cancel()
            elif not early.cancelled():
                early.exception()  # retrieved: the sync's own error is what propagates

    async def _bring_reading(
        self,
        state: RepoState,
        sha: str,
        check: bool,
        reading: _Reading | asyncio.Future[_Reading] | None,
    ) -> SyncOutcome | _Reading:
        request, access = self.request, self.access
        assert access is not None
        self.sha = sha
        stored = await self.runtime.run_db(
            read_commit,
            self.repo_id,
            sha,
            request.trigger,
            can_check=check and access.installation_id is not None,
        )
        check_run: asyncio.Future[int | None] | None = None
        if stored.snapshot_id is not None:
            if extends_of(stored.files):  # checked again: its bases may have moved since
                tree = [item for item in stored.diagnostics if item.code in TREE_CODES]
                snapshot = await self._validated(sha, stored.files, tree, {}, {})
            else:
                validation = await anyio.to_thread.run_sync(
                    analyse_commit, stored.files, stored.diagnostics
                )
                snapshot = CommitFiles(sha, {}, {}, validation)
            if stored.post_check:
                check_run = asyncio.ensure_future(self._start_check(stored))
                self.checks_started.append(check_run)
        else:
            entries = await self._call(
                self.runtime.github.get_tree(self.repo_id, sha, **access.kwargs)
            )
            if not request.activate and not any(e.path == PATH_FILE for e in entries):
                return await self._finish(
                    "skipped",
                    sha,
                    None,
                    False,
                    (),
                    f"{sha[:7]} has no PATH file: not a prompt repository, nothing to check",
                )
            if stored.post_check:  # off the push-to-live path: created while blobs download
                check_run = asyncio.ensure_future(self._start_check(stored))
                self.checks_started.append(check_run)
            snapshot = await self._fetch(sha, entries)
        tracked = request.activate and self.branch is not None
        recorded = None
        for _race in range(MAX_RACES if tracked else 0):
            if isinstance(reading, asyncio.Future):
                reading = await reading
            reading = reading or await self._read_head()
            if reading.sha != sha:
                break
            readers = await self._token_readers()
            base_readers = await self._base_token_readers(snapshot)
            concluding = Concluding(
                reading.version, reading.etag, readers, base_readers, kind=reading.kind
            )
            recorded = await self._record(snapshot, concluding)
            if not recorded.conflict:
                break
            if recorded.stale_bases:  # a base moved since the commit was composed: again
                snapshot = await self._recomposed(snapshot)
            recorded = reading = None  # another sync concluded the branch: read the head again
        else:
            if tracked:
                raise BranchBusy(f"{self.branch} was concluded by other syncs {MAX_RACES} times")
        if recorded is None:  # not tracked, or not the head: stored and checked only
            recorded = await self._record(snapshot, None)
        if recorded.activated and request.received_at is not None:
            waited = (utcnow() - _aware(request.received_at)).total_seconds()
            metrics.observe_push_to_live(max(waited, 0.0))
        check_run_id = await check_run if check_run is not None else None
        if check_run_id is not None:
            await self._complete_check(check_run_id, snapshot, recorded)
        validation = snapshot.validation
        label, message = describe(request, self.branch, sha, validation, recorded)
        if tracked and recorded.superseded:
            assert isinstance(reading, _Reading)
            await self._log(label, message, sha)
            return reading
        return await self._finish(
            label,
            sha,
            recorded.snapshot_id,
            recorded.activated,
            validation.diagnostics,
            message,
            valid=validation.valid,
        )

    async def _record(self, snapshot: CommitFiles, head: Concluding | None) -> Recorded:
        recorded: Recorded = await self.runtime.run_db(
            record_commit,
            self.runtime.vault,
            self.repo_id,
            self.branch,
            snapshot,
            activate=self.request.activate,
            head=head,
            full_name=self.request.full_name,
            trigger=self.request.trigger,
            pushed_by=self.request.pushed_by,
            history_keep=self.runtime.settings.history_keep,
        )
        if recorded.generation is not None:
            await self.runtime.announce_activation(recorded.generation)
        if recorded.queued:  # bases to read, or branches built on this one to re-check
            self.runtime.wake_worker()
        return recorded

    # ---- GitHub ---------------------------------------------------------------------------

    async def _call(self, awaitable: Any) -> Any:
        """One request of this sync (counted for the sync log)."""
        self.api_calls += 1
        return await awaitable

    async def _discover(self) -> RepoState:
        """A repository never seen before: ask GitHub what it is and remember it."""
        request = self.request
        access = Access(*requested_access(request))
        data = await self._call(self.runtime.github.get_repository(self.repo_id, **access.kwargs))
        await self.runtime.run_db(installations.remember_repository, data, access.installation_id)
        state = await self.runtime.run_db(
            read_repository, self.runtime.vault, self.repo_id, request.branch
        )
        if state is None:  # never invent a name or a default branch GitHub did not give
            raise GitHubError(
                502,
                f"GitHub's answer for repository {self.repo_id} lacks its name or default branch",
            )
        return state

    async def _read_head(self) -> _Reading:
        """The branch head GitHub reports now, read after the branch's version (a 304 on the
        stored ETag means the head is still the one last concluded, and costs no rate limit).

        A base's ref may be a tag (`owner/name@v1`): the first read of a base, and every read
        of a ref found to be a tag, goes through `get_ref_head` (branches first, then tags);
        a followed branch keeps its one request."""
        assert self.access is not None and self.branch is not None
        known = await self.runtime.run_db(head_state, self.repo_id, self.branch)
        github = self.runtime.github
        if known.kind == "tags" or (self.request.trigger == "base" and known.kind is None):
            found = await self._call(
                github.get_ref_head(
                    self.repo_id,
                    self.branch,
                    kind=known.kind,  # type: ignore[arg-type]
                    etag=known.etag,
                    **self.access.kwargs,
                )
            )
            if found is NOT_MODIFIED:
                assert known.latest_sha is not None
                return _Reading(known.latest_sha, known.version, known.etag, known.kind)
            return _Reading(found.sha, known.version, found.etag, found.kind)
        answer = await self._call(
            github.get_branch_head(self.repo_id, self.branch, etag=known.etag, **self.access.kwargs)
        )
        if answer is NOT_MODIFIED:
            assert known.latest_sha is not None
            return _Reading(known.latest_sha, known.version, known.etag)
        sha, etag = answer
        return _Reading(sha, known.version, etag)

    async def _token_readers(self) -> frozenset[str]:
        """The guilds' own tokens (private repository) that read the branch now: a token never
        tried does not let a guild read a private repository."""
        assert self.access is not None and self.branch is not None
        holders = await self.runtime.run_db(
            token_holders, self.runtime.vault, self.repo_id, self.branch
        )
        works = set()
        for token in sorted(set(holders.values())):
            if token == self.access.token or await self._token_reads(token):
                works.add(token)
        return frozenset(works)

    async def _token_reads(
        self, token: str, repository_id: int | None = None, ref: str | None = None
    ) -> bool:
        """Does `token` read this branch (or the ref of another repository: a base's)?"""
        assert self.branch is not None
        try:
            if repository_id is None:
                await self._call(
                    self.runtime.github.get_branch_head(self.repo_id, self.branch, token=token)
                )
            else:
                await self._call(
                    self.runtime.github.get_ref_head(repository_id, ref or "", token=token)
                )
        except GitHubError as exc:
            if is_access_problem(exc):
                return False
            raise
        return True

    async def _base_token_readers(self, commit: CommitFiles) -> dict[int, frozenset[str]]:
        """Private base repository id -> the guilds following this branch whose own token
        has just read that base: they may be served it without being in its allowed_guilds
        (the rule of a bound repository). Only tokens of guilds the base does not list."""
        private = commit.composition.private_bases()
        if not private or self.branch is None:
            return {}
        holders = await self.runtime.run_db(
            token_holders, self.runtime.vault, self.repo_id, self.branch, any_visibility=True
        )
        access = {base.repository_id: base for base in commit.composition.access}
        found: dict[int, frozenset[str]] = {}
        for layer in private:
            listed = access[layer.repository_id].allowed_guilds
            guilds: set[str] = set()
            tried: dict[str, bool] = {}
            for (guild_id, _pending), token in sorted(holders.items()):
                if guild_id in listed:
                    continue
                if token not in tried:
                    tried[token] = await self._token_reads(token, layer.repository_id, layer.ref)
                if tried[token]:
                    guilds.add(guild_id)
            found[layer.repository_id] = frozenset(guilds)
        return found

    async def _readable(self) -> bool:
        """After a 404: is the repository itself still readable (then the commit is gone)?"""
        assert self.access is not None
        try:
            await self._call(self.runtime.github.get_repository(self.repo_id, **self.access.kwargs))
        except GitHubError as exc:
            if is_access_problem(exc):
                return False
            raise
        return True

    async def _fetch(self, sha: str, entries: Sequence[TreeEntry]) -> CommitFiles:
        """Download the missing blobs of the repository files, then validate."""
        settings = self.runtime.settings
        wanted, tree_diagnostics = select_files(entries, settings.max_prompt_file_size)
        if PATH_FILE not in wanted:
            wanted = {}  # not a usable prompt repository: `path-missing` needs no download
        missing = await self.runtime.run_db(snapshots.missing_blobs, set(wanted.values()))
        downloaded = await self._download(sha, wanted, sorted(missing))
        self.files_fetched += len(downloaded)
        present = set(wanted.values()) - set(downloaded)
        contents = dict(downloaded)
        if present:
            contents.update(await self.runtime.run_db(snapshots.load_blobs, present))
        files = {path: contents[blob] for path, blob in wanted.items()}
        return await self._validated(sha, files, tree_diagnostics, wanted, downloaded)

    async def _recomposed(self, commit: CommitFiles) -> CommitFiles:
        """The commit checked again over its bases as stored now (its snapshot is stored)."""
        files = await self.runtime.run_db(_stored_files, self.repo_id, commit.sha)
        tree = [item for item in commit.validation.diagnostics if item.code in TREE_CODES]
        again = await self._validated(commit.sha, files, tree, {}, {})
        return dataclasses.replace(again, blob_ids=commit.blob_ids, downloaded=commit.downloaded)

    async def _validated(
        self,
        sha: str,
        files: Mapping[str, bytes],
        tree_diagnostics: Sequence[Diagnostic],
        blob_ids: Mapping[str, str],
        downloaded: Mapping[str, bytes],
    ) -> CommitFiles:
        """Validate a commit's files, over the stored bases its PATH extends (`sync.bases`)."""
        settings, full_name = self.runtime.settings, self.request.full_name
        composition = NO_BASES
        if extends_of(files):
            may_queue = self.request.trigger != "rebase" and self.request.activate
            composition = await self.runtime.run_db(compose, full_name, files, may_queue=may_queue)
        validation = await anyio.to_thread.run_sync(
            validate_files,
            files,
            tree_diagnostics,
            settings.strict_validation,
            settings.max_prompt_file_size,
            composition,
            full_name,
        )
        return CommitFiles(sha, blob_ids, downloaded, validation, composition)

    async def _download(
        self, sha: str, wanted: dict[str, str], shas: Sequence[str]
    ) -> dict[str, bytes]:
        """The missing blobs: one request each, or the whole commit as one archive when more
        than ARCHIVE_THRESHOLD are missing (a first sync of a large repository costs the same
        as a small one). Either way within RATE_LIMIT_SHARE of the remaining rate limit."""
        if not shas:
            return {}
        settings = self.runtime.settings
        use_archive = len(shas) > settings.archive_threshold
        await self._within_budget(1 if use_archive else len(shas))
        if use_archive:
            needed = set(shas)
            paths = {path: blob for path, blob in wanted.items() if blob in needed}
            try:
                return await self._from_archive(sha, paths)
            except ArchiveError as exc:
                log.warning("archive of %s unusable (%s): downloading blobs", sha[:7], exc)
                await self._within_budget(len(shas))
        return await self._blobs(shas)

    async def _from_archive(self, sha: str, paths: dict[str, str]) -> dict[str, bytes]:
        assert self.access is not None
        archive = await self._call(
            self.runtime.github.get_tarball(self.repo_id, sha, **self.access.kwargs)
        )
        return await anyio.to_thread.run_sync(blobs_from_tarball, archive, paths)

    async def _within_budget(self, requests: int) -> None:
        """Wait (as a rate limit the worker retries after the reset) rather than spend more
        than the configured share of what is left of this credential's hourly limit."""
        assert self.access is not None
        budget = self.runtime.github.rate_budget(self.access.kwargs)
        if budget is None:
            return
        remaining, reset_in = budget
        if requests <= remaining * self.runtime.settings.rate_limit_share:
            return
        message = rate_limit_message(requests, remaining, reset_in)
        await self._followed_branch_status(BranchStatus.ERROR, message)
        raise RateLimited(403, message, retry_after=reset_in)

    async def _followed_branch_status(self, status: BranchStatus, message: str) -> None:
        """The status of the branch guilds follow, tracked from now on if it was not yet."""
        if self.request.activate and self.branch is not None:
            generation = await self.runtime.run_db(
                record_branch_status, self.repo_id, self.branch, status, message, track=True
            )
            if generation is not None:
                await self.runtime.announce_activation(generation)

    async def _blobs(self, shas: Sequence[str]) -> dict[str, bytes]:
        assert self.access is not None
        limit = asyncio.Semaphore(self.runtime.settings.sync_concurrency)
        kwargs = self.access.kwargs

        async def fetch(blob: str) -> tuple[str, bytes]:
            async with limit:
                content = await self._call(
                    self.runtime.github.get_blob(self.repo_id, blob, **kwargs)
                )
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

    async def _start_check(self, stored: StoredCommit) -> int | None:
        if stored.open_check_run is not None:
            return stored.open_check_run
        assert self.access is not None and self.access.installation_id is not None
        assert self.sha is not None
        try:
            run_id = await self._call(
                checks.start_check_run(
                    self.runtime, self.repo_id, self.sha, self.access.installation_id
                )
            )
        except GitHubError as exc:
            if isinstance(exc, TransientError | RateLimited):
                raise
            log.warning("could not create the check run on %s: %s", self.sha[:7], exc)
            return None
        return int(run_id)

    async def _complete_check(
        self, check_run_id: int, snapshot: CommitFiles, recorded: Recorded
    ) -> None:
        assert self.access is not None and self.access.installation_id is not None
        validation = snapshot.validation
        routing_diff, diff_note = await self._routing_diff(snapshot)
        followers = None
        if routing_diff is not None and self.request.base_branch is not None:
            following = await self.runtime.run_db(
                serving.guilds_for_branch, self.repo_id, self.request.base_branch
            )
            followers = len(following)
        base = self.request.base_sha or ""
        label = f"`{base[:7]}`"
        if self.request.base_branch:
            label = f"{self.request.base_branch} at {label}"
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
            routing_diff=routing_diff,
            base_label=label if routing_diff is not None else "",
            base_followers=followers,
            diff_note=diff_note,
            bases=snapshot.composition.labels,
            waiting=recorded.waiting,
        )
        output = await anyio.to_thread.run_sync(checks.render_output, report)
        try:
            self.api_calls += await checks.finish_check_run(
                self.runtime, self.repo_id, check_run_id, self.access.installation_id, output
            )
        except GitHubError as exc:
            if isinstance(exc, TransientError | RateLimited):
                raise
            log.warning("could not complete check run %s: %s", check_run_id, exc)

    async def _routing_diff(self, commit: CommitFiles) -> tuple[RoutingDiff | None, str]:
        """What this commit changes against the request's base, or why that cannot be told.

        The base is read like any commit (stored snapshot, else tree and missing blobs, then
        stored without activation), so a later diff against it costs nothing. Only transient
        GitHub errors propagate (the worker retries); others leave the check without a diff.
        """
        head, bases_now = commit.validation, commit.composition
        base_sha = self.request.base_sha
        if base_sha is None or base_sha == self.sha:
            return None, ""
        try:
            files = await self._base_files(base_sha)
        except GitHubError as exc:
            if isinstance(exc, TransientError | RateLimited):
                raise
            log.info("no routing diff against %s: %s", base_sha[:7], exc)
            return None, f"The base commit {base_sha[:7]} could not be read, so no comparison."
        return await anyio.to_thread.run_sync(_diff_against, files, head, bases_now), ""

    async def _base_files(self, base_sha: str) -> dict[str, bytes] | None:
        """The base commit's repository files (None: it has no PATH, guilds got built-ins)."""
        assert self.access is not None
        stored = await self.runtime.run_db(
            read_commit, self.repo_id, base_sha, self.request.trigger, can_check=False
        )
        if stored.snapshot_id is not None:
            return dict(stored.files) if PATH_FILE in stored.files else None
        entries = await self._call(
            self.runtime.github.get_tree(self.repo_id, base_sha, **self.access.kwargs)
        )
        if not any(entry.path == PATH_FILE for entry in entries):
            return None
        base = await self._fetch(base_sha, entries)
        await self.runtime.run_db(
            record_commit,
            self.runtime.vault,
            self.repo_id,
            None,
            base,
            activate=False,
            head=None,
            full_name=self.request.full_name,
        )
        return await self.runtime.run_db(_stored_files, self.repo_id, base_sha)

    # ---- endings --------------------------------------------------------------------------

    async def _access_lost(
        self, exc: GitHubError | None, access: Access, message: str | None = None
    ) -> SyncOutcome:
        message = message or access_message(exc, access, self.request.full_name)
        if (
            isinstance(exc, InstallationUnavailable)
            and exc.status == 404
            and access.installation_id
        ):
            # Uninstalled, whatever late event said otherwise: as the `deleted` event would;
            # then a sync reads the branch again with a guild's token, if one was given.
            await self.runtime.run_db(self._uninstalled, access.installation_id, message)
            self.runtime.wake_worker()
        generation = await self.runtime.run_db(
            record_access_problem,
            self.runtime.vault,
            self.repo_id,
            self.request.full_name,
            self.branch if self.request.activate else None,
            message,
            access,
        )
        if generation is not None:
            await self.runtime.announce_activation(generation)
        return await self._finish("no_access", self.sha, None, False, (), message)

    async def _empty(self) -> SyncOutcome:
        """GitHub's 409 for a repository without commits: nothing to serve yet, nothing failed;
        the first push brings it live."""
        await self._followed_branch_status(BranchStatus.PENDING, EMPTY_REPOSITORY)
        return await self._finish("empty", None, None, False, (), EMPTY_REPOSITORY)

    async def _missing(self, state: RepoState) -> SyncOutcome:
        """The repository is readable but the commit (or the branch) is not there any more."""
        if self.sha is not None:
            message = (
                f"commit {self.sha[:7]} no longer exists on GitHub "
                "(force-pushed away?): nothing to sync"
            )
            return await self._finish("gone", self.sha, None, False, (), message)
        serving_now = state.active_sha[:7] if state.active_sha else "the built-in defaults"
        message = f"branch {self.branch} no longer exists on GitHub: serving {serving_now}"
        if self.request.activate:
            generation = await self.runtime.run_db(
                record_branch_status, self.repo_id, self.branch, BranchStatus.DELETED, message
            )
            if generation is not None:
                await self.runtime.announce_activation(generation)
        return await self._finish("gone", None, None, False, (), message)

    async def failed(self, exc: GitHubError) -> None:
        """A GitHub error raised to the worker: keep a trace in the sync log and metrics. One
        that retrying will not fix (not transient) also becomes the branch's status."""
        message = f"syncing failed: {exc}"
        try:
            if (
                self.request.activate
                and self.branch is not None
                and not isinstance(exc, TransientError | RateLimited)
            ):
                generation = await self.runtime.run_db(
                    record_branch_status, self.repo_id, self.branch, BranchStatus.ERROR, message
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
        log.info(
            "sync %s of %s@%s (%s, %s): %s [%d GitHub requests, %d files fetched]",
            label,
            self.request.full_name,
            self.branch,
            (sha or "?")[:7],
            self.request.trigger,
            message,
            self.api_calls,
            self.files_fetched,
        )
        return SyncOutcome(
            sha,
            snapshot_id,
            valid,
            activated,
            diagnostics,
            message,
            self.api_calls,
            self.files_fetched,
        )

    async def _log(self, label: str, message: str, sha: str | None = None) -> None:
        duration_ms = int((time.monotonic() - self.started) * 1000)
        await self.runtime.run_db(
            record_sync_log,
            self.repo_id,
            trigger=self.request.trigger,
            outcome=label,
            commit_sha=sha or self.sha,
            branch=self.branch,
            files_fetched=self.files_fetched,
            api_calls=self.api_calls,
            duration_ms=duration_ms,
            message=message[:2000],
        )
        metrics.count_sync(label, self.request.trigger)


def _diff_against(
    base: dict[str, bytes] | None, head: Validation, bases: Composition
) -> RoutingDiff:
    """The routing diff of two commits, both read over the bases the head was checked with
    (what a push changes, base commits aside)."""
    repository, error = None, None
    if base is not None:
        try:
            repository = load_repository(base, bases=bases.files or None)
        except RepositoryError as exc:
            error = str(exc)
    return diff_repositories(
        repository, head.repository, base_error=error, head_error=head.load_error or None
    )


def _stored_files(session: Any, repository_id: int, sha: str) -> dict[str, bytes]:
    snapshot = snapshots.find_snapshot(session, repository_id, sha)
    return snapshots.snapshot_files(session, snapshot.id) if snapshot is not None else {}


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
