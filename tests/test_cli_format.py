"""`guildprompts validate` and `guildprompts resolve`, run as a user or a CI job runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "github_app.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


BROKEN = {
    "PATH": b'routes:\n  a: "prompts/{category}.md"\n  b: "../outside.md"\n',
    "prompts/meeting.md": b"Meeting {messages} {mystery}\n",
}


def test_validate_clean_repository_exits_0(tmp_path) -> None:
    done = run("validate", EXAMPLES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid (schema v2): 0 errors, 0 warnings, 0 notices" in done.stdout


def test_validate_text_output_names_file_line_code_and_hint(tmp_path) -> None:
    done = run("validate", write(tmp_path, BROKEN))
    assert done.returncode == 1
    assert (
        "PATH:3:6: error: route `b`: '../outside.md' leaves the repository (`..`) "
        "[route-unsafe-path]" in done.stdout
    )
    assert "hint: Paths are relative" in done.stdout
    assert "prompts/meeting.md:1:20: warning:" in done.stdout
    assert "INVALID" in done.stdout and done.stderr == ""


def test_validate_json_has_exactly_the_pinned_keys(tmp_path) -> None:
    done = run("validate", write(tmp_path, BROKEN), "--format", "json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert list(report) == ["valid", "schema_version", "diagnostics"]
    assert report["valid"] is False and report["schema_version"] == "v1"
    assert [d["code"] for d in report["diagnostics"]] == [
        "route-unsafe-path",
        "placeholder-unknown",
    ]
    for diagnostic in report["diagnostics"]:
        assert list(diagnostic) == ["path", "line", "column", "severity", "code", "message", "hint"]


def test_validate_warnings_alone_exit_0(tmp_path) -> None:
    root = write(tmp_path, {"PATH": b"prompts/default.md\n", "prompts/default.md": b"{odd}"})
    done = run("validate", root, "--format", "json")
    assert done.returncode == 0
    assert json.loads(done.stdout)["valid"] is True


def test_validate_strict_turns_dangerous_patterns_into_errors(tmp_path) -> None:
    root = write(
        tmp_path,
        {
            "PATH": b"prompts/default.md\n",
            "prompts/default.md": b"Summarise {messages}; run eval(x)",
        },
    )
    assert run("validate", root).returncode == 0
    strict = run("validate", root, "--strict", "--format", "json")
    assert strict.returncode == 1
    [problem] = json.loads(strict.stdout)["diagnostics"]
    assert (problem["code"], problem["severity"]) == ("dangerous-pattern", "error")


def test_validate_github_format_prints_escaped_workflow_commands(tmp_path) -> None:
    write(tmp_path / "repo", BROKEN)
    done = subprocess.run(
        [sys.executable, "-m", "github_app.cli", "validate", "repo", "--format", "github"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("::error file=repo/PATH,line=3,col=6,title=route-unsafe-path::")
    assert "%0AHint" not in lines[0] and "%0APaths are relative" in lines[0]
    assert lines[1].startswith("::warning file=repo/prompts/meeting.md,line=1,col=20,")
    assert all("\n" not in line for line in lines)


def test_validate_max_file_size_is_in_bytes(tmp_path) -> None:
    root = write(tmp_path, {"PATH": b"p.md\n", "p.md": "é".encode() * 30})
    assert run("validate", root, "--max-file-size", "60").returncode == 0
    done = run("validate", root, "--max-file-size", "59", "--format", "json")
    assert json.loads(done.stdout)["diagnostics"][0]["code"] == "file-too-large"


@pytest.mark.parametrize(
    "args",
    [
        ("validate",),
        ("validate", "{dir}", "--format", "xml"),
        ("validate", "{dir}", "--max-file-size", "-1"),
        ("resolve", "{dir}", "--var", "novalue"),
        ("resolve", "{dir}", "--var", "bad key=x"),
    ],
)
def test_usage_errors_exit_2_without_a_traceback(tmp_path, args) -> None:
    write(tmp_path, {"PATH": b"p.md\n", "p.md": b"x"})
    done = run(*(arg.replace("{dir}", str(tmp_path)) for arg in args))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.strip()


@pytest.mark.parametrize("command", ["validate", "resolve"])
def test_missing_directory_exits_2_with_a_message(tmp_path, command) -> None:
    done = run(command, tmp_path / "nope")
    assert done.returncode == 2
    assert "cannot read" in done.stderr and "not a directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_resolve_json_has_exactly_the_pinned_keys() -> None:
    done = run(
        "resolve", EXAMPLES, "--category", "Discussion", "--type", "brief", "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert list(result) == [
        "file_path",
        "tried_paths",
        "route",
        "source",
        "schema_version",
        "parameters",
        "description",
        "metadata",
        "expansion",
        "content",
        "unresolved",
        "layer",
    ]
    assert result["file_path"] == "prompts/discussion/brief.md" and result["layer"] is None
    assert result["route"] == "category_type" and result["source"] == "custom"
    assert result["parameters"] == {"temperature": 0.2, "max_tokens": 300}
    assert "{channel_name}" in result["content"]
    assert "channel_name" in result["unresolved"] and "messages" in result["unresolved"]


def test_resolve_render_fills_context_and_extra_variables(tmp_path) -> None:
    root = write(
        tmp_path,
        {"PATH": b"p/{category}.md\n", "p/meeting.md": b"For {category} ({team}): {messages}"},
    )
    done = run(
        "resolve",
        root,
        "--category",
        "Meeting",
        "--var",
        "team=Core Devs",
        "--render",
        "--format",
        "json",
    )
    result = json.loads(done.stdout)
    assert result["content"] == "For Meeting (Core Devs): {messages}"
    assert result["unresolved"] == ["messages"]


def test_resolve_falls_back_to_the_builtin_default(tmp_path) -> None:
    root = write(tmp_path, {"PATH": b"p/{category}.md\n", "p/meeting.md": b"M"})
    done = run("resolve", root, "--category", "moderation", "--format", "json")
    result = json.loads(done.stdout)
    assert (result["file_path"], result["source"], result["route"]) == (None, "default", None)
    assert result["tried_paths"] == ["p/moderation.md", "p/default.md"]


def test_resolve_text_output_is_readable() -> None:
    done = run("resolve", EXAMPLES, "--category", "meeting")
    assert done.returncode == 0
    assert "file:       prompts/meeting/default.md" in done.stdout
    assert "route:      category_default" in done.stdout
    assert "Write the notes of the meeting" in done.stdout


def test_resolve_on_an_unusable_repository_exits_1_with_a_pointer_to_validate(tmp_path) -> None:
    done = run("resolve", write(tmp_path, {"p.md": b"x"}))
    assert done.returncode == 1
    assert "no PATH file" in done.stderr and "guildprompts validate" in done.stderr
    assert "Traceback" not in done.stderr


def test_validate_and_resolve_a_checkout_with_windows_quirks(tmp_path) -> None:
    lines = [
        "version: v1   ",
        "routes:",
        "  channel: 'p/{category}/{channel}.md'  ",
        "  category: 'p/{category}/default.md'",
    ]
    root = write(
        tmp_path,
        {
            # BOM, CRLF, the whole document indented by two spaces, trailing spaces
            "PATH": b"\xef\xbb\xbf" + "".join(f"  {line}\r\n" for line in lines).encode(),
            "p/meeting/default.md": b"\xef\xbb\xbfMeeting notes for {channel}\r\n{messages}\r\n",
        },
    )
    assert run("validate", root).returncode == 0
    done = run(
        "resolve",
        root,
        "--category",
        "meeting",
        "--channel",
        "Stand-Up",
        "--render",
        "--format",
        "json",
    )
    result = json.loads(done.stdout)
    assert result["tried_paths"] == ["p/meeting/stand-up.md", "p/meeting/default.md"]
    assert result["content"] == "Meeting notes for Stand-Up\n{messages}\n"


def test_resolve_returns_description_metadata_and_the_expansion_used(tmp_path) -> None:
    root = write(
        tmp_path,
        {
            "PATH": b"routes:\n  channel_specific: p/{category}/{channel}.md\n",
            "p/meeting/default.md": b"Notes {messages}",
            "p/default/default.md": b"Any {messages}",
        },
    )
    done = run("resolve", root, "--category", "meeting", "--channel", "ops", "--format", "json")
    result = json.loads(done.stdout)
    assert (result["route"], result["expansion"]) == ("channel_specific", "default")
    assert result["file_path"] == "p/meeting/default.md"
    text = run("resolve", root, "--category", "meeting", "--channel", "ops")
    assert "route:      channel_specific -> default\n" in text.stdout
    v2 = write(
        tmp_path / "v2",
        {
            "PATH": b"version: v2\nroutes:\n  all: p/{category}.md\n",
            "p/meeting.md": b"---\ndescription: Meeting notes.\nmetadata: {owner: me}\n---\nX",
        },
    )
    result = json.loads(run("resolve", v2, "--category", "meeting", "--format", "json").stdout)
    assert (result["description"], result["metadata"], result["expansion"]) == (
        "Meeting notes.",
        {"owner": "me"},
        None,
    )


def test_validate_and_resolve_take_local_checkouts_of_bases() -> None:
    guild, base = EXAMPLES / "guild", f"guildprompts/base-pack={EXAMPLES / 'base'}"
    assert run("validate", guild, "--base", base).returncode == 0
    missing = run("validate", guild, "--format", "json")
    assert missing.returncode == 1
    assert [d["code"] for d in json.loads(missing.stdout)["diagnostics"]] == ["base-missing"]
    done = run(
        "resolve",
        guild,
        "--base",
        base,
        "--category",
        "moderation",
        "--locale",
        "pt-BR",
        "--format",
        "json",
    )
    answer = json.loads(done.stdout)
    assert (answer["file_path"], answer["layer"]) == (
        "prompts/moderation.md",
        "guildprompts/base-pack",
    )
    assert answer["tried_paths"][0] == "prompts/pt-br/moderation.md"
    unusable = run("resolve", guild, "--category", "meeting")
    assert unusable.returncode == 1 and "could not be read" in unusable.stderr
    tested = run("test", guild, "--base", base, "--format", "json")
    assert tested.returncode == 0 and len(json.loads(tested.stdout)["results"]) == 4
    assert run("test", guild).returncode == 1


def test_routing_tests_of_a_layered_repository_check_its_bases_files(tmp_path) -> None:
    guild = tmp_path / "guild"
    shutil.copytree(EXAMPLES / "guild", guild)
    (guild / "tests" / "routing.yaml").write_text(
        "- name: moderation is ours\n"
        "  context: {category: moderation}\n"
        "  expect: {file: prompts/moderation.md, contains: [Our own rules]}\n"
    )
    done = run(
        "validate",
        guild,
        "--base",
        f"guildprompts/base-pack={EXAMPLES / 'base'}",
        "--format",
        "json",
    )
    assert done.returncode == 1
    assert [d["code"] for d in json.loads(done.stdout)["diagnostics"]] == ["test-failed"]


@pytest.mark.parametrize("value", ["base-pack=examples/base", "a/b", "a/b/c=x", "a/b="])
def test_a_malformed_base_option_is_a_usage_error(value: str) -> None:
    done = run("validate", EXAMPLES / "guild", "--base", value)
    assert done.returncode == 2 and "OWNER/NAME=DIR" in done.stderr


def test_an_unreadable_base_directory_exits_2(tmp_path) -> None:
    done = run("validate", EXAMPLES / "guild", "--base", f"a/b={tmp_path / 'nope'}")
    assert done.returncode == 2 and "cannot read" in done.stderr
