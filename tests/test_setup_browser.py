"""/setup in a real headless Chromium, through two web processes (see tests/browser.py).

A person fills the organisation and the App name in the one form and presses Create: the page
posts the manifest, with that name, to that organisation's "new App" URL on GitHub (a loopback
stand-in for github.com's web pages); they confirm there, and GitHub's redirect lands on the
*other* web process, which finishes the flow. Both processes use the new App at once.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.routing import Route

from tests.browser import ARTIFACTS
from tests.fakegithub import FakeGitHub, serve_on_loopback
from tests.harness import free_port, make_runtime, make_settings, served, wait_for

pytestmark = pytest.mark.browser


class GitHubPages:
    """github.com's manifest pages: the confirmation page, then the redirect with a code."""

    def __init__(self, fake: FakeGitHub) -> None:
        self.fake = fake
        self.received: list[dict[str, Any]] = []

    async def new_app(self, request: Request) -> HTMLResponse:
        form = parse_qs((await request.body()).decode())
        manifest = json.loads(form["manifest"][0])
        self.received.append(
            {
                "path": request.url.path,
                "state": request.query_params["state"],
                "manifest": manifest,
            }
        )
        code = self.fake.add_manifest_code(manifest)
        target = (
            manifest["redirect_url"]
            + "?"
            + urlencode({"code": code, "state": request.query_params["state"]})
        )
        return HTMLResponse(
            f"<h1>Create GitHub App {manifest['name']}</h1>"
            f'<form method="post" action="/confirm?{urlencode({"to": target})}">'
            '<button id="confirm">Create GitHub App</button></form>'
        )

    async def confirm(self, request: Request) -> RedirectResponse:
        return RedirectResponse(request.query_params["to"], status_code=302)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/settings/apps/new", self.new_app, methods=["POST"]),
                Route("/organizations/{org}/settings/apps/new", self.new_app, methods=["POST"]),
                Route("/confirm", self.confirm, methods=["POST"]),
            ]
        )


def test_setup_in_chromium_creates_the_org_app_and_another_process_finishes(
    browser: Any, sqlite_url: str
) -> None:
    from playwright.sync_api import expect

    fake = FakeGitHub()
    pages = GitHubPages(fake)
    second_port = free_port()
    with serve_on_loopback(pages.app()) as github_url:
        # PUBLIC_URL is the load balancer's address; this time it sends GitHub's redirect to
        # the second process.
        env = {"GITHUB_URL": github_url, "PUBLIC_URL": f"http://127.0.0.1:{second_port}"}
        settings = make_settings(sqlite_url, **env)
        first_runtime, second_runtime = make_runtime(settings, fake), make_runtime(settings, fake)
        with (
            served(first_runtime, run_worker=False) as first,
            served(second_runtime, run_worker=False, port=second_port) as second,
        ):
            problems: list[str] = []
            context = browser.new_context()
            tab = context.new_page()
            tab.on(
                "console",
                lambda m: (
                    problems.append(f"{m.text} {m.location}")
                    if m.type == "error" and not m.location.get("url", "").endswith("/favicon.ico")
                    else None
                ),
            )
            tab.goto(f"{first.base_url}/setup")
            tab.fill("input[name=org]", "acme-corp")
            tab.fill("input[name=name]", "acme-prompts")
            tab.click("form.create button")
            expect(tab.locator("h1")).to_have_text("Create GitHub App acme-prompts")
            tab.click("#confirm")
            expect(tab.locator("h1")).to_have_text("GitHub App created")
            ARTIFACTS.mkdir(exist_ok=True)
            tab.screenshot(path=str(ARTIFACTS / "setup-done.png"), full_page=True)
            assert tab.url.startswith(f"http://127.0.0.1:{second_port}/setup/callback?")
            context.close()
            assert problems == [], problems

            [received] = pages.received
            assert received["path"] == "/organizations/acme-corp/settings/apps/new"
            assert received["manifest"]["name"] == "acme-prompts"
            # Both processes use the new App at once, without a restart.
            for client in (second, first):
                hook = fake.webhook("ping", fake.ping_payload())

                def accepted(client: httpx.Client = client, hook: Any = hook) -> bool:
                    answer = client.post(
                        "/api/github/webhooks", content=hook.body, headers=hook.headers
                    )
                    return answer.status_code == 202

                wait_for(accepted, what="the new App's webhook secret")
                assert client.get("/setup").status_code == 410
