"""The `guildprompts` check run: what a commit's validation means, shown in GitHub's own UI.

Rendering (`render_output`) is pure: a `CheckReport` (the validation result plus where the commit
stands: live, rejected with the last good commit still serving, or only checked) becomes a
title, a Markdown summary and annotations. Posting follows GitHub's limits with the fewest
requests: the run is created `in_progress` (the UI shows it running while the sync works),
annotations beyond the first 50 go in PATCHes of 50, and the final PATCH carries the last batch
and the conclusion, so a commit with at most 50 annotated problems costs exactly two requests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from github_app.runtime import Runtime
from github_app.store import checkruns
from promptrepo import (
    Context,
    Diagnostic,
    PromptRepository,
    RepositoryError,
    Route,
    common_contexts,
    resolve,
)
from promptrepo.markdown import cell as _cell
from promptrepo.markdown import code as _code
from promptrepo.markdown import escape as _escape
from promptrepo.markdown import plural as _plural
from promptrepo.routing_diff import RoutingDiff, render_markdown

log = logging.getLogger(__name__)

CHECK_NAME = "guildprompts"
SUMMARY_LIMIT = 65_535  # GitHub's limit on output.summary, in characters
ANNOTATIONS_PER_REQUEST = 50  # GitHub's limit per create/update request
_LEVELS = {"error": "failure", "warning": "warning", "notice": "notice"}
_MESSAGE_LIMIT = 4_000  # annotations allow 64 KB; a diagnostic never needs this much
_TRUNCATION_NOTE = (
    "\n\n---\n_The summary was cut to fit GitHub's 65,535-character limit. Run "
    "`guildprompts validate` on a checkout for the full report._\n"
)


@dataclass(frozen=True)
class CheckReport:
    """One commit's validation and where it stands, as the check run tells it.

    `repository` is the parsed repository (None when PATH is unusable: `load_error` says why).
    `tracked`: guilds follow `branch`, so the commit may go live. `live_sha`: what the branch
    serves after this sync (None: the built-in defaults). `superseded`: a newer head of the
    branch was already seen, so this commit was only checked.
    """

    sha: str
    diagnostics: tuple[Diagnostic, ...]
    repository: PromptRepository | None = None
    load_error: str = ""
    branch: str | None = None
    tracked: bool = False
    activated: bool = False
    live_sha: str | None = None
    superseded: bool = False
    serving: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    routing_diff: RoutingDiff | None = None  # against the base (pull request) or `before` (push)
    base_label: str = ""  # what the diff compares with, e.g. "main (`abc1234`)"
    base_followers: int | None = None  # guilds following the base branch (a count, never ids)
    diff_note: str = ""  # why there is no diff, when one was wanted
    bases: tuple[str, ...] = ()  # `owner/base@abc1234`: the base commits it was checked with
    waiting: tuple[str, ...] = ()  # bases not read yet: neither valid nor rejected

    @property
    def errors(self) -> int:
        return _count(self.diagnostics, "error")

    @property
    def valid(self) -> bool:
        return self.errors == 0


@dataclass(frozen=True)
class CheckOutput:
    title: str
    summary: str
    conclusion: str  # "success" or "failure"
    annotations: tuple[dict[str, Any], ...] = ()

    def output(self, annotations: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        """The `output` object of a create/update request carrying `annotations`."""
        return {"title": self.title, "summary": self.summary, "annotations": list(annotations)}


# ---- rendering ----------------------------------------------------------------------------


def render_output(report: CheckReport) -> CheckOutput:
    """Title with the counts, Markdown summary within GitHub's limit, every lined annotation."""
    return CheckOutput(
        title=_title(report),
        summary=_fit(_summary(report)),
        conclusion="neutral" if report.waiting else ("success" if report.valid else "failure"),
        annotations=tuple(a for a in map(annotation, report.diagnostics) if a is not None),
    )


def annotation(diagnostic: Diagnostic) -> dict[str, Any] | None:
    """The annotation of a diagnostic that has a line (None otherwise: the summary lists it)."""
    if not diagnostic.line or diagnostic.line < 1:
        return None
    note: dict[str, Any] = {
        "path": diagnostic.path,
        "start_line": diagnostic.line,
        "end_line": diagnostic.line,
        "annotation_level": _LEVELS.get(diagnostic.severity, "notice"),
        "title": diagnostic.code,
        "message": _clip(diagnostic.message, _MESSAGE_LIMIT),
    }
    if diagnostic.hint:
        note["raw_details"] = _clip(diagnostic.hint, _MESSAGE_LIMIT)
    if diagnostic.column and diagnostic.column >= 1:  # one line, so columns are allowed
        note["start_column"] = note["end_column"] = diagnostic.column
    return note


def _title(report: CheckReport) -> str:
    counts = _counts(report.diagnostics)
    if report.waiting:
        return f"Waiting for the base {', '.join(report.waiting)}"
    if not report.valid:
        return f"Rejected: {counts}"
    return f"Valid: {counts}"


def _counts(diagnostics: Sequence[Diagnostic]) -> str:
    parts = [
        _plural(_count(diagnostics, severity), severity)
        for severity in ("error", "warning", "notice")
        if _count(diagnostics, severity)
    ]
    return ", ".join(parts) or "no problems found"


def _summary(report: CheckReport) -> str:
    """Most useful first, so a truncation only ever cuts the long list of problems."""
    verdict = (
        "waiting for its bases" if report.waiting else ("valid" if report.valid else "rejected")
    )
    sections = [
        f"## `{report.sha[:7]}` is {verdict}",
        _layers(report),
        _standing(report),
        _guilds(report),
        _diff(report),
        _routes(report),
        _preview(report),
        _problems(report.diagnostics),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _layers(report: CheckReport) -> str:
    """Which base commits the commit was checked with (a base push checks it again)."""
    if report.waiting:
        names = ", ".join(_code(name) for name in report.waiting)
        return (
            f"This commit extends {names}, which guildprompts has not read yet: it is checked "
            "again, and may go live, once the base is read (the GitHub App installed on it, or "
            "the base public)."
        )
    if not report.bases:
        return ""
    names = ", ".join(_code(label) for label in report.bases)
    return f"Checked with the base commits {names}."


def _standing(report: CheckReport) -> str:
    branch = _code(report.branch) if report.branch else "this branch"
    live = _code(report.live_sha[:7]) if report.live_sha else None
    if not report.tracked:
        where = (
            f"No guild follows {branch}"
            if report.branch
            else "This commit is on no branch guildprompts serves"
        )
        return (
            f"{where}: it was only validated. Guilds bound to a branch are served its newest "
            "valid commit."
        )
    if report.superseded:
        return f"{branch} already has a newer head, so this commit was only validated" + (
            f"; {live} is live." if live else "."
        )
    if report.valid:
        verb = "is now live" if report.activated else "is live"
        return f"This commit {verb} on {branch}."
    if live:
        return (
            f"**Not activated.** {branch} keeps serving {live}, its last known good commit, "
            "until a commit passes validation."
        )
    return (
        f"**Not activated.** No commit of {branch} has passed validation yet: its guilds are "
        "served the built-in prompts."
    )


def _guilds(report: CheckReport) -> str:
    """How many guilds: a check run can be public, so never which ones."""
    lines = []
    if report.serving:
        verb = "serves" if report.valid and not report.superseded else "would serve"
        lines.append(f"This commit {verb} {_plural(len(report.serving), 'guild')}.")
    if report.pending:
        lines.append(f"{_plural(len(report.pending), 'guild')} waiting to be bound.")
    if not lines:
        return ""
    return "### Guilds\n" + "\n".join(f"- {line}" for line in lines)


def _diff(report: CheckReport) -> str:
    if report.routing_diff is None:
        return f"### What guilds would see\n{_escape(report.diff_note)}" if report.diff_note else ""
    text = render_markdown(report.routing_diff, followers=report.base_followers)
    if report.base_label:
        title, _, rest = text.partition("\n")
        text = f"{title}\nCompared with {report.base_label}.\n{rest}"
    return text


def _routes(report: CheckReport) -> str:
    repo = report.repository
    if repo is None:
        reason = report.load_error or "PATH is missing or defines no usable route"
        return f"### Routes\nNone usable: {_escape(reason)}"
    rows = [_route_row(index, route) for index, route in enumerate(repo.routes, 1)]
    header = (
        f"### Routes (schema {repo.schema_version}, tried in this order)\n"
        "| # | Route | Pattern | When |\n|---|---|---|---|"
    )
    return "\n".join([header, *rows])


def _route_row(index: int, route: Route) -> str:
    when = "; ".join(f"{name} in {', '.join(sorted(values))}" for name, values in route.when)
    name, pattern = _code(route.name, table=True), _code(route.pattern, table=True)
    return f"| {index} | {name} | {pattern} | {_cell(when) or 'always'} |"


def _preview(report: CheckReport) -> str:
    """A grid category x summary type: which file each common context gets."""
    contexts = common_contexts()
    categories = _unique(context.category or "" for context in contexts)
    types = _unique(context.type or "" for context in contexts)
    cells = {(c.category or "", c.type or ""): _resolved(report.repository, c) for c in contexts}
    header = [
        "### Resolution preview",
        "Which file answers each category and summary type:",
        "",
        "| Category | " + " | ".join(map(_cell, types)) + " |",
        "|---" * (len(types) + 1) + "|",
    ]
    rows = [
        f"| {_cell(category)} | "
        + " | ".join(cells.get((category, kind), "") for kind in types)
        + " |"
        for category in categories
    ]
    return "\n".join(header + rows)


def _resolved(repository: PromptRepository | None, context: Context) -> str:
    if repository is None:
        return "built-in"
    try:
        resolution = resolve(repository, context)
    except RepositoryError:
        return "error (the chosen file has errors)"
    if resolution.file_path is None:
        return "built-in"
    return _code(resolution.file_path, table=True)


def _problems(diagnostics: Sequence[Diagnostic]) -> str:
    if not diagnostics:
        return ""
    lines = [f"### Problems ({_counts(diagnostics)})"]
    for item in diagnostics:
        where = (
            item.path
            + (f":{item.line}" if item.line else "")
            + (f":{item.column}" if item.line and item.column else "")
        )
        lines.append(
            f"- **{item.severity}** {_code(where)} {_code(item.code)}: {_escape(item.message)}"
        )
        if item.hint:
            lines.append(f"  {_escape(item.hint)}")
    return "\n".join(lines)


def _fit(summary: str, limit: int = SUMMARY_LIMIT) -> str:
    """The summary, cut at a line boundary with a note when it exceeds `limit` characters."""
    if len(summary) <= limit:
        return summary
    room = limit - len(_TRUNCATION_NOTE)
    cut = summary[:room]
    newline = cut.rfind("\n")
    if newline > room // 2:
        cut = cut[:newline]
    return cut + _TRUNCATION_NOTE


# ---- Markdown helpers -----------------------------------------------------------------------


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _count(diagnostics: Sequence[Diagnostic], severity: str) -> int:
    return sum(1 for item in diagnostics if item.severity == severity)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- posting --------------------------------------------------------------------------------


async def start_check_run(
    runtime: Runtime, repository_id: int, sha: str, installation_id: int
) -> int:
    """Create the run `in_progress` on `sha` and remember it; returns its id (one request)."""
    payload = {
        "name": CHECK_NAME,
        "head_sha": sha,
        "status": "in_progress",
        "started_at": _now(),
        "output": {
            "title": "Validating prompts",
            "summary": f"guildprompts is validating `{sha[:7]}`.",
        },
    }
    run = await runtime.github.create_check_run(
        repository_id, payload, installation_id=installation_id
    )
    check_run_id = int(run["id"])
    await runtime.run_db(checkruns.record_check_run, repository_id, sha, check_run_id)
    return check_run_id


async def finish_check_run(
    runtime: Runtime,
    repository_id: int,
    check_run_id: int,
    installation_id: int,
    output: CheckOutput,
) -> int:
    """Send the annotations 50 per request and complete the run; returns the requests sent.

    The final request carries the last batch with the conclusion, so the run is only shown
    completed once every annotation is there.
    """
    notes = list(output.annotations)
    batches = [
        notes[i : i + ANNOTATIONS_PER_REQUEST]
        for i in range(0, len(notes), ANNOTATIONS_PER_REQUEST)
    ] or [[]]
    for batch in batches[:-1]:
        await runtime.github.update_check_run(
            repository_id,
            check_run_id,
            {"output": output.output(batch)},
            installation_id=installation_id,
        )
    final = {
        "status": "completed",
        "conclusion": output.conclusion,
        "completed_at": _now(),
        "output": output.output(batches[-1]),
    }
    await runtime.github.update_check_run(
        repository_id, check_run_id, final, installation_id=installation_id
    )
    await runtime.run_db(checkruns.complete_check_run, check_run_id, output.conclusion)
    return len(batches)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
