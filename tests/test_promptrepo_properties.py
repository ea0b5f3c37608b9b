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
