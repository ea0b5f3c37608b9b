"""`guildprompts validate`, `resolve`, `test` and `diff`: the format, from a shell or a CI job.

Exit codes: 0 no error (warnings allowed), 1 the repository has errors, 2 usage or I/O problem.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

# The subcommands registered here: they run with the base install (no service dependency).
COMMANDS = ("validate", "resolve")


def register(subparsers: Any) -> None:
    validate = subparsers.add_parser(
        "validate",
        help="check a prompt repository",
        description="Check a prompt repository checked out in DIR. Exit status: 0 when there "
        "is no error (warnings allowed), 1 when there are errors, 2 on usage or I/O problems.",
    )
    validate.add_argument("directory", metavar="DIR", help="the repository's root directory")
    _format_option(validate, "workflow annotations")
    validate.add_argument(
        "--strict",
        action="store_true",
        help="report dangerous patterns as errors, as strict deployments do",
    )
    validate.add_argument(
        "--max-file-size",
        type=_positive_int,
        default=100 * 1024,
        metavar="BYTES",
        help="largest accepted file (default: 102400)",
    )
    add_base_option(validate)
    validate.set_defaults(run=run_validate)

    resolve = subparsers.add_parser(
        "resolve",
        help="show which prompt a context gets",
        description="Show which prompt file DIR's routes choose for a context, and its text.",
    )
    resolve.add_argument("directory", metavar="DIR", help="the repository's root directory")
    for name, metavar, text in (
        ("category", "C", "discussion, meeting, moderation or any other category"),
        ("channel", "X", "the channel name"),
        ("type", "T", "the summary type: brief, detailed, comprehensive, ..."),
        ("perspective", "P", "the reader's perspective: general, developer, ..."),
        ("locale", "L", "the reader's language: fr, pt-BR, ... (Discord's locale)"),
    ):
        resolve.add_argument(f"--{name}", metavar=metavar, help=text)
    resolve.add_argument(
        "--var",
        action="append",
        default=[],
        type=_variable,
        metavar="K=V",
        help="another context variable (repeatable)",
    )
    resolve.add_argument(
        "--render", action="store_true", help="fill in the placeholders the context supplies"
    )
    _format_option(resolve)
    add_base_option(resolve)
    resolve.set_defaults(run=run_resolve)

    test = subparsers.add_parser(
        "test",
        help="run a prompt repository's routing tests",
        description="Run the routing tests under DIR/tests/ (YAML). Exit status: 0 when every "
        "test passes, 1 when one fails or cannot be read, 2 on usage or I/O problems.",
    )
    test.add_argument("directory", metavar="DIR", help="the repository's root directory")
    _format_option(test, "workflow annotations")
    add_base_option(test)
    test.set_defaults(run=run_test)

    diff = subparsers.add_parser(
        "diff",
        help="show what a change does to the guilds following a branch",
        description="Compare the prompts every context that matters gets at two commits of the "
        "git checkout DIR (the working tree when --head is left out): contexts that change "
        "file, prompt text diffs, placeholders newly left unfilled, parameters changed. Exit "
        "status: 0 whatever changed, 2 on usage, git or I/O problems.",
    )
    diff.add_argument("directory", metavar="DIR", help="the repository's root in a git checkout")
    diff.add_argument("--base", required=True, metavar="REF", help="the commit to compare with")
    diff.add_argument("--head", metavar="REF", help="the changed commit (default: working tree)")
    diff.add_argument(
        "--layer",
        action="append",
        default=[],
        type=_base,
        metavar="OWNER/NAME=DIR",
        help="a local checkout of a base PATH `extends`, read under both commits (repeatable; "
        "`--base` is the commit to compare with here)",
    )
    _format_option(diff, "Markdown as the check run shows it ($GITHUB_STEP_SUMMARY, a comment)")
    diff.set_defaults(run=run_diff)


def _format_option(parser: Any, github: str | None = None) -> None:
    """`--format text|json[|github]`, with what `github` prints when the command has it."""
    choices = ("text", "json", "github") if github else ("text", "json")
    extra = f", github for {github}" if github else ""
    parser.add_argument(
        "--format",
        choices=choices,
        default="text",
        help=f"text for people, json for tools{extra} (default: text)",
    )


def add_base_option(parser: Any) -> None:
    """`--base OWNER/NAME=DIR` (repeatable): local checkouts of the bases PATH `extends`."""
    parser.add_argument(
        "--base",
        action="append",
        default=[],
        type=_base,
        metavar="OWNER/NAME=DIR",
        help="a local checkout of a base the repository's PATH `extends` (repeatable)",
    )


def _base(text: str) -> tuple[str, str]:
    name, sep, directory = text.partition("=")
    owner, slash, repository = name.strip().partition("/")
    if not sep or not slash or not owner or not repository or "/" in repository or not directory:
        raise argparse.ArgumentTypeError(f"expected OWNER/NAME=DIR, got {text!r}")
    return name.strip(), directory


def _read_bases(bases: list[tuple[str, str]], command: str) -> dict[str, dict[str, bytes]] | None:
    read: dict[str, dict[str, bytes]] = {}
    for name, directory in bases:
        files = _read(directory, command)
        if files is None:
            return None
        read[name] = files
    return read


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of bytes above 0, got {text!r}")
    return value


def _variable(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected K=V, got {text!r}")
    return key.strip(), value


def _read(directory: str, command: str) -> dict[str, bytes] | None:
    from promptrepo import files_from_directory

    try:
        return files_from_directory(directory)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"guildprompts {command}: cannot read {directory}: {reason}", file=sys.stderr)
        return None


def _tolerant_stdout() -> None:
    """Print any text, whatever the terminal's encoding."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")


def run_validate(args: argparse.Namespace) -> int:
    from promptrepo import validate_report

    files = _read(args.directory, "validate")
    bases = _read_bases(args.base, "validate")
    if files is None or bases is None:
        return 2
    _tolerant_stdout()
    report = validate_report(
        files, strict=args.strict, max_file_size=args.max_file_size, bases=bases
    )
    if args.format == "json":
        print(
            json.dumps(
                {
                    "valid": report.valid,
                    "schema_version": report.schema_version,
                    "diagnostics": [d.to_dict() for d in report.diagnostics],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    elif args.format == "github":
        for d in report.diagnostics:
            print(_workflow_command(d, args.directory))
        print(_summary(report, args.directory))
    else:
        for d in report.diagnostics:
            where = ":".join(str(part) for part in (d.path, d.line, d.column) if part is not None)
            print(f"{where}: {d.severity}: {d.message} [{d.code}]\n    hint: {d.hint}")
        print(_summary(report, args.directory))
    return 0 if report.valid else 1


def _summary(report: Any, directory: str) -> str:
    counts = {
        severity: sum(d.severity == severity for d in report.diagnostics)
        for severity in ("error", "warning", "notice")
    }
    version = f"schema {report.schema_version}" if report.schema_version else "schema unknown"
    found = ", ".join(
        f"{count} {severity}{'s' if count != 1 else ''}" for severity, count in counts.items()
    )
    verdict = "valid" if report.valid else "INVALID"
    return f"{directory}: {verdict} ({version}): {found}"


def _workflow_command(d: Any, directory: str) -> str:
    """`::error file=...,line=...::message`, escaped as GitHub Actions requires."""
    path = os.path.normpath(os.path.join(directory, d.path)).replace(os.sep, "/")
    properties = [f"file={_escape(path, True)}"]
    if d.line is not None:
        properties.append(f"line={d.line}")
    if d.column is not None:
        properties.append(f"col={d.column}")
    properties.append(f"title={_escape(d.code, True)}")
    message = _escape(d.message + "\n" + d.hint, False)
    return f"::{d.severity} {','.join(properties)}::{message}"


def _escape(text: str, is_property: bool) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if is_property:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def run_test(args: argparse.Namespace) -> int:
    from promptrepo.routing_tests import run_repository_tests

    files = _read(args.directory, "test")
    bases = _read_bases(args.base, "test")
    if files is None or bases is None:
        return 2
    _tolerant_stdout()
    run, load_error = run_repository_tests(files, bases=bases)
    passed = sum(result.passed for result in run.results)
    failed = len(run.results) - passed
    ok = load_error is None and run.passed
    if args.format == "json":
        document = {
            "passed": ok,
            "error": load_error,
            "results": [result.to_dict() for result in run.results],
            "diagnostics": [d.to_dict() for d in run.diagnostics],
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return 0 if ok else 1
    if args.format == "github":
        for d in run.diagnostics:
            print(_workflow_command(d, args.directory))
    else:
        for result in run.results:
            verdict = "ok  " if result.passed else "FAIL"
            where = f"{result.test.path}:{result.test.line}"
            print(f"{verdict} {where}: {result.test.name}")
            for failure in result.failures:
                print(f"       {failure}")
        for d in run.diagnostics:
            if d.code != "test-failed":
                print(f"{d.path}:{d.line or '-'}: {d.severity}: {d.message} [{d.code}]")
    if load_error is not None:
        print(f"{args.directory}: no test can run: {load_error}")
    elif not run.results and not run.diagnostics:
        print(f"{args.directory}: no routing tests (write them in tests/*.yaml)")
    else:
        print(f"{args.directory}: {passed} passed, {failed} failed")
    return 0 if ok else 1


def run_diff(args: argparse.Namespace) -> int:
    from promptrepo.files import GitError, files_from_git
    from promptrepo.routing_diff import diff_files, render_markdown, render_text

    try:
        base = files_from_git(args.directory, args.base)
        head = (
            files_from_git(args.directory, args.head)
            if args.head is not None
            else _read(args.directory, "diff")
        )
    except GitError as exc:
        print(f"guildprompts diff: {exc.strerror}", file=sys.stderr)
        return 2
    bases = _read_bases(args.layer, "diff")
    if head is None or bases is None:
        return 2
    _tolerant_stdout()
    result = diff_files(base or None, head or None, bases=bases or None)
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    elif args.format == "github":
        print(render_markdown(result))
    else:
        print(render_text(result), end="")
    return 0


def run_resolve(args: argparse.Namespace) -> int:
    from promptrepo import (
        Context,
        ContextError,
        RepositoryError,
        load_repository,
        render,
        resolve,
    )

    values: dict[str, str] = dict(args.var)
    for name in ("category", "channel", "type", "perspective", "locale"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    files = _read(args.directory, "resolve")
    bases = _read_bases(args.base, "resolve")
    if files is None or bases is None:
        return 2
    try:
        context = Context.from_mapping(values)
    except ContextError as exc:
        print(f"guildprompts resolve: {exc}", file=sys.stderr)
        return 2
    try:
        resolution = resolve(load_repository(files, bases=bases), context)
    except RepositoryError as exc:
        print(
            f"guildprompts resolve: {exc}\n(run `guildprompts validate {args.directory}` with "
            "the same --base options for every problem with its line)",
            file=sys.stderr,
        )
        return 1
    rendered = render(resolution.content, resolution.variables if args.render else {})
    _tolerant_stdout()
    result = {
        "file_path": resolution.file_path,
        "tried_paths": list(resolution.tried_paths),
        "route": resolution.route,
        "source": resolution.source,
        "schema_version": resolution.schema_version,
        "parameters": resolution.to_dict()["parameters"],
        "description": resolution.description,
        "metadata": resolution.to_dict()["metadata"],
        "expansion": resolution.expansion,
        "content": rendered.text,
        "unresolved": list(rendered.unresolved),
        "layer": resolution.layer,
    }
    if args.format == "json":
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    chosen = result["file_path"] or "(none: built-in default prompt)"
    lines = [
        f"file:       {chosen}",
        f"source:     {result['source']}",
        f"layer:      {result['layer'] or '-'}",
        f"route:      {resolution.route_label or '-'}",
        f"schema:     {result['schema_version'] or '-'}",
        "tried:      " + (", ".join(result["tried_paths"]) or "-"),
    ]
    if result["description"]:
        lines.append(f"about:      {result['description']}")
    if result["parameters"]:
        lines.append(f"parameters: {json.dumps(result['parameters'], ensure_ascii=False)}")
    if result["metadata"]:
        lines.append(f"metadata:   {json.dumps(result['metadata'], ensure_ascii=False)}")
    lines.append("unresolved: " + (", ".join(result["unresolved"]) or "-"))
    print("\n".join(lines) + "\n\n" + rendered.text.rstrip("\n"))
    return 0
