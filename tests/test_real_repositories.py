"""Repositories written for the earlier bot, as people really write them: they validate without
errors and route as that bot did.

The two fixtures reproduce the structure and quirks of two public repositories (their text is
ours: neither has a licence): mrjcleaver/summarizer-bot-rules (a YAML PATH saved with CRLF line
ends, odd indentation and padded values, perspective folders under a category) and
agenticsorg/summarizer-bot-rules (a line-based PATH whose routes start with `/`, meaning the
repository root, and one prompt file per summary type named `{type}.md`).
"""

from __future__ import annotations

import pytest

from promptrepo import load_repository, render, resolve, validate

PERSPECTIVES = ("developer", "executive", "finance", "marketing", "product", "support")

YAML_CRLF = {
    "PATH": (
        b"# Where the summariser looks for its prompt, most specific first.\r\n"
        b"\r\n"
        b"routes:\r\n"
        b"    by_perspective:   prompts/{category}/{perspective}/default.md   \r\n"
        b'    by_channel:       "prompts/{category}/{channel}.md"\r\n'
        b"    by_category:      prompts/{category}/default.md\r\n"
        b"    global:           prompts/default.md\r\n"
        b"\r\n"
        b"fallback_chain:\r\n"
        b"    - by_perspective\r\n"
        b"    - by_channel\r\n"
        b"    - by_category\r\n"
        b"    - global\r\n"
    ),
    "README.md": b"Prompts for our community summaries.\r\n",
    "prompts/default.md": b"Summarise this conversation from {channel}: {messages}\r\n",
    "prompts/discussion/default.md": b"Summarise the discussion in #{channel}.\r\n{messages}\r\n",
    "prompts/discussion/général.md": "Résumé de #{channel}.\n{messages}\n".encode(),
    "prompts/meeting/default.md": b"List decisions and owners of the meeting in {channel}.\r\n",
    "prompts/moderation/default.md": b"Note rule breaks reported in {channel}, if any.\r\n",
    **{
        f"prompts/discussion/{who}/default.md": (
            f"Summarise for a {who} reader of {{guild_name}}: {{messages}}\r\n".encode()
        )
        for who in PERSPECTIVES
    },
}

ROOTED_LINES = {
    "PATH": (
        b"# Most specific first: category and channel, then the channel, then the type alone\n"
        b"/v1/discord/{category}/{channel}/{type}.md\n"
        b"/v1/discord/{channel}/{type}.md\n"
        b"/v1/discord/{type}.md\n"
    ),
    "README": b"Summary prompts, one file per summary type.\n",
    "v1/discord/brief.md": b"Three bullet points about {channel}: {messages}\n",
    "v1/discord/detailed.md": b"A detailed summary of #{channel} for {guild}: {messages}\n",
}


@pytest.mark.parametrize("files", [YAML_CRLF, ROOTED_LINES], ids=["yaml-crlf", "rooted-lines"])
def test_they_validate_without_errors(files: dict[str, bytes]) -> None:
    errors = [d for d in validate(files) if d.severity == "error"]
    assert errors == []


def test_leading_slashes_are_read_from_the_root_with_a_notice() -> None:
    notices = [d for d in validate(ROOTED_LINES) if d.code == "route-leading-slash"]
    assert [(d.severity, d.line) for d in notices] == [("notice", 2), ("notice", 3), ("notice", 4)]
    assert "repository root" in notices[0].message


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"category": "discussion", "perspective": "Developer"}, "prompts/discussion/developer/"),
        ({"category": "discussion", "perspective": "finance", "channel": "x"}, "finance/default"),
        ({"category": "discussion", "channel": "Général"}, "prompts/discussion/général.md"),
        ({"category": "discussion", "channel": "general"}, "prompts/discussion/default.md"),
        ({"category": "meeting", "channel": "standup"}, "prompts/meeting/default.md"),
        ({"category": "support-desk"}, "prompts/default.md"),
    ],
)
def test_the_yaml_repository_routes_as_the_earlier_bot(
    context: dict[str, str], expected: str
) -> None:
    resolution = resolve(load_repository(YAML_CRLF), context)
    assert resolution.source == "custom"
    assert resolution.file_path is not None and expected in resolution.file_path


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"category": "discussion", "channel": "general", "type": "brief"}, "v1/discord/brief.md"),
        ({"summary_type": "Detailed"}, "v1/discord/detailed.md"),
    ],
)
def test_the_rooted_repository_routes_as_the_earlier_bot(
    context: dict[str, str], expected: str
) -> None:
    resolution = resolve(load_repository(ROOTED_LINES), context)
    assert (resolution.source, resolution.file_path) == ("custom", expected)
    assert resolution.tried_paths[-1] == expected


def test_prompts_show_the_values_the_guild_wrote() -> None:
    context = {"type": "detailed", "channel": "General Chat", "guild": "My Cool Guild"}
    resolution = resolve(load_repository(ROOTED_LINES), context)
    text = render(resolution.content, resolution.variables).text
    assert text.startswith("A detailed summary of #General Chat for My Cool Guild:")
    assert "general_chat" in resolution.tried_paths[0], "the path uses the path-safe value"
