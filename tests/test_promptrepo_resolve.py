"""Resolution through the public API: v1's exact legacy order, v2 rules, defaults, no I/O."""

from __future__ import annotations

import builtins
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptrepo import (
    BOT_SUPPLIED_VARIABLES,
    Context,
    ContextError,
    RepositoryError,
    builtin_default,
    common_contexts,
    load_repository,
    render,
    resolve,
)

LEGACY_PATH = (
    b"routes:\n"
    b'  deep: "p/{category}/{type}/{channel}.md"\n'
    b'  category: "p/{category}/default.md"\n'
    b'  global: "p/default.md"\n'
)


def legacy_reference(patterns: list[str], context: dict[str, str]) -> list[str]:
    """The earlier implementation's candidate order, written independently from the spec."""
    import re

    out: list[str] = []
    for pattern in patterns:
        names = list(dict.fromkeys(re.findall(r"\{(\w+)\}", pattern)))

        def fill(values: list[str], pattern: str = pattern, names: list[str] = names) -> str:
            for name, value in zip(names, values, strict=True):
                pattern = pattern.replace("{" + name + "}", value)
            return pattern

        values = [context.get(name, "") for name in names]
        if all(values):
            out.append(fill(values))
        for i in range(len(names)):
            keep = len(names) - 1 - i
            out.append(
                fill([v or "default" for v in values[:keep]] + ["default"] * (len(names) - keep))
            )
    return list(dict.fromkeys(out))


def test_v1_tries_full_path_then_progressively_defaulted_paths_in_order() -> None:
    repo = load_repository({"PATH": LEGACY_PATH, "p/default.md": b"G"})
    result = resolve(repo, {"category": "meeting", "type": "brief", "channel": "standup"})
    assert result.tried_paths == (
        "p/meeting/brief/standup.md",
        "p/meeting/brief/default.md",
        "p/meeting/default/default.md",
        "p/default/default/default.md",
        "p/meeting/default.md",
        "p/default/default.md",
        "p/default.md",
    )
    assert (result.file_path, result.route, result.source) == ("p/default.md", "global", "custom")


def test_v1_missing_variable_skips_the_full_path_and_uses_default() -> None:
    repo = load_repository({"PATH": LEGACY_PATH, "p/meeting/default/default.md": b"MD"})
    result = resolve(repo, {"category": "meeting", "channel": "standup"})
    assert result.tried_paths == ("p/meeting/default/default.md",)
    assert result.file_path == "p/meeting/default/default.md"
    assert result.route == "deep"


CONTEXT_VALUES = st.sampled_from(["", "meeting", "brief", "standup", "default", "x"])


@settings(max_examples=150, deadline=None)
@given(
    category=CONTEXT_VALUES,
    type_=CONTEXT_VALUES,
    channel=CONTEXT_VALUES,
    existing=st.sets(
        st.sampled_from(
            legacy_reference(
                ["p/{category}/{type}/{channel}.md", "p/{category}/default.md", "p/default.md"],
                {"category": "meeting", "type": "brief", "channel": "standup"},
            )
        )
    ),
)
def test_v1_matches_the_legacy_reference(category, type_, channel, existing) -> None:
    files = {"PATH": LEGACY_PATH, **{path: b"x" for path in existing}}
    context = {"category": category, "type": type_, "channel": channel}
    expected = legacy_reference(
        ["p/{category}/{type}/{channel}.md", "p/{category}/default.md", "p/default.md"],
        {k: v for k, v in context.items() if v},
    )
    winner = next((path for path in expected if path in existing), None)
    result = resolve(load_repository(files), context)
    assert result.file_path == winner
    tried = expected[: expected.index(winner) + 1] if winner else expected
    assert list(result.tried_paths) == tried


V2_PATH = (
    b"version: v2\n"
    b"routes:\n"
    b'  channel: "p/{category}/{channel}.md"\n'
    b"  perspective:\n"
    b'    path: "p/perspectives/{perspective}.md"\n'
    b"    when: {perspective: [Developer, executive]}\n"
    b'  category: "p/{category}/default.md"\n'
    b'  global: "p/default.md"\n'
)
V2_FILES = {
    "PATH": V2_PATH,
    "p/perspectives/developer.md": b"Dev",
    "p/perspectives/general.md": b"General perspective",
    "p/meeting/default.md": b"Meeting",
    "p/default/default.md": b"never chosen in v2",
    "p/default.md": b"Global",
}


def test_v2_skips_routes_with_missing_variables_instead_of_defaulting() -> None:
    result = resolve(load_repository(V2_FILES), {"channel": "standup"})
    assert result.tried_paths == ("p/default.md",)
    assert result.file_path == "p/default.md"
    assert result.schema_version == "v2"


def test_v2_when_condition_gates_a_route() -> None:
    repo = load_repository(V2_FILES)
    developer = resolve(repo, {"category": "meeting", "perspective": "DEVELOPER"})
    assert (developer.file_path, developer.route) == ("p/perspectives/developer.md", "perspective")
    general = resolve(repo, {"category": "meeting", "perspective": "general"})
    assert general.file_path == "p/meeting/default.md"
    assert "p/perspectives/general.md" not in general.tried_paths


def test_path_variables_supply_defaults_but_the_context_wins() -> None:
    files = {
        "PATH": b'variables: {perspective: Developer}\nroutes: {a: "p/{perspective}.md"}\n',
        "p/developer.md": b"D",
        "p/executive.md": b"E",
    }
    repo = load_repository(files)
    assert resolve(repo, {}).file_path == "p/developer.md"
    assert resolve(repo, {"perspective": "executive"}).file_path == "p/executive.md"


def test_aliases_route_like_their_canonical_names() -> None:
    files = {"PATH": b'routes: {a: "p/{summary_type}/{guild}.md"}\n', "p/brief/42.md": b"x"}
    repo = load_repository(files)
    assert resolve(repo, {"type": "brief", "guild_id": "42"}).file_path == "p/brief/42.md"
    assert resolve(repo, {"summary_type": "Brief", "guild": 42}).file_path == "p/brief/42.md"


def test_context_values_are_normalised_before_reaching_a_path() -> None:
    files = {"PATH": b'routes: {a: "p/{channel}.md"}\n', "p/general_chat_.md": b"x"}
    result = resolve(load_repository(files), {"channel": "  General Chat! "})
    assert result.file_path == "p/general_chat_.md"


def test_v2_front_matter_parameters_metadata_and_includes_reach_the_result() -> None:
    files = {
        "PATH": b'version: v2\nroutes: {a: "p/{category}.md"}\n',
        "p/meeting.md": (
            b"---\ndescription: Notes\nmetadata: {owner: team, since: 2024-05-01}\n"
            b"parameters: {temperature: 0.2, max_tokens: 500, stop: [END]}\n"
            b"includes: [parts/style.md, parts/tail.yaml]\n---\n\nBody {messages}\n"
        ),
        "parts/style.md": b"---\nincludes: [parts/deeper.md]\n---\nStyle\n",
        "parts/deeper.md": b"Deeper\n",
        "parts/tail.yaml": b"description: ignored\nprompt: |\n  Tail\n",
    }
    result = resolve(load_repository(files), {"category": "meeting"})
    assert result.content == "Body {messages}\n\nStyle\n\nDeeper\n\nTail\n"
    assert result.description == "Notes"
    assert result.to_dict()["parameters"] == {
        "temperature": 0.2,
        "max_tokens": 500,
        "stop": ["END"],
    }
    assert result.to_dict()["metadata"] == {"owner": "team", "since": "2024-05-01"}


def test_v1_sends_front_matter_verbatim() -> None:
    text = b"---\nparameters: {temperature: 1}\n---\nBody\n"
    files = {"PATH": b'routes: {a: "p.md"}\n', "p.md": text}
    result = resolve(load_repository(files), {})
    assert result.content == text.decode()
    assert dict(result.parameters) == {}


def test_no_match_falls_back_to_the_builtin_default_for_the_category() -> None:
    repo = load_repository({"PATH": b'routes: {a: "p/{category}.md"}\n', "p/other.md": b"x"})
    result = resolve(repo, {"category": "Moderation"})
    assert result.source == "default"
    assert result.file_path is None and result.route is None
    assert result.tried_paths == ("p/moderation.md", "p/default.md")
    assert result.schema_version == "v1"
    assert result.content == builtin_default({"category": "moderation"}).content
    assert "{messages}" in result.content


@pytest.mark.parametrize("category", ["discussion", "meeting", "moderation", "gaming", None])
def test_builtin_defaults_exist_for_each_category_and_globally(category) -> None:
    result = resolve(None, {"category": category} if category else {})
    assert result.source == "default"
    assert result.schema_version is None
    rendered = render(result.content, {name: "X" for name in BOT_SUPPLIED_VARIABLES})
    assert rendered.unresolved == ()
    assert "messages" in rendered.substituted
    expected = category if category in ("discussion", "meeting", "moderation") else "global"
    assert result.metadata["builtin"] == expected


def test_builtin_defaults_differ_per_category() -> None:
    contents = {
        resolve(None, {"category": c}).content
        for c in ("discussion", "meeting", "moderation", "other")
    }
    assert len(contents) == 4


def test_resolving_to_a_broken_file_raises_a_clear_error() -> None:
    files = {"PATH": b'routes: {a: "p.md"}\n', "p.md": b"\xff\xfe"}
    with pytest.raises(RepositoryError, match=r"p\.md .*UTF-8"):
        resolve(load_repository(files), {})


def test_bad_context_keys_and_values_raise_context_errors() -> None:
    with pytest.raises(ContextError):
        Context.from_mapping({"not a key": "x"})
    with pytest.raises(ContextError):
        Context.from_mapping({"category": ["a", "list"]})


def test_context_is_normalised_hashable_and_keyed_stably() -> None:
    a = Context.from_mapping({"category": "meeting", "summary_type": "brief", "channel": ""})
    b = Context.from_mapping({"type": "brief", "category": "meeting", "channel": None})
    assert a == b and hash(a) == hash(b)
    assert a.key == "category=meeting&type=brief"
    assert a.get("summary_type") == "brief"
    # another spelling routes the same way but renders as written, so it is its own entry
    shown = Context.from_mapping({"Category": " Meeting ", "summary_type": "Brief"})
    assert shown.items == a.items and shown != a
    assert shown.key == "category=meeting&type=brief|category=Meeting&type=Brief"
    assert shown.rendering() == {"category": "Meeting", "type": "Brief"}
    long = Context.from_mapping({"channel": "É" * 500})
    assert long.get("channel") == "é" * 100
    assert Context.from_mapping({"channel": "#Général Chat"}).get("channel") == "_général_chat"
    assert Context.from_mapping({"channel": "e\u0301t\u00e9"}).get("channel") == "été"
    assert Context.from_mapping({"channel": "../up"}).get("channel") == "___up"
    both = Context.from_mapping({"summary_type": "brief", "type": "detailed"})
    assert both.get("type") == "detailed"


def test_common_contexts_cover_categories_and_summary_types() -> None:
    contexts = common_contexts()
    assert len(contexts) == len(set(contexts)) == 9
    assert {c.category for c in contexts} == {"discussion", "meeting", "moderation"}


def _big_repository() -> dict[str, bytes]:
    files = {
        "PATH": b'routes: {c: "p/{category}/{channel}.md", d: "p/default.md"}\n',
        "p/default.md": b"x",
    }
    for i in range(2000):
        files[f"p/cat{i % 20}/chan{i}.md"] = b"prompt {messages}"
    return files


def test_resolve_performs_no_io(monkeypatch) -> None:
    repo = load_repository(_big_repository())

    def forbidden(*args, **kwargs):
        raise AssertionError("resolve touched the file system")

    for module, name in [
        (builtins, "open"),
        (os, "open"),
        (os, "stat"),
        (os, "listdir"),
        (os, "scandir"),
    ]:
        monkeypatch.setattr(module, name, forbidden)
    assert resolve(repo, {"category": "cat3", "channel": "chan3"}).file_path == "p/cat3/chan3.md"
    assert resolve(repo, {"category": "nope"}).file_path == "p/default.md"
    assert resolve(None, {"category": "meeting"}).source == "default"


def test_resolve_on_a_loaded_repository_is_cheap() -> None:
    repo = load_repository(_big_repository())
    started = time.perf_counter()
    for i in range(2000):
        resolve(repo, Context.from_mapping({"category": f"cat{i % 20}", "channel": f"chan{i}"}))
    assert time.perf_counter() - started < 1.0  # about 10 microseconds each in practice
