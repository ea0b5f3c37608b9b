"""Repositories extending bases (`extends`, `locked`) through the public promptrepo API."""

from __future__ import annotations

import pytest

from promptrepo import (
    Layer,
    RepositoryError,
    load_layers,
    load_repository,
    resolve,
    validate,
    validate_report,
)

BASE = {
    "schema-version": b"v2",
    "PATH": b"routes:\n"
    b'  category: "prompts/{category}.md"\n'
    b'  global: "prompts/default.md"\n'
    b"variables: {perspective: neutral}\n"
    b"locked: [prompts/moderation.md, global]\n",
    "prompts/default.md": b"Base global {perspective}: {messages}",
    "prompts/meeting.md": b"Base meeting: {messages}",
    "prompts/discussion.md": b"Base discussion: {messages}",
    "prompts/moderation.md": b"Base moderation: {messages}",
}
GUILD_PATH = b"version: v2\nextends: octo-org/base@main\n"
GUILD = {"PATH": GUILD_PATH, "prompts/meeting.md": b"Our meeting: {messages}"}
BASES = {"octo-org/base": BASE}


def codes(files: dict[str, bytes], bases: dict[str, dict[str, bytes]] = BASES) -> list[str]:
    return [d.code for d in validate(files, bases=bases) if d.severity == "error"]


def test_the_guild_serves_its_own_file_where_it_has_one_and_the_bases_elsewhere() -> None:
    repo = load_repository(GUILD, bases=BASES)
    own = resolve(repo, {"category": "meeting"})
    inherited = resolve(repo, {"category": "discussion"})
    assert (own.content, own.layer) == ("Our meeting: {messages}", None)
    assert (inherited.content, inherited.layer) == ("Base discussion: {messages}", "octo-org/base")
    assert inherited.route == "category"
    assert repo.layers == ("octo-org/base",)
    assert validate(GUILD, bases=BASES) == []


def test_base_variables_apply_and_the_guild_may_override_them() -> None:
    repo = load_repository(GUILD, bases=BASES)
    assert resolve(repo, {}).variables["perspective"] == "neutral"
    files = {**GUILD, "PATH": GUILD_PATH + b"variables: {perspective: developer}\n"}
    assert resolve(load_repository(files, bases=BASES), {}).variables["perspective"] == "developer"


def test_the_guilds_routes_come_first_and_redefine_the_bases_by_name() -> None:
    files = {
        "PATH": GUILD_PATH + b"routes:\n"
        b'  channel: "ours/{channel}.md"\n'
        b'  category: "ours/{category}.md"\n',
        "ours/standup.md": b"Standup",
        "ours/meeting.md": b"Our meeting",
    }
    repo = load_repository(files, bases=BASES)
    assert [route.name for route in repo.routes] == ["channel", "category", "global"]
    result = resolve(repo, {"category": "discussion", "channel": "general"})
    assert result.tried_paths == ("ours/general.md", "ours/discussion.md", "prompts/default.md")
    assert result.layer == "octo-org/base"
    assert validate(files, bases=BASES) == []


def test_an_explicit_chain_may_name_the_bases_routes() -> None:
    files = {
        "PATH": GUILD_PATH + b"routes: {typed: 'ours/{type}.md'}\n"
        b"fallback_chain: [category, typed, global]\n",
        "ours/brief.md": b"Brief",
    }
    repo = load_repository(files, bases=BASES)
    assert [route.name for route in repo.routes] == ["category", "typed", "global"]
    assert resolve(repo, {"category": "meeting", "type": "brief"}).content.startswith("Base")
    assert validate(files, bases=BASES) == []
    typo = {**files, "PATH": files["PATH"].replace(b"[category,", b"[categroy,")}
    assert "chain-undefined-route" in codes(typo)


def test_a_locked_file_is_an_error_and_the_bases_file_serves() -> None:
    files = {**GUILD, "prompts/moderation.md": b"Our own moderation"}
    (problem,) = [d for d in validate(files, bases=BASES) if d.severity == "error"]
    assert (problem.code, problem.path) == ("file-locked", "prompts/moderation.md")
    assert problem.message == "this file is locked by octo-org/base: remove it"
    repo = load_repository(files, bases=BASES)
    served = resolve(repo, {"category": "moderation"})
    assert (served.content, served.layer) == ("Base moderation: {messages}", "octo-org/base")


def test_a_locked_directory_locks_every_file_under_it() -> None:
    base = {**BASE, "PATH": BASE["PATH"].replace(b"[prompts/moderation.md,", b"[prompts/,")}
    assert codes(GUILD, {"octo-org/base": base}) == ["file-locked"]


def test_a_locked_route_cannot_be_redefined_or_left_out() -> None:
    redefined = {**GUILD, "PATH": GUILD_PATH + b"routes: {global: 'ours/default.md'}\n"}
    assert codes(redefined) == ["route-locked"]
    repo = load_repository(redefined, bases=BASES)
    assert resolve(repo, {"category": "other"}).file_path == "prompts/default.md"
    dropped = {**GUILD, "PATH": GUILD_PATH + b"fallback_chain: [category]\n"}
    assert codes(dropped) == ["route-locked"]
    assert [r.name for r in load_repository(dropped, bases=BASES).routes] == ["category", "global"]


def test_several_bases_nearest_last_are_searched_nearest_first() -> None:
    community = {
        "schema-version": b"v2",
        "PATH": b"routes: {category: 'prompts/{category}.md'}\n",
        "prompts/discussion.md": b"Community discussion",
        "prompts/meeting.md": b"Community meeting",
    }
    files = {
        "PATH": b"version: v2\nextends: [octo-org/base@main, octo-org/community@v1.2]\n",
        "prompts/meeting.md": b"Ours",
    }
    bases = {"octo-org/base": BASE, "Octo-Org/Community@v1.2": community}
    repo = load_repository(files, bases=bases)
    assert repo.layers == ("octo-org/community", "octo-org/base")
    assert resolve(repo, {"category": "meeting"}).content == "Ours"
    assert resolve(repo, {"category": "discussion"}).layer == "octo-org/community"
    assert resolve(repo, {"category": "moderation"}).layer == "octo-org/base"


def test_a_base_of_a_base_is_a_layer_too_and_the_same_api_takes_ordered_layers() -> None:
    middle = {
        "PATH": b"version: v2\nextends: octo-org/base@main\n",
        "prompts/discussion.md": b"Middle discussion",
    }
    bases = {"octo-org/middle": middle, "octo-org/base": BASE}
    files = {"PATH": b"version: v2\nextends: octo-org/middle@main\n"}
    repo = load_repository(files, bases=bases)
    assert repo.layers == ("octo-org/middle", "octo-org/base")
    assert resolve(repo, {"category": "discussion"}).content == "Middle discussion"
    assert resolve(repo, {"category": "meeting"}).layer == "octo-org/base"
    layered = load_layers(
        [Layer("", files), Layer("octo-org/middle", middle), Layer("octo-org/base", BASE)]
    )
    assert resolve(layered, {"category": "discussion"}).content == "Middle discussion"


def test_a_middle_base_overriding_what_a_deeper_base_locks_is_reported_on_path() -> None:
    middle = {
        "PATH": b"version: v2\nextends: octo-org/base@main\nroutes: {global: 'x/default.md'}\n",
        "prompts/moderation.md": b"Middle moderation",
        "x/default.md": b"x",
    }
    files = {"PATH": b"version: v2\nextends: octo-org/middle@main\n"}
    found = validate(files, bases={"octo-org/middle": middle, "octo-org/base": BASE})
    messages = sorted(d.message for d in found if d.code == "base-invalid")
    assert messages == [
        "base octo-org/middle: PATH:3: route `global` is locked by octo-org/base: remove it",
        "base octo-org/middle: prompts/moderation.md: this file is locked by octo-org/base: "
        "remove it",
    ]
    repo = load_repository(files, bases={"octo-org/middle": middle, "octo-org/base": BASE})
    assert resolve(repo, {"category": "moderation"}).content == "Base moderation: {messages}"


def test_cycles_and_more_than_three_layers_are_errors() -> None:
    def extending(target: str) -> dict[str, bytes]:
        return {"PATH": f"version: v2\nextends: {target}@main\n".encode(), "x.md": b"x"}

    cycle = {"a/one": extending("a/two"), "a/two": extending("a/one")}
    assert "extends-cycle" in codes(extending("a/one"), cycle)
    own = [d for d in validate(extending("a/one"), bases=cycle) if d.code == "extends-cycle"]
    assert "a/one -> a/two -> a/one" in own[0].message
    back = {"a/one": extending("me/guild")}
    assert "extends-cycle" in [
        d.code for d in validate_report(extending("a/one"), bases=back, name="me/guild").diagnostics
    ]
    deep = {"a/one": extending("a/two"), "a/two": extending("a/three"), "a/three": BASE}
    assert codes(extending("a/one"), deep) == []
    deeper = {**deep, "a/three": extending("a/four"), "a/four": BASE}
    assert "extends-depth" in codes(extending("a/one"), deeper)


def test_a_missing_base_makes_the_repository_unusable() -> None:
    assert codes(GUILD, {}) == ["base-missing"]
    with pytest.raises(RepositoryError, match="octo-org/base@main could not be read"):
        load_repository(GUILD)


def test_errors_inside_a_base_are_reported_on_the_guilds_path() -> None:
    broken = {**BASE, "prompts/discussion.md": b"\xff\xfe"}
    problems = [
        d for d in validate(GUILD, bases={"octo-org/base": broken}) if d.severity == "error"
    ]
    assert [(d.code, d.path, d.line) for d in problems] == [("base-invalid", "PATH", 2)]
    assert problems[0].message.startswith("base octo-org/base: prompts/discussion.md:1: ")


@pytest.mark.parametrize(
    "entry",
    [b"octo-org/base", b"octo-org/base@", b"/base@main", b"octo-org/base@../x", b"[]", b"3"],
)
def test_malformed_extends_entries_are_reported(entry: bytes) -> None:
    files = {**GUILD, "PATH": b"version: v2\nextends: " + entry + b"\n"}
    assert "extends-syntax" in codes(files)


def test_extends_needs_schema_v2() -> None:
    files = {**GUILD, "PATH": b"extends: octo-org/base@main\nroutes: {x: 'prompts/x.md'}\n"}
    assert "extends-syntax" in codes(files)


def test_only_the_guilds_own_files_are_checked_for_reachability() -> None:
    files = {**GUILD, "notes/todo.md": b"nobody routes here"}
    warnings = [(d.code, d.path) for d in validate(files, bases=BASES)]
    assert warnings == [("file-unreachable", "notes/todo.md")]
