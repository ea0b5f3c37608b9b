"""The GitHub client against the fake GitHub: content, App routes, check runs, retries, limits.

Cassettes under tests/cassettes/ replay GitHub's documented answers (built from its OpenAPI
examples by tests/cassettes/build_from_examples.py) with no server at all.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import vcr

from github_app.auth import AppAuth
from github_app.github import (
    MAX_TAG_HOPS,
    NOT_MODIFIED,
    GitHubClient,
    GitHubError,
    InstallationUnavailable,
    NotFound,
    RateLimited,
    RefHead,
    RetryPolicy,
    TransientError,
)
from tests.fakegithub import (
    Clock,
    FakeGitHub,
    Submodule,
    Symlink,
    Webhook,
    blob_sha,
    serve_on_loopback,
    shared_test_key,
)

pytestmark = pytest.mark.anyio

REPO = "octo/prompts"
FILES = {"PATH": "summaries/\n", "summaries/daily.md": "Summarise {messages}", "README.md": "hi"}


@pytest.fixture
def fake() -> FakeGitHub:
    fake = FakeGitHub()
    fake.installation_id = fake.add_installation()
    fake.repo_id = fake.add_repo(REPO, installation=fake.installation_id)
    fake.head_sha = fake.push(REPO, "main", FILES)
    return fake


class Calls(list):
    """The on_request hook: records (endpoint, status, rate_remaining) and who asked."""

    def __init__(self) -> None:
        super().__init__()
        self.who: list[int | str] = []

    def __call__(
        self, endpoint: str, status: int, duration: float, who: int | str, remaining: int | None
    ) -> None:
        assert duration >= 0
        self.append((endpoint, status, remaining))
        self.who.append(who)


async def test_branch_head_uses_etags_and_a_304_is_free(fake: FakeGitHub) -> None:
    calls = Calls()
    async with fake.github_client(on_request=calls) as gh:
        sha, etag = await gh.get_branch_head(REPO, "main", installation_id=fake.installation_id)
        unchanged = await gh.get_branch_head(
            REPO, "main", etag=etag, installation_id=fake.installation_id
        )
        new_sha = fake.push(REPO, "main", {"summaries/daily.md": "changed"})
        changed = await gh.get_branch_head(
            REPO, "main", etag=etag, installation_id=fake.installation_id
        )
        with pytest.raises(NotFound):
            await gh.get_branch_head(REPO, "gone", installation_id=fake.installation_id)
    assert sha == fake.head_sha and etag
    assert unchanged is NOT_MODIFIED
    assert changed[0] == new_sha and changed[1] != etag
    endpoint = "GET /repos/{owner}/{repo}/git/ref/heads/{branch}"
    assert [c[:2] for c in calls[1:]] == [
        (endpoint, 200),
        (endpoint, 304),
        (endpoint, 200),
        (endpoint, 404),
    ]
    assert calls[1][2] == calls[2][2] == calls[3][2] + 1  # the 304 spent nothing
    assert calls.who == ["app", *[fake.installation_id] * 4]


HEADS = "GET /repos/{owner}/{repo}/git/ref/heads/{branch}"
TAGS = "GET /repos/{owner}/{repo}/git/ref/tags/{tag}"
TAG_OBJECT = "GET /repos/{owner}/{repo}/git/tags/{tag_sha}"


async def test_a_followed_branch_costs_what_get_branch_head_costs(fake: FakeGitHub) -> None:
    calls = Calls()
    auth = {"installation_id": fake.installation_id}
    async with fake.github_client(on_request=calls) as gh:
        sha, etag = await gh.get_branch_head(REPO, "main", **auth)
        start = len(calls)
        head = await gh.get_ref_head(REPO, "main", **auth)
        unchanged = await gh.get_ref_head(REPO, "main", kind=head.kind, etag=head.etag, **auth)
        assert not isinstance(head, type(NOT_MODIFIED))
        still = await gh.get_branch_head(REPO, "main", etag=head.etag, **auth)
    assert head == RefHead(sha, etag, "heads")
    assert unchanged is NOT_MODIFIED and still is NOT_MODIFIED  # one ETag for both methods
    assert [c[:2] for c in calls[start:]] == [(HEADS, 200), (HEADS, 304), (HEADS, 304)]


async def test_a_lightweight_tag_is_found_after_the_branch_and_then_read_first(
    fake: FakeGitHub,
) -> None:
    fake.tag(REPO, "v1", "main")
    calls = Calls()
    auth = {"installation_id": fake.installation_id}
    async with fake.github_client(on_request=calls) as gh:
        first = await gh.get_ref_head(REPO, "v1", **auth)
        assert isinstance(first, RefHead)
        start = len(calls)
        unchanged = await gh.get_ref_head(REPO, "v1", kind=first.kind, etag=first.etag, **auth)
        by_id = await gh.get_ref_head(fake.repo_id, "v1", kind="tags", **auth)
    assert first.sha == fake.head_sha and first.kind == "tags" and first.etag
    assert unchanged is NOT_MODIFIED
    assert isinstance(by_id, RefHead) and by_id.sha == fake.head_sha
    assert [c[:2] for c in calls[1:start]] == [(HEADS, 404), (TAGS, 200)]
    assert [c[:2] for c in calls[start:]] == [
        (TAGS, 304),
        ("GET /repositories/{repository_id}/git/ref/tags/{tag}", 200),
    ]
    assert calls[start - 1][2] == calls[start][2] == calls[start + 1][2] + 1  # 304: free


async def test_an_annotated_tag_is_dereferenced_to_its_commit(fake: FakeGitHub) -> None:
    tag_object = fake.tag(REPO, "v2", "main", message="Release 2")
    nested = fake.tag(REPO, "v2-signed-off", tag_object, message="Approved")
    calls = Calls()
    auth = {"installation_id": fake.installation_id}
    async with fake.github_client(on_request=calls) as gh:
        head = await gh.get_ref_head(REPO, "v2", kind="tags", **auth)
        assert isinstance(head, RefHead)
        unchanged = await gh.get_ref_head(REPO, "v2", kind="tags", etag=head.etag, **auth)
        start = len(calls)
        deep = await gh.get_ref_head(fake.repo_id, "v2-signed-off", kind="tags", **auth)
    assert tag_object != fake.head_sha and nested != tag_object
    assert head.sha == fake.head_sha and head.kind == "tags"
    assert unchanged is NOT_MODIFIED  # the tag ref's ETag: no tag object read either
    assert isinstance(deep, RefHead) and deep.sha == fake.head_sha
    assert [c[:2] for c in calls[1:start]] == [(TAGS, 200), (TAG_OBJECT, 200), (TAGS, 304)]
    by_id = "GET /repositories/{repository_id}/git/tags/{tag_sha}"
    assert [c[0] for c in calls[start:]][1:] == [by_id, by_id]


async def test_a_moved_tag_is_read_in_one_request_and_its_old_etag_no_longer_matches(
    fake: FakeGitHub,
) -> None:
    fake.tag(REPO, "stable", "main")
    fake.tag(REPO, "release", "main", message="first")
    calls = Calls()
    auth = {"installation_id": fake.installation_id}
    async with fake.github_client(on_request=calls) as gh:
        light = await gh.get_ref_head(REPO, "stable", kind="tags", **auth)
        annotated = await gh.get_ref_head(REPO, "release", kind="tags", **auth)
        assert isinstance(light, RefHead) and isinstance(annotated, RefHead)
        new_sha = fake.push(REPO, "main", {"summaries/daily.md": "v2"})
        fake.tag(REPO, "stable", new_sha)
        fake.tag(REPO, "release", new_sha, message="second")
        start = len(calls)
        moved = await gh.get_ref_head(REPO, "stable", kind="tags", etag=light.etag, **auth)
        moved_annotated = await gh.get_ref_head(
            REPO, "release", kind="tags", etag=annotated.etag, **auth
        )
    assert light.sha == annotated.sha == fake.head_sha
    assert isinstance(moved, RefHead) and isinstance(moved_annotated, RefHead)
    assert (moved.sha, moved_annotated.sha) == (new_sha, new_sha)
    assert moved.etag != light.etag and moved_annotated.etag != annotated.etag
    assert [c[:2] for c in calls[start:]] == [(TAGS, 200), (TAGS, 200), (TAG_OBJECT, 200)]


async def test_a_ref_of_neither_kind_is_not_found_and_a_kind_that_changed_is_followed(
    fake: FakeGitHub,
) -> None:
    calls = Calls()
    auth = {"installation_id": fake.installation_id}
    async with fake.github_client(on_request=calls) as gh:
        with pytest.raises(NotFound):
            await gh.get_ref_head(REPO, "nowhere", **auth)
        with pytest.raises(NotFound):
            await gh.get_ref_head(REPO, "nowhere", kind="tags", **auth)
        fake.push(REPO, "next", {"README.md": "next"})
        as_branch = await gh.get_ref_head(REPO, "next", **auth)
        assert isinstance(as_branch, RefHead)
        fake.delete_branch(REPO, "next")
        fake.tag(REPO, "next", fake.head_sha)
        start = len(calls)
        as_tag = await gh.get_ref_head(
            REPO, "next", kind=as_branch.kind, etag=as_branch.etag, **auth
        )
        fake.delete_tag(REPO, "next")
        with pytest.raises(NotFound):
            await gh.get_ref_head(REPO, "next", kind="tags", **auth)
    assert [c[:2] for c in calls[1:5]] == [(HEADS, 404), (TAGS, 404), (TAGS, 404), (HEADS, 404)]
    assert as_branch.kind == "heads"
    assert isinstance(as_tag, RefHead) and (as_tag.kind, as_tag.sha) == ("tags", fake.head_sha)
    assert [c[:2] for c in calls[start : start + 2]] == [(HEADS, 404), (TAGS, 200)]


async def test_a_tag_of_no_commit_or_of_too_many_tags_is_an_error(fake: FakeGitHub) -> None:
    tree = fake.repo(REPO).commits[fake.head_sha]["tree"]
    fake.tag(REPO, "a-tree", tree, message="a tree")
    target = fake.head_sha
    for n in range(MAX_TAG_HOPS + 1):
        target = fake.tag(REPO, "deep", target, message=f"level {n}")
    auth = {"installation_id": fake.installation_id}
    async with fake.github_client() as gh:
        with pytest.raises(GitHubError, match="points to a tree, not a commit"):
            await gh.get_ref_head(REPO, "a-tree", kind="tags", **auth)
        with pytest.raises(GitHubError, match="nests too many tags"):
            await gh.get_ref_head(REPO, "deep", kind="tags", **auth)
        fake.tag(REPO, "deep", fake.head_sha, message="flat again")
        flat = await gh.get_ref_head(REPO, "deep", kind="tags", **auth)
    assert isinstance(flat, RefHead) and flat.sha == fake.head_sha


async def test_tree_reports_paths_modes_symlinks_and_submodules(fake: FakeGitHub) -> None:
    sha = fake.push(REPO, "main", {"link.md": Symlink("README.md"), "vendor": Submodule()})
    async with fake.github_client() as gh:
        tree = await gh.get_tree(REPO, sha, installation_id=fake.installation_id)
    entries = {e.path: e for e in tree}
    assert set(entries) == {*FILES, "summaries", "link.md", "vendor"}
    daily = entries["summaries/daily.md"]
    assert (daily.type, daily.mode, daily.size) == ("blob", "100644", len(FILES[daily.path]))
    assert daily.sha == blob_sha(FILES[daily.path])
    assert entries["link.md"].is_symlink and not entries["link.md"].is_submodule
    assert entries["vendor"].is_submodule and entries["vendor"].size is None
    assert entries["summaries"].type == "tree"


async def test_a_truncated_tree_is_walked_one_level_at_a_time(fake: FakeGitHub) -> None:
    files = {
        f"d{i}/e{j}/f{k}.md": f"{i}{j}{k}" for i in range(3) for j in range(3) for k in range(3)
    }
    sha = fake.push(REPO, "main", files)
    async with fake.github_client() as gh:
        whole = await gh.get_tree(REPO, sha, installation_id=fake.installation_id)
        fake.tree_limit = 10  # the root and each d* listing are too long; e* listings fit
        walked = await gh.get_tree(REPO, sha, installation_id=fake.installation_id)
    assert len(whole) == len(files) + 3 + 9 + len(FILES) + 1  # + d*, e*, FILES and summaries/
    assert sorted(walked, key=lambda e: e.path) == sorted(whole, key=lambda e: e.path)
    # one whole listing; then root recursive + flat, 3 x (d* recursive + flat), and the listings
    # that fit: 9 x e*, summaries
    assert fake.count(r"/git/trees/") == 1 + 2 + 3 * 2 + 9 + 1


async def test_blobs_are_decoded_and_unchanged_files_keep_their_sha(fake: FakeGitHub) -> None:
    installation = fake.installation_id
    async with fake.github_client() as gh:
        tree = await gh.get_tree(REPO, "main", installation_id=installation)
        fake.push(REPO, "main", {"README.md": "changed"})
        new_tree = await gh.get_tree(REPO, "main", installation_id=installation)
        before, after = ({e.path: e.sha for e in t} for t in (tree, new_tree))
        content = await gh.get_blob(REPO, after["summaries/daily.md"], installation_id=installation)
    assert content == b"Summarise {messages}"
    assert before["summaries/daily.md"] == after["summaries/daily.md"]
    assert before["README.md"] != after["README.md"]


async def test_a_blob_that_does_not_match_its_sha_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"content": base64.b64encode(b"evil").decode()})

    async with GitHubClient("https://gh.test", transport=httpx.MockTransport(handler)) as gh:
        with pytest.raises(GitHubError, match="does not match"):
            await gh.get_blob(REPO, blob_sha("good"))


async def test_private_repositories_need_a_token_of_their_installation(fake: FakeGitHub) -> None:
    other = fake.add_installation("other")
    fake.add_repo("other/open", private=False, installation=other)
    async with fake.github_client() as gh:
        with pytest.raises(NotFound):
            await gh.get_repository(REPO)
        with pytest.raises(NotFound):
            await gh.get_repository(REPO, installation_id=other)
        by_id = await gh.get_repository(fake.repo_id, installation_id=fake.installation_id)
        public = await gh.get_repository("other/open")
    assert by_id["full_name"] == REPO and by_id["default_branch"] == "main"
    assert public["private"] is False


async def test_a_removed_or_suspended_installation_is_reported_as_such(fake: FakeGitHub) -> None:
    async with fake.github_client() as gh:
        assert (await gh.get_app())["id"] == fake.app_id
        fake.suspend_installation(fake.installation_id)
        with pytest.raises(InstallationUnavailable) as suspended:
            await gh.get_tree(REPO, "main", installation_id=fake.installation_id)
        fake.delete_installation(fake.installation_id)
        with pytest.raises(InstallationUnavailable) as removed:
            await gh.get_tree(REPO, "main", installation_id=fake.installation_id)
    assert (suspended.value.status, removed.value.status) == (403, 404)


async def test_installation_lookups_and_repository_listing(fake: FakeGitHub) -> None:
    for i in range(149):
        fake.add_repo(f"octo/repo{i}", installation=fake.installation_id)
    fake.add_repo("octo/not-installed")
    async with fake.github_client() as gh:
        installation = await gh.get_repo_installation(REPO)
        missing = await gh.get_repo_installation("octo/not-installed")
        repos = await gh.list_installation_repositories(fake.installation_id)
    assert installation is not None and installation["id"] == fake.installation_id
    assert missing is None
    assert len(repos) == 150 and len({r["id"] for r in repos}) == 150
    assert fake.count(r"^/installation/repositories") == 2


async def test_check_runs_are_created_and_updated(fake: FakeGitHub) -> None:
    note = {
        "path": "PATH",
        "start_line": 1,
        "end_line": 1,
        "annotation_level": "warning",
        "message": "m",
    }
    async with fake.github_client() as gh:
        run = await gh.create_check_run(
            REPO,
            {
                "name": "guildprompts",
                "head_sha": fake.head_sha,
                "status": "in_progress",
                "output": {"title": "t", "summary": "s", "annotations": [note] * 50},
            },
            installation_id=fake.installation_id,
        )
        done = await gh.update_check_run(
            REPO,
            run["id"],
            {
                "conclusion": "success",
                "output": {"title": "ok", "summary": "s", "annotations": [note] * 7},
            },
            installation_id=fake.installation_id,
        )
        with pytest.raises(GitHubError) as info:
            await gh.update_check_run(
                REPO,
                run["id"],
                {"output": {"title": "t", "summary": "s", "annotations": [note] * 51}},
                installation_id=fake.installation_id,
            )
    assert (done["status"], done["conclusion"]) == ("completed", "success")
    assert done["output"]["annotations_count"] == 57
    assert info.value.status == 422 and "50 annotations" in str(info.value)
    assert fake.count(r"/check-runs/", method="PATCH") == 2  # a 422 is not retried


async def test_hook_deliveries_are_paged_by_cursor_and_redelivered(fake: FakeGitHub) -> None:
    hooks = [fake.webhook("ping", fake.ping_payload(), status_code=502) for _ in range(5)]
    fake.clock.advance(7200)
    recent = [fake.webhook("ping", fake.ping_payload()) for _ in range(3)]
    redelivered = []

    async def post_to_app(hook: Webhook) -> int:
        redelivered.append(hook.guid)
        return 202

    fake.on_redeliver = post_to_app
    async with fake.github_client() as gh:
        everything = await gh.list_hook_deliveries(per_page=2)
        since = datetime.fromtimestamp(fake.clock(), UTC) - timedelta(hours=1)
        latest = await gh.list_hook_deliveries(per_page=2, since=since)
        await gh.redeliver(everything[-1]["id"])
        with pytest.raises(NotFound):
            await gh.redeliver(999_999_999)
    assert [d["guid"] for d in everything] == [h.guid for h in reversed(hooks + recent)]
    assert [d["guid"] for d in latest] == [h.guid for h in reversed(recent)]
    assert fake.count(r"^/app/hook/deliveries$") == 4 + 2
    assert [h.guid for h in fake.redelivered] == redelivered == [hooks[0].guid]
    assert fake.deliveries[-1]["guid"] == hooks[0].guid and fake.deliveries[-1]["redelivery"]


async def test_manifest_conversion_needs_no_credentials(fake: FakeGitHub) -> None:
    code = fake.add_manifest_code({"name": "My Prompts"})
    async with fake.github_client(auth=None) as gh:
        app = await gh.convert_manifest(code)
        with pytest.raises(NotFound):
            await gh.convert_manifest(code)  # a code works once
    assert app["slug"] == "my-prompts" and app["pem"].startswith("-----BEGIN")
    assert {"id", "webhook_secret", "client_id", "client_secret"} <= set(app)


async def test_server_errors_are_retried_with_backoff(fake: FakeGitHub) -> None:
    calls = Calls()
    fake.fail_next(r"^/repos/octo/prompts$", status=502, times=2)
    async with fake.github_client(on_request=calls) as gh:
        repo = await gh.get_repository(REPO, installation_id=fake.installation_id)
        fake.fail_next(r"^/repos/octo/prompts$", status=503, times=10)
        with pytest.raises(TransientError) as info:
            await gh.get_repository(REPO, installation_id=fake.installation_id)
    assert repo["full_name"] == REPO
    assert [status for _, status, _ in calls] == [201, 502, 502, 200, 503, 503, 503, 503]
    assert info.value.status == 503
    assert len(fake.slept) == 2 + 3 and all(0 < s <= 0.05 for s in fake.slept)


async def test_rate_limits_are_waited_for_when_short_and_raised_when_long(
    fake: FakeGitHub,
) -> None:
    async with fake.github_client() as gh:
        fake.fail_next("^/repos/", status=429, retry_after=7)
        await gh.get_repository(REPO, installation_id=fake.installation_id)
        fake.fail_next("^/repos/", status=403, reset_in=30)
        await gh.get_repository(REPO, installation_id=fake.installation_id)
        fake.fail_next("^/repos/", status=403, reset_in=3600)
        with pytest.raises(RateLimited) as info:
            await gh.get_repository(REPO, installation_id=fake.installation_id)
    assert fake.slept[0] == 7 and 30 <= fake.slept[1] <= 32
    assert len(fake.slept) == 2  # the hour-long limit was not slept on
    assert 3600 <= (info.value.retry_after or 0) <= 3602


async def test_an_exhausted_rate_limit_of_the_fake_is_raised(fake: FakeGitHub) -> None:
    fake.rate_limit = 3
    async with fake.github_client() as gh:
        for _ in range(2):  # the mint spends the App's budget, not the installation's
            await gh.get_repository(REPO, installation_id=fake.installation_id)
        await gh.get_blob(REPO, blob_sha("hi"), installation_id=fake.installation_id)
        with pytest.raises(RateLimited) as info:
            await gh.get_repository(REPO, installation_id=fake.installation_id)
    assert info.value.status == 403 and (info.value.retry_after or 0) > 60


async def test_a_hanging_request_times_out_and_is_retried(fake: FakeGitHub) -> None:
    calls = Calls()
    fake.hang_next(r"/git/blobs/")
    async with fake.github_client(timeout=0.2, on_request=calls) as gh:
        content = await gh.get_blob(REPO, blob_sha("hi"), installation_id=fake.installation_id)
    assert content == b"hi"
    assert [status for _, status, _ in calls] == [201, 0, 200]


async def test_connection_errors_become_transient_errors_without_secrets() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    gh = GitHubClient(
        "https://gh.test",
        transport=httpx.MockTransport(refuse),
        retry=RetryPolicy(attempts=2, backoff=0.001),
    )
    async with gh:
        with pytest.raises(TransientError) as info:
            await gh.get_repository(REPO, token="ghp_secret_token_value")
    assert info.value.status == 0 and "ConnectError" in str(info.value)
    assert "ghp_secret" not in str(info.value)


async def test_a_failing_request_hook_does_not_break_requests(fake: FakeGitHub) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("metrics are down")

    async with fake.github_client(on_request=broken) as gh:
        repo = await gh.get_repository(REPO, installation_id=fake.installation_id)
    assert repo["id"] == fake.repo_id


async def test_an_enterprise_api_url_with_a_path_works_through_pagination() -> None:
    fake = FakeGitHub(api_prefix="/api/v3")
    installation = fake.add_installation()
    for i in range(120):
        fake.add_repo(f"corp/r{i}", installation=installation)
    async with fake.github_client("https://ghe.example.test") as gh:
        assert gh.api_url == "https://ghe.example.test/api/v3"
        repos = await gh.list_installation_repositories(installation)
    assert len(repos) == 120
    assert all(r.path.startswith("/api/v3/") for r in fake.requests)


async def test_the_client_works_against_the_fake_on_loopback(fake: FakeGitHub) -> None:
    installation = fake.installation_id
    with serve_on_loopback(fake) as base_url:
        async with fake.github_client(base_url, transport=None) as gh:
            sha, etag = await gh.get_branch_head(REPO, "main", installation_id=installation)
            again = await gh.get_branch_head(REPO, "main", etag=etag, installation_id=installation)
            tree = await gh.get_tree(REPO, sha, installation_id=installation)
            blob = next(e for e in tree if e.path == "PATH")
            content = await gh.get_blob(REPO, blob.sha, installation_id=installation)
    assert (sha, again, content) == (fake.head_sha, NOT_MODIFIED, b"summaries/\n")
    assert [r.status for r in fake.requests] == [201, 200, 304, 200, 200]


# ---- cassettes built from GitHub's documented examples --------------------------------------

CASSETTES = Path(__file__).parent / "cassettes"
REPLAY_URL = "http://github-docs.invalid"
DOCUMENTED = (
    "documented_content.yaml",
    "documented_moved.yaml",
    "documented_deliveries.yaml",
    "documented_tag.yaml",
)
# Before the documented token's expiry (2016-07-11T22:14:10Z): the JWT and the token are fresh.
DOCS_CLOCK = datetime(2016, 7, 11, 21, 30, tzinfo=UTC).timestamp()


def _cassette(name: str) -> Any:
    """A replay of GitHub's documented answers (tests/cassettes/build_from_examples.py): no
    server, no recording; a request the cassette does not hold fails the test."""
    recorder = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode="none",
        match_on=["method", "scheme", "host", "port", "path", "query"],
    )
    return recorder.use_cassette(name)


def _client() -> GitHubClient:
    auth = AppAuth(4242, shared_test_key(), clock=Clock(start=DOCS_CLOCK))
    return GitHubClient(REPLAY_URL, auth=auth, clock=Clock(start=DOCS_CLOCK))


async def test_documented_ref_tree_and_blob_answers_are_read() -> None:
    with _cassette("documented_content.yaml"):
        async with _client() as gh:
            head = await gh.get_branch_head("octocat/Hello-World", "featureA", installation_id=1000)
            assert head != NOT_MODIFIED
            sha, etag = head  # type: ignore[misc]
            tree = await gh.get_tree("octocat/Hello-World", sha, installation_id=1000)
            content = await gh.get_blob("octocat/Hello-World", tree[0].sha, installation_id=1000)
            # GitHub's own blob example carries an illustrative sha: the check refuses it
            with pytest.raises(GitHubError, match="does not match its sha"):
                await gh.get_blob(
                    "octocat/Hello-World",
                    "3a0f86fb8db8eea7ccbb9a95f325ddbedfb25e15",
                    installation_id=1000,
                )
    assert (sha, etag) == ("aa218f56b14c9653891f9e74264a383fa43fefbd", 'W/"doc"')
    assert [(e.path, e.type, e.mode) for e in tree] == [("subdir/file.txt", "blob", "100644")]
    assert content == b"Content of the blob"


async def test_a_documented_annotated_tag_is_followed_to_its_commit() -> None:
    with _cassette("documented_tag.yaml"):
        async with _client() as gh:
            head = await gh.get_ref_head("octocat/Hello-World", "v0.0.1", installation_id=1000)
    assert head == RefHead("c3d0be41ecbe669545ee3e94d31ed9a4bc91ee3c", 'W/"tag"', "tags")


async def test_a_documented_301_leads_to_the_repository_by_id() -> None:
    with _cassette("documented_moved.yaml"):
        async with _client() as gh:
            data = await gh.get_repository("octocat/Old-Name", installation_id=1000)
    assert (data["id"], data["full_name"]) == (1296269, "octocat/Hello-World")


async def test_documented_hook_deliveries_are_read() -> None:
    with _cassette("documented_deliveries.yaml"):
        async with _client() as gh:
            deliveries = await gh.list_hook_deliveries(per_page=2)
    assert deliveries and all({"guid", "status_code", "event"} <= set(d) for d in deliveries)


@pytest.mark.parametrize("name", DOCUMENTED)
def test_cassettes_hold_no_credentials(name: str) -> None:
    text = (CASSETTES / name).read_text()
    for marker in ("ghs_", "Bearer", "eyJ", "PRIVATE KEY", "uthorization"):
        assert marker not in text
    assert REPLAY_URL in text


async def test_the_metrics_hook_plugs_in_as_is(fake: FakeGitHub) -> None:
    from github_app import metrics

    def sample(endpoint: str) -> float:
        labels = {"endpoint": endpoint, "status": "200"}
        return metrics.REGISTRY.get_sample_value("guildprompts_github_requests_total", labels) or 0

    endpoint = "GET /repos/{owner}/{repo}"
    before = sample(endpoint)
    async with fake.github_client(on_request=metrics.record_github_request) as gh:
        await gh.get_repository(REPO, installation_id=fake.installation_id)
    assert sample(endpoint) == before + 1
    remaining = metrics.REGISTRY.get_sample_value(
        "guildprompts_github_rate_limit_remaining", {"installation": str(fake.installation_id)}
    )
    assert remaining == fake.rate_limit - 1
