"""Validation through the public API: each code, its position, strict mode, hostile input."""

from __future__ import annotations

import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptrepo import Diagnostic, validate

OK_PATH = b'routes: {a: "p/{category}.md", g: "p/default.md"}\n'
V2 = {"schema-version": b"v2\n"}


def codes(files: dict[str, bytes], **kwargs) -> list[tuple]:
    return [(d.code, d.severity, d.path, d.line, d.column) for d in validate(files, **kwargs)]


def only(files: dict[str, bytes], **kwargs) -> Diagnostic:
    [problem] = validate(files, **kwargs)
    return problem


def test_a_clean_repository_has_no_diagnostics() -> None:
    assert (
        validate(
            {
                "PATH": OK_PATH,
                "p/default.md": b"Hi {messages}",
                "p/meeting.md": b"Meeting {channel_name}",
            }
        )
        == []
    )


def test_diagnostics_serialise_with_the_pinned_keys() -> None:
    problem = only({"prompts/default.md": b"x"})
    assert list(problem.to_dict()) == [
        "path",
        "line",
        "column",
        "severity",
        "code",
        "message",
        "hint",
    ]


@pytest.mark.parametrize(
    ("path", "code", "line", "column"),
    [
        (b"routes:\n  1: p/default.md\n", "route-name", 2, 3),
        (b"routes:\n  ~: p/default.md\n", "route-name", 2, 3),
        (b"routes:\n  [a, b]: p/default.md\n", "route-name", 2, 3),
        (b"routes:\n  has space: p/default.md\n", "route-name", 2, 3),
        (b"routes:\n  a: //etc/passwd\n", "route-unsafe-path", 2, 6),
        (b"routes:\n  a: ~/passwd\n", "route-unsafe-path", 2, 6),
        (b"routes:\n  a: p/../../x.md\n", "route-unsafe-path", 2, 6),
        (b"routes:\n  a: 'C:/x.md'\n", "route-unsafe-path", 2, 6),
        (b"routes:\n  a: 'p/{cat egory}.md'\n", "variable-name", 2, 6),
        (b"routes:\n  a: 'p/{1x}.md'\n", "variable-name", 2, 6),
        (b"routes:\n  a: 'p/{{category}}.md'\n", "route-pattern", 2, 6),
        (b"routes:\n  a: 'p/category}.md'\n", "route-pattern", 2, 6),
        (b"routes:\n  a: 'p\\\\x.md'\n", "route-pattern", 2, 6),
        (b"routes:\n  a: 'p/'\n", "route-pattern", 2, 6),
        (b"routes:\n  a: 12\n", "path-type", 2, 6),
        (b"routes:\n  a: [p/x.md]\n", "path-type", 2, 6),
        (b"routes: p/default.md\n", "path-type", 1, 9),
        (b"- p/default.md\n", "path-type", 1, 1),
        (b"routes: {}\n", "path-no-routes", 1, 1),
        (b"version: v1\n", "path-no-routes", 1, 1),
        (b"routes: {a: x.md}\nfallback_chain: []\n", "path-no-routes", 2, 17),
        (b"routes: {a: x.md}\nfallback_chain: a\n", "path-type", 2, 17),
        (b"routes: {a: x.md}\nfallback_chain: [a, b]\n", "chain-undefined-route", 2, 21),
        (b"routes: {a: x.md}\nvariables: [a]\n", "path-type", 2, 12),
        (b"routes: {a: x.md}\nvariables: {'bad name': x}\n", "variable-name", 2, 13),
        (b"routes: {a: x.md}\nvariables: {tone: [a]}\n", "path-type", 2, 19),
        (b"routes: {a: x.md}\nallowed_guilds: 123\n", "path-type", 2, 17),
        (b"routes: {a: x.md}\nallowed_guilds: [abc]\n", "path-type", 2, 18),
        (b"routes:\n  a: {path: x.md, when: {category: [meeting]}}\n", "route-v2-only", 2, 6),
    ],
)
def test_path_errors_point_at_the_offending_node(path, code, line, column) -> None:
    files = {"PATH": path, "x.md": b"x", "p/default.md": b"x"}
    found = [d for d in validate(files) if d.severity == "error"]
    assert [(d.code, d.path, d.line, d.column) for d in found][:1] == [(code, "PATH", line, column)]
    assert found[0].hint


def test_a_non_string_route_key_does_not_crash_and_other_routes_still_work() -> None:
    from promptrepo import load_repository, resolve

    files = {
        "PATH": b"routes:\n  1: p/one.md\n  ? [x]\n  : p/x.md\n  g: p/default.md\n",
        "p/default.md": b"x",
    }
    assert [d.code for d in validate(files)] == ["route-name", "route-name"]
    assert resolve(load_repository(files), {}).file_path == "p/default.md"


@pytest.mark.parametrize(
    ("v2", "path", "code"),
    [
        (True, b"routes:\n  a: {when: {category: [x]}}\n", "path-type"),
        (True, b"routes:\n  a: {path: x.md, when: [x]}\n", "path-type"),
        (True, b"routes:\n  a: {path: x.md, when: {'a b': [x]}}\n", "variable-name"),
        (True, b"routes:\n  a: {path: x.md, when: {category: [[x]]}}\n", "path-type"),
    ],
)
def test_v2_route_mapping_errors(v2, path, code) -> None:
    files = {"PATH": path, "x.md": b"x", **(V2 if v2 else {})}
    assert code in [d.code for d in validate(files) if d.severity == "error"]


@pytest.mark.parametrize(
    ("path", "code"),
    [
        (b"routes: {a: x.md}\nfallback-chain: [a]\n", "path-unknown-key"),
        (b"routes: {a: x.md}\nroutes: {a: x.md}\n", "duplicate-key"),
        (b"routes:\n  a: x.md\n  a: x.md\n", "duplicate-key"),
        (b"routes: {a: x.md, b: x.md}\nfallback_chain: [a]\n", "route-unused"),
    ],
)
def test_path_warnings(path, code) -> None:
    problem = only({"PATH": path, "x.md": b"x"})
    assert (problem.code, problem.severity) == (code, "warning")


def test_route_with_unknown_variable_is_a_notice() -> None:
    problem = only(
        {"PATH": b'routes: {a: "p/{team}.md", g: "x.md"}\n', "p/a.md": b"x", "x.md": b"x"}
    )
    assert (problem.code, problem.severity, problem.line) == ("route-variable-unknown", "notice", 1)
    declared = {"PATH": b'variables: {team: a}\nroutes: {a: "p/{team}.md"}\n', "p/a.md": b"x"}
    assert validate(declared) == []


@pytest.mark.parametrize(
    ("data", "code", "line", "column"),
    [
        (b"", "prompt-empty", None, None),
        (b" \n\t\n", "prompt-empty", None, None),
        (b"ok line\nbad \xe9 byte", "file-encoding", 2, 5),
        (b"caf\xc3\xa9 \xff", "file-encoding", 1, 6),
        (b"line\nnul\x00here", "file-nul", 2, 4),
    ],
)
def test_file_content_errors(data, code, line, column) -> None:
    problem = only({"PATH": OK_PATH, "p/default.md": data})
    assert (problem.code, problem.severity, problem.line, problem.column) == (
        code,
        "error",
        line,
        column,
    )


def test_sizes_are_counted_in_bytes_not_characters() -> None:
    text = "é" * 60_000  # 60,000 characters, 120,000 bytes
    problem = only({"PATH": OK_PATH, "p/default.md": text.encode()})
    assert problem.code == "file-too-large" and "120000 bytes" in problem.message
    assert validate({"PATH": OK_PATH, "p/default.md": b"x" * 102_400}) == []


def test_size_limit_is_configurable_and_applies_to_path_too() -> None:
    files = {"PATH": OK_PATH, "p/default.md": b"x" * 100}
    assert [(d.code, d.path) for d in validate(files, max_file_size=99)] == [
        ("file-too-large", "p/default.md")
    ]
    assert [(d.code, d.path) for d in validate(files, max_file_size=10)] == [
        ("file-too-large", "PATH"),
        ("file-too-large", "p/default.md"),
    ]


@pytest.mark.parametrize(
    ("name", "data", "code", "line", "column"),
    [
        ("p/default.md", b"---\ndescription: x\nBody", "front-matter", 1, 1),
        ("p/default.md", b"---\ndescription: [unclosed\n---\nBody", "front-matter", 3, 1),
        ("p/default.md", b"---\n- a list\n---\nBody", "front-matter", 2, 1),
        ("p/default.md", b"---\nparameters: 3\n---\nBody", "front-matter", 2, 13),
        ("p/default.md", b"---\nmetadata: [1]\n---\nBody", "front-matter", 2, 11),
        ("p/default.md", b"---\ndescription: {a: 1}\n---\nBody", "front-matter", 2, 14),
        ("p/default.md", b"---\nincludes: x.md\n---\nBody", "front-matter", 2, 11),
        ("p/default.md", b"---\nincludes: [3]\n---\nBody", "front-matter", 2, 12),
        ("p/default.md", b"---\ndescription: only front matter\n---\n\n", "prompt-empty", 1, 1),
        ("p/default.md", b"---\nincludes: [../x.md]\n---\nBody", "include-path", 2, 12),
        ("p/default.md", b"---\nincludes: [/x.md]\n---\nBody", "include-path", 2, 12),
        ("p/default.md", b"---\nincludes: [nope.md]\n---\nBody", "include-missing", 2, 12),
        ("p/default.md", b"---\nincludes: [PATH]\n---\nBody", "include-missing", 2, 12),
        ("p/default.md", b"---\nincludes: [notes.txt]\n---\nBody", "include-missing", 2, 12),
        ("p/default.md", b"---\nincludes: [p/default.md]\n---\nBody", "include-cycle", 2, 12),
        ("p/x.yaml", b"description: no prompt\n", "prompt-yaml", 1, 1),
        ("p/x.yaml", b"prompt: {a: 1}\n", "prompt-yaml", 1, 9),
        ("p/x.yaml", b"just text\n", "prompt-yaml", 1, 1),
        ("p/x.yaml", b"prompt: [unclosed\n", "prompt-yaml", 2, 1),
    ],
)
def test_v2_prompt_errors(name, data, code, line, column) -> None:
    path = b'version: v2\nroutes: {a: "p/{category}.md", y: "p/{type}.yaml"}\n'
    files = {"PATH": path, "p/default.md": b"Default", "notes.txt": b"x", name: data}
    found = [d for d in validate(files) if d.severity == "error"]
    assert [(d.code, d.path, d.line, d.column) for d in found] == [(code, name, line, column)]


def test_include_cycles_through_several_files_are_reported_once() -> None:
    files = {
        "PATH": b'version: v2\nroutes: {a: "p/a.md"}\n',
        "p/a.md": b"---\nincludes: [p/b.md]\n---\nA",
        "p/b.md": b"---\nincludes: [p/c.md]\n---\nB",
        "p/c.md": b"---\nincludes: [p/a.md]\n---\nC",
    }
    problem = only(files)
    assert problem.code == "include-cycle"
    assert "p/a.md -> p/b.md -> p/c.md -> p/a.md" in problem.message


def test_includes_nest_five_levels_but_not_six() -> None:
    def chain(levels: int) -> dict[str, bytes]:
        files = {"PATH": b'version: v2\nroutes: {a: "p/0.md"}\n'}
        for i in range(levels):
            files[f"p/{i}.md"] = f"---\nincludes: [p/{i + 1}.md]\n---\n{i}".encode()
        files[f"p/{levels}.md"] = b"end"
        return files

    assert validate(chain(5)) == []
    problem = only(chain(6))
    assert (problem.code, problem.path) == ("include-depth", "p/0.md")


def test_include_bomb_is_refused_by_assembled_size() -> None:
    big = b"x" * 60_000
    files = {"PATH": b'version: v2\nroutes: {a: "p/top.md"}\n', "p/leaf.md": big}
    fan = "[" + ", ".join(["p/leaf.md"] * 20) + "]"
    files["p/top.md"] = f"---\nincludes: {fan}\n---\nTop".encode()
    problem = only(files)
    assert (problem.code, problem.path) == ("include-size", "p/top.md")


def test_unknown_front_matter_keys_are_warnings() -> None:
    files = {
        "PATH": b'version: v2\nroutes: {a: "p.md"}\n',
        "p.md": b"---\ndescrption: typo\n---\nBody",
    }
    problem = only(files)
    assert (problem.code, problem.severity, problem.line) == ("front-matter-key", "warning", 2)


def test_front_matter_in_v1_is_a_warning_and_yaml_prompts_in_v1_too() -> None:
    files = {
        "PATH": b'routes: {a: "p.md", y: "q.yaml"}\n',
        "p.md": b"---\na: 1\n---\nBody",
        "q.yaml": b"prompt: hi\n",
    }
    assert [(d.code, d.path) for d in validate(files)] == [
        ("front-matter-v1", "p.md"),
        ("yaml-prompt-v1", "q.yaml"),
    ]


ALIAS_BOMB = b"""\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
routes: {a: x.md}
"""
MERGE_BOMB = b"""\
a: &a {k0: 1, k1: 1, k2: 1, k3: 1, k4: 1, k5: 1, k6: 1, k7: 1}
b: &b {<<: [*a, *a, *a, *a, *a, *a, *a, *a]}
c: &c {<<: [*b, *b, *b, *b, *b, *b, *b, *b]}
d: &d {<<: [*c, *c, *c, *c, *c, *c, *c, *c]}
e: &e {<<: [*d, *d, *d, *d, *d, *d, *d, *d]}
f: &f {<<: [*e, *e, *e, *e, *e, *e, *e, *e]}
g: {<<: [*f, *f, *f, *f, *f, *f, *f, *f]}
routes: {a: x.md}
"""


@pytest.mark.parametrize("where", ["PATH", "front matter", "yaml prompt"])
@pytest.mark.parametrize(
    "document",
    [
        pytest.param(ALIAS_BOMB, id="billion-laughs"),
        pytest.param(MERGE_BOMB, id="merge-keys"),
        pytest.param(b"a: &a [*a]\nroutes: {a: x.md}\n", id="self-reference"),
        pytest.param(b"a: " + b"[" * 200_000 + b"\n", id="deep-flow"),
        pytest.param(
            b"a:\n" + b"".join(b" " * i + b"- \n" for i in range(1, 150)), id="deep-block"
        ),
        pytest.param(b"a: " + b"- " * 100_000 + b"x\n", id="compact-block"),
    ],
)
def test_hostile_yaml_fails_fast_with_bounded_memory(where, document) -> None:
    if where == "PATH":
        files = {"PATH": document, "x.md": b"x"}
    elif where == "front matter":
        files = {"PATH": b'routes: {a: "x.md"}\n', **V2, "x.md": b"---\n" + document + b"---\nx"}
    else:
        files = {"PATH": b'routes: {a: "x.yaml"}\n', **V2, "x.yaml": document + b"prompt: hi\n"}
    started = time.perf_counter()
    found = validate(files, max_file_size=1024 * 1024)
    assert time.perf_counter() - started < 0.5
    tracemalloc.start()
    try:
        validate(files, max_file_size=1024 * 1024)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024 * 1024
    assert any(
        d.severity == "error"
        and d.code in ("yaml-limits", "path-syntax", "front-matter", "prompt-yaml")
        for d in found
    )


def test_alias_bomb_is_reported_as_a_limit_with_its_position() -> None:
    problem = next(d for d in validate({"PATH": ALIAS_BOMB, "x.md": b"x"}))
    assert (problem.code, problem.path) == ("yaml-limits", "PATH")
    assert problem.line is not None


def test_modest_aliases_are_fine() -> None:
    files = {
        "PATH": b'version: v2\nroutes: {a: "x.md"}\n',
        "x.md": b"---\nmetadata: {a: &x {k: v}, b: *x}\nparameters: {<<: {t: 1}}\n---\nX",
    }
    assert validate(files) == []


def test_unreachable_routes_and_files_are_warnings_with_helpful_messages() -> None:
    files = {
        "PATH": b'routes: {c: "p/{category}/{channel}.md", g: "p/default.md"}\n',
        "p/Meeting/Standup.md": b"x",
        "p/default.md": b"x",
        "other/x.md": b"x",
    }
    found = validate(files)
    assert [(d.code, d.path) for d in found] == [
        ("route-unreachable", "PATH"),
        ("file-unreachable", "other/x.md"),
        ("file-unreachable", "p/Meeting/Standup.md"),
    ]
    assert "p/discussion/general.md" in found[0].hint
    assert "p/meeting/standup.md" in found[2].message


def test_when_values_narrow_what_a_route_can_reach() -> None:
    files = {
        "PATH": b'version: v2\nroutes:\n  a: {path: "p/{perspective}.md", '
        b"when: {perspective: [developer]}}\n",
        "p/executive.md": b"x",
    }
    assert [d.code for d in validate(files)] == ["route-unreachable", "file-unreachable"]


def test_files_only_reached_through_includes_are_reachable() -> None:
    files = {
        "PATH": b'version: v2\nroutes: {a: "p/default.md"}\n',
        "p/default.md": b"---\nincludes: [partials/a.md]\n---\nBody",
        "partials/a.md": b"---\nincludes: [partials/b.yaml]\n---\nA",
        "partials/b.yaml": b"prompt: B\n",
    }
    assert validate(files) == []


def test_ignored_files_are_not_validated() -> None:
    files = {
        "PATH": OK_PATH,
        "p/default.md": b"x",
        "README.md": b"\xff",
        "p/README.md": b"",
        ".github/workflows/x.yml": b"\x00",
        "LICENSE.md": b"",
        "image.png": b"\x89PNG",
    }
    assert validate(files) == []


def test_unknown_placeholders_are_warned_once_per_name_with_positions() -> None:
    files = {
        "PATH": b'variables: {tone: x}\nroutes: {a: "p/{category}.md", g: "p/default.md"}\n',
        "p/default.md": b"Hi {tone} {messages} {category} {summary_type} {guild_id}\n"
        b"{persona} and {persona} and {{persona}}",
    }
    found = validate(files)
    assert [(d.code, d.line, d.column) for d in found] == [
        ("placeholder-unknown", 2, 1),
        ("dangerous-pattern", 2, 29),
    ]
    assert "2 times" in found[0].message


PROSE = [
    "Keep the tone = friendly and warm.",
    "Explain the retrieval() step and its evaluation (briefly).",
    "Mention the executive summary, the online = true flag and the execution plan.",
    'Answer with JSON like {"summary": "...", "items": []} and nothing else.',
    "Use {messages} and {{messages}} and {{channel_name}}.",
    "Compare a < b and b > c; cost is $5 {maybe}.".replace(" {maybe}", ""),
    "Describe onboarding=done in plain words.",
]


@pytest.mark.parametrize("text", PROSE)
def test_ordinary_prose_passes_even_in_strict_mode(text: str) -> None:
    files = {"PATH": OK_PATH, "p/default.md": text.encode()}
    assert validate(files, strict=True) == []


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        "< SCRIPT src=x>",
        "JavaScript:alert(1)",
        "eval(input)",
        "exec (code)",
        "__import__('os')",
        "${process.env.SECRET}",
        "{{ user.name | upper }}",
        "{{unknown}}",
        "{{ messages }}",
        '<img src="x" onerror="alert(1)">',
        "<a href=x onClick = go()>",
    ],
)
def test_dangerous_patterns_warn_by_default_and_fail_in_strict_mode(text: str) -> None:
    files = {"PATH": OK_PATH, "p/default.md": f"Intro line\nsay {text} now".encode()}
    relaxed = only(files)
    assert (relaxed.code, relaxed.severity, relaxed.line) == ("dangerous-pattern", "warning", 2)
    assert relaxed.column == 5
    strict = only(files, strict=True)
    assert (strict.code, strict.severity) == ("dangerous-pattern", "error")
    assert "strict" in strict.hint


def test_positions_in_yaml_prompts_point_into_the_file() -> None:
    files = {
        "PATH": b'routes: {a: "p.yaml"}\n',
        **V2,
        "p.yaml": b"description: d\nprompt: |\n  First line\n  then eval(x) here\n",
    }
    problem = only(files)
    assert (problem.code, problem.line, problem.column) == ("dangerous-pattern", 4, 8)


def test_positions_after_front_matter_count_from_the_top_of_the_file() -> None:
    files = {
        "PATH": b'routes: {a: "p.md"}\n',
        **V2,
        "p.md": b"---\r\ndescription: d\r\n---\r\n\r\nBody {unknown_thing}\r\n",
    }
    problem = only(files)
    assert (problem.code, problem.line, problem.column) == ("placeholder-unknown", 5, 6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.binary(max_size=300),
    prompt=st.binary(max_size=300),
    schema=st.one_of(st.none(), st.binary(max_size=10)),
    strict=st.booleans(),
)
def test_validate_never_raises_on_arbitrary_bytes(path, prompt, schema, strict) -> None:
    files = {"PATH": path, "p/default.md": prompt, "p/x.yaml": prompt}
    if schema is not None:
        files["schema-version"] = schema
    for diagnostic in validate(files, strict=strict):
        assert diagnostic.severity in ("error", "warning", "notice")
        assert diagnostic.message and diagnostic.hint


YAMLISH = st.text(alphabet=st.sampled_from(list("ab:{}[]-,'\"&*!|> \n\t#<.%@/")), max_size=200)


@settings(max_examples=200, deadline=None)
@given(path=YAMLISH, front=YAMLISH)
def test_validate_never_raises_on_yaml_like_noise(path, front) -> None:
    files = {
        "PATH": path.encode(),
        **V2,
        "p/default.md": f"---\n{front}\n---\nx".encode(),
        "p/a.yaml": front.encode(),
    }
    assert isinstance(validate(files), list)
