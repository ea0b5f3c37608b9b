"""Rendering: one pass, `{name}` and `{{name}}`, everything else untouched, never raising."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptrepo import render


@pytest.mark.parametrize(
    ("template", "variables", "text", "substituted", "unresolved"),
    [
        ("Hi {name}", {"name": "Ada"}, "Hi Ada", ("name",), ()),
        ("Hi {{name}}", {"name": "Ada"}, "Hi Ada", ("name",), ()),
        ("{messages}", {}, "{messages}", (), ("messages",)),
        ("{{messages}}", {}, "{{messages}}", (), ("messages",)),
        (
            'Answer as {"summary": "...", "items": [ ... ]}',
            {"summary": "x"},
            'Answer as {"summary": "...", "items": [ ... ]}',
            (),
            (),
        ),
        ("{ name } { } {", {"name": "x"}, "{ name } { } {", (), ()),
        ("}{name}{", {"name": "x"}, "}x{", ("name",), ()),
        ("{{{name}}}", {"name": "x"}, "{x}", ("name",), ()),
        ("{type} {summary_type}", {"type": "brief"}, "brief brief", ("type", "summary_type"), ()),
        ("{a}{b}{a}", {"a": "{b}", "b": "B"}, "{b}B{b}", ("a", "b"), ()),
        ("{n} and {n}", {"n": 3}, "3 and 3", ("n",), ()),
        ("{x}", {"x": None}, "{x}", (), ("x",)),
        ("", {"x": "y"}, "", (), ()),
    ],
)
def test_render_rules(template, variables, text, substituted, unresolved) -> None:
    result = render(template, variables)
    assert (result.text, result.substituted, result.unresolved) == (text, substituted, unresolved)


def test_render_does_not_rewrite_messages_or_json_like_the_earlier_bot() -> None:
    template = 'Summarise:\n{messages}\nReply with {"summary": "text"} only.'
    assert render(template, {"category": "meeting"}).text == template


def test_render_survives_hostile_inputs() -> None:
    class Exploding:
        def __str__(self) -> str:
            raise RuntimeError("boom")

    assert render("{a}", {"a": Exploding()}).unresolved == ("a",)
    assert render(None, {}).text == ""  # type: ignore[arg-type]
    assert render("{a}\ud800", {"a": "\udfff"}).text == "\udfff\ud800"


NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(template=st.text(), variables=st.dictionaries(st.text(), st.text()))
def test_render_never_raises_and_only_touches_placeholders(template, variables) -> None:
    result = render(template, variables)
    assert isinstance(result.text, str)
    assert render(template, {}).text == template


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(
        st.one_of(
            st.tuples(st.just("text"), st.text(alphabet=st.characters(blacklist_characters="{}"))),
            st.tuples(st.just("single"), NAMES),
            st.tuples(st.just("double"), NAMES),
        ),
        max_size=12,
    ),
    values=st.dictionaries(
        NAMES,
        st.one_of(
            st.text(),
            NAMES.map(lambda name: "{" + name + "}"),
            NAMES.map(lambda name: "{{" + name + "}}"),
        ),
        max_size=6,
    ),
)
def test_render_substitutes_once_and_never_rescans_values(pieces, values) -> None:
    template = ""
    expected = ""
    for kind, item in pieces:
        if kind == "text":
            template += item
            expected += item
            continue
        written = "{" + item + "}" if kind == "single" else "{{" + item + "}}"
        template += written
        expected += values.get(item, written)
    # Values that are themselves placeholders come out verbatim: nothing is scanned twice.
    assert render(template, values).text == expected
