"""Markdown pieces that survive whatever text a repository holds (check runs, PR summaries)."""

from __future__ import annotations


def code(text: str, *, table: bool = False) -> str:
    """`text` as a code span that survives backticks in it (and pipes, in a table cell)."""
    text = text.replace("\n", " ")
    if table:
        text = text.replace("|", "\\|")
    fence = "`" * (_longest_run(text, "`") + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def fenced(text: str, language: str = "") -> str:
    """A fenced code block longer than any backtick run inside `text`."""
    fence = "`" * max(3, _longest_run(text, "`") + 1)
    return f"{fence}{language}\n{text.rstrip(chr(10))}\n{fence}"


def escape(text: str) -> str:
    """Plain text in Markdown: no HTML, no accidental mentions, one line."""
    return (
        text.replace("\\", "\\\\")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("@", "@\u200b")
        .replace("\n", " ")
    )


def cell(text: str) -> str:
    return escape(text).replace("|", "\\|")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _longest_run(text: str, char: str) -> int:
    longest = run = 0
    for current in text:
        run = run + 1 if current == char else 0
        longest = max(longest, run)
    return longest
