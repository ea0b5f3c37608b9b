"""`guildprompts preview`: the page and the bridge's prompt endpoint over a local checkout."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from github_app.cli import main
from github_app.preview import build_app
from promptrepo import Context, common_contexts, files_from_directory, load_repository, resolve
from tests.fakegithub import serve_on_loopback

# The keys of the bridge's GET .../prompt answer (issue 5, section 2), which the preview mirrors.
BRIDGE_PROMPT_KEYS = {
    "content",
    "source",
    "file_path",
    "tried_paths",
    "route",
    "repository",
    "branch",
    "commit_sha",
    "schema_version",
    "parameters",
    "description",
    "metadata",
    "github_file_url",
    "is_stale",
    "status_message",
}


@pytest.fixture
def client(checkout: Path) -> Iterator[httpx.Client]:
    with serve_on_loopback(build_app(checkout)) as url, httpx.Client(base_url=url) as http:
        yield http


def prompt(client: httpx.Client, **context: str) -> dict:
    response = client.get("/bridge/v1/guilds/123/prompt", params=context)
    assert response.status_code == 200, response.text
    return response.json()


def rows(page: str, table_id: str) -> list[str]:
    table = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', page, re.DOTALL)
    assert table is not None, f"no table {table_id}"
    return re.findall(r"<tr.*?</tr>", table.group(1), re.DOTALL)


def test_the_page_shows_a_clean_repository_and_what_each_context_resolves_to(
    client: httpx.Client, checkout: Path
) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page = response.text
    assert "Valid (schema v2)" in page
    assert "No problems found." in page
    table = rows(page, "resolution")
    repository = load_repository(files_from_directory(checkout))
    # The example's routes use {perspective}: each context again with each perspective it has.
    perspectives = ["", "developer", "executive"]
    assert "<th>Perspective</th>" in page
    contexts = [
        Context.from_mapping({**context.to_dict(), **({"perspective": p} if p else {})})
        for context in common_contexts()
        for p in perspectives
    ]
    assert len(table) == len(contexts)
    for row, context in zip(table, contexts, strict=True):
        expected = resolve(repository, context)
        assert f"<code>{expected.file_path}</code>" in row
        assert f">{expected.route_label}<" in row
        assert f"<td>{context.get('perspective') or '-'}</td>" in row


def test_the_bridge_endpoint_has_the_bridges_shape_and_renders_routing_variables(
    client: httpx.Client,
) -> None:
    body = prompt(client, category="discussion", channel="announcements", type="brief")
    assert set(body) == BRIDGE_PROMPT_KEYS
    assert body["source"] == "custom"
    assert body["file_path"] == "prompts/discussion/channels/announcements.md"
    assert body["route"] == "channel_specific"
    assert body["schema_version"] == "v2"
    assert body["is_stale"] is False
    assert body["commit_sha"] is None and body["github_file_url"] is None
    assert "{messages}" in body["content"]  # left for the bot
    assert "{category}" not in body["content"]
    # As on the bridge, variables the bot fills at send time are never taken from the query.
    named = prompt(client, category="discussion", channel="announcements", guild_name="Mine")
    assert "{guild_name}" in named["content"]


def test_etag_and_if_none_match(client: httpx.Client) -> None:
    first = client.get("/bridge/v1/guilds/1/prompt", params={"category": "meeting"})
    etag = first.headers["etag"]
    again = client.get(
        "/bridge/v1/guilds/1/prompt",
        params={"category": "meeting"},
        headers={"If-None-Match": etag},
    )
    assert again.status_code == 304
    other = client.get(
        "/bridge/v1/guilds/1/prompt",
        params={"category": "discussion"},
        headers={"If-None-Match": etag},
    )
    assert other.status_code == 200


def test_an_unusable_context_is_a_400_with_the_reason(client: httpx.Client) -> None:
    response = client.get("/bridge/v1/guilds/1/prompt?9lives=x")
    assert response.status_code == 400
    assert "invalid context key" in response.json()["error"]


def test_edits_added_and_removed_files_show_without_a_restart(
    client: httpx.Client, checkout: Path
) -> None:
    before = prompt(client, category="discussion", type="brief")
    fingerprint = client.get("/_preview/fingerprint").json()["fingerprint"]
    # The page carries the version it shows, so its script reloads once the files differ.
    assert f'data-fingerprint="{fingerprint}"' in client.get("/").text
    (checkout / "prompts/discussion/brief.md").write_text("Three bullets, no more.\n{messages}\n")
    after = prompt(client, category="discussion", type="brief")
    assert after["content"] != before["content"]
    assert after["content"].startswith("Three bullets, no more.")
    assert client.get("/_preview/fingerprint").json()["fingerprint"] != fingerprint

    (checkout / "prompts/meeting/brief.md").write_text("Meeting, briefly.\n{messages}\n")
    assert prompt(client, category="meeting", type="brief")["file_path"] == (
        "prompts/meeting/brief.md"
    )
    (checkout / "prompts/discussion/brief.md").unlink()
    assert prompt(client, category="discussion", type="brief")["file_path"] == (
        "prompts/discussion/default.md"
    )


def test_a_broken_version_is_shown_while_the_last_valid_one_keeps_answering(
    client: httpx.Client, checkout: Path
) -> None:
    good = prompt(client, category="discussion", type="brief")
    path_file = checkout / "PATH"
    original = path_file.read_text()
    path_file.write_text(original.replace("version: v2", "version: v9"))
    (checkout / "prompts/discussion/brief.md").write_text("Not served while PATH is broken.\n")

    stale = prompt(client, category="discussion", type="brief")
    assert stale["is_stale"] is True
    assert stale["content"] == good["content"]
    assert "serving the last valid version" in stale["status_message"]
    page = client.get("/").text
    assert "GitHub would reject this version" in page
    assert "the last valid version, read at" in page
    diagnostics = rows(page, "diagnostics")
    assert diagnostics and all("PATH" in row for row in diagnostics if "error" in row)

    path_file.write_text(original)
    fixed = prompt(client, category="discussion", type="brief")
    assert fixed["is_stale"] is False
    assert fixed["content"].startswith("Not served while PATH is broken.")


def test_a_directory_never_valid_serves_the_builtin_defaults(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("no PATH file here\n")
    with serve_on_loopback(build_app(tmp_path)) as url, httpx.Client(base_url=url) as client:
        body = prompt(client, category="meeting")
        assert body["source"] == "default" and body["file_path"] is None
        assert body["is_stale"] is False
        page = client.get("/").text
        assert "the built-in defaults, as no valid version was seen yet" in page
        assert "path-missing" in page


def test_the_form_resolves_and_renders_a_context(client: httpx.Client) -> None:
    page = client.get(
        "/",
        params={
            "category": "discussion",
            "channel": "announcements",
            "vars": "guild_name=Test Guild\nnot a pair",
        },
    ).text
    result = page[page.index('<div id="result">') :]
    assert "prompts/discussion/channels/announcements.md" in result
    assert "channel_specific" in result
    assert "{messages}" in result and "{guild_name}" in result  # left for the bot
    assert re.search(r'<pre id="content">List every announcement', result)


def test_content_is_escaped_in_the_page(client: httpx.Client, checkout: Path) -> None:
    (checkout / "prompts/discussion/brief.md").write_text("<script>alert(1)</script> {messages}\n")
    page = client.get("/", params={"category": "discussion", "type": "brief"}).text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_other_host_names_are_refused(client: httpx.Client) -> None:
    """A page on another site cannot read the prompts through DNS rebinding."""
    assert client.get("/", headers={"Host": "attacker.example"}).status_code == 400
    assert client.get("/", headers={"Host": "localhost:8008"}).status_code == 200


def test_the_command_refuses_a_missing_directory(tmp_path: Path, capsys) -> None:
    assert main(["preview", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_a_repository_extending_a_base_shows_the_layer_of_each_file() -> None:
    examples = Path(__file__).resolve().parent.parent / "examples"
    app = build_app(examples / "guild", bases={"guildprompts/base-pack": examples / "base"})
    with serve_on_loopback(app) as url, httpx.Client(base_url=url) as http:
        page = http.get("/").text
        assert "<th>Layer</th>" in page
        table = rows(page, "resolution")
        meeting = [row for row in table if "<td>meeting</td>" in row]
        moderation = [row for row in table if "<td>moderation</td>" in row]
        assert meeting and all("this repository" in row for row in meeting)
        assert moderation and all("base guildprompts/base-pack" in row for row in moderation)
        tried = http.get("/", params={"category": "discussion", "vars": "locale=pt-BR"}).text
        assert "prompts/pt-br/discussion.md" in tried and "this repository" in tried
        answer = prompt(http, category="moderation", locale="fr")
        assert answer["file_path"] == "prompts/moderation.md"
        assert "Never repeat personal data" in answer["content"]
    alone = build_app(examples / "guild")
    with serve_on_loopback(alone) as url, httpx.Client(base_url=url) as http:
        assert "base-missing" in http.get("/").text
