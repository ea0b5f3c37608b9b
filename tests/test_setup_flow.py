"""App creation by manifest: the /setup page, the state check and the credentials' storage.

The converter here is a fake; the end-to-end run against the fake GitHub's conversion endpoint
belongs with the web app's tests.
"""

from __future__ import annotations

import json
import os
import stat
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import yaml
from starlette.applications import Starlette

from github_app.settings import Settings
from github_app.setup import MANIFEST_TEMPLATE, SetupConfig, default_app_name, setup_routes

REPO_ROOT = Path(__file__).resolve().parent.parent
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "Tk9UQVJFQUxLRVlub3RhcmVhbGtleW5vdGFyZWFsa2V5bm90YXJlYWxrZXlub3Rh\n"
    "cmVhbGtleW5vdGFyZWFsa2V5bm90YXJlYWxrZXk=\n"
    "-----END RSA PRIVATE KEY-----\n"
)
CONVERSION = {
    "id": 1234,
    "slug": "guildprompts-test",
    "name": "guildprompts test",
    "pem": PEM,
    "webhook_secret": "whsec-6f1ed002ab5595859014ebf0951522d9",
    "client_id": "Iv1.8a61f9b3a7aba766",
    "client_secret": "1726be1638095a19edd134c77bde3aa2ece1e5d8",
    "owner": {"login": "octocat"},
}
SECRETS = (PEM, CONVERSION["webhook_secret"], CONVERSION["client_secret"])


class FormReader(HTMLParser):
    """The form posting to GitHub: its action and the manifest it carries."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.manifest: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form" and values.get("method") == "post":
            self.action = values["action"]
        if tag == "input" and values.get("name") == "manifest":
            self.manifest = json.loads(values["value"] or "")


class FakeGitHub:
    def __init__(self, answer: dict[str, Any] | None = None, fail: bool = False) -> None:
        self.codes: list[str] = []
        self.answer = CONVERSION if answer is None else answer
        self.fail = fail

    async def convert(self, code: str) -> dict[str, Any]:
        self.codes.append(code)
        if self.fail:
            raise RuntimeError(f"422 from /app-manifests/{code}/conversions")
        return self.answer


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_client(base_url: str = "http://testserver", **options: Any) -> httpx.AsyncClient:
    options.setdefault("convert", FakeGitHub().convert)
    if "env_file" not in options:
        options.setdefault("save_credentials", lambda values: None)
    app = Starlette(routes=setup_routes(SetupConfig(**options)))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


async def open_setup(client: httpx.AsyncClient, query: str = "") -> FormReader:
    """The page's one form submitted (with the fields in `query`): the form bound for GitHub."""
    page = await client.get("/setup")
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    response = await client.post("/setup", data=dict(parse_qsl(query.lstrip("?"))))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    form = FormReader()
    form.feed(response.text)
    assert form.action and form.manifest
    return form


async def callback(client: httpx.AsyncClient, code: str, state: str) -> httpx.Response:
    return await client.get("/setup/callback", params={"code": code, "state": state})


def state_of(form: FormReader) -> str:
    return form.action.split("?state=", 1)[1]


def test_manifest_yaml_matches_the_template_the_service_uses() -> None:
    on_disk = yaml.safe_load((REPO_ROOT / "manifest" / "app.yml").read_text())
    assert on_disk == MANIFEST_TEMPLATE, (
        "manifest/app.yml and github_app/setup.py MANIFEST_TEMPLATE differ: change both"
    )


async def test_page_posts_the_manifest_with_this_deployments_urls() -> None:
    client = make_client(public_url="https://prompts.example.org/")
    form = await open_setup(client)
    assert form.action.startswith("https://github.com/settings/apps/new?state=")
    manifest = form.manifest
    assert manifest["url"] == "https://prompts.example.org/"
    assert manifest["hook_attributes"]["url"] == "https://prompts.example.org/api/github/webhooks"
    assert manifest["redirect_url"] == "https://prompts.example.org/setup/callback"
    assert manifest["setup_url"] == "https://prompts.example.org/setup/installed"
    assert manifest["default_permissions"] == {
        "contents": "read",
        "metadata": "read",
        "checks": "write",
        "pull_requests": "read",
    }
    events = set(manifest["default_events"])
    assert {
        "push",
        "pull_request",
        "check_suite",
        "check_run",
        "repository",
        "delete",
    } == events
    # App-level events: delivered to every App without subscribing; GitHub refuses a manifest
    # that lists them.
    assert not events & {
        "installation",
        "installation_repositories",
        "installation_target",
        "github_app_authorization",
        "meta",
    }


async def test_without_public_url_the_request_address_is_used_and_flagged_when_local() -> None:
    client = make_client()
    assert (await open_setup(client)).manifest["redirect_url"] == "http://testserver/setup/callback"
    local = make_client(base_url="http://127.0.0.1:8000")
    page = await local.get("/setup")
    assert (await local.post("/setup")).status_code == 200
    assert "GitHub cannot reach http://127.0.0.1:8000" in page.text


async def test_organisation_and_name() -> None:
    client = make_client()
    form = await open_setup(client, "?org=acme-corp&name=acme+prompts")
    assert form.action.startswith("https://github.com/organizations/acme-corp/settings/apps/new?")
    assert form.manifest["name"] == "acme prompts"
    bad = await client.post("/setup", data={"org": "../evil"})
    assert bad.status_code == 400
    assert "../evil is not a GitHub organisation name." in bad.text
    too_long = await client.post("/setup", data={"name": "x" * 35})
    assert too_long.status_code == 400
    assert "The App name must be at most 34 characters." in too_long.text


async def test_one_form_holds_owner_and_name_above_create_and_posts_on_to_github() -> None:
    client = make_client(public_url="https://prompts.example.org")
    page = (await client.get("/setup")).text
    assert page.count("<form") == 1
    form = page[page.index("<form") : page.index("</form>")]
    assert form.startswith('<form method="post" action="setup"')
    assert form.index('name="org"') < form.index('name="name"') < form.index("<button")
    # The default name is this deployment's, never the bare "guildprompts" only one App can have.
    assert 'name="name" value="guildprompts-prompts-example-org"' in form
    response = await client.post("/setup", data={"org": "", "name": ""})
    onward = FormReader()
    onward.feed(response.text)
    assert onward.manifest is not None
    assert onward.manifest["name"] == "guildprompts-prompts-example-org"
    nonce = response.headers["content-security-policy"].split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">document.getElementById("to-github").submit();' in (
        response.text
    )


def test_default_names_differ_between_deployments() -> None:
    assert default_app_name("https://a.example.org") == "guildprompts-a-example-org"
    assert default_app_name("https://b.example.org") == "guildprompts-b-example-org"
    local = default_app_name("http://127.0.0.1:8000")
    assert local.startswith("guildprompts-") and local != "guildprompts-"
    assert local == default_app_name("http://127.0.0.1:8000")  # stable across page loads
    assert local != default_app_name("http://127.0.0.1:9000")
    assert len(default_app_name("https://" + "x" * 60 + ".example")) <= 34


async def test_callback_with_a_good_state_saves_the_credentials_and_links_the_install() -> None:
    saved: list[dict[str, str]] = []
    github = FakeGitHub()
    client = make_client(convert=github.convert, save_credentials=saved.append)
    state = state_of(await open_setup(client))
    response = await callback(client, "c0de-from-github", state)
    assert response.status_code == 200, response.text
    assert github.codes == ["c0de-from-github"]
    assert saved == [
        {
            "GITHUB_APP_ID": "1234",
            "GITHUB_APP_SLUG": "guildprompts-test",
            "GITHUB_PRIVATE_KEY": PEM,
            "GITHUB_WEBHOOK_SECRET": CONVERSION["webhook_secret"],
            "GITHUB_CLIENT_ID": CONVERSION["client_id"],
            "GITHUB_CLIENT_SECRET": CONVERSION["client_secret"],
        }
    ]
    assert 'href="https://github.com/apps/guildprompts-test/installations/new"' in response.text
    assert response.headers["referrer-policy"] == "no-referrer"
    for secret in SECRETS:
        assert secret.strip() not in response.text
    # Setup is closed from now on, the callback included.
    assert (await client.get("/setup")).status_code == 410
    again = await callback(client, "c0de-2", state)
    assert again.status_code == 410
    assert github.codes == ["c0de-from-github"]


async def test_a_null_webhook_secret_is_generated_and_the_operator_told() -> None:
    """GitHub's description allows `webhook_secret: null`; the code is spent by then."""
    saved: list[dict[str, str]] = []
    github = FakeGitHub(answer={**CONVERSION, "webhook_secret": None})
    client = make_client(convert=github.convert, save_credentials=saved.append)
    state = state_of(await open_setup(client))

    response = await callback(client, "c0de-from-github", state)

    assert response.status_code == 200, response.text
    generated = saved[0]["GITHUB_WEBHOOK_SECRET"]
    assert len(generated) == 64 and generated != CONVERSION["webhook_secret"]
    assert "GitHub sent no webhook secret" in response.text
    assert f"<code>{generated}</code>" in response.text
    assert "https://github.com/settings/apps/guildprompts-test" in response.text
    assert response.headers["cache-control"] == "no-store"
    for secret in (PEM, CONVERSION["client_secret"]):
        assert secret.strip() not in response.text


@pytest.mark.parametrize(
    "params",
    [
        {"code": "c0de"},
        {"code": "c0de", "state": ""},
        {"code": "c0de", "state": "forged-state-value"},
    ],
)
async def test_callback_with_a_missing_or_unknown_state_is_refused(params: dict[str, str]) -> None:
    github = FakeGitHub()
    client = make_client(convert=github.convert)
    await open_setup(client)
    response = await client.get("/setup/callback", params=params)
    assert response.status_code == 400
    assert "missing its state, has expired or was already used" in response.text
    assert github.codes == []


async def test_a_state_works_once_and_expires() -> None:
    now = [1000.0]
    github = FakeGitHub(fail=True)
    client = make_client(convert=github.convert, state_ttl=60, clock=lambda: now[0])
    state = state_of(await open_setup(client))
    assert (await callback(client, "c", state)).status_code == 502
    assert (await callback(client, "c", state)).status_code == 400
    late = state_of(await open_setup(client))
    now[0] += 61
    assert (await callback(client, "c", late)).status_code == 400
    assert github.codes == ["c"]


async def test_a_refused_code_or_an_incomplete_answer_saves_nothing() -> None:
    saved: list[dict[str, str]] = []
    for github in (FakeGitHub(fail=True), FakeGitHub(answer={"id": 1, "slug": "x"})):
        client = make_client(convert=github.convert, save_credentials=saved.append)
        state = state_of(await open_setup(client))
        response = await callback(client, "c0de", state)
        assert response.status_code == 502
        assert "Start again" in response.text
        assert (await client.get("/setup")).status_code == 200
    assert saved == []


async def test_a_failed_save_says_what_to_do_without_showing_secrets() -> None:
    def broken_vault(values: dict[str, str]) -> None:
        raise OSError("disk full")

    client = make_client(save_credentials=broken_vault)
    state = state_of(await open_setup(client))
    response = await callback(client, "c0de", state)
    assert response.status_code == 500
    assert "https://github.com/settings/apps/guildprompts-test" in response.text
    for secret in SECRETS:
        assert secret.strip() not in response.text


async def test_env_file_is_written_0600_and_settings_read_it_back(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DATABASE_URL=sqlite:///x.db\nGITHUB_APP_ID=1\n# a comment\n")
    client = make_client(env_file=env_file)
    state = state_of(await open_setup(client))
    response = await callback(client, "c0de", state)
    assert response.status_code == 200, response.text
    assert "Restart guildprompts" in response.text
    assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600
    text = env_file.read_text()
    assert "# a comment" in text and text.count("GITHUB_APP_ID=") == 1
    settings = Settings.from_env(environ={}, env_file=env_file)
    assert settings.database_url == "sqlite:///x.db"
    assert settings.github_app_id == "1234"
    assert settings.github_app_slug == "guildprompts-test"
    assert settings.private_key_pem() == PEM.strip()
    assert settings.github_webhook_secrets == (CONVERSION["webhook_secret"],)
    assert settings.github_client_secret == CONVERSION["client_secret"]
    assert settings.app_configured
    assert list(tmp_path.iterdir()) == [env_file]


async def test_an_enterprise_host_gets_its_own_form_action_and_install_link() -> None:
    client = make_client(github_url="https://ghe.example/")
    form = await open_setup(client, "?org=platform")
    assert form.action.startswith(
        "https://ghe.example/organizations/platform/settings/apps/new?state="
    )
    response = await callback(client, "c0de", state_of(form))
    assert 'href="https://ghe.example/apps/guildprompts-test/installations/new"' in response.text


async def test_setup_is_closed_when_an_app_is_configured() -> None:
    client = make_client(is_configured=lambda: True)
    response = await client.get("/setup")
    assert response.status_code == 410
    assert "already has its GitHub App" in response.text
    assert (await client.get("/setup/installed")).status_code == 200


def test_config_needs_somewhere_to_store_credentials() -> None:
    with pytest.raises(ValueError, match="save_credentials, env_file"):
        SetupConfig(convert=FakeGitHub().convert)


async def test_a_webhook_proxy_channel_is_the_apps_webhook_url() -> None:
    client = make_client(base_url="http://127.0.0.1:8000", webhook_url="https://smee.io/abc123")
    page = await client.get("/setup")
    assert "GitHub cannot reach" not in page.text  # the channel is reachable; the rest is local
    form = await open_setup(client)
    assert form.manifest["hook_attributes"]["url"] == "https://smee.io/abc123"
    assert form.manifest["redirect_url"] == "http://127.0.0.1:8000/setup/callback"
