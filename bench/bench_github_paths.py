"""Why a few content reads stay on httpx instead of PyGithub (docs/github-client.md).

Against the project's fake GitHub on loopback with `--latency` seconds added to every answer,
through the App's own `GitHubClient`:

- a first sync's content: `--blobs` files as blob downloads through PyGithub (`get_blob`, at
  most `--concurrency` in flight on its thread pool) and as one tarball (httpx, `get_tarball`:
  a 302 to a signed URL, streamed): wall time and rate-limited requests;
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from github_app.auth import AppAuth  # noqa: E402
from github_app.github import GitHubClient, _Auth, _request  # noqa: E402
from github_app.sync.archive import blobs_from_tarball  # noqa: E402
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


async def _archive(client: GitHubClient, paths: dict[str, str], installation: int) -> float:
    started = time.perf_counter()
    archive = await client.get_tarball(REPO, "main", installation_id=installation)
    assert len(blobs_from_tarball(archive, paths)) == len(set(paths.values()))
    return time.perf_counter() - started


async def _run(args: argparse.Namespace) -> dict[str, float]:
    fake, installation = _world(args.blobs)
    fake.latency = args.latency
    with serve_on_loopback(fake) as url:
        auth = AppAuth(fake.app_id, fake.private_key_pem)
        async with GitHubClient(url, auth=auth, pool_size=args.concurrency) as client:
            tree = await client.get_tree(REPO, "main", installation_id=installation)
            paths = {entry.path: entry.sha for entry in tree if entry.type == "blob"}
            spent_before = _spent(fake)
            blob_time = await _blobs(client, list(paths.values()), installation, args.concurrency)
            blob_requests = _spent(fake) - spent_before
            spent_before = _spent(fake)
            archive_time = await _archive(client, paths, installation)
            archive_requests = _spent(fake) - spent_before

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
        "blobs_s": blob_time,
        "blob_requests": blob_requests,
        "archive_s": archive_time,
        "archive_requests": archive_requests,
        "conditional_spent": conditional,
        "pygithub_spent": unconditional,
    }


def _spent(fake: FakeGitHub) -> int:
    """Rate-limited requests so far (a 304 is free on GitHub, and on the fake; the signed archive
    download is not an API request)."""
    return sum(
        1
        for r in fake.requests
        if r.status != 304 and "access_tokens" not in r.path and r.endpoint != "GET codeload"
    )


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
        f"first sync, blobs through PyGithub: {median['blobs_s'] * 1000:7.0f} ms, "
        f"{median['blob_requests']:.0f} requests"
    )
    print(
        f"first sync, one tarball (httpx):    {median['archive_s'] * 1000:7.0f} ms, "
        f"{median['archive_requests']:.0f} request + the signed download "
        f"(time ratio {median['archive_s'] / median['blobs_s']:.2f})"
    )
    print(
        f"head checks: conditional (ETag) spent {median['conditional_spent']:.0f} of the rate "
        f"limit; PyGithub get_git_ref spent {median['pygithub_spent']:.0f}"
    )


if __name__ == "__main__":
    main()
