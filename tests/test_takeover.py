"""Leases that fit the work: a worker killed mid-sync is taken over within one lease; a long
delivery is renewed, never handed out twice; the background loops have one leader."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from github_app.store import deliveries
from github_app.store.leadership import Leadership
from github_app.store.migrate import open_database
from github_app.webhooks import Delivery, Router
from github_app.worker import Worker
from tests.fakegithub import serve_on_loopback
from tests.harness import (
    FULL_NAME,
    GUILD,
    VALID,
    clean_env,
    guildprompts_command,
    make_world,
    runtime_for,
    stop_process,
    wait_for,
)

LEASE = 3.0


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [*guildprompts_command(), "worker"], env=env, stdout=out, stderr=out
        )


def test_a_worker_killed_mid_sync_is_taken_over_within_one_lease(
    database_url: str, tmp_path: Path
) -> None:
    world = make_world(database_url)  # the installation and the repository, stored
    world.bind(GUILD)
    fake, runtime = world.fake, world.runtime
    installation, repository = world.installation_id, world.repository_id
    fake.hang_seconds = 60.0
    with serve_on_loopback(fake) as api_url:
        sha = fake.push(FULL_NAME, "main", dict(VALID))
        hook = fake.webhook("push", fake.push_payload(FULL_NAME, "main"))
        runtime.in_session(
            deliveries.record_delivery,
            hook.guid,
            "push",
            None,
            installation,
            repository,
            hook.body,
            ref="refs/heads/main",
        )
        fake.hang_next(r"/git/blobs/", times=1)  # the first worker stalls mid-sync
        env = clean_env(
            DATABASE_URL=database_url,
            ENCRYPTION_KEYS=",".join(runtime.settings.encryption_keys),
            GITHUB_API_URL=api_url,
            GITHUB_APP_ID=str(fake.app_id),
            GITHUB_PRIVATE_KEY=fake.private_key_pem,
            GITHUB_WEBHOOK_SECRET=fake.webhook_secret,
            WORKER_LEASE_SECONDS=str(LEASE),
            WORKER_CONCURRENCY="1",  # one delivery, one worker: no reconcile job beside it
            RECONCILE_INTERVAL="3600",
            REDELIVERY_INTERVAL="3600",
        )
        first = _worker(env, tmp_path / "first.log")
        second = None
        try:
            wait_for(lambda: fake.check_runs_for(FULL_NAME, sha), 30, "the check run to start")
            wait_for(lambda: fake.count(r"/git/blobs/"), 10, "the blob downloads to start")
            time.sleep(LEASE)  # the heartbeat renews the lease meanwhile: still its own
            row = runtime.in_session(deliveries.get_delivery, hook.guid)
            assert row is not None and row.state == "processing" and row.attempts == 1
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            killed = time.monotonic()
            second = _worker(env, tmp_path / "second.log")

            def finished() -> bool:
                row = runtime.in_session(deliveries.get_delivery, hook.guid)
                runs = fake.check_runs_for(FULL_NAME, sha)
                return bool(
                    row is not None
                    and row.state == "done"
                    and runs
                    and all(run["status"] == "completed" for run in runs)
                )

            wait_for(finished, LEASE + 5, "the takeover")
            took = time.monotonic() - killed
        finally:
            if first.poll() is None:
                first.kill()
            if second is not None:
                stop_process(second)
            asyncio.run(runtime.aclose())
        runs = fake.check_runs_for(FULL_NAME, sha)
        assert len(runs) == 1, "the run left in progress was completed, not posted again"
        assert runs[0]["conclusion"] == "success"
        row = runtime.in_session(deliveries.get_delivery, hook.guid)
        assert row is not None and row.attempts == 2
        assert took <= LEASE + 5


@pytest.mark.anyio
async def test_a_delivery_longer_than_its_lease_is_never_handed_out_twice(
    sqlite_url: str,
) -> None:
    runtime = runtime_for(sqlite_url, None)
    handlers = Router()
    started = asyncio.Event()

    @handlers.register("ping")
    async def slow(delivery: Delivery, ctx: Any) -> None:
        started.set()
        await asyncio.sleep(1.5)  # three leases long

    runtime.in_session(deliveries.record_delivery, "slow-1", "ping", None, None, None, {})
    lease = timedelta(seconds=0.5)
    worker = Worker(runtime, worker_id="busy", handlers=handlers, lease=lease)
    other = Worker(runtime, worker_id="other", handlers=handlers, lease=lease)
    try:
        busy = asyncio.create_task(worker.run_once())
        await started.wait()
        for _ in range(6):
            await asyncio.sleep(0.25)
            assert not await other.run_once(), "a renewed lease is not handed out"
        assert await busy
        row = runtime.in_session(deliveries.get_delivery, "slow-1")
        assert row is not None and row.state == "done" and row.attempts == 1
    finally:
        await runtime.aclose()


@pytest.mark.postgres
def test_the_background_loops_have_one_leader_per_database(postgres_url: str) -> None:
    first = open_database(postgres_url, auto_upgrade=True)
    second = open_database(postgres_url)
    one, two = Leadership(first), Leadership(second)
    try:
        assert one.holds()
        assert not two.holds(), "a second process must not run the loops too"
        assert one.holds(), "the leader keeps leading"
        one.release()
        assert two.holds(), "another process takes over when the leader goes"
        assert not one.holds()
    finally:
        one.release()
        two.release()
        first.dispose()
        second.dispose()


def test_sqlite_has_one_process_so_it_always_leads(sqlite_url: str) -> None:
    database = open_database(sqlite_url, auto_upgrade=True)
    try:
        assert Leadership(database).holds()
    finally:
        database.dispose()


def test_the_sqlite_files_are_created_readable_by_their_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "private.db"
    previous = os.umask(0o022)
    try:
        database = open_database(f"sqlite:///{path}", auto_upgrade=True)
        database.dispose()
    finally:
        os.umask(previous)
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if name.exists():
            assert name.stat().st_mode & 0o777 == 0o600, name
    assert path.exists()
