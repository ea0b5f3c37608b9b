"""Property: no context value, however hostile, makes resolution leave the repository."""

from __future__ import annotations

import posixpath
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from promptrepo import Context, load_repository, resolve

PATH = (
    b"routes:\n"
    b'  deep: "prompts/{category}/{channel}/{type}.md"\n'
    b'  mixed: "prompts/{category}-{perspective}.md"\n'
    b'  extra: "{team}/{category}.md"\n'
    b'  localised: "{locale}/prompts/{category}.{locale}.md"\n'
    b'  global: "prompts/default.md"\n'
)
FILES = {"PATH": PATH, "prompts/default.md": b"Global"}
V2_FILES = {**FILES, "schema-version": b"v2"}

HOSTILE = st.one_of(
    st.text(max_size=300),
    st.sampled_from(
        [
            "..",
            "../..",
            "/etc/passwd",
            "..\\..\\x",
            "C:\\x",
            "~",
            ".",
            "%2e%2e",
            "a/../../b",
            "\x00",
            "İ" * 120,
            "\u202e..",
            "\uff2e\uff35\uff2c",
            "default",
        ]
    ),
    st.integers(),
)
CONTEXTS = st.fixed_dictionaries(
    {},
    optional={
        name: HOSTILE
        for name in (
            "category",
            "channel",
            "type",
            "perspective",
            "team",
            "summary_type",
            "guild_id",
            "locale",
            "guild_locale",
        )
    },
)


def _assert_inside(path: str) -> None:
    assert not path.startswith("/")
    assert "\\" not in path and "\x00" not in path
    segments = path.split("/")
    assert ".." not in segments and "." not in segments and "" not in segments
    assert not posixpath.normpath(path).startswith("..")


@settings(max_examples=300, deadline=None)
@given(context=CONTEXTS)
def test_no_context_value_escapes_the_repository(context) -> None:
    for files in (FILES, V2_FILES):
        result = resolve(load_repository(files), context)
        for path in result.tried_paths:
            _assert_inside(path)
        assert result.file_path in (None, *files)


@settings(max_examples=300, deadline=None)
@given(value=HOSTILE)
def test_normalised_values_are_safe_path_segments(value) -> None:
    normalised = Context.from_mapping({"channel": value}).get("channel")
    if normalised is not None:
        assert 0 < len(normalised) <= 100
        # letters and digits of any script, `_` and `-`: never `/`, `.`, `\`, space or control
        assert all(char.isalnum() or char in "_-" for char in normalised), normalised
        assert normalised == unicodedata.normalize("NFC", normalised.lower())
    locale = Context.from_mapping({"guild_locale": value}).get("locale")
    if locale is not None:
        assert 2 <= len(locale) <= 100 and "_" not in locale and ".." not in locale
        assert set(locale) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


BASE_FILES = {
    "schema-version": b"v2",
    "PATH": b"routes:\n"
    b'  channel: "p/{category}/{channel}.md"\n'
    b'  category: "p/{locale}/{category}.md"\n'
    b'  global: "p/default.md"\n',
    "p/default.md": b"base global",
}
PROMPT_PATHS = st.sampled_from(
    [
        "p/default.md",
        "p/meeting.md",
        "p/fr/meeting.md",
        "p/pt/discussion.md",
        "p/pt-br/discussion.md",
        "p/meeting/standup.md",
        "p/discussion/general.md",
    ]
)
LAYER_CONTEXTS = st.fixed_dictionaries(
    {},
    optional={
        "category": st.sampled_from(["meeting", "discussion", "other"]),
        "channel": st.sampled_from(["standup", "general"]),
        "locale": st.sampled_from(["fr", "fr-CA", "pt-BR", "pt", "de"]),
    },
)


@settings(max_examples=200, deadline=None)
@given(
    base=st.sets(PROMPT_PATHS),
    own=st.sets(PROMPT_PATHS),
    context=LAYER_CONTEXTS,
)
def test_a_layered_repository_resolves_like_its_files_copied_over_the_base(
    base: set[str], own: set[str], context: dict[str, str]
) -> None:
    """Without locks or routes of its own, extending a base is copying one's files over it."""
    base_files = {**BASE_FILES, **{path: f"base {path}".encode() for path in base}}
    own_files = {path: f"own {path}".encode() for path in own}
    guild = {"PATH": b"version: v2\nextends: o/base@main\n", **own_files}
    layered = resolve(load_repository(guild, bases={"o/base": base_files}), context)
    copied = resolve(load_repository({**base_files, **own_files}), context)
    assert (layered.file_path, layered.tried_paths, layered.content) == (
        copied.file_path,
        copied.tried_paths,
        copied.content,
    )
    expected_layer = None if layered.file_path in own_files else "o/base"
    assert layered.layer == expected_layer
