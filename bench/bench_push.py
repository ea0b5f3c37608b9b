"""Push-to-live latency and GitHub requests per push, against the fake GitHub at 50 ms a request.

Targets (issue 4, sections 4 and 8): push-to-live p95 under 1 s with 50 ms added to every
GitHub request; a push changing k prompt files costs at most k + 5 GitHub requests (the tree,
k blobs, the check run's create and complete, and the branch head read again before activation,
issue 9's ordering model).

Each run starts `guildprompts serve` (worker in the same process, as a fresh deployment runs it)
in its own process over SQLite in a temporary directory, with the project's fake GitHub
(`tests/fakegithub.py`) on loopback in this process, `latency` seconds added to each of its
answers. The fake holds a public repository of about 200 prompt files; a guild is bound to it
through the bridge's PUT config and its first sync waited for. Then, per push:

- the commit is made on the fake and its signed `push` webhook built (outside the timing);
- push-to-live: from just before the webhook POST until the bridge
  (`GET /bridge/v1/guilds/{id}/prompt`, polled every `--poll` seconds) first returns the new
  content: intake -> worker -> sync -> activation -> resolver cache -> answer;
- requests per push: every request the fake logged from the POST until the push's
  `guildprompts` check run is completed (the sync's last request), split by endpoint.

Pushes run one after another (k=1 then k=5 per run), so each request belongs to one push.
A baseline in the same process, one bare GET round trip to the fake over loopback, shows the
ratio of push-to-live to a single GitHub request.

    .venv/bin/python bench/bench_push.py [--pushes 20] [--runs 3] [--files 200] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the fake GitHub and the serve harness live with the tests

from github_app.intake import WEBHOOK_PATH  # noqa: E402
from github_app.secrets import generate_key  # noqa: E402
from tests.fakegithub import FakeGitHub, LoggedRequest, Webhook, serve_on_loopback  # noqa: E402
from tests.harness import clean_env, serve_process  # noqa: E402

REPO = "octo-org/prompts"
GUILD = "111111111111111111"
TOKEN = "bench-bridge-token-0b6e2c8d"
PATH_FILE = b'routes:\n  by_type: "prompts/{category}/{type}.md"\n  default: "prompts/default.md"\n'
QUERY = {"category": "meeting", "type": "brief"}  # no by_type file: served from the default
BUDGET = 1.0  # push-to-live p95 target, in seconds
LIVE_TIMEOUT = 10.0  # a push not live by then fails the benchmark
SETTLE_TIMEOUT = 10.0  # for the push's check run to complete


def _environment(fake: FakeGitHub, api_url: str, directory: Path) -> dict[str, str]:
    """The service's settings over this process's environment (no guildprompts variable)."""
    return clean_env(
        **{
            "DATABASE_URL": f"sqlite:///{directory / 'guildprompts.db'}",
            "ENCRYPTION_KEYS": generate_key(),
            "BRIDGE_TOKENS": TOKEN,
            "GITHUB_API_URL": api_url,
            "GITHUB_APP_ID": str(fake.app_id),
            "GITHUB_APP_SLUG": fake.app_slug,
            "GITHUB_PRIVATE_KEY": fake.private_key_pem,
            "GITHUB_WEBHOOK_SECRET": fake.webhook_secret,
            "RECONCILE_INTERVAL": "3600",  # only pushes reach GitHub while measuring
            "REDELIVERY_INTERVAL": "3600",
            "LOG_LEVEL": "warning",
        }
    )


def _repository(files: int) -> dict[str, bytes]:
    content = {
        "PATH": PATH_FILE,
        "prompts/default.md": b"Initial. Summarise {messages}\n",
    }
    for index in range(files - len(content)):
        content[f"prompts/library/entry-{index:03}.md"] = f"Entry {index}: {{messages}}\n".encode()
    return content


def _change(tag: str, k: int) -> tuple[str, dict[str, bytes]]:
    """k changed files, each with new content (a new blob); the served one starts with a marker."""
    marker = f"Push {tag}."
    files = {"prompts/default.md": f"{marker} Summarise {{messages}}\n".encode()}
    for index in range(k - 1):
        files[f"prompts/library/entry-{index:03}.md"] = f"Entry {index} at {tag}\n".encode()
    return marker, files


@dataclass
class Samples:
    live: list[float] = field(default_factory=list)  # seconds
    requests: list[collections.Counter[str]] = field(default_factory=list)  # endpoint -> count


def answer(http: httpx.Client, query: dict[str, str]) -> dict[str, Any]:
    """The bridge's answer for GUILD in this context."""
    got = http.get(f"/bridge/v1/guilds/{GUILD}/prompt", params=query)
    if got.status_code != 200:
        raise RuntimeError(f"the bridge answered {got.status_code}: {got.text[:300]}")
    return dict(got.json())


def _serving(http: httpx.Client) -> str:
    return str(answer(http, QUERY)["content"])


def until(probe: Callable[[], bool], timeout: float, interval: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def completed(fake: FakeGitHub, sha: str, repo: str = REPO, runs: int = 1) -> bool:
    """At least `runs` check runs on `sha`, all completed."""
    found = fake.check_runs_for(repo, sha)
    return len(found) >= runs and all(run["status"] == "completed" for run in found)


def timed_delivery(
    fake: FakeGitHub,
    http: httpx.Client,
    hook: Webhook,
    live: Callable[[], bool],
    settled: Callable[[], bool],
    *,
    poll: float,
    what: str,
) -> tuple[float, list[LoggedRequest]]:
    """Seconds from the webhook POST until `live()` (polled every `poll` s), and the GitHub
    requests logged from the POST until `settled()` (the syncs' last request made)."""
    mark = len(fake.requests)
    start = time.perf_counter()
    accepted = http.post(WEBHOOK_PATH, content=hook.body, headers=hook.headers)
    if accepted.status_code != 202:
        raise RuntimeError(f"the webhook got {accepted.status_code}: {accepted.text[:300]}")
    deadline = start + LIVE_TIMEOUT
    while not live():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{what} was not live within {LIVE_TIMEOUT:.0f} s")
        time.sleep(poll)
    elapsed = time.perf_counter() - start
    until(settled, SETTLE_TIMEOUT, 0.01, f"the check runs of {what}")
    return elapsed, fake.requests[mark:]


def _one_push(
    fake: FakeGitHub, http: httpx.Client, tag: str, k: int, poll: float, samples: Samples
) -> None:
    marker, files = _change(tag, k)
    sha = fake.push(REPO, "main", files)
    hook = fake.webhook("push", fake.push_payload(REPO, "main"))
    live, requests = timed_delivery(
        fake,
        http,
        hook,
        lambda: _serving(http).startswith(marker),
        lambda: completed(fake, sha),
        poll=poll,
        what=f"push {tag}",
    )
    samples.live.append(live)
    samples.requests.append(collections.Counter(r.endpoint for r in requests))


@contextmanager
def bound_service(
    fake: FakeGitHub, ready: Callable[[httpx.Client], bool]
) -> Iterator[httpx.Client]:
    """`guildprompts serve` over SQLite in a temporary directory, the fake on loopback, GUILD
    bound to REPO through the bridge and `ready` once its first sync is in: a bridge client."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-push-") as tmp,
        serve_on_loopback(fake) as api_url,
    ):
        directory = Path(tmp)
        with (
            serve_process(
                directory / "serve", _environment(fake, api_url, directory), "--host", "127.0.0.1"
            ) as service,
            httpx.Client(
                base_url=service.url, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}
            ) as http,
        ):
            bound = http.put(
                f"/bridge/v1/guilds/{GUILD}/config",
                json={
                    "repository": REPO,
                    "branch": None,
                    "token": None,
                    "actor": "42",
                },
            )
            if bound.status_code not in (200, 202):
                raise RuntimeError(f"binding failed: {bound.status_code} {bound.text[:300]}")
            until(lambda: ready(http), LIVE_TIMEOUT, 0.05, "the first sync")
            yield http


def _run(number: int, args: argparse.Namespace, ks: tuple[int, ...]) -> dict[int, Samples]:
    fake = FakeGitHub()
    installation = fake.add_installation("octo-org")
    fake.add_repo(REPO, private=False, installation=installation)
    fake.push(REPO, "main", _repository(args.files))
    results = {k: Samples() for k in ks}
    with bound_service(fake, lambda http: _serving(http).startswith("Initial.")) as http:
        fake.latency = args.latency  # the first sync ran without: it is set-up
        for k in ks:
            for index in range(args.pushes):
                _one_push(fake, http, f"r{number}-k{k}-{index}", k, args.poll, results[k])
        fake.latency = 0.0
    return results


def bare_round_trip(latency: float, rounds: int = 10) -> float:
    """Median of one bare GET round trip to the fake over loopback, `latency` included."""
    fake = FakeGitHub()
    fake.add_repo(REPO, private=False, installation=None)
    fake.latency = latency
    times = []
    with serve_on_loopback(fake) as api_url, httpx.Client(base_url=api_url, timeout=10) as http:
        http.get(f"/repos/{REPO}")  # connection set up, not counted
        for _ in range(rounds):
            start = time.perf_counter()
            http.get(f"/repos/{REPO}").raise_for_status()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def print_requests(counts: list[collections.Counter[str]]) -> None:
    """Each endpoint's requests per push: median and max over the pushes."""
    endpoints = sorted({endpoint for counter in counts for endpoint in counter})
    width = max([62, *map(len, endpoints)])
    for endpoint in endpoints:
        values = [counter.get(endpoint, 0) for counter in counts]
        print(f"    {endpoint:<{width}} median {statistics.median(values):g}  max {max(values)}")


def _report(k: int, per_run: list[Samples], baseline: float) -> bool:
    live = [value for samples in per_run for value in samples.live]
    counts = [counter for samples in per_run for counter in samples.requests]
    totals = [sum(counter.values()) for counter in counts]
    p95 = percentile(live, 95)
    print(f"\nk={k} changed file(s): {len(live)} pushes over {len(per_run)} runs")
    for number, samples in enumerate(per_run, 1):
        print(
            f"  run {number}: push-to-live p50 {ms(percentile(samples.live, 50))}  "
            f"p95 {ms(percentile(samples.live, 95))}  max {ms(max(samples.live))}"
        )
    print(
        f"  all    : push-to-live p50 {ms(percentile(live, 50))}  p95 {ms(p95)}  "
        f"max {ms(max(live))}  (p50 = {percentile(live, 50) / baseline:.1f} x the bare "
        f"round trip)"
    )
    target = k + 5
    print(
        f"  GitHub requests per push: median {statistics.median(totals):g}, max {max(totals)} "
        f"(target <= k + 5 = {target})"
    )
    print_requests(counts)
    live_ok, requests_ok = p95 < BUDGET, max(totals) <= target
    print(
        f"  push-to-live p95 < 1 s: {'PASS' if live_ok else 'FAIL'}; "
        f"requests per push <= {target}: {'PASS' if requests_ok else 'FAIL'}"
    )
    return live_ok and requests_ok


def parse_arguments(
    argv: list[str] | None, doc: str | None, *, pushes: int, pushes_help: str, files_help: str
) -> argparse.Namespace:
    """The options of this benchmark and of those built on it, checked."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--pushes", type=int, default=pushes, help=pushes_help)
    parser.add_argument("--runs", type=int, default=3, help="runs, each with a fresh service")
    parser.add_argument("--files", type=int, default=200, help=files_help)
    parser.add_argument(
        "--latency", type=float, default=0.05, help="seconds the fake adds to every request"
    )
    parser.add_argument(
        "--poll", type=float, default=0.005, help="seconds between looks at the bridge"
    )
    args = parser.parse_args(argv)
    if not (
        1 <= args.pushes <= 200
        and 1 <= args.runs <= 10
        and 10 <= args.files <= 2000
        and 0 <= args.latency <= 1
        and 0.001 <= args.poll <= 1
    ):
        parser.error(
            "expected 1-200 pushes, 1-10 runs, 10-2000 files, latency 0-1 s and poll 0.001-1 s"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(
        argv,
        __doc__,
        pushes=20,
        pushes_help="pushes per k per run",
        files_help="files in the repository",
    )
    ks = (1, 5)
    started = time.monotonic()
    baseline = bare_round_trip(args.latency)
    print(
        f"fake GitHub latency {args.latency * 1000:.0f} ms per request; repository of "
        f"{args.files} files; {args.pushes} pushes per k per run; {args.runs} runs; bridge "
        f"polled every {args.poll * 1000:.0f} ms"
    )
    print(f"baseline: one bare GET round trip to the fake over loopback: median {ms(baseline)}")
    runs = [_run(number, args, ks) for number in range(1, args.runs + 1)]
    ok = all([_report(k, [run[k] for run in runs], baseline) for k in ks])
    print(f"\ntotal time {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
