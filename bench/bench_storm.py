"""A push storm: 1,000 pushes over 50 repositories, delivered shuffled with 32 in flight.

Issue 9's acceptance: the storm ends with 0 repositories off their branch head and 0 lost
deliveries, on SQLite (one `guildprompts serve`) and on PostgreSQL (2 `serve --no-worker` web
processes + 2 `guildprompts worker` processes), and prints acknowledgement p50/p99, throughput
and time to drain.

The fake GitHub runs on loopback in this process (`tests/fakegithub`) with 50 public repositories
of one installation; one guild is bound to each through the bridge's PUT config. The storm: a
producer makes the pushes one after another on the fake (the branch heads really move during
the storm) and hands their signed `push` webhooks to a window of 64 from which 32 senders take
them in random order (GitHub's delivery order is not the push order), 5 % of them twice (a
redelivery). On PostgreSQL the senders alternate between the web processes. Then the bench
waits for the queue to drain and compares every guild's served commit (`GET .../prompt`) with
the head the fake reports, and every acknowledged GUID with the `deliveries` table.

    .venv/bin/python bench/bench_storm.py [--pushes 1000] [--repos 50] [--database both]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the fake GitHub and the serve harness live with the tests

from github_app.intake import WEBHOOK_PATH  # noqa: E402
from github_app.secrets import generate_key  # noqa: E402
from github_app.store.models import DeliveryRow  # noqa: E402
from tests.fakegithub import FakeGitHub, Webhook, serve_on_loopback  # noqa: E402
from tests.harness import (  # noqa: E402
    clean_env,
    guildprompts,
    guildprompts_command,
    serve_process,
    stop_process,
)

TOKEN = "bench-storm-token-5f0c2d7e"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PATH_FILE = b'routes:\n  default: "prompts/default.md"\n'
IN_FLIGHT = 32
WINDOW = 64
DUPLICATES = 0.05
DRAIN_TIMEOUT = 600.0


@dataclass
class Result:
    acks: list[float] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)
    refused: int = 0
    storm_seconds: float = 0.0
    drain_seconds: float = 0.0
    off_head: list[str] = field(default_factory=list)
    lost: int = 0
    failed: int = 0


def _guild(index: int) -> str:
    return str(400000000000000000 + index)


def _environment(fake: FakeGitHub, api_url: str, database_url: str, key: str) -> dict[str, str]:
    return clean_env(
        DATABASE_URL=database_url,
        ENCRYPTION_KEYS=key,
        BRIDGE_TOKENS=TOKEN,
        GITHUB_API_URL=api_url,
        GITHUB_APP_ID=str(fake.app_id),
        GITHUB_APP_SLUG=fake.app_slug,
        GITHUB_PRIVATE_KEY=fake.private_key_pem,
        GITHUB_WEBHOOK_SECRET=fake.webhook_secret,
        RECONCILE_INTERVAL="3600",  # the storm must converge on webhooks alone
        REDELIVERY_INTERVAL="3600",
        LOG_LEVEL="warning",
    )


@contextlib.contextmanager
def _postgres_database() -> Iterator[str]:
    name = f"gp_storm_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def _deployment(kind: str, env: dict[str, str], directory: Path) -> Iterator[list[str]]:
    """The web URLs of a running deployment: one serve (SQLite), or 2 web + 2 workers."""
    with contextlib.ExitStack() as stack:
        if kind == "sqlite":
            service = stack.enter_context(
                serve_process(directory / "serve", env, "--host", "127.0.0.1")
            )
            yield [service.url]
            return
        upgraded = guildprompts("db", "upgrade", database_url=env["DATABASE_URL"], **env)
        if upgraded.returncode != 0:
            raise RuntimeError(f"db upgrade failed: {upgraded.stderr}")
        urls = [
            stack.enter_context(
                serve_process(directory / f"web{n}", env, "--host", "127.0.0.1", "--no-worker")
            ).url
            for n in range(2)
        ]
        workers = []
        for n in range(2):
            log = open(directory / f"worker{n}.log", "wb")  # noqa: SIM115 - closed below
            stack.callback(log.close)
            workers.append(
                subprocess.Popen(
                    [*guildprompts_command(), "worker"], env=env, stdout=log, stderr=log
                )
            )
        try:
            yield urls
        finally:
            for process in workers:
                stop_process(process)


async def _bind(http: httpx.AsyncClient, repositories: list[str]) -> None:
    for index, name in enumerate(repositories):
        body = {"repository": name, "branch": None, "token": None, "actor": "42"}
        answer = await http.put(f"/bridge/v1/guilds/{_guild(index)}/config", json=body)
        if answer.status_code not in (200, 202):
            raise RuntimeError(f"binding {name} failed: {answer.status_code} {answer.text[:200]}")


async def _served(http: httpx.AsyncClient, index: int) -> str | None:
    answer = await http.get(f"/bridge/v1/guilds/{_guild(index)}/prompt")
    return answer.json().get("commit_sha") if answer.status_code == 200 else None


async def _storm(
    fake: FakeGitHub, urls: list[str], repositories: list[str], pushes: int, seed: int
) -> Result:
    result = Result()
    rng = random.Random(seed)
    window: list[Webhook] = []
    produced = asyncio.Event()
    room = asyncio.Condition()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    clients = [httpx.AsyncClient(base_url=url, timeout=30, headers=headers) for url in urls]

    async def produce() -> None:
        for number in range(pushes):
            name = repositories[number % len(repositories)]
            content = f"Push {number} to {name}: summarise {{messages}}\n".encode()
            fake.push(name, "main", {"prompts/default.md": content})
            hook = fake.webhook("push", fake.push_payload(name, "main"))
            async with room:
                await room.wait_for(lambda: len(window) < WINDOW)
                window.append(hook)
                if rng.random() < DUPLICATES:
                    window.append(hook)  # GitHub delivers it twice
                room.notify_all()
            await asyncio.sleep(0)
        produced.set()
        async with room:
            room.notify_all()

    async def send(sender: int) -> None:
        client = clients[sender % len(clients)]
        while True:
            async with room:
                await room.wait_for(lambda: bool(window) or produced.is_set())
                if not window:
                    return
                hook = window.pop(rng.randrange(len(window)))
                room.notify_all()
            started = time.perf_counter()
            answer = await client.post(WEBHOOK_PATH, content=hook.body, headers=hook.headers)
            result.acks.append(time.perf_counter() - started)
            if answer.status_code in (200, 202):
                result.acked.add(hook.guid)
            else:
                result.refused += 1

    started = time.perf_counter()
    try:
        await asyncio.gather(produce(), *(send(n) for n in range(IN_FLIGHT)))
    finally:
        for client in clients:
            await client.aclose()
    result.storm_seconds = time.perf_counter() - started
    return result


def _queue(database_url: str) -> tuple[int, set[str], int]:
    """(pending or processing, stored GUIDs, failed)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            busy = connection.scalar(
                select(func.count())
                .select_from(DeliveryRow)
                .where(DeliveryRow.state.in_(["pending", "processing"]))
            )
            guids = set(connection.scalars(select(DeliveryRow.guid)))
            failed = connection.scalar(
                select(func.count()).select_from(DeliveryRow).where(DeliveryRow.state == "failed")
            )
        return int(busy or 0), guids, int(failed or 0)
    finally:
        engine.dispose()


async def _settle(
    fake: FakeGitHub, urls: list[str], database_url: str, repositories: list[str], result: Result
) -> None:
    started = time.perf_counter()
    while True:
        busy, stored, failed = _queue(database_url)
        if not busy:
            break
        if time.perf_counter() - started > DRAIN_TIMEOUT:
            raise RuntimeError(f"the queue did not drain in {DRAIN_TIMEOUT:.0f} s ({busy} left)")
        await asyncio.sleep(0.1)
    result.drain_seconds = time.perf_counter() - started
    result.lost = len(result.acked - stored)
    result.failed = failed
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=urls[0], timeout=30, headers=headers) as http:
        deadline = time.perf_counter() + 10  # the bridge caches catch up (poll interval)
        while True:
            off = []
            for index, name in enumerate(repositories):
                if await _served(http, index) != fake.head(name, "main"):
                    off.append(name)
            if not off or time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.5)
    result.off_head = off


async def _run(kind: str, args: argparse.Namespace) -> Result:
    fake = FakeGitHub()
    fake.rate_limit = 10**9  # a storm, not a rate-limit test
    installation = fake.add_installation("storm-org")
    repositories = [f"storm-org/prompts-{n:02}" for n in range(args.repos)]
    for name in repositories:
        fake.add_repo(name, private=False, installation=installation)
        fake.push(name, "main", {"PATH": PATH_FILE, "prompts/default.md": b"Initial {messages}\n"})
    key = generate_key()
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-storm-")))
        api_url = stack.enter_context(serve_on_loopback(fake))
        if kind == "sqlite":
            database_url = f"sqlite:///{directory / 'guildprompts.db'}"
        else:
            database_url = stack.enter_context(_postgres_database())
        env = _environment(fake, api_url, database_url, key)
        urls = stack.enter_context(_deployment(kind, env, directory))
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=urls[0], timeout=60, headers=headers) as http:
            await fake_installed(fake, http, installation)
            await _bind(http, repositories)
            deadline = time.perf_counter() + 120
            while True:
                served = [await _served(http, n) for n in range(len(repositories))]
                if all(served):
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError("the first syncs did not finish within 120 s")
                await asyncio.sleep(0.5)
        result = await _storm(fake, urls, repositories, args.pushes, args.seed)
        await _settle(fake, urls, database_url, repositories, result)
    return result


async def fake_installed(fake: FakeGitHub, http: httpx.AsyncClient, installation: int) -> None:
    hook = fake.webhook("installation", fake.installation_payload(installation))
    answer = await http.post(WEBHOOK_PATH, content=hook.body, headers=hook.headers)
    if answer.status_code != 202:
        raise RuntimeError(f"the installation webhook got {answer.status_code}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _report(kind: str, result: Result, pushes: int) -> bool:
    acks = sorted(result.acks)
    p99 = statistics.quantiles(acks, n=100, method="inclusive")[98]
    sent = len(acks)
    print(f"\n{kind}: {pushes} pushes, {sent} deliveries sent ({sent - pushes} duplicates)")
    print(f"  ack p50 {_ms(statistics.median(acks))}  p99 {_ms(p99)}  max {_ms(acks[-1])}")
    print(
        f"  throughput {sent / result.storm_seconds:.0f} deliveries/s acknowledged "
        f"({result.storm_seconds:.1f} s for the storm)"
    )
    print(f"  time to drain after the last acknowledgement: {result.drain_seconds:.1f} s")
    print(f"  refused (non-2xx) answers: {result.refused}")
    print(f"  repositories off their branch head: {len(result.off_head)} {result.off_head[:5]}")
    print(f"  lost deliveries: {result.lost}; failed deliveries: {result.failed}")
    ok = not result.off_head and not result.lost and not result.failed and not result.refused
    print(f"  {'PASS' if ok else 'FAIL'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pushes", type=int, default=1000)
    parser.add_argument("--repos", type=int, default=50)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args(argv)
    if not (1 <= args.repos <= 500 and args.repos <= args.pushes <= 20000):
        parser.error("expected 1-500 repositories and at least one push per repository")
    kinds = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    ok = True
    for kind in kinds:
        started = time.monotonic()
        result = asyncio.run(_run(kind, args))
        ok = _report(kind, result, args.pushes) and ok
        print(f"  total {time.monotonic() - started:.1f} s including start-up and first syncs")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
