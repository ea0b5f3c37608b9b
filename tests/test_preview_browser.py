"""The preview page in a real headless Chromium (see tests/browser.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from github_app.preview import build_app
from tests.browser import ARTIFACTS
from tests.fakegithub import serve_on_loopback

pytestmark = pytest.mark.browser

RELOAD_TIMEOUT_MS = 10_000  # the page polls every second


@pytest.fixture
def page(browser: Any, checkout: Path) -> Iterator[Any]:
    """A page on the preview over `checkout`; fails the test on any console error (CSP too)."""
    problems: list[str] = []
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda error: problems.append(str(error)))
    with serve_on_loopback(build_app(checkout)) as url:
        tab.goto(url + "/")
        yield tab
        context.close()  # before the server stops: the page polls it
    assert problems == [], f"the page logged errors: {problems}"


def test_the_preview_page_in_chromium(page: Any, checkout: Path) -> None:
    from playwright.sync_api import expect

    expect(page).to_have_title("Preview · prompts-repo")
    expect(page.locator("#status")).to_contain_text("Valid (schema v2)")
    expect(page.locator("#diagnostics")).to_have_text("No problems found.")
    table = page.locator("#resolution tbody tr")
    expect(table).to_have_count(27)  # 9 contexts, each also with the 2 perspectives it has
    expect(page.locator("#resolution thead")).to_contain_text("Perspective")
    expect(table.first).to_contain_text("prompts/discussion/brief.md")
    expect(table.first).to_contain_text("category_type")

    page.fill("input[name=category]", "discussion")
    page.fill("input[name=channel]", "announcements")
    page.click("button[type=submit]")
    expect(page.locator("#result")).to_contain_text("prompts/discussion/channels/announcements.md")
    expect(page.locator("#content")).to_contain_text("List every announcement")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "preview.png"), full_page=True)

    # An edit shows by itself: the page notices the new fingerprint and reloads.
    announcements = checkout / "prompts/discussion/channels/announcements.md"
    announcements.write_text("Only the announcements, newest first.\n\n{messages}\n")
    expect(page.locator("#content")).to_contain_text(
        "Only the announcements, newest first.", timeout=RELOAD_TIMEOUT_MS
    )
    expect(page.locator("input[name=channel]")).to_have_value("announcements")

    # A broken PATH: the errors appear, with what still serves.
    path_file = checkout / "PATH"
    path_file.write_text(path_file.read_text().replace("version: v2", "version: v9"))
    expect(page.locator("#status")).to_contain_text(
        "GitHub would reject this version", timeout=RELOAD_TIMEOUT_MS
    )
    expect(page.locator("#diagnostics tbody tr.error").first).to_contain_text("PATH")
    page.screenshot(path=str(ARTIFACTS / "preview-errors.png"), full_page=True)
