"""/readyz latency while GitHub refuses every connection (target: under 100 ms, always).

Starts `guildprompts serve` (a real process, SQLite in a temporary directory) with an App
configured but `GITHUB_API_URL` pointing at a closed loopback port, as on a machine whose
network to GitHub is down. The App check runs in the background, so a probe never waits on
GitHub's retries. Each run measures the first probe after start-up, then `--probes` more, and
`/healthz` (nothing checked) as the baseline; the medians of `--runs` runs are printed, with the
ratio to the baseline.

    .venv/bin/python bench/bench_readyz.py [--runs 3] [--probes 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakegithub import FakeGitHub
from tests.harness import app_env, clean_env, free_port, serve_process


def timed(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    client.get(path).raise_for_status()
    return (time.perf_counter() - started) * 1000


def one_run(probes: int) -> tuple[float, float, float, float]:
    env = clean_env(**app_env(FakeGitHub()), GITHUB_API_URL=f"http://127.0.0.1:{free_port()}")
    with (
        tempfile.TemporaryDirectory() as home,
        serve_process(Path(home) / "serve", env, "--no-worker") as service,
        httpx.Client(base_url=service.url, timeout=30) as client,
    ):
        first = timed(client, "/readyz")
        ready = sorted(timed(client, "/readyz") for _ in range(probes))
        alive = [timed(client, "/healthz") for _ in range(probes)]
    return first, statistics.median(ready), ready[int(len(ready) * 0.99) - 1], min(alive)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--probes", type=int, default=50)
    args = parser.parse_args()
    runs = [one_run(args.probes) for _ in range(args.runs)]
    first, median, p99, baseline = (statistics.median(values) for values in zip(*runs, strict=True))
    print(f"/readyz with GitHub refusing connections, median of {args.runs} runs:")
    print(f"  first probe after start-up  {first:7.1f} ms")
    print(f"  median of {args.probes} probes       {median:7.1f} ms")
    print(f"  p99 of {args.probes} probes          {p99:7.1f} ms")
    print(f"  /healthz (baseline, best)   {baseline:7.1f} ms")
    print(f"  ratio median /readyz to /healthz: {median / baseline:.1f}x")


if __name__ == "__main__":
    main()
