"""Routing tests written in a prompt repository (tests/*.yaml): parsing, running, validation,
`guildprompts test`, and a failing test keeping a commit from going live."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from promptrepo import files_from_directory, is_repository_file, validate
from promptrepo.routing_tests import run_repository_tests
from tests.harness import GUILD, World, open_world
from tests.test_cli_format import EXAMPLES, run, write

MEETING_TEST = b"""\
- name: meeting summaries use the meeting prompt
  context: {category: meeting, channel: standup, type: brief}
  expect:
    file: prompts/meeting/default.md
    contains: ["action items"]
    not_contains: ["{date}"]
    max_bytes: 6000
    parameters: {temperature: 0.2}
"""

HOT = b"---\nparameters: {temperature: 0.9}\n---\naction items\n"
REPOSITORY = {
    "PATH": b'version: v2\nroutes:\n  by_category: "prompts/{category}/default.md"\n'
    b'  fallback: "prompts/default.md"\n',
    "schema-version": b"v2\n",
    "prompts/default.md": b"Summarise: {messages}\n",
    "prompts/meeting/default.md": b"---\nparameters: {temperature: 0.2}\n---\n"
    b"List the action items of #{channel}: {messages}\n",
    "tests/meeting.yaml": MEETING_TEST,
}


def _codes(files: dict[str, bytes]) -> list[tuple[str, str, int | None]]:
    return [(d.code, d.path, d.line) for d in validate(files) if d.code.startswith("test-")]


def test_the_issue_example_passes_and_tests_are_not_prompts() -> None:
    assert validate(REPOSITORY) == []
    run_, load_error = run_repository_tests(REPOSITORY)
    assert load_error is None
    [result] = run_.results
    assert result.passed and result.file_path == "prompts/meeting/default.md"
    assert is_repository_file("tests/meeting.yaml") and is_repository_file("tests/a/b.yml")
    assert not is_repository_file("tests/notes.md"), "tests/ holds routing tests only"


@pytest.mark.parametrize(
    ("change", "failure"),
    [
        ({"prompts/meeting/default.md": b"No list here: {messages}\n"}, "does not contain"),
        (
            {"prompts/meeting/default.md": b"action items on {date}: {messages}\n"},
            "contains '{date}'",
        ),
        ({"prompts/meeting/default.md": b"action items " + b"x" * 7000}, "above max_bytes 6000"),
        (
            {"prompts/meeting/default.md": HOT},
            "temperature is 0.9, expected 0.2",
        ),
        (
            {"PATH": b'version: v2\nroutes:\n  fallback: "prompts/default.md"\n'},
            "expected file prompts/meeting/default.md, got prompts/default.md",
        ),
    ],
)
def test_each_expectation_fails_as_an_error_on_the_tests_line(
    change: dict[str, bytes], failure: str
) -> None:
    files = {**REPOSITORY, **change}
    found = [d for d in validate(files) if d.code == "test-failed"]
    assert [(d.severity, d.path, d.line, d.column) for d in found] == [
        ("error", "tests/meeting.yaml", 1, 3)
    ]
    assert failure in found[0].message and "meeting summaries" in found[0].message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (b"- name: x\n  context: {category: meeting}\n  expect: {fille: a.md}\n", 3),
        (b"- name: x\n  context: {category: meeting}\n", 1),
        (b"- context: {category: meeting}\n  expect: {file: a.md}\n", 1),
        (b"name: not a list\n", 1),
        (b"- name: x\n  expect: {max_bytes: -1}\n", 2),
        (b"- name: x\n  expect: {contains: [1, 2]}\n", 2),
        (b"- name: [\n", 2),
        (b"", None),
    ],
)
def test_a_test_that_cannot_run_is_an_error_not_a_silent_pass(
    text: bytes, line: int | None
) -> None:
    found = _codes({**REPOSITORY, "tests/meeting.yaml": text})
    assert found and all(code == "test-invalid" for code, _, _ in found)
    assert found[0][1:] == ("tests/meeting.yaml", line)


def test_file_null_means_the_built_in_prompt() -> None:
    files = {
        **REPOSITORY,
        "tests/builtin.yaml": b"- name: unrouted\n  context: {}\n  expect: {file: null}\n",
    }
    assert _codes(files) == [("test-failed", "tests/builtin.yaml", 1)]  # fallback answers
    only_meeting = {
        **files,
        "PATH": b'version: v2\nroutes:\n  by_category: "prompts/{category}/default.md"\n',
        "prompts/default.md": b"",
    }
    del only_meeting["prompts/default.md"]
    assert _codes(only_meeting) == []


# ---- the command line -------------------------------------------------------------------------


def test_cli_runs_the_examples_tests(tmp_path: Path) -> None:
    done = run("test", EXAMPLES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed, 0 failed" in done.stdout
    assert len(files_from_directory(EXAMPLES / "tests")) >= 1


def test_cli_exits_1_with_the_failure_in_every_format(tmp_path: Path) -> None:
    root = write(tmp_path, {**REPOSITORY, "prompts/meeting/default.md": b"Nothing {messages}\n"})
    text = run("test", root)
    assert text.returncode == 1
    assert "FAIL tests/meeting.yaml:1: meeting summaries use the meeting prompt" in text.stdout
    assert "0 passed, 1 failed" in text.stdout
    as_json = run("test", root, "--format", "json")
    assert as_json.returncode == 1
    document = json.loads(as_json.stdout)
    assert document["passed"] is False and document["results"][0]["passed"] is False
    github = run("test", root, "--format", "github")
    assert github.returncode == 1
    assert github.stdout.startswith(f"::error file={root}/tests/meeting.yaml,line=1,col=3,")


def test_cli_exits_1_when_no_test_can_run(tmp_path: Path) -> None:
    root = write(tmp_path, {"PATH": b"routes: [\n", "tests/a.yaml": MEETING_TEST})
    done = run("test", root)
    assert done.returncode == 1 and "no test can run" in done.stdout
    assert run("test", tmp_path / "missing").returncode == 2


def test_examples_tests_fail_when_the_meeting_prompt_loses_its_action_items(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy)
    meeting = copy / "prompts" / "meeting" / "default.md"
    meeting.write_text(meeting.read_text().replace("Action items", "Tasks"))
    done = run("test", copy)
    assert done.returncode == 1 and "does not contain 'Action items'" in done.stdout


# ---- through the sync: a failing test keeps the last good commit serving ----------------------


@pytest.fixture
async def world(sqlite_url: str) -> AsyncIterator[World]:
    async with open_world(sqlite_url, private=False) as world:
        yield world


@pytest.mark.anyio
async def test_a_failing_routing_test_fails_the_check_and_the_commit_does_not_go_live(
    world: World,
) -> None:
    world.bind(GUILD)
    good = world.push(REPOSITORY)
    assert (await world.sync(good)).activated
    broken = world.push({**REPOSITORY, "prompts/meeting/default.md": b"Notes: {messages}\n"})

    outcome = await world.sync(broken)

    assert not outcome.valid and not outcome.activated
    assert world.state(GUILD).commit_sha == good
    (run_,) = world.check_runs(broken)
    assert run_["conclusion"] == "failure"
    (note,) = [a for a in run_["annotations"] if a["title"] == "test-failed"]
    assert (note["path"], note["start_line"], note["annotation_level"]) == (
        "tests/meeting.yaml",
        1,
        "failure",
    )
