"""Binding guilds to repositories that are already live: 1,000 PUT .../config.

Target (issue 12): 1,000 guilds bound to 1,000 already-live repositories in under 30 s, PUT
p99 under 100 ms. A repository whose branch already serves its newest commit through the App
needs no sync to bind: only the access check (public, or the guild in allowed_guilds), so the
PUT answers 200 at once instead of queueing a sync and waiting for it.

The database (SQLite) is written through the store as in `bench_memory.py` (public
repositories, each with its commit active, no guild bound); `guildprompts serve` runs on it;
the guilds are bound one after another (each PUT timed), then `/healthz` of the same process is
timed the same way as the baseline.

    .venv/bin/python bench/bench_bind.py [--repositories 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_memory import TOKEN, populate  # noqa: E402

from github_app.secrets import generate_key  # noqa: E402
from tests.harness import clean_env, serve_process  # noqa: E402


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repositories", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bind-") as tmp:
        directory = Path(tmp)
        database_url = f"sqlite:///{directory / 'guildprompts.db'}"
        populate(database_url, args.repositories, 0)
        env = clean_env(
            DATABASE_URL=database_url,
            ENCRYPTION_KEYS=generate_key(),
            BRIDGE_TOKENS=TOKEN,
            LOG_LEVEL="warning",
        )
        with (
            serve_process(directory / "serve", env) as service,
            httpx.Client(
                base_url=service.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
            ) as http,
        ):
            http.get("/healthz")
            puts, statuses = [], []
            started = time.perf_counter()
            for number in range(1, args.repositories + 1):
                body = {"repository": f"octo-org/prompts-{number}", "actor": "42"}
                sent = time.perf_counter()
                answer = http.put(f"/bridge/v1/guilds/{500000 + number}/config", json=body)
                puts.append(time.perf_counter() - sent)
                statuses.append(answer.status_code)
            total = time.perf_counter() - started
            health = []
            for _ in range(args.repositories):
                sent = time.perf_counter()
                http.get("/healthz")
                health.append(time.perf_counter() - sent)
            served = http.get(
                f"/bridge/v1/guilds/{500000 + args.repositories}/prompt",
                params={"category": "meeting"},
            ).json()
    ok = statuses.count(200)
    p50, p99 = percentile(puts, 50), percentile(puts, 99)
    print(
        f"bench_bind: {args.repositories} guilds bound to {args.repositories} live repositories, "
        f"one PUT after another; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"total {total:.1f} s ({ok} answered 200 live, others {len(statuses) - ok})  "
        f"[target < 30 s: {'OK' if total < 30 else 'MISSED'}]"
    )
    print(
        f"PUT p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms  "
        f"[target p99 < 100 ms: {'OK' if p99 < 0.1 else 'MISSED'}]; baseline GET /healthz p50 "
        f"{percentile(health, 50) * 1000:.1f} ms, p99 {percentile(health, 99) * 1000:.1f} ms "
        f"(PUT/healthz p50 x{p50 / percentile(health, 50):.1f})"
    )
    print(f"last guild serves {served['source']} content from {served['repository']}")
    return 0 if total < 30 and p99 < 0.1 and ok == len(statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
