"""Why a few content reads stay on httpx instead of PyGithub (docs/github-client.md).

Against the project's fake GitHub on loopback with `--latency` seconds added to every answer,
through the App's own `GitHubClient`:

- blobs: `--blobs` blob downloads with at most `--concurrency` in flight, on the event loop
  (httpx, `get_blob`) and through PyGithub (`Repository.get_git_blob`) on a thread pool of the
  same size: wall time, and the threads each needs (PyGithub blocks one thread per request);
- reconcile: `--checks` branch-head checks, conditional with the stored ETag (httpx,
  `get_branch_head`: GitHub answers 304, which costs no rate limit) and through PyGithub
  (its requester, which sends no If-None-Match per call): rate-limit requests spent.

Medians of `--runs` runs, and the ratio PyGithub / httpx measured in the same process.

    .venv/bin/python bench/bench_github_paths.py [--blobs 64] [--concurrency 8] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from github_app.auth import AppAuth  # noqa: E402
from github_app.github import GitHubClient, _Auth, _request  # noqa: E402
from tests.fakegithub import FakeGitHub, serve_on_loopback  # noqa: E402

REPO = "octo-org/prompts"


def _world(blobs: int) -> tuple[FakeGitHub, int]:
    fake = FakeGitHub()
    installation = fake.add_installation("octo-org")
    fake.add_repo(REPO, installation=installation)
    fake.push(REPO, "main", {f"prompts/p{n:04}.md": f"prompt {n}\n" for n in range(blobs)})
    return fake, installation


async def _blobs(client: GitHubClient, shas: list[str], installation: int, limit: int) -> float:
    gate = asyncio.Semaphore(limit)

    async def one(sha: str) -> bytes:
        async with gate:
            return await client.get_blob(REPO, sha, installation_id=installation)

    started = time.perf_counter()
    await asyncio.gather(*(one(sha) for sha in shas))
    return time.perf_counter() - started


async def _blobs_pygithub(client: GitHubClient, shas: list[str], installation: int) -> float:
    auth = _Auth("installation", installation_id=installation)

    def one(sha: str):  # type: ignore[no-untyped-def]
        return lambda gh: gh.get_repo(REPO, lazy=True).get_git_blob(sha).content

    started = time.perf_counter()
    await asyncio.gather(*(client._pygithub(auth, one(sha)) for sha in shas))
    return time.perf_counter() - started


async def _run(args: argparse.Namespace) -> dict[str, float]:
    fake, installation = _world(args.blobs)
    fake.latency = args.latency
    with serve_on_loopback(fake) as url:
        auth = AppAuth(fake.app_id, fake.private_key_pem)
        async with GitHubClient(url, auth=auth, pool_size=args.concurrency) as client:
            tree = await client.get_tree(REPO, "main", installation_id=installation)
            shas = [entry.sha for entry in tree if entry.type == "blob"]
            threads_before = threading.active_count()
            httpx_time = await _blobs(client, shas, installation, args.concurrency)
            httpx_threads = threading.active_count() - threads_before
            pygithub_time = await _blobs_pygithub(client, shas, installation)
            pygithub_threads = threading.active_count() - threads_before

            head = await client.get_branch_head(REPO, "main", installation_id=installation)
            assert not isinstance(head, type(None))
            before = fake.count("/git/ref/")
            spent_before = _spent(fake)
            for _ in range(args.checks):
                await client.get_branch_head(
                    REPO, "main", etag=head[1], installation_id=installation
                )
            conditional = _spent(fake) - spent_before
            auth_ = _Auth("installation", installation_id=installation)
            spent_before = _spent(fake)
            for _ in range(args.checks):
                await client._pygithub(  # what PyGithub can send: no If-None-Match per call
                    auth_, lambda gh: _request(gh, "GET", f"/repos/{REPO}/git/ref/heads/main")
                )
            unconditional = _spent(fake) - spent_before
            assert fake.count("/git/ref/") - before == 2 * args.checks
    return {
        "httpx_blobs_s": httpx_time,
        "pygithub_blobs_s": pygithub_time,
        "httpx_threads": httpx_threads,
        "pygithub_threads": pygithub_threads,
        "conditional_spent": conditional,
        "pygithub_spent": unconditional,
    }


def _spent(fake: FakeGitHub) -> int:
    """Rate-limited requests so far (a 304 is free on GitHub, and on the fake)."""
    return sum(1 for r in fake.requests if r.status != 304 and "access_tokens" not in r.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--blobs", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--checks", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = [asyncio.run(_run(args)) for _ in range(args.runs)]
    median = {key: statistics.median(r[key] for r in results) for key in results[0]}
    print(
        f"fake GitHub latency {args.latency * 1000:.0f} ms; {args.blobs} blobs, "
        f"{args.concurrency} in flight; {args.checks} head checks; {args.runs} runs (medians)"
    )
    print(
        f"blobs: httpx on the event loop {median['httpx_blobs_s'] * 1000:7.0f} ms, "
        f"{median['httpx_threads']:.0f} extra threads"
    )
    print(
        f"blobs: PyGithub on a pool      {median['pygithub_blobs_s'] * 1000:7.0f} ms, "
        f"{median['pygithub_threads']:.0f} extra threads "
        f"(ratio {median['pygithub_blobs_s'] / median['httpx_blobs_s']:.2f})"
    )
    print(
        f"head checks: conditional (ETag) spent {median['conditional_spent']:.0f} of the rate "
        f"limit; PyGithub get_git_ref spent {median['pygithub_spent']:.0f}"
    )


if __name__ == "__main__":
    main()
