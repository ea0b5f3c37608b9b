"""PATH parsing through the public API: both syntaxes, the real-world quirks, schema versions."""

from __future__ import annotations

import pytest

from promptrepo import RepositoryError, load_repository, resolve, validate

REAL_WORLD_PATH = (
    "version: v1\n"
    "routes:\n"
    '  channel_specific: "prompts/{category}/{channel}.md"\n'
    '  category_default: "prompts/{category}/default.md"\n'
    '  global_default: "prompts/default.md"\n'
    "fallback_chain: [channel_specific, category_default, global_default]\n"
    "variables: {perspective: general}\n"
    'allowed_guilds: ["123456789012345678", 876543210987654321]\n'
)
PROMPTS = {
    "prompts/default.md": b"Global {messages}",
    "prompts/meeting/default.md": b"Meeting {messages}",
    "prompts/meeting/standup.md": b"Standup {messages}",
}


def quirky(
    text: str, *, crlf: bool = False, bom: bool = False, indent: int = 0, padding: int = 0
) -> bytes:
    lines = [(" " * indent + line if line else line) + " " * padding for line in text.split("\n")]
    data = ("\r\n" if crlf else "\n").join(lines).encode()
    return b"\xef\xbb\xbf" + data if bom else data


QUIRKS = [
    pytest.param({}, id="plain"),
    pytest.param({"crlf": True}, id="crlf"),
    pytest.param({"bom": True}, id="bom"),
    pytest.param({"indent": 2}, id="indented"),
    pytest.param({"padding": 3}, id="trailing-spaces"),
    pytest.param({"crlf": True, "bom": True, "indent": 2, "padding": 2}, id="all-at-once"),
]


@pytest.mark.parametrize("quirks", QUIRKS)
def test_real_world_yaml_path_parses_with_every_quirk(quirks: dict) -> None:
    files = {"PATH": quirky(REAL_WORLD_PATH, **quirks), **PROMPTS}
    assert [d for d in validate(files) if d.severity == "error"] == []
    repo = load_repository(files)
    assert [route.name for route in repo.routes] == [
        "channel_specific",
        "category_default",
        "global_default",
    ]
    assert repo.allowed_guilds == ("123456789012345678", "876543210987654321")
    assert repo.variables == {"perspective": "general"}
    assert repo.schema_version == "v1"
    assert (
        resolve(repo, {"category": "meeting", "channel": "standup"}).file_path
        == "prompts/meeting/standup.md"
    )


@pytest.mark.parametrize("quirks", QUIRKS)
def test_real_world_quirks_in_a_line_based_path(quirks: dict) -> None:
    text = "# routes\nprompts/{category}/{channel}.md\n\nprompts/{category}/default.md\n"
    files = {"PATH": quirky(text + "prompts/default.md\n", **quirks), **PROMPTS}
    assert [d for d in validate(files) if d.severity == "error"] == []
    result = resolve(load_repository(files), {"category": "meeting", "channel": "other"})
    # v1: the channel route itself falls back to prompts/meeting/default.md
    assert result.file_path == "prompts/meeting/default.md"
    assert result.route == "line 2"
    assert result.tried_paths == ("prompts/meeting/other.md", "prompts/meeting/default.md")


def test_quirky_files_written_to_disk_validate_like_clean_ones(tmp_path) -> None:
    from promptrepo import files_from_directory

    (tmp_path / "prompts" / "meeting").mkdir(parents=True)
    (tmp_path / "PATH").write_bytes(
        quirky(REAL_WORLD_PATH, crlf=True, bom=True, indent=2, padding=1)
    )
    for path, data in PROMPTS.items():
        (tmp_path / path).write_bytes(data.replace(b"\n", b"\r\n"))
    assert validate(files_from_directory(tmp_path)) == []


def test_diagnostic_columns_point_into_the_indented_original() -> None:
    text = "routes:\n  ok: prompts/default.md\n  bad: ../secret.md\n"
    data = quirky(text, indent=2, crlf=True, bom=True)
    [problem] = [d for d in validate({"PATH": data, **PROMPTS}) if d.severity == "error"]
    assert (problem.code, problem.line, problem.column) == ("route-unsafe-path", 3, 10)


def test_yaml_syntax_error_reports_the_parsers_line_and_column() -> None:
    [problem] = validate({"PATH": b"routes:\n  a: x.md\n  b: [unclosed\n", "x.md": b"x"})
    assert problem.code == "path-syntax"
    assert problem.line == 4 and problem.column == 1
    assert "hint" in problem.to_dict() and problem.hint


def test_tab_indentation_is_a_syntax_error_with_a_hint_about_tabs() -> None:
    [problem] = validate({"PATH": b"routes:\n\tdefault: x.md\n", "x.md": b"x"})
    assert (problem.code, problem.line) == ("path-syntax", 2)
    assert "tabs" in problem.hint and "a tab character: indent with spaces" in problem.message


def test_fallback_chain_defaults_to_file_order() -> None:
    files = {
        "PATH": b"routes:\n  b: prompts/b.md\n  a: prompts/a.md\n",
        "prompts/a.md": b"A",
        "prompts/b.md": b"B",
    }
    repo = load_repository(files)
    assert [route.name for route in repo.routes] == ["b", "a"]
    assert resolve(repo, {}).file_path == "prompts/b.md"


def test_line_based_invalid_lines_are_skipped_and_reported_with_their_line() -> None:
    files = {
        "PATH": b"# comment\n../outside.md\nprompts/{category/x.md\nprompts/default.md\n",
        "prompts/default.md": b"Global",
    }
    problems = [(d.code, d.line) for d in validate(files) if d.severity == "error"]
    assert problems == [("route-unsafe-path", 2), ("route-pattern", 3)]
    result = resolve(load_repository(files), {"category": "x"})
    assert result.file_path == "prompts/default.md"
    assert result.tried_paths == ("prompts/default.md",)


def test_dot_segments_and_double_slashes_in_patterns_are_tolerated() -> None:
    files = {
        "PATH": b'routes: {a: "./prompts//{category}/default.md"}\n',
        "prompts/meeting/default.md": b"M",
    }
    assert validate(files) == []
    assert (
        resolve(load_repository(files), {"category": "meeting"}).file_path
        == "prompts/meeting/default.md"
    )


@pytest.mark.parametrize(
    ("schema_file", "path_version", "expected"),
    [
        (None, None, "v1"),
        (None, "v2", "v2"),
        (b"v2\n", None, "v2"),
        (b"\xef\xbb\xbf  V2 \r\n", "v2", "v2"),
        (b"v1", "V1", "v1"),
        (b"2", None, "v2"),
    ],
)
def test_schema_version_sources(schema_file, path_version, expected) -> None:
    path = b'routes: {a: "x.md"}\n'
    if path_version:
        path = f"version: {path_version}\n".encode() + path
    files = {"PATH": path, "x.md": b"x"}
    if schema_file is not None:
        files["schema-version"] = schema_file
    assert validate(files) == []
    assert load_repository(files).schema_version == expected


def test_line_based_path_is_v1_unless_schema_version_says_v2() -> None:
    files = {"PATH": b"x.md\n", "x.md": b"x"}
    assert load_repository(files).schema_version == "v1"
    assert load_repository({**files, "schema-version": b"v2"}).schema_version == "v2"


@pytest.mark.parametrize(
    ("files", "code", "path"),
    [
        ({"schema-version": b"v99"}, "schema-version-unsupported", "schema-version"),
        ({"schema-version": b"  \n"}, "schema-version-unsupported", "schema-version"),
        (
            {"schema-version": b"v2", "PATH": b'version: v1\nroutes: {a: "x.md"}\n'},
            "schema-version-conflict",
            "schema-version",
        ),
        ({"PATH": b'version: v99\nroutes: {a: "x.md"}\n'}, "schema-version-unsupported", "PATH"),
    ],
)
def test_unusable_schema_versions_are_errors_and_block_loading(files, code, path) -> None:
    files = {"PATH": b'routes: {a: "x.md"}\n', "x.md": b"x", **files}
    problems = [d for d in validate(files) if d.severity == "error"]
    assert [(d.code, d.path) for d in problems] == [(code, path)]
    if "unsupported" in code:
        assert "v1 or v2" in problems[0].message
    with pytest.raises(RepositoryError):
        load_repository(files)


@pytest.mark.parametrize("path", [b"", b"\n\n# only a comment\n", b"   \r\n"])
def test_empty_path_is_an_error(path: bytes) -> None:
    files = {"PATH": path, "x.md": b"x"}
    assert [(d.code, d.severity) for d in validate(files)] == [("path-empty", "error")]
    with pytest.raises(RepositoryError, match="empty"):
        load_repository(files)


def test_missing_path_is_an_error_and_blocks_loading() -> None:
    problems = validate({"prompts/default.md": b"x"})
    assert [(d.code, d.path, d.severity) for d in problems] == [("path-missing", "PATH", "error")]
    with pytest.raises(RepositoryError, match="no PATH"):
        load_repository({"prompts/default.md": b"x"})
