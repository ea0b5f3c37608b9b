"""App creation by manifest through the web app, against the fake GitHub's conversion endpoint.

From a fresh install: /setup posts the manifest, a bad `state` is refused without spending the
code, the good one stores the App's credentials encrypted, and at once, without a restart, the
App is configured in every process: webhooks signed with the new secret are accepted, /setup is
closed, and a second web process on the same database finishes a flow the first one started.
"""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from github_app.secrets import Vault
from github_app.settings import Settings
from github_app.store import credentials
from github_app.store.models import AppSecret
from tests.fakegithub import FakeGitHub
from tests.harness import make_runtime, make_settings, served, setup_form, wait_for
from tests.store_helpers import secret_names


@pytest.mark.parametrize(
    ("api_prefix", "api_url", "web_url"),
    [
        ("", "https://api.github.test", "https://api.github.test"),
        ("/api/v3", "https://ghe.example.test/api/v3", "https://ghe.example.test"),
    ],
    ids=["github.com-like", "enterprise"],
)
def test_manifest_flow_stores_credentials_encrypted_and_configures_the_app_after_restart(
    database_url: str, api_prefix: str, api_url: str, web_url: str
) -> None:
    fake = FakeGitHub(api_prefix=api_prefix)
    settings = make_settings(database_url, GITHUB_API_URL=api_url)
    runtime = make_runtime(settings, fake)
    assert not runtime.app_configured

    other = make_runtime(settings, fake)  # a second web process on the same database
    with served(runtime, run_worker=False) as client, served(other, run_worker=False) as second:
        form = setup_form(client)
        action = urlsplit(form.action)
        assert f"{action.scheme}://{action.netloc}{action.path}" == (f"{web_url}/settings/apps/new")
        state = parse_qs(action.query)["state"][0]
        base = str(client.base_url).rstrip("/")
        assert form.manifest["hook_attributes"]["url"] == f"{base}/api/github/webhooks"
        assert form.manifest["redirect_url"] == f"{base}/setup/callback"
        code = fake.add_manifest_code(form.manifest)

        refused = client.get("/setup/callback", params={"code": code, "state": "forged"})
        assert refused.status_code == 400
        assert "expired" in refused.text
        assert fake.count(r"/app-manifests/") == 0  # the code was not spent

        # The callback reaches the other process (as behind a load balancer): it finishes.
        done = second.get("/setup/callback", params={"code": code, "state": state})
        assert done.status_code == 200, done.text
        assert f"{web_url}/apps/{fake.app_slug}/installations/new" in done.text
        assert "no restart needed" in done.text and "Restart" not in done.text
        assert fake.count(r"/app-manifests/[^/]+/conversions", method="POST") == 1
        assert (
            second.get("/setup/callback", params={"code": code, "state": state}).status_code == 410
        )
        # Both processes use the new credentials at once (the first within a second).
        hook = fake.webhook("ping", fake.ping_payload())
        assert (
            second.post("/api/github/webhooks", content=hook.body, headers=hook.headers).status_code
            == 202
        )
        first = fake.webhook("ping", fake.ping_payload())
        wait_for(
            lambda: (
                client.post(
                    "/api/github/webhooks", content=first.body, headers=first.headers
                ).status_code
                == 202
            ),
            what="the first process to use the new credentials",
        )
        assert client.get("/setup").status_code == 410
        assert f"/apps/{fake.app_slug}/installations/new" in client.get("/").text

    vault = Vault(settings.encryption_keys)
    with runtime.database.session() as session:
        stored = {row.name: row.ciphertext for row in session.scalars(select(AppSecret))}
        key = credentials.get_secret(session, vault, credentials.PRIVATE_KEY)
        secret = credentials.get_secret(session, vault, credentials.WEBHOOK_SECRET)
    assert {
        credentials.APP_ID,
        credentials.APP_SLUG,
        credentials.PRIVATE_KEY,
        credentials.WEBHOOK_SECRET,
        credentials.CLIENT_SECRET,
    } <= set(stored)
    assert key == fake.private_key_pem and secret == fake.webhook_secret
    everything = " ".join(stored.values())
    for plaintext in (fake.webhook_secret, *fake.private_key_pem.splitlines()[1:-1]):
        assert plaintext not in everything

    restarted = make_runtime(settings, fake)
    assert restarted.app_configured
    assert restarted.credentials.app_id == str(fake.app_id)
    assert restarted.credentials.slug == fake.app_slug
    with served(restarted, run_worker=False) as client:
        wait_for(
            lambda: client.get("/readyz").json()["checks"]["app"]["status"] == "valid",
            what="the App check",
        )
        hook = fake.webhook("ping", fake.ping_payload())
        accepted = client.post("/api/github/webhooks", content=hook.body, headers=hook.headers)
        assert accepted.status_code == 202, accepted.text
        assert client.get("/setup").status_code == 410


def test_a_code_github_refuses_leaves_setup_open(sqlite_url: str) -> None:
    fake = FakeGitHub()
    runtime = make_runtime(make_settings(sqlite_url), fake)
    with served(runtime, run_worker=False) as client:
        form = setup_form(client)
        state = parse_qs(urlsplit(form.action).query)["state"][0]
        refused = client.get("/setup/callback", params={"code": "not-issued", "state": state})
        assert refused.status_code == 502
        assert client.get("/setup").status_code == 200
    with runtime.database.session() as session:
        assert secret_names(session) == []


def test_manifest_flow_can_write_a_private_env_file_instead(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    fake = FakeGitHub()
    settings = make_settings(sqlite_url, APP_CREDENTIALS_STORE="env")
    runtime = make_runtime(settings, fake)
    with served(runtime, run_worker=False) as client:
        form = setup_form(client)
        state = parse_qs(urlsplit(form.action).query)["state"][0]
        code = fake.add_manifest_code(form.manifest)
        done = client.get("/setup/callback", params={"code": code, "state": state})
        assert done.status_code == 200, done.text
    with runtime.database.session() as session:
        assert secret_names(session) == []  # nothing went to the database

    env_file = tmp_path / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    # The next start reads the App from .env (the environment passes only the database).
    restarted = Settings.from_env(
        {"DATABASE_URL": sqlite_url, "ENCRYPTION_KEYS": ",".join(settings.encryption_keys)},
        env_file=env_file,
    )
    assert restarted.app_configured
    assert restarted.github_app_id == str(fake.app_id)
    assert restarted.private_key_pem().strip() == fake.private_key_pem.strip()
    assert restarted.github_webhook_secrets == (fake.webhook_secret,)
