"""Locale routing through the public API: `pt-BR` -> `pt` -> no locale, in v1 and v2."""

from __future__ import annotations

import pytest

from promptrepo import Context, load_repository, render, resolve, validate

V2_PATH = (
    b"version: v2\n"
    b"routes:\n"
    b'  localised: "prompts/{locale}/{category}.md"\n'
    b'  global: "prompts/default.md"\n'
)
V2_FILES = {
    "PATH": V2_PATH,
    "prompts/pt-br/meeting.md": b"Reuniao (Brasil) em {locale}: {messages}",
    "prompts/pt/meeting.md": b"Reuniao (Portugal): {messages}",
    "prompts/meeting.md": b"Meeting: {messages}",
    "prompts/default.md": b"Global: {messages}",
}

# The earlier bot's line-based PATH: v1 fills missing variables with `default`, never the locale.
V1_FILES = {
    "PATH": b"prompts/{locale}/{category}/{channel}.md\nprompts/default.md\n",
    "prompts/pt-br/meeting/default.md": b"BR",
    "prompts/pt/meeting/standup.md": b"PT standup",
    "prompts/meeting/default.md": b"Meeting",
    "prompts/default/default.md": b"Default category",
    "prompts/default.md": b"Global",
}


def without(files: dict[str, bytes], *paths: str) -> dict[str, bytes]:
    return {path: data for path, data in files.items() if path not in paths}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("pt-BR", "pt-br"),
        ("pt_BR", "pt-br"),
        (" PT-br ", "pt-br"),
        ("es-419", "es-419"),
        ("zh-Hant-TW", "zh-hant-tw"),
        ("fr", "fr"),
    ],
)
def test_locales_become_lower_case_bcp47_tags(raw: str, expected: str) -> None:
    assert Context.from_mapping({"locale": raw}).get("locale") == expected


@pytest.mark.parametrize("raw", ["", "x", "pt BR", "../etc", "pt-", "123", "pt--br", "日本語"])
def test_a_value_that_is_no_language_tag_counts_as_no_locale(raw: str) -> None:
    assert Context.from_mapping({"locale": raw, "category": "meeting"}).get("locale") is None


def test_guild_locale_stands_in_only_when_the_context_has_no_locale() -> None:
    assert Context.from_mapping({"guild_locale": "pt_BR"}).items == (("locale", "pt-br"),)
    both = Context.from_mapping({"locale": "fr", "guild_locale": "de"})
    assert both.items == (("locale", "fr"),)
    # An unusable user locale does not hide the server's.
    assert Context.from_mapping({"locale": "??", "guild_locale": "de"}).get("locale") == "de"


def test_v2_tries_the_full_tag_then_its_language_then_the_route_without_locale() -> None:
    context = {"category": "meeting", "locale": "pt-BR"}
    tried = ("prompts/pt-br/meeting.md", "prompts/pt/meeting.md", "prompts/meeting.md")
    full = resolve(load_repository(V2_FILES), context)
    assert (full.file_path, full.tried_paths) == (tried[0], tried[:1])
    language = resolve(load_repository(without(V2_FILES, tried[0])), context)
    assert (language.file_path, language.tried_paths) == (tried[1], tried[:2])
    bare = resolve(load_repository(without(V2_FILES, *tried[:2])), context)
    assert (bare.file_path, bare.tried_paths) == (tried[2], tried)
    neither = resolve(load_repository(without(V2_FILES, *tried)), context)
    assert (neither.file_path, neither.tried_paths) == (
        "prompts/default.md",
        (*tried, "prompts/default.md"),
    )


def test_v2_without_a_locale_uses_the_route_without_locale_instead_of_skipping_it() -> None:
    repo = load_repository(V2_FILES)
    for context in ({"category": "meeting"}, {"category": "meeting", "locale": "not a tag"}):
        result = resolve(repo, context)
        assert result.file_path == "prompts/meeting.md"
        assert result.tried_paths == ("prompts/meeting.md",)


def test_v2_uses_the_guild_locale_when_the_user_has_none() -> None:
    repo = load_repository(V2_FILES)
    result = resolve(repo, {"category": "meeting", "guild_locale": "pt-PT"})
    assert result.file_path == "prompts/pt/meeting.md"
    assert result.tried_paths == ("prompts/pt-pt/meeting.md", "prompts/pt/meeting.md")


def test_v1_keeps_the_locale_while_defaulting_the_other_variables() -> None:
    repo = load_repository(V1_FILES)
    context = {"category": "meeting", "channel": "standup", "locale": "pt_BR"}
    result = resolve(repo, context)
    assert result.tried_paths == (
        "prompts/pt-br/meeting/standup.md",
        "prompts/pt-br/meeting/default.md",
    )
    assert result.content == "BR"
    language = resolve(
        load_repository(without(V1_FILES, "prompts/pt-br/meeting/default.md")), context
    )
    assert language.file_path == "prompts/pt/meeting/standup.md"
    assert language.tried_paths[2:] == (
        "prompts/pt-br/default/default.md",
        "prompts/pt/meeting/standup.md",
    )


def test_v1_falls_back_from_pt_br_to_pt_to_no_locale_then_to_default_values() -> None:
    files = without(V1_FILES, "prompts/pt-br/meeting/default.md", "prompts/pt/meeting/standup.md")
    result = resolve(load_repository(files), {"category": "meeting", "locale": "pt-BR"})
    assert result.tried_paths == (
        "prompts/pt-br/meeting/default.md",
        "prompts/pt-br/default/default.md",
        "prompts/pt/meeting/default.md",
        "prompts/pt/default/default.md",
        "prompts/meeting/default.md",
    )
    missing = resolve(load_repository(files), {"category": "moderation"})
    assert missing.tried_paths == (
        "prompts/moderation/default.md",
        "prompts/default/default.md",
    )
    assert missing.content == "Default category"


@pytest.mark.parametrize(
    ("pattern", "bare"),
    [
        ("p/{category}.{locale}.md", "p/meeting.md"),
        ("p/{category}-{locale}.md", "p/meeting.md"),
        ("p/{locale}_{category}.md", "p/meeting.md"),
        ("{locale}/p/{category}.md", "p/meeting.md"),
        ("p/{category}/{locale}.md", "p/meeting.md"),
        ("p/{category}/{locale}/default.md", "p/meeting/default.md"),
    ],
)
def test_the_route_without_locale_drops_the_locale_and_one_separator(
    pattern: str, bare: str
) -> None:
    files = {"PATH": b"version: v2\nroutes: {r: '" + pattern.encode() + b"'}\n", "x.md": b"x"}
    result = resolve(load_repository(files), {"category": "meeting", "locale": "fr-CA"})
    full = pattern.replace("{category}", "meeting")
    assert result.tried_paths == (
        full.replace("{locale}", "fr-ca"),
        full.replace("{locale}", "fr"),
        bare,
    )


def test_when_conditions_on_the_locale_apply_to_each_tag_tried() -> None:
    files = {
        "PATH": b"version: v2\nroutes:\n"
        b"  lusophone:\n    path: 'l/{locale}.md'\n    when: {locale: [PT]}\n"
        b"  global: 'l/default.md'\n",
        "l/pt.md": b"PT",
        "l/default.md": b"G",
    }
    repo = load_repository(files)
    assert resolve(repo, {"locale": "pt-BR"}).file_path == "l/pt.md"
    assert resolve(repo, {"locale": "pt-BR"}).tried_paths == ("l/pt.md",)
    assert resolve(repo, {"locale": "fr"}).file_path == "l/default.md"
    assert resolve(repo, {}).file_path == "l/default.md"
    assert validate(files) == []


def test_rendering_gets_the_tag_in_its_usual_casing() -> None:
    resolution = resolve(load_repository(V2_FILES), {"category": "meeting", "locale": "pt_BR"})
    rendered = render(resolution.content, resolution.variables)
    assert rendered.text.startswith("Reuniao (Brasil) em pt-BR: ")
    assert "locale" in rendered.substituted
    for raw, shown in (("zh_hant_tw", "zh-Hant-TW"), ("ES-419", "es-419"), ("FR", "fr")):
        assert Context.from_mapping({"guild_locale": raw}).rendering() == {"locale": shown}
    # Two spellings of one locale share one cache key.
    assert Context.from_mapping(locale="pt_BR").key == Context.from_mapping(locale="pt-BR").key


def test_validation_knows_locale_routes_files_and_placeholders() -> None:
    assert validate(V2_FILES) == []
    assert validate(V1_FILES) == []


def test_validation_reports_a_locale_default_or_condition_that_is_no_tag() -> None:
    files = {
        "PATH": b"version: v2\nroutes:\n"
        b"  r:\n    path: 'l/{locale}.md'\n    when: {locale: ['pt br']}\n"
        b"variables: {locale: 'english please'}\n",
        "l/pt.md": b"PT",
    }
    messages = [d.message for d in validate(files) if d.code == "path-type"]
    assert any("`locale: english please` is not a language tag" in m for m in messages)
    assert any("`locale: pt br` is not a language tag" in m for m in messages)


def test_a_path_default_locale_applies_when_discord_sends_none() -> None:
    files = {**V2_FILES, "PATH": V2_PATH + b"variables: {locale: pt_PT}\n"}
    result = resolve(load_repository(files), {"category": "meeting"})
    assert result.file_path == "prompts/pt/meeting.md"
    assert resolve(
        load_repository(files), {"category": "meeting", "locale": "pt-BR"}
    ).file_path == ("prompts/pt-br/meeting.md")
