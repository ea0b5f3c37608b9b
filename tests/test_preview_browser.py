"""The preview page in a real headless Chromium (Debian's package, driven by Playwright).

Skipped when /usr/bin/chromium or Playwright is missing, except under
GUILDPROMPTS_REQUIRE_SERVICES=1 (CI installs Chromium): there it fails. Screenshots go to
test-artifacts/ at the repository root.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from github_app.preview import build_app
from tests.fakegithub import serve_on_loopback

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RELOAD_TIMEOUT_MS = 10_000  # the page polls every second


def _unavailable(reason: str) -> None:
    if os.environ.get("GUILDPROMPTS_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}; GUILDPROMPTS_REQUIRE_SERVICES=1 requires the browser test")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (the dev extra has it)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


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
    expect(table).to_have_count(9)
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
