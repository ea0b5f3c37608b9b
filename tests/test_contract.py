"""Contract tests against GitHub's published API description (tests/contract/github-openapi.json):
every request the App sends is a documented operation with documented parameters and body, and
every answer the fake GitHub gives (errors and redirects included) is one GitHub documents."""

from __future__ import annotations

import pytest

from github_app.github import ENDPOINTS, NotFound, RefHead
from tests.contract.openapi import check_request, check_response, description
from tests.fakegithub import FakeGitHub, LoggedRequest
from tests.harness import GUILD, Harness, harness, prompt_files, valid_files

pytestmark = pytest.mark.anyio


def _api_requests(fake: FakeGitHub) -> list[LoggedRequest]:
    """What reached the API (the archive download goes to codeload, outside it)."""
    return [r for r in fake.requests if r.endpoint != "GET codeload"]


async def _everything_the_app_does(world: Harness) -> None:
    """Drive every GitHub call of the App: installation, pushes (check runs with annotations,
    the archive of a large first sync), a rename, an empty repository, a private repository
    read without access, the reconcile's conditional head request, a followed tag (lightweight
    and annotated, conditional, missing), deliveries and redelivery, and the manifest
    conversion."""
    world.bind(GUILD)
    bulk = {f"prompts/bulk/p{n:03}.md": f"prompt {n}\n" for n in range(60)}
    await world.push({**valid_files(GUILD), **bulk})  # a first sync past ARCHIVE_THRESHOLD
    await world.drain()
    await world.push({"PATH": b"routes: [\n"})  # rejected: a failing check run with annotations
    await world.drain()
    await world.push(dict(prompt_files("again")))
    await world.drain()
    github = world.runtime.github
    head = await github.get_branch_head(
        world.repository_id, "main", installation_id=world.installation_id
    )
    assert not isinstance(head, type(None))
    await github.get_branch_head(  # a conditional request: 304
        world.full_name, "main", etag=head[1], installation_id=world.installation_id
    )
    world.fake.tag(world.full_name, "v1", "main")
    world.fake.tag(world.full_name, "v2", "main", message="Release 2")
    tag = await github.get_ref_head(world.full_name, "v1", installation_id=world.installation_id)
    annotated = await github.get_ref_head(  # the ref, then its tag object
        world.repository_id, "v2", kind="tags", installation_id=world.installation_id
    )
    assert isinstance(tag, RefHead) and isinstance(annotated, RefHead)
    await github.get_ref_head(  # a conditional request on the tag's ref: 304
        world.full_name,
        "v2",
        kind="tags",
        etag=annotated.etag,
        installation_id=world.installation_id,
    )
    with pytest.raises(NotFound):  # neither a branch nor a tag
        await github.get_ref_head(world.full_name, "v3", installation_id=world.installation_id)
    world.fake.update_repo(world.full_name, new_full_name="octo-org/renamed")
    await github.get_repository(world.full_name, installation_id=world.installation_id)
    assert await github.get_repo_installation(world.full_name) is not None
    world.fake.add_repo("octo-org/empty", installation=world.installation_id)
    with pytest.raises(Exception, match="409"):
        await github.get_branch_head(
            "octo-org/empty", "main", installation_id=world.installation_id
        )
    world.fake.add_repo("someone/secret")
    with pytest.raises(NotFound):
        await github.get_repository("someone/secret", installation_id=world.installation_id)
    assert await github.get_app()
    deliveries = await github.list_hook_deliveries(per_page=2)
    await github.redeliver(deliveries[0]["id"])
    code = world.fake.add_manifest_code({"name": "guildprompts"})
    conversion = await github.convert_manifest(code)
    assert conversion["slug"]


async def test_every_request_and_answer_is_one_github_documents(sqlite_url: str) -> None:
    async with harness(sqlite_url, private=False) as world:
        await _everything_the_app_does(world)

        sent = _api_requests(world.fake)
        for request in sent:
            check_request(request.method, request.path, request.query, request.body)
            check_response(
                request.method, request.path, request.status, request.answer, request.content_type
            )
        statuses = {r.status for r in sent}
        assert {200, 201, 202, 301, 302, 304, 404, 409} <= statuses, statuses
        routes = {r.endpoint.split("/git/", 1)[-1] for r in sent if "/git/" in r.endpoint}
        assert {"ref/{ref:path}", "tags/{sha}"} <= routes, routes
        assert any("/git/ref/tags/" in r.path and r.status == 304 for r in sent)


def test_every_endpoint_the_app_names_is_documented() -> None:
    documented = {
        (method.upper(), path)
        for path, operations in description()["paths"].items()
        for method in operations
    }
    for method, path in ENDPOINTS:
        if not path.startswith("/repositories/"):
            assert (method, path) in documented


def test_the_checks_catch_what_github_would_refuse() -> None:
    with pytest.raises(AssertionError, match="no such operation"):
        check_request("DELETE", "/repos/o/r/check-runs/1", "", b"")
    with pytest.raises(AssertionError, match="undocumented query parameter"):
        check_request("GET", "/installation/repositories", "per_page=100&limit=5", b"")
    with pytest.raises(AssertionError, match="schema errors"):
        check_request("POST", "/repos/o/r/check-runs", "", b'{"head_sha": "abc"}')
    with pytest.raises(AssertionError, match="schema errors"):
        check_response("GET", "/repos/o/r", 200, b'{"id": "not a number"}', "application/json")
    with pytest.raises(AssertionError, match="documents no such answer"):
        check_response("GET", "/repos/o/r", 204, b"", "")
