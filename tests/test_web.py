"""The web app's own routes and lifespan: health, readiness, metrics, landing page, wiring."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from datetime import timedelta

import httpx
import pytest

from github_app import web
from github_app.health import Health
from github_app.store import deliveries
from github_app.store.db import Database
from github_app.store.models import utcnow
from tests.fakegithub import FakeGitHub, generate_rsa_key
from tests.harness import app_env, bearer, free_port, make_runtime, make_settings, served, wait_for


@pytest.fixture
def fake() -> FakeGitHub:
    return FakeGitHub()


def readiness(client: httpx.Client) -> tuple[int, dict]:
    response = client.get("/readyz")
    assert response.headers["cache-control"] == "no-store"
    return response.status_code, response.json()


def settled_readiness(client: httpx.Client) -> tuple[int, dict]:
    """/readyz once GitHub has answered the background check of the App's credentials."""
    return wait_for(
        lambda: (
            (answer := readiness(client))[1]["checks"]["app"]["status"] != "checking" and answer
        ),
        what="the App check",
    )


def test_healthz_says_alive(sqlite_url: str) -> None:
    with served(make_runtime(make_settings(sqlite_url))) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


def test_a_fresh_install_is_ready_without_an_app_and_says_what_is_missing(
    database_url: str,
) -> None:
    with served(make_runtime(make_settings(database_url))) as client:
        status, body = readiness(client)
        hook = FakeGitHub().webhook("ping", {"zen": "hello"})
        webhook = client.post("/api/github/webhooks", content=hook.body, headers=hook.headers)
        landing = client.get("/")
    assert status == 200, body
    assert body["status"] == "ready"
    checks = body["checks"]
    assert checks["database"]["ok"] and checks["migrations"]["ok"]
    assert checks["migrations"]["current"] == checks["migrations"]["head"]
    assert checks["app"] == {
        "ok": True,
        "status": "not configured",
        "setup": "/setup",
        "missing": [
            "GITHUB_APP_ID",
            "GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH",
            "GITHUB_WEBHOOK_SECRET",
        ],
    }
    assert checks["queue"]["ok"] and checks["queue"]["pending"] == 0
    assert checks["background"] == {
        "ok": True,
        "tasks": {"invalidation": "running", "worker": "running"},
    }
    assert webhook.status_code == 503
    assert "App not configured: open /setup" in webhook.text
    assert 'href="/setup"' in landing.text


def test_valid_credentials_are_checked_with_github_once_per_interval(
    sqlite_url: str, fake: FakeGitHub
) -> None:
    runtime = make_runtime(make_settings(sqlite_url, **app_env(fake)), fake)
    with served(runtime, run_worker=False) as client:
        first = settled_readiness(client)
        second = readiness(client)
        setup = client.get("/setup")
        landing = client.get("/")
    assert first[0] == 200 and first[1]["checks"]["app"] == {
        "ok": True,
        "status": "valid",
        "app_id": str(fake.app_id),
        "slug": fake.app_slug,
    }
    assert second == first
    assert fake.count(r"^/app$") == 1
    assert first[1]["checks"]["background"]["tasks"] == {"invalidation": "running"}
    assert setup.status_code == 410
    assert f"/apps/{fake.app_slug}/installations/new" in landing.text


def test_credentials_github_refuses_make_the_process_unready(
    sqlite_url: str, fake: FakeGitHub
) -> None:
    env = {**app_env(fake), "GITHUB_PRIVATE_KEY": generate_rsa_key()}
    with served(make_runtime(make_settings(sqlite_url, **env), fake), run_worker=False) as client:
        status, body = settled_readiness(client)
    assert status == 503 and body["status"] == "not ready"
    app = body["checks"]["app"]
    assert app["ok"] is False and app["status"] == "invalid"
    assert "check GITHUB_APP_ID and the private key" in app["error"]
    assert "BEGIN" not in str(body)


def test_github_unreachable_leaves_the_process_ready_but_unverified(
    sqlite_url: str, fake: FakeGitHub
) -> None:
    fake.fail_next(r"^/app$", status=429, retry_after=3600)
    runtime = make_runtime(make_settings(sqlite_url, **app_env(fake)), fake)
    with served(runtime, run_worker=False) as client:
        status, body = settled_readiness(client)
    assert status == 200
    assert body["checks"]["app"]["status"] == "unverified"
    assert "GitHub did not confirm the credentials" in body["checks"]["app"]["error"]


def test_a_stuck_queue_makes_the_process_unready(sqlite_url: str) -> None:
    runtime = make_runtime(make_settings(sqlite_url))
    an_hour_ago = utcnow() - timedelta(hours=1)
    runtime.in_session(
        deliveries.record_delivery,
        "stuck-1",
        "ping",
        None,
        None,
        None,
        {"zen": "wait"},
        received_at=an_hour_ago,
    )
    with served(runtime, run_worker=False) as client:
        status, body = readiness(client)
        exposition = client.get("/metrics").text
    assert status == 503
    queue = body["checks"]["queue"]
    assert queue["ok"] is False and queue["pending"] == 1
    assert queue["oldest_pending_age"] >= 3600
    assert "is a worker running" in queue["error"]
    assert "guildprompts_queue_depth 1.0" in exposition
    age = float(
        re.search(r"^guildprompts_queue_oldest_pending_age_seconds (\S+)$", exposition, re.M).group(
            1
        )
    )
    assert age >= 3600


def test_migrations_behind_make_the_process_unready(sqlite_url: str) -> None:
    from github_app.store.migrate import UPGRADE_COMMAND, downgrade

    runtime = make_runtime(make_settings(sqlite_url))
    with served(runtime, run_worker=False) as client:
        downgrade(runtime.database.engine, "base")
        status, body = readiness(client)
    assert status == 503
    assert body["checks"]["migrations"]["ok"] is False
    assert UPGRADE_COMMAND in body["checks"]["migrations"]["error"]


def test_an_unreachable_database_is_reported_without_its_password(sqlite_url: str) -> None:
    runtime = make_runtime(make_settings(sqlite_url))
    unreachable = Database("postgresql+psycopg://guild:s3cret-pw@127.0.0.1:1/guildprompts")
    health = Health(dataclasses.replace(runtime, database=unreachable))
    try:
        checks = asyncio.run(health.checks())
    finally:
        unreachable.dispose()
        asyncio.run(runtime.aclose())
    assert checks["database"]["ok"] is False
    assert "did not answer" in checks["database"]["error"]
    assert "s3cret-pw" not in str(checks)
    assert checks["migrations"]["ok"] is False and checks["queue"]["ok"] is False


def test_metrics_expose_every_family_and_the_store_probes(sqlite_url: str) -> None:
    with served(make_runtime(make_settings(sqlite_url))) as client:
        client.get("/bridge/v1/guilds/1/prompt", params={"category": "meeting"}, headers=bearer())
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for family in (
        "guildprompts_webhook_deliveries",
        "guildprompts_delivery_processing_seconds",
        "guildprompts_github_requests",
        "guildprompts_syncs",
        "guildprompts_push_to_live_seconds",
        "guildprompts_resolver_cache_requests",
        "guildprompts_resolve_seconds",
        "guildprompts_active_snapshot_age_seconds",
    ):
        assert f"# TYPE {family}" in text, family
    assert 'guildprompts_metrics_probe_up{probe="queue"} 1.0' in text
    assert 'guildprompts_metrics_probe_up{probe="snapshots"} 1.0' in text
    assert "guildprompts_queue_depth 0.0" in text


def test_a_background_task_that_dies_makes_the_process_unready(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_loops(runtime: object, stop: asyncio.Event, *, worker: bool = True) -> None:
        raise RuntimeError("the worker crashed")

    monkeypatch.setattr(web, "run_background", broken_loops)
    with served(make_runtime(make_settings(sqlite_url))) as client:
        status, body = readiness(client)
    assert status == 503
    assert body["checks"]["background"] == {
        "ok": False,
        "tasks": {"invalidation": "running", "worker": "failed"},
    }


def test_shutdown_stops_the_background_tasks_promptly(sqlite_url: str) -> None:
    runtime = make_runtime(make_settings(sqlite_url))
    with served(runtime) as client:
        assert client.get("/healthz").status_code == 200
        started = time.monotonic()
    assert time.monotonic() - started < web.SHUTDOWN_GRACE


def test_readyz_answers_within_100_ms_while_github_refuses_connections(
    sqlite_url: str, fake: FakeGitHub
) -> None:
    closed = free_port()  # nothing listens there: every connection is refused
    settings = make_settings(
        sqlite_url, **app_env(fake), GITHUB_API_URL=f"http://127.0.0.1:{closed}"
    )
    with served(make_runtime(settings), run_worker=False) as client:
        client.get("/healthz")
        timings, answers = [], []
        for _ in range(5):
            started = time.perf_counter()
            answers.append(readiness(client))
            timings.append(time.perf_counter() - started)
        status, body = settled_readiness(client)
    assert max(timings) < 0.1, timings
    assert answers[0][0] == 200
    assert answers[0][1]["checks"]["app"] == {
        "ok": True,
        "status": "checking",
        "app_id": str(fake.app_id),
        "error": "GitHub has not confirmed the credentials yet",
    }
    assert status == 200
    assert body["checks"]["app"]["status"] == "unverified"
    assert "GitHub did not confirm the credentials" in body["checks"]["app"]["error"]
