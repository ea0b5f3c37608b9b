"""Webhook acknowledgement latency and throughput on SQLite (target: p99 under 50 ms at 200/s).

Runs a Starlette app holding only the intake route under uvicorn on loopback (in its own
process, so the sender does not compete with it for the GIL), over a SQLite database in a
temporary directory, and sends signed `push` deliveries (GitHub's real payload example, a new
GUID and commit each, spread over ten branches) from an httpx client:

- paced: `--rate` deliveries per second for `--seconds`, each sent at its scheduled time
  whatever the previous answers did (open loop), its latency counted from that time, so a
  stall shows up in the percentiles instead of slowing the sender down; half a second at the
  same rate warms the service up first and is not counted;
- flat out: `--concurrency` senders back to back for `--seconds`: the sustainable throughput.

Each mode runs without and with the worker in the server process, `--runs` times; the medians
are printed. The worker handles the pushes as pushes to branches nobody follows: claims,
coalescing and bookkeeping in the same SQLite file, no GitHub request.

    .venv/bin/python bench/bench_webhooks.py [--rate 200] [--seconds 3] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import multiprocessing
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from github_app.bridge.invalidation import worker_poll_interval
from github_app.intake import WEBHOOK_PATH, webhook_route
from github_app.runtime import Runtime, build_runtime, favour_event_loop
from github_app.secrets import generate_key
from github_app.settings import Settings
from github_app.store import deliveries
from github_app.store.migrate import open_database
from github_app.worker import Worker

SECRET = "bench-webhook-secret-5f2a"
EXAMPLE = Path(__file__).parent.parent / "tests/fixtures/github-webhooks/push/payload.json"


def _private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def _runtime(directory: Path, key: str) -> Runtime:
    settings = Settings.from_env(
        {
            "DATABASE_URL": f"sqlite:///{directory / 'bench.db'}",
            "ENCRYPTION_KEYS": generate_key(),
            "GITHUB_APP_ID": "4242",
            "GITHUB_PRIVATE_KEY": key,
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "GITHUB_API_URL": "http://127.0.0.1:9",  # never called: intake does not call GitHub
        },
        env_file=None,
    )
    return build_runtime(settings, auto_upgrade=True)


def _app(runtime: Runtime, with_worker: bool) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        poll = worker_poll_interval(runtime)  # as `serve` runs it (50 ms on SQLite)
        worker = Worker(runtime, poll_interval=poll)
        task = asyncio.create_task(worker.run(stop)) if with_worker else None
        yield
        stop.set()
        if task is not None:
            await task

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[webhook_route(runtime), Route("/healthz", healthz, methods=["GET"])],
        lifespan=lifespan,
    )


def _server_process(directory: str, key: str, port: int, with_worker: bool) -> None:
    """The service side, in its own process so the sender never competes with it for the GIL."""
    favour_event_loop()  # as `guildprompts serve` does
    runtime = _runtime(Path(directory), key)
    config = uvicorn.Config(
        _app(runtime, with_worker),
        host="127.0.0.1",
        port=port,
        log_level="error",
        lifespan="on",
        access_log=False,
    )
    uvicorn.Server(config).run()


@contextlib.contextmanager
def _serve(directory: str, key: str, with_worker: bool) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = multiprocessing.get_context().Process(
        target=_server_process, args=(directory, key, port, with_worker), daemon=True
    )
    process.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + WEBHOOK_PATH, timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or not process.is_alive():
                raise RuntimeError("the benchmark server did not start") from None
            time.sleep(0.05)
    try:
        yield url
    finally:
        process.terminate()  # SIGTERM: uvicorn shuts down, the lifespan stops the worker
        process.join(timeout=30)


def _deliveries(count: int) -> list[tuple[bytes, dict[str, str]]]:
    """Signed push deliveries, built before timing (ten branches, so coalescing has work)."""
    example = json.loads(EXAMPLE.read_text())
    built = []
    for index in range(count):
        payload = {
            **example,
            "ref": f"refs/heads/bench-{index % 10}",
            "deleted": False,
            "created": False,
            "after": hashlib.sha1(uuid.uuid4().bytes).hexdigest(),
        }
        body = json.dumps(payload).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        built.append(
            (
                body,
                {
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": str(uuid.uuid4()),
                    "X-Hub-Signature-256": signature,
                },
            )
        )
    return built


async def _paced(
    url: str, rate: float, seconds: float, *, health: bool = False
) -> dict[str, float]:
    """Open loop at `rate`/s; latency from each delivery's scheduled send time. With `health`,
    `GET /healthz` at the same rate instead: the machine's baseline.

    Half a second at the same rate first warms the service up (first queries, thread pool,
    connections) and is not counted: a running service is warm.
    """
    warm_up = _deliveries(int(rate / 2))
    work = _deliveries(int(rate * seconds))
    latencies: list[float] = []
    failures = 0
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:

        async def send(
            scheduled: float, body: bytes, headers: dict[str, str], measured: bool
        ) -> None:
            nonlocal failures
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            if health:
                response = await client.get("/healthz")
            else:
                response = await client.post(WEBHOOK_PATH, content=body, headers=headers)
            if measured:
                failures += response.status_code != (200 if health else 202)
                latencies.append(time.perf_counter() - scheduled)

        start = time.perf_counter() + 0.05
        await asyncio.gather(
            *(
                send(start + i / rate, body, headers, i >= len(warm_up))
                for i, (body, headers) in enumerate(warm_up + work)
            )
        )
    latencies.sort()
    return {
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "max_ms": 1000 * latencies[-1],
        "failures": failures,
    }


async def _flat_out(url: str, concurrency: int, seconds: float) -> dict[str, float]:
    """`concurrency` senders back to back for `seconds` (bounded by a prepared count)."""
    work = _deliveries(int(4000 * seconds))
    done = 0
    failures = 0
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()

        async def sender() -> None:
            nonlocal done, failures
            while work and time.perf_counter() < deadline:
                body, headers = work.pop()
                response = await client.post(WEBHOOK_PATH, content=body, headers=headers)
                done += 1
                failures += response.status_code != 202

        await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"per_second": done / elapsed, "failures": failures}


def _run(key: str, with_worker: bool, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        with _serve(directory, key, with_worker) as url:
            paced = asyncio.run(_paced(url, args.rate, args.seconds))
            baseline = asyncio.run(_paced(url, args.rate, args.seconds, health=True))
            flat = asyncio.run(_flat_out(url, args.concurrency, args.seconds))
        database = open_database(f"sqlite:///{Path(directory) / 'bench.db'}")
        try:
            with database.session() as session:
                stats = deliveries.queue_stats(session)
        finally:
            database.dispose()
    return {
        **paced,
        "health_p50_ms": baseline["p50_ms"],
        "health_p99_ms": baseline["p99_ms"],
        "throughput": flat["per_second"],
        "failures": paced["failures"] + flat["failures"],
        "left_pending": stats.pending,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="paced deliveries per second")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each phase")
    parser.add_argument("--runs", type=int, default=3, help="runs per mode (medians printed)")
    parser.add_argument("--concurrency", type=int, default=16, help="senders when flat out")
    args = parser.parse_args()
    key = _private_key()
    print(
        f"intake on SQLite, uvicorn on loopback: {args.rate:.0f}/s for {args.seconds:.0f} s, "
        f"then {args.concurrency} senders flat out; median of {args.runs} runs"
    )
    for with_worker in (False, True):
        runs = [_run(key, with_worker, args) for _ in range(args.runs)]

        def median(name: str, runs: list[dict[str, Any]] = runs) -> float:
            return statistics.median(run[name] for run in runs)

        label = "with the worker in-process" if with_worker else "intake only            "
        print(
            f"  {label}: ack p50 {median('p50_ms'):6.1f} ms  p99 {median('p99_ms'):6.1f} ms  "
            f"max {median('max_ms'):6.1f} ms  | sustained {median('throughput'):6.0f}/s  "
            f"| non-202 answers {sum(run['failures'] for run in runs)}"
            + (f"  | left pending at the end {median('left_pending'):.0f}" if with_worker else "")
        )
        p99, base = median("p99_ms"), median("health_p99_ms")
        print(
            f"    baseline GET /healthz, same process and rate: p50 "
            f"{median('health_p50_ms'):6.1f} ms  p99 {base:6.1f} ms  (ack/healthz p99 "
            f"x{p99 / base:.2f})"
            + (
                f"  [target ack p99 < 50 ms: {'OK' if p99 < 50 else 'MISSED'}]"
                if with_worker
                else ""
            )
        )


if __name__ == "__main__":
    main()
