"""Push-to-bot latency: a push webhook received -> a streaming bot in another process answers it.

Targets (issue 12): with 50 ms added to every GitHub request, p95 under 300 ms in a single
`guildprompts serve`, and under 400 ms in the Procfile topology (2 web processes, 2 workers) on
SQLite and on PostgreSQL. The floor is two GitHub round trips (the tree, then the changed blobs
in parallel), printed next to the figures with the bare round trip measured in this process.

Per topology, the services run as real processes over a fresh database, with the project's fake
GitHub on loopback in this process (`--latency` added to each answer). A bot process
(`BridgeClient(..., stream=True)`) streams from the *second* web process while webhooks go to
the first, so in the Procfile topology the path is: intake (web 1) -> queue -> a worker process
-> sync -> activation -> web 2 learns of it (PostgreSQL NOTIFY, or the 50 ms generation poll on
SQLite) -> stream -> the bot's local state. The bot resolves every 0.5 ms and reports (wall
clock) when its answer changes; push-to-bot is that time minus the time just before the POST.

    .venv/bin/python bench/bench_push_to_bot.py [--pushes 20] [--latency 0.05]
        [--topologies single,sqlite,postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the fake GitHub and the serve harness live with the tests

from github_app.intake import WEBHOOK_PATH  # noqa: E402
from github_app.secrets import generate_key  # noqa: E402
from tests.fakegithub import FakeGitHub, serve_on_loopback  # noqa: E402
from tests.harness import clean_env, guildprompts_command, serve_process  # noqa: E402

REPO = "octo-org/prompts"
GUILD = "111111111111111111"
TOKEN = "bench-bridge-token-5f1e0c2a"
PATH_FILE = b'routes:\n  by_type: "prompts/{category}/{type}.md"\n  default: "prompts/default.md"\n'
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
LIVE_TIMEOUT = 10.0

BOT = """
import json, sys, time
from bot_bridge import BridgeClient
url, token, guild = sys.argv[1:4]
client = BridgeClient(url, token, stream=True)
if not client.wait_for_stream(60):
    sys.exit("the stream did not become live")
last = None
print("ready", flush=True)
while True:
    content = client.resolve_prompt(guild, {"category": "meeting", "type": "brief"}).content
    if content != last:
        last = content
        print(json.dumps({"t": time.time(), "content": content[:60]}), flush=True)
    time.sleep(0.0005)
"""


def _environment(fake: FakeGitHub, api_url: str, database_url: str) -> dict[str, str]:
    return clean_env(
        DATABASE_URL=database_url,
        ENCRYPTION_KEYS=generate_key(),
        BRIDGE_TOKENS=TOKEN,
        GITHUB_API_URL=api_url,
        GITHUB_APP_ID=str(fake.app_id),
        GITHUB_APP_SLUG=fake.app_slug,
        GITHUB_PRIVATE_KEY=fake.private_key_pem,
        GITHUB_WEBHOOK_SECRET=fake.webhook_secret,
        RECONCILE_INTERVAL="3600",
        REDELIVERY_INTERVAL="3600",
        LOG_LEVEL="warning",
    )


@contextmanager
def _postgres_database() -> Iterator[str]:
    import psycopg

    name = f"bench_push_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def _process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as output:
        process = subprocess.Popen(argv, env=env, stdout=output, stderr=output, cwd=log.parent)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Bot:
    """The streaming bot in its own process; `changes` gets (wall time, content) per change."""

    def __init__(self, url: str, env: dict[str, str]) -> None:
        self.changes: queue.Queue[tuple[float, str]] = queue.Queue()
        self.process = subprocess.Popen(
            [sys.executable, "-c", BOT, url, TOKEN, GUILD],
            env={**env, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the bot process did not start streaming")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            item = json.loads(line)
            self.changes.put((item["t"], item["content"]))

    def wait_for(self, marker: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"the bot did not see {marker!r} within {timeout:.0f} s")
            try:
                when, content = self.changes.get(timeout=remaining)
            except queue.Empty:
                continue
            if content.startswith(marker):
                return when

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def _run(topology: str, args: argparse.Namespace) -> list[float]:
    fake = FakeGitHub()
    installation = fake.add_installation("octo-org")
    fake.add_repo(REPO, private=False, installation=installation)
    files = {"PATH": PATH_FILE, "prompts/default.md": b"Initial. Summarise {messages}\n"}
    for index in range(args.files):
        files[f"prompts/library/entry-{index:03}.md"] = f"Entry {index}\n".encode()
    fake.push(REPO, "main", files)
    samples: list[float] = []
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-bot-")))
        api_url = stack.enter_context(serve_on_loopback(fake))
        if topology == "postgres":
            database_url = stack.enter_context(_postgres_database())
        else:
            database_url = f"sqlite:///{directory / 'guildprompts.db'}"
        env = _environment(fake, api_url, database_url)
        webs = []
        if topology == "single":
            webs.append(stack.enter_context(serve_process(directory / "web1", env)))
        else:
            subprocess.run([*guildprompts_command(), "db", "upgrade"], env=env, check=True)
            for number in (1, 2):
                webs.append(
                    stack.enter_context(
                        serve_process(directory / f"web{number}", env, "--no-worker")
                    )
                )
                stack.enter_context(
                    _process(
                        [*guildprompts_command(), "worker"], env, directory / f"worker{number}.log"
                    )
                )
        intake, streaming = webs[0], webs[-1]
        http = stack.enter_context(
            httpx.Client(
                base_url=intake.url, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}
            )
        )
        bound = http.put(
            f"/bridge/v1/guilds/{GUILD}/config",
            json={"repository": REPO, "branch": None, "token": None, "actor": "42"},
        )
        if bound.status_code not in (200, 202):
            raise RuntimeError(f"binding failed: {bound.status_code} {bound.text[:300]}")
        bot = Bot(streaming.url, env)
        stack.callback(bot.stop)
        bot.wait_for("Initial.", 30)
        fake.latency = args.latency
        for index in range(args.pushes):
            marker = f"Push {index} of {topology}."
            fake.push(
                REPO, "main", {"prompts/default.md": f"{marker} Summarise {{messages}}\n".encode()}
            )
            hook = fake.webhook("push", fake.push_payload(REPO, "main"))
            started = time.time()
            accepted = http.post(WEBHOOK_PATH, content=hook.body, headers=hook.headers)
            if accepted.status_code != 202:
                raise RuntimeError(f"the webhook got {accepted.status_code}: {accepted.text}")
            samples.append(bot.wait_for(marker, LIVE_TIMEOUT) - started)
            time.sleep(0.2)  # let the check run finish: pushes do not overlap
        fake.latency = 0.0
    return samples


def _round_trip(latency: float, rounds: int = 10) -> float:
    fake = FakeGitHub()
    fake.add_repo(REPO, private=False, installation=None)
    fake.latency = latency
    times = []
    with serve_on_loopback(fake) as api_url, httpx.Client(base_url=api_url, timeout=10) as http:
        http.get(f"/repos/{REPO}")
        for _ in range(rounds):
            started = time.perf_counter()
            http.get(f"/repos/{REPO}").raise_for_status()
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def _percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


TARGETS = {"single": 0.300, "sqlite": 0.400, "postgres": 0.400}
NAMES = {
    "single": "single `serve` (worker in process), SQLite",
    "sqlite": "Procfile: 2 web + 2 workers, SQLite",
    "postgres": "Procfile: 2 web + 2 workers, PostgreSQL",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pushes", type=int, default=20, help="pushes per topology")
    parser.add_argument("--files", type=int, default=50, help="files in the repository")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per GitHub request")
    parser.add_argument("--topologies", default="single,sqlite,postgres")
    args = parser.parse_args(argv)
    topologies = [name.strip() for name in args.topologies.split(",") if name.strip()]
    if not set(topologies) <= set(TARGETS) or not 1 <= args.pushes <= 200:
        parser.error(f"topologies among {', '.join(TARGETS)}; 1-200 pushes")
    trip = _round_trip(args.latency)
    print(
        f"bench_push_to_bot: {args.pushes} pushes per topology, fake GitHub +"
        f"{args.latency * 1000:.0f} ms a request; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs (the machine is shared: compare ratios)"
    )
    print(
        f"floor: two GitHub round trips (tree, then the changed blobs in parallel) = "
        f"{2 * trip * 1000:.0f} ms (one bare round trip here: {trip * 1000:.1f} ms)"
    )
    ok = True
    for topology in topologies:
        samples = _run(topology, args)
        p50, p95 = _percentile(samples, 50), _percentile(samples, 95)
        target = TARGETS[topology]
        passed = p95 < target
        ok &= passed
        print(
            f"{NAMES[topology]}: push-to-bot p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
            f"max {max(samples) * 1000:.0f} ms (p50 = {p50 / (2 * trip):.2f} x the floor)  "
            f"[target p95 < {target * 1000:.0f} ms: {'OK' if passed else 'MISSED'}]"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
