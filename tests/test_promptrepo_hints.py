"""Diagnostics an author can act on: the exact message and hint of each, as written.

Hints fit the repository (the file and line to change, never advice that would conflict with
what the repository already says), near misses get "did you mean", YAML errors are in plain
words with the line and a caret, and one problem across many files is reported once.
"""

from __future__ import annotations

from promptrepo import validate_report

PROMPT = "Summarise {messages}\n"


def findings(files: dict[str, str]) -> tuple[bool, list[tuple[object, ...]]]:
    report = validate_report({path: text.encode() for path, text in files.items()})
    return report.valid, [
        (d.path, d.line, d.column, d.severity, d.code, d.message, d.hint)
        for d in report.diagnostics
    ]


def test_a_v2_route_in_a_v1_repository_points_at_paths_version_line() -> None:
    valid, found = findings(
        {
            "PATH": "version: v1\nroutes:\n  by_channel:\n    path: prompts/{channel}.md\n"
            "    when: {category: [meeting]}\n  global_default: prompts/default.md\n",
            "prompts/default.md": PROMPT,
        }
    )
    assert not valid
    assert found == [
        (
            "PATH",
            4,
            5,
            "error",
            "route-v2-only",
            "route `by_channel` uses the v2 `path`/`when` form, but the repository uses schema v1",
            "Change `version: v1` to `version: v2` on line 1 of PATH, or write route `by_channel` "
            "as a string.",
        )
    ]


def test_a_v2_route_with_a_v1_schema_version_file_points_at_that_file() -> None:
    _, found = findings(
        {
            "PATH": "routes:\n  by_channel:\n    path: prompts/{channel}.md\n"
            "  global_default: prompts/default.md\n",
            "schema-version": "v1\n",
            "prompts/default.md": PROMPT,
        }
    )
    assert [(code, hint) for *_, code, _message, hint in found] == [
        (
            "route-v2-only",
            "Change the `schema-version` file's `v1` to `v2`, or write route `by_channel` as a "
            "string.",
        )
    ]


def test_a_v2_route_without_any_version_suggests_declaring_v2() -> None:
    _, found = findings(
        {
            "PATH": "routes:\n  by_channel:\n    path: prompts/{channel}.md\n"
            "  global_default: prompts/default.md\n",
            "prompts/default.md": PROMPT,
        }
    )
    assert found[0][-1] == (
        "Route mappings with `path`/`when` need schema v2: add `version: v2` to PATH (or a "
        "`schema-version` file containing `v2`), or write the route as a string."
    )


def test_misspelt_front_matter_keys_get_did_you_mean_and_parameters_is_an_error() -> None:
    valid, found = findings(
        {
            "PATH": "version: v2\nroutes:\n  global_default: prompts/default.md\n",
            "prompts/default.md": "---\nparamters:\n  temperature: 0.2\ndescripton: x\n"
            "include: [prompts/a.md]\n---\nHi {messages}\n",
        }
    )
    assert not valid  # the commit would ship without its temperature
    assert found == [
        (
            "prompts/default.md",
            2,
            1,
            "error",
            "front-matter-key-typo",
            "unknown key `paramters` in the front matter: did you mean `parameters`?",
            "Rename `paramters` to `parameters` on line 2 of prompts/default.md.",
        ),
        (
            "prompts/default.md",
            4,
            1,
            "warning",
            "front-matter-key",
            "unknown key `descripton` in the front matter: did you mean `description`?",
            "Rename `descripton` to `description` on line 4 of prompts/default.md.",
        ),
        (
            "prompts/default.md",
            5,
            1,
            "error",
            "front-matter-key-typo",
            "unknown key `include` in the front matter: did you mean `includes`?",
            "Rename `include` to `includes` on line 5 of prompts/default.md.",
        ),
    ]


def test_an_unrelated_unknown_key_stays_a_warning_without_a_guess() -> None:
    valid, found = findings(
        {
            "PATH": "version: v2\nroutes:\n  global_default: prompts/default.md\n",
            "prompts/default.md": "---\nauthor: me\n---\nHi {messages}\n",
        }
    )
    assert valid
    assert [(severity, code, message) for _, _, _, severity, code, message, _ in found] == [
        ("warning", "front-matter-key", "unknown key `author` in the front matter")
    ]


def test_route_names_and_path_keys_get_did_you_mean() -> None:
    _, found = findings(
        {
            "PATH": "version: v2\nroutes:\n  channel_specific: p/{channel}.md\n"
            "  global_default: prompts/default.md\nfallback_chian: [channel_specific]\n"
            "fallback_chain: [channel_specfic, global_default]\n",
            "prompts/default.md": PROMPT,
            "p/general.md": PROMPT,
        }
    )
    by_code = {
        code: (line, column, message, hint) for _, line, column, _, code, message, hint in found
    }
    assert by_code["path-unknown-key"] == (
        5,
        1,
        "unknown PATH key `fallback_chian`: did you mean `fallback_chain`?",
        "Rename `fallback_chian` to `fallback_chain` on line 5 of PATH.",
    )
    assert by_code["chain-undefined-route"] == (
        6,
        18,
        "fallback_chain names `channel_specfic`, which `routes:` does not define: did you mean "
        "`channel_specific`?",
        "Change `channel_specfic` to `channel_specific` on line 6 of PATH.",
    )


def test_placeholders_get_did_you_mean() -> None:
    _, found = findings(
        {
            "PATH": "version: v2\nroutes:\n  global_default: prompts/default.md\n",
            "prompts/default.md": "Summarise\n{mesages} for {categroy}\n",
        }
    )
    assert [(line, column, message, hint) for _, line, column, _, _, message, hint in found] == [
        (
            2,
            1,
            "`{mesages}` is not supplied by the routing context, PATH variables or the bot; it "
            "stays as written: did you mean `{messages}`?",
            "Write `{messages}` instead of `{mesages}` on line 2 of prompts/default.md.",
        ),
        (
            2,
            15,
            "`{categroy}` is not supplied by the routing context, PATH variables or the bot; it "
            "stays as written: did you mean `{category}`?",
            "Write `{category}` instead of `{categroy}` on line 2 of prompts/default.md.",
        ),
    ]


def test_a_tab_in_path_is_named_with_its_line_and_a_caret() -> None:
    _, found = findings(
        {
            "PATH": "version: v2\nroutes:\n\tglobal_default: prompts/default.md\n",
            "prompts/default.md": PROMPT,
        }
    )
    assert found == [
        (
            "PATH",
            3,
            1,
            "error",
            "path-syntax",
            "PATH is not valid YAML on line 3: a tab character: indent with spaces\n"
            "     global_default: prompts/default.md\n"
            "    ^",
            "On line 3, column 1: replace the tab with spaces (YAML refuses tabs).",
        )
    ]


def test_yaml_errors_in_front_matter_are_in_plain_words_with_the_files_line() -> None:
    _, found = findings(
        {
            "PATH": "version: v2\nroutes:\n  global_default: prompts/default.md\n",
            "prompts/default.md": "---\ntone: formal\ndescription: a: b\n---\nHi {messages}\n",
        }
    )
    assert found == [
        (
            "prompts/default.md",
            3,
            15,
            "error",
            "front-matter",
            "The front matter is not valid YAML on line 3: a `: ` where YAML does not expect a "
            "key\n    description: a: b\n                  ^",
            'On line 3, column 15: put the value in quotes ("...") when it contains `: `, or '
            "give each key its own line.",
        )
    ]


def test_an_unclosed_list_in_path() -> None:
    _, found = findings(
        {
            "PATH": "version: v2\nroutes:\n  global_default: prompts/default.md\n"
            "fallback_chain: [global_default\n",
            "prompts/default.md": PROMPT,
        }
    )
    assert found[0][5].startswith("PATH is not valid YAML on line 5: a `[` list is never closed")
    assert found[0][6] == (
        "On line 5, column 1: close the list with `]`, separating its items with commas."
    )


def test_unreachable_files_of_one_folder_are_one_finding_with_a_route_that_fits() -> None:
    valid, found = findings(
        {
            "PATH": "version: v2\nroutes:\n  global_default: prompts/default.md\n",
            "prompts/default.md": PROMPT,
            **{f"prompts/perspectives/{name}.md": PROMPT for name in ("developer", "manager")},
            "prompts/perspectives/lawyer.md": PROMPT,
        }
    )
    assert valid
    assert found == [
        (
            "prompts/perspectives/developer.md",
            None,
            None,
            "warning",
            "file-unreachable",
            "no route can reach these 3 files in prompts/perspectives/ (developer.md, lawyer.md, "
            "manager.md), and no reachable prompt includes them",
            "Add a route for them to PATH, e.g. `by_perspective: "
            "prompts/perspectives/{perspective}.md` under `routes:` (and in `fallback_chain`), "
            "or delete them.",
        )
    ]
