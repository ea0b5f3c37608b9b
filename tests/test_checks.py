"""The `guildprompts` check run: rendering (title, summary, annotations) and posting it to the
fake GitHub, which enforces GitHub's limits (50 annotations per request, 65,535 characters)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import promptrepo
from github_app import checks
from github_app.github import TransientError
from github_app.store import checkruns
from promptrepo import Diagnostic
from tests.fakegithub import SUMMARY_LIMIT
from tests.harness import BROKEN_PATH, GUILD, World, open_world
from tests.harness import OTHER_GUILD as OTHER
from tests.harness import VALID_FOR_GUILD as VALID

pytestmark = pytest.mark.anyio
SHA = "a" * 40


@pytest.fixture
async def world(sqlite_url: str) -> AsyncIterator[World]:
    async with open_world(sqlite_url) as world:
        yield world


def _diagnostic(
    line: int | None = None,
    column: int | None = None,
    severity: str = "warning",
    message: str = "something to look at",
    path: str = "prompts/default.md",
):
    return Diagnostic(
        path=path,
        line=line,
        column=column,
        severity=severity,  # type: ignore[arg-type]
        code="placeholder-unknown",
        message=message,
        hint="a hint",
    )


def _verbose_prompt(lines: int) -> bytes:
    return "\n".join(f"Line {i}: {{unknown_{i}}}" for i in range(lines)).encode() + b"\n"


# ---- rendering ----------------------------------------------------------------------------


def test_annotations_carry_line_level_and_columns_only_when_known() -> None:
    with_column = checks.annotation(_diagnostic(line=3, column=7, severity="error"))
    assert with_column == {
        "path": "prompts/default.md",
        "start_line": 3,
        "end_line": 3,
        "annotation_level": "failure",
        "title": "placeholder-unknown",
        "message": "something to look at",
        "raw_details": "a hint",
        "start_column": 7,
        "end_column": 7,
    }
    without_column = checks.annotation(_diagnostic(line=3, severity="notice"))
    assert without_column is not None and without_column["annotation_level"] == "notice"
    assert "start_column" not in without_column
    assert checks.annotation(_diagnostic(line=None)) is None


def test_title_and_conclusion_follow_the_counts() -> None:
    clean = checks.render_output(checks.CheckReport(sha=SHA, diagnostics=()))
    assert (clean.title, clean.conclusion) == ("Valid: no problems found", "success")
    warned = checks.render_output(
        checks.CheckReport(sha=SHA, diagnostics=(_diagnostic(1), _diagnostic(2)))
    )
    assert (warned.title, warned.conclusion) == ("Valid: 2 warnings", "success")
    failed = checks.render_output(
        checks.CheckReport(
            sha=SHA, diagnostics=(_diagnostic(1, severity="error"), _diagnostic(None))
        )
    )
    assert (failed.title, failed.conclusion) == ("Rejected: 1 error, 1 warning", "failure")
    assert len(failed.annotations) == 1  # the line-less one is listed in the summary only
    assert "something to look at" in failed.summary


def test_summary_shows_routes_preview_guilds_and_what_stays_live() -> None:
    repository = promptrepo.load_repository(VALID)
    report = checks.CheckReport(
        sha=SHA,
        diagnostics=(_diagnostic(None, severity="error"),),
        repository=repository,
        branch="main",
        tracked=True,
        live_sha="b" * 40,
        serving=(GUILD,),
        pending=(OTHER,),
    )
    summary = checks.render_output(report).summary
    assert "keeps serving `bbbbbbb`" in summary
    assert "| 1 | `by_type` | `prompts/{category}/{type}.md` | always |" in summary
    meeting = next(line for line in summary.splitlines() if line.startswith("| meeting |"))
    assert meeting == (
        "| meeting | `prompts/meeting/brief.md` | `prompts/default.md` | `prompts/default.md` |"
    )
    assert "would serve 1 guild." in summary and "1 guild waiting to be bound." in summary
    assert GUILD not in summary and OTHER not in summary, "a check run may be public: no ids"

    unusable = checks.render_output(
        checks.CheckReport(sha=SHA, diagnostics=(), load_error="PATH is missing", branch="feature")
    )
    assert "None usable: PATH is missing" in unusable.summary
    assert "| meeting | built-in | built-in | built-in |" in unusable.summary
    assert "No guild follows `feature`" in unusable.summary


def test_a_long_summary_is_truncated_with_a_note() -> None:
    many = tuple(_diagnostic(i, message="x" * 200) for i in range(1, 1001))
    output = checks.render_output(checks.CheckReport(sha=SHA, diagnostics=many))
    assert len(output.summary) <= SUMMARY_LIMIT
    assert output.summary.rstrip().endswith("for the full report._")
    assert len(output.annotations) == 1000


def test_markdown_in_names_cannot_break_the_summary() -> None:
    odd = _diagnostic(1, path="prompts/a|`b`.md", message="<script> @everyone")
    summary = checks.render_output(checks.CheckReport(sha=SHA, diagnostics=(odd,))).summary
    assert "<script>" not in summary and "@everyone" not in summary
    assert "``prompts/a|`b`.md:1``" in summary


# ---- posting through a sync ---------------------------------------------------------------


async def test_more_than_50_annotations_go_50_per_request(world: World) -> None:
    sha = world.push({**VALID, "prompts/default.md": _verbose_prompt(120)})
    mark = len(world.fake.requests)

    outcome = await world.sync(sha)

    lined = [d for d in outcome.diagnostics if d.line]
    assert len(lined) == 120
    (run,) = world.fake.check_runs_for(world.full_name, sha)
    assert run["status"] == "completed" and run["conclusion"] == "success"
    assert len(run["annotations"]) == 120
    sent = [r.method for r in world.fake.requests[mark:] if "check-runs" in r.path]
    assert sent == ["POST", "PATCH", "PATCH", "PATCH"]  # in progress, 50, 50, 20 + conclusion
    stored = world.db(checkruns.check_runs_for, world.repository_id, sha)
    assert [(r.status, r.conclusion) for r in stored] == [("completed", "success")]


async def test_a_rejected_push_fails_its_check_with_annotations(world: World) -> None:
    world.bind(GUILD)
    good = world.push(VALID)
    await world.sync(good)
    broken = world.push({"PATH": BROKEN_PATH})

    await world.sync(broken)

    (run,) = world.fake.check_runs_for(world.full_name, broken)
    assert run["conclusion"] == "failure"
    assert run["output"]["title"] == "Rejected: 1 error"
    assert f"keeps serving `{good[:7]}`" in run["output"]["summary"]
    (note,) = run["annotations"]
    assert (note["path"], note["start_line"], note["annotation_level"]) == ("PATH", 2, "failure")


async def test_a_rerun_request_posts_a_new_run_without_refetching(world: World) -> None:
    sha = world.push(VALID)
    await world.sync(sha)
    mark = len(world.fake.requests)

    outcome = await world.sync(sha, trigger="check_suite", activate=False)

    assert world.requests_since(mark) == [
        "POST /repositories/{repository_id}/check-runs",
        "PATCH /repositories/{repository_id}/check-runs/{check_run_id}",
    ]
    assert outcome.api_calls == 2
    assert [run["status"] for run in world.fake.check_runs_for(world.full_name, sha)] == [
        "completed",
        "completed",
    ]


async def test_a_run_left_in_progress_is_completed_by_the_retry(world: World) -> None:
    sha = world.push(VALID)
    world.fake.fail_next(r"/check-runs/\d+$", status=502, times=4, method="PATCH")
    with pytest.raises(TransientError):
        await world.sync(sha)
    (run,) = world.fake.check_runs_for(world.full_name, sha)
    assert run["status"] == "in_progress"

    await world.sync(sha)

    (run,) = world.fake.check_runs_for(world.full_name, sha)
    assert run["status"] == "completed" and run["conclusion"] == "success"


async def test_a_run_left_in_progress_is_completed_even_when_another_sync_completed_one(
    world: World,
) -> None:
    """Two syncs of one commit on two workers (say a push, and a reconcile job that saw no run
    yet): one completes its run, the other's attempt fails and leaves its run in progress; any
    later sync of the commit completes the run left behind."""
    sha = world.push(VALID)
    await world.sync(sha)  # a run, completed
    world.fake.fail_next(r"/check-runs/\d+$", status=502, times=4, method="PATCH")
    with pytest.raises(TransientError):
        await world.sync(sha, trigger="check_run")  # another, left in progress
    statuses = sorted(run["status"] for run in world.fake.check_runs_for(world.full_name, sha))
    assert statuses == ["completed", "in_progress"]

    await world.sync(sha)

    runs = world.fake.check_runs_for(world.full_name, sha)
    assert len(runs) == 2 and all(run["status"] == "completed" for run in runs)


async def test_a_pull_request_from_a_fork_is_checked_without_a_branch(world: World) -> None:
    world.bind(GUILD)
    sha = world.push(
        {**VALID, "prompts/meeting/brief.md": b"Fork's brief {messages}\n"}, branch="fork-head"
    )
    outcome = await world.sync(sha, branch=None, trigger="pull_request", activate=False)
    assert outcome.valid and not outcome.activated
    assert outcome.message == f"{sha[:7]} checked: valid"
    (run,) = world.fake.check_runs_for(world.full_name, sha)
    assert "This commit is on no branch guildprompts serves" in run["output"]["summary"]
    assert GUILD not in run["output"]["summary"]  # main's guilds are not this commit's
    assert world.state(GUILD).snapshot_id is None


async def test_a_refused_check_run_does_not_stop_the_sync(world: World) -> None:
    world.bind(GUILD)
    world.fake.fail_next(r"/check-runs$", status=403, method="POST")
    outcome = await world.sync(world.push(VALID))
    assert outcome.activated
    assert world.fake.check_runs == {}


async def test_a_posted_check_run_respects_the_summary_limit(world: World) -> None:
    sha = world.push(VALID)
    many = tuple(_diagnostic(i, message="y" * 300) for i in range(1, 301))
    report = checks.CheckReport(sha=sha, diagnostics=many)

    args = (world.runtime, world.repository_id)
    check_run_id = await checks.start_check_run(*args, sha, world.installation_id)
    output = checks.render_output(report)
    requests = await checks.finish_check_run(*args, check_run_id, world.installation_id, output)

    assert requests == 6  # five batches of 50 annotations, then the completing one
    run = world.fake.check_runs[check_run_id]
    assert len(run["output"]["summary"]) <= SUMMARY_LIMIT
    assert len(run["annotations"]) == 300 and run["conclusion"] == "success"
