"""The fake GitHub enforces GitHub's rules, so tests written against it fail where GitHub would.

Driven with raw httpx so the checks do not depend on guildprompts' own client.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
from pathlib import Path

import httpx
import jwt
import pytest

from tests.fakegithub import (
    ANNOTATIONS_PER_REQUEST,
    SUMMARY_LIMIT,
    ZERO_SHA,
    FakeGitHub,
    Symlink,
    generate_rsa_key,
    sign,
)

pytestmark = pytest.mark.anyio

API = "https://api.github.test"


@pytest.fixture
def fake() -> FakeGitHub:
    fake = FakeGitHub()
    fake.installation_id = fake.add_installation()
    fake.add_repo("octo/prompts", installation=fake.installation_id)
    fake.head_sha = fake.push("octo/prompts", "main", {"PATH": "x\n", "a/b.md": "hello"})
    return fake


def http(fake: FakeGitHub) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=API, transport=httpx.ASGITransport(app=fake))


def app_jwt(
    fake: FakeGitHub, *, iat_offset: int = -60, exp_offset: int = 540, key: str | None = None
) -> str:
    now = int(fake.clock())
    claims = {"iat": now + iat_offset, "exp": now + exp_offset, "iss": str(fake.app_id)}
    return jwt.encode(claims, key or fake.private_key_pem, algorithm="RS256")


async def mint(client: httpx.AsyncClient, fake: FakeGitHub) -> str:
    response = await client.post(
        f"/app/installations/{fake.installation_id}/access_tokens",
        headers={"Authorization": f"Bearer {app_jwt(fake)}"},
    )
    assert response.status_code == 201
    return response.json()["token"]


@pytest.mark.parametrize(
    ("iat_offset", "exp_offset", "wrong_key", "message"),
    [
        (-60, 600, False, "too far in the future"),  # exp 11 minutes after iat
        (-10, 601, False, "too far in the future"),
        (30, 500, False, "'Issued at'"),
        (-700, -100, False, "'Expiration time'"),
        (-60, 540, True, "could not be decoded"),
    ],
)
async def test_app_routes_enforce_githubs_jwt_rules(
    fake: FakeGitHub, iat_offset: int, exp_offset: int, wrong_key: bool, message: str
) -> None:
    token = app_jwt(
        fake,
        iat_offset=iat_offset,
        exp_offset=exp_offset,
        key=generate_rsa_key() if wrong_key else None,
    )
    async with http(fake) as client:
        response = await client.get("/app", headers={"Authorization": f"Bearer {token}"})
        valid = await client.get("/app", headers={"Authorization": f"Bearer {app_jwt(fake)}"})
    assert response.status_code == 401
    assert message in response.json()["message"]
    assert valid.status_code == 200


async def test_installation_tokens_expire_and_reach_only_their_installation(
    fake: FakeGitHub,
) -> None:
    other = fake.add_installation("someone-else")
    fake.add_repo("someone-else/private", installation=other)
    fake.add_repo("someone-else/public", installation=other, private=False)
    fake.push("someone-else/public", "main", {"README": "hi"})
    async with http(fake) as client:
        token = await mint(client, fake)
        assert len(token) != 40
        auth = {"Authorization": f"token {token}"}
        assert (await client.get("/repos/octo/prompts", headers=auth)).status_code == 200
        assert (await client.get("/repos/someone-else/private", headers=auth)).status_code == 404
        assert (await client.get("/repos/someone-else/public", headers=auth)).status_code == 200
        assert (await client.get("/repos/octo/prompts")).status_code == 404  # anonymous
        assert (await client.get("/repos/someone-else/public")).status_code == 200
        fake.clock.advance(3600)
        assert (await client.get("/repos/octo/prompts", headers=auth)).status_code == 401


async def test_conditional_requests_answer_304_without_spending_rate_limit(
    fake: FakeGitHub,
) -> None:
    async with http(fake) as client:
        first = await client.get(
            "/repos/octo/prompts/git/ref/heads/main",
            headers={"Authorization": f"token {await mint(client, fake)}"},
        )
        auth = {"Authorization": first.request.headers["Authorization"]}
        again = await client.get(
            "/repos/octo/prompts/git/ref/heads/main",
            headers={**auth, "If-None-Match": first.headers["ETag"]},
        )
        fake.push("octo/prompts", "main", {"new.md": "x"})
        changed = await client.get(
            "/repos/octo/prompts/git/ref/heads/main",
            headers={**auth, "If-None-Match": first.headers["ETag"]},
        )
    assert again.status_code == 304 and again.content == b""
    assert again.headers["X-RateLimit-Remaining"] == first.headers["X-RateLimit-Remaining"]
    assert changed.status_code == 200
    assert changed.json()["object"]["sha"] == fake.head("octo/prompts", "main")


async def test_tags_are_served_like_github(fake: FakeGitHub) -> None:
    light = fake.tag("octo/prompts", "v1", "main")
    annotated = fake.tag("octo/prompts", "v2", "main", message="Release 2")
    nested = fake.tag("octo/prompts", "v2-ok", annotated, message="Approved")
    repo = "/repos/octo/prompts"
    async with http(fake) as client:
        auth = {"Authorization": f"token {await mint(client, fake)}"}
        lightweight = await client.get(f"{repo}/git/ref/tags/v1", headers=auth)
        ref = await client.get(f"{repo}/git/ref/tags/v2", headers=auth)
        tag = await client.get(f"{repo}/git/tags/{annotated}", headers=auth)
        tag_of_tag = await client.get(f"{repo}/git/tags/{nested}", headers=auth)
        missing = [
            await client.get(path, headers=auth)
            for path in (
                f"{repo}/git/ref/tags/v3",
                f"{repo}/git/ref/v1",  # a ref is named with its kind
                f"{repo}/git/ref/heads/v1",
                f"{repo}/git/tags/{fake.head_sha}",  # a commit is no tag object
            )
        ]
        etag = {**auth, "If-None-Match": lightweight.headers["ETag"]}
        unchanged = await client.get(f"{repo}/git/ref/tags/v1", headers=etag)
        moved_to = fake.push("octo/prompts", "main", {"new.md": "x"})
        fake.tag("octo/prompts", "v1", moved_to)
        moved = await client.get(f"{repo}/git/ref/tags/v1", headers=etag)
        fake.delete_tag("octo/prompts", "v1")
        deleted = await client.get(f"{repo}/git/ref/tags/v1", headers=auth)
    assert light == fake.head_sha == fake.tagged("octo/prompts", "v2-ok")
    assert lightweight.json()["ref"] == "refs/tags/v1"
    assert lightweight.json()["object"] | {"url": ""} == {
        "sha": fake.head_sha,
        "type": "commit",
        "url": "",
    }
    assert ref.json()["object"]["sha"] == annotated and ref.json()["object"]["type"] == "tag"
    assert tag.json()["sha"] == annotated and tag.json()["tag"] == "v2"
    assert tag.json()["message"] == "Release 2\n"
    assert (tag.json()["object"]["sha"], tag.json()["object"]["type"]) == (fake.head_sha, "commit")
    assert (tag_of_tag.json()["object"]["sha"], tag_of_tag.json()["object"]["type"]) == (
        annotated,
        "tag",
    )
    assert [r.status_code for r in missing] == [404, 404, 404, 404]
    assert unchanged.status_code == 304 and unchanged.content == b""
    remaining = [int(r.headers["X-RateLimit-Remaining"]) for r in (unchanged, moved)]
    assert remaining[1] == remaining[0] - 1  # the 304 spent nothing, the 200 one request
    assert moved.status_code == 200 and moved.json()["object"]["sha"] == moved_to
    assert deleted.status_code == 404
    assert fake.tagged("octo/prompts", "v1") is None


def test_tag_objects_hash_exactly_like_git(fake: FakeGitHub, tmp_path: Path) -> None:
    annotated = fake.tag("octo/prompts", "v1", "main", message="Release 1")
    nested = fake.tag("octo/prompts", "v1-ok", annotated, message="Approved")
    git = ["git", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    for path, content in fake.files("octo/prompts", "main").items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(content)
    subprocess.run([*git, "add", "-A"], check=True)
    tree = subprocess.run([*git, "write-tree"], check=True, capture_output=True, text=True)
    at = f"@{fake.repo('octo/prompts').commits[fake.head_sha]['at']} +0000"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GIT_AUTHOR_NAME": "Fake Author",
        "GIT_AUTHOR_EMAIL": "author@example.com",
        "GIT_AUTHOR_DATE": at,
        "GIT_COMMITTER_NAME": "Fake Author",
        "GIT_COMMITTER_EMAIL": "author@example.com",
        "GIT_COMMITTER_DATE": at,
    }
    commit = subprocess.run(
        [*git, "commit-tree", tree.stdout.strip(), "-m", "Update prompts"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout.strip()
    tagger = {
        **env,
        "GIT_COMMITTER_NAME": "Fake Tagger",
        "GIT_COMMITTER_EMAIL": "tagger@example.com",
        "GIT_COMMITTER_DATE": f"@{int(fake.clock())} +0000",
    }
    subprocess.run([*git, "tag", "-a", "v1", "-m", "Release 1", commit], check=True, env=tagger)
    subprocess.run(
        [*git, "tag", "-a", "v1-ok", "-m", "Approved", "v1"],
        check=True,
        env=tagger,
        capture_output=True,  # git hints that a tag of a tag is unusual
    )
    shas = subprocess.run(
        [*git, "rev-parse", "refs/tags/v1", "refs/tags/v1-ok"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert commit == fake.head_sha
    assert shas == [annotated, nested]


async def test_check_runs_enforce_annotation_and_summary_limits(fake: FakeGitHub) -> None:
    note = {
        "path": "PATH",
        "start_line": 1,
        "end_line": 1,
        "annotation_level": "failure",
        "message": "bad",
    }

    def output(annotations: int, summary: int = 10) -> dict:
        return {"title": "t", "summary": "s" * summary, "annotations": [note] * annotations}

    async with http(fake) as client:
        auth = {"Authorization": f"token {await mint(client, fake)}"}
        url = "/repos/octo/prompts/check-runs"
        base = {"name": "guildprompts", "head_sha": fake.head_sha}
        too_many = await client.post(
            url, headers=auth, json={**base, "output": output(ANNOTATIONS_PER_REQUEST + 1)}
        )
        too_long = await client.post(
            url, headers=auth, json={**base, "output": output(0, SUMMARY_LIMIT + 1)}
        )
        created = await client.post(
            url, headers=auth, json={**base, "output": output(ANNOTATIONS_PER_REQUEST)}
        )
        run_id = created.json()["id"]
        patched = await client.patch(
            f"{url}/{run_id}",
            headers=auth,
            json={"conclusion": "failure", "output": output(3, SUMMARY_LIMIT)},
        )
        no_conclusion = await client.patch(
            f"{url}/{run_id}", headers=auth, json={"status": "completed", "conclusion": None}
        )
        pat = fake.add_pat()
        by_pat = await client.post(url, headers={"Authorization": f"token {pat}"}, json=base)
    assert (too_many.status_code, too_long.status_code) == (422, 422)
    assert "50 annotations" in too_many.json()["message"]
    assert created.status_code == 201 and patched.status_code == 200
    run = fake.check_runs[run_id]
    assert len(run["annotations"]) == ANNOTATIONS_PER_REQUEST + 3
    assert run["output"]["annotations_count"] == ANNOTATIONS_PER_REQUEST + 3
    assert (run["status"], run["conclusion"]) == ("completed", "failure")
    assert no_conclusion.status_code == 422
    assert by_pat.status_code == 403  # only Apps create check runs


def test_objects_hash_exactly_like_git(fake: FakeGitHub, tmp_path: Path) -> None:
    files = {"PATH": "x\n", "a/c/d.md": b"\x00bin", "a-b": "dash", "a.md": "dot", "a0": "zero"}
    sha = fake.push(
        "octo/prompts", "feature", {**files, "link": Symlink("PATH")}, remove=["a/b.md"]
    )
    git = ["git", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    for path, content in files.items():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
    (tmp_path / "link").symlink_to("PATH")
    subprocess.run([*git, "add", "-A"], check=True)
    tree = subprocess.run([*git, "write-tree"], check=True, capture_output=True, text=True)
    assert fake.repo("octo/prompts").commits[sha]["tree"] == tree.stdout.strip()


def test_webhooks_are_signed_and_logged_as_deliveries(fake: FakeGitHub) -> None:
    hook = fake.webhook("push", fake.push_payload("octo/prompts", "main"), status_code=502)
    expected = hmac.new(fake.webhook_secret.encode(), hook.body, hashlib.sha256).hexdigest()
    assert (
        hook.headers["X-Hub-Signature-256"]
        == f"sha256={expected}"
        == sign(hook.body, fake.webhook_secret)
    )
    assert hook.payload["after"] == fake.head_sha and hook.payload["created"] is True
    assert hook.payload["head_commit"]["added"] == ["PATH", "a/b.md"]
    assert hook.payload["installation"]["id"] == fake.installation_id
    assert fake.deliveries[-1]["guid"] == hook.guid
    assert fake.deliveries[-1]["status_code"] == 502
    fake.delete_branch("octo/prompts", "main")
    deleted = fake.push_payload("octo/prompts", "main")
    assert (deleted["before"], deleted["after"]) == (fake.head_sha, ZERO_SHA)
    assert deleted["deleted"] is True and deleted["head_commit"] is None


def test_a_tag_push_has_the_shape_of_githubs(fake: FakeGitHub) -> None:
    tag_object = fake.tag("octo/prompts", "simple-tag", "main", message="Release")
    created = fake.push_payload("octo/prompts", "refs/tags/simple-tag")
    fake.delete_tag("octo/prompts", "simple-tag")
    deleted = fake.push_payload("octo/prompts", "refs/tags/simple-tag")
    real = json.loads((EXAMPLES / "push" / "payload.json").read_text())  # a deleted tag
    assert set(real) - {"organization", "enterprise"} <= set(deleted)
    for key in ("ref", "after", "created", "deleted", "commits", "head_commit"):
        assert deleted[key] == real[key], key
    assert deleted["before"] == tag_object
    assert (created["ref"], created["before"], created["after"]) == (
        "refs/tags/simple-tag",
        ZERO_SHA,
        tag_object,
    )
    assert created["created"] is True and created["commits"] == []
    assert created["head_commit"]["id"] == fake.head_sha


async def test_failure_injection_and_request_log(fake: FakeGitHub) -> None:
    fake.fail_next(r"/git/trees/", status=502, times=2)
    fake.public = fake.add_repo("octo/public", private=False)
    sha = fake.push("octo/public", "main", {"a": "b"})
    async with http(fake) as client:
        statuses = [
            (await client.get(f"/repos/octo/public/git/trees/{sha}")).status_code for _ in range(3)
        ]
    assert statuses == [502, 502, 200]
    assert fake.count(r"/git/trees/") == 3
    assert [r.status for r in fake.requests] == [502, 502, 200]


EXAMPLES = Path(__file__).parent / "fixtures" / "github-webhooks"


@pytest.mark.parametrize(
    ("example", "build"),
    [
        ("push/with-installation.payload.json", lambda f: f.push_payload("octo/prompts", "main")),
        ("delete/payload.json", lambda f: f.delete_payload("octo/prompts", "main")),
        (
            "pull_request/opened.payload.json",
            lambda f: f.pull_request_payload("octo/prompts", "main"),
        ),
        (
            "check_suite/requested.payload.json",
            lambda f: f.check_suite_payload("octo/prompts", "main"),
        ),
        ("installation/created.payload.json", lambda f: f.installation_payload(f.installation_id)),
        (
            "installation_repositories/added.payload.json",
            lambda f: f.installation_repositories_payload(
                f.installation_id, added=["octo/prompts"]
            ),
        ),
        (
            "repository/renamed.payload.json",
            lambda f: f.repository_payload(
                "octo/prompts", "renamed", changes={"repository": {"name": {"from": "old"}}}
            ),
        ),
        ("github_app_authorization/revoked.payload.json", lambda f: f.app_authorization_payload()),
    ],
)
def test_payload_builders_have_the_shape_of_githubs_examples(
    fake: FakeGitHub, example: str, build
) -> None:
    real = json.loads((EXAMPLES / example).read_text())
    built = build(fake)
    assert set(real) - {"organization", "enterprise"} <= set(built)
    if "repository" in real:
        essentials = {"id", "name", "full_name", "private", "owner", "default_branch", "html_url"}
        assert essentials <= set(built["repository"]) & set(real["repository"])
    for key in ("installation", "check_suite"):
        if key in real:
            assert "id" in built[key]
    if "pull_request" in real:
        assert {"number", "head", "base", "state"} <= set(built["pull_request"])
        assert {"ref", "sha"} <= set(built["pull_request"]["head"])
    json.dumps(built)  # serialisable as a webhook body
