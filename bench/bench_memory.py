"""Memory with many guilds: 10,000 guilds on 1,000 repositories, each resolved for 5 contexts.

Targets (issue 12): the service's RSS under 200 MB with every answer kept, and a bot process
streaming all of them (`BridgeClient(..., stream=True)`) under 150 MB. Answers are shared by
every guild on the same snapshot and context, and parsed snapshots sit in an LRU sized in
bytes, so memory follows repositories, not guilds.

The database (SQLite, a temporary directory) is written directly through the store: 1,000
public repositories of 12 files (prompts of about 3 KB, every repository's text distinct), each
with its commit active, and 10 guilds bound to each. Then:
- `guildprompts serve --no-worker` runs on it (RESOLVER_CACHE_SIZE 60,000: room for every
  answer even unshared); all 50,000 (guild, context) pairs are asked over HTTP; its RSS is read
  from /proc, next to its RSS right after start (the baseline);
- a bot process streams every guild, resolves the 50,000 pairs in process, and reports its RSS,
  next to a process that only imported bot_bridge (the baseline).

    .venv/bin/python bench/bench_memory.py [--repositories 1000] [--guilds-per-repository 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from github_app.secrets import generate_key  # noqa: E402
from github_app.store import branches, installations, snapshots  # noqa: E402
from github_app.store.migrate import open_database  # noqa: E402
from github_app.store.models import BranchStatus  # noqa: E402
from tests.harness import clean_env, serve_process  # noqa: E402
from tests.store_helpers import save_binding  # noqa: E402

TOKEN = "bench-memory-token-8c1d"
CONTEXTS = [
    {"category": "meeting"},
    {"category": "meeting", "type": "brief"},
    {"category": "discussion"},
    {"category": "discussion", "type": "detailed"},
    {"category": "moderation"},
]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PATH_FILE = b"""version: v2
routes:
  by_type: "prompts/{category}/{type}.md"
  by_category: "prompts/{category}/default.md"
  default: "prompts/default.md"
"""

BOT = """
import os, sys, json
from bot_bridge import BridgeClient
url, token, guilds, contexts = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
def rss():
    for line in open(f"/proc/{os.getpid()}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
base = rss()
if url == "-":
    print(json.dumps({"rss": base})); sys.exit()
client = BridgeClient(url, token, stream=True)
assert client.wait_for_stream(300), "the stream did not become live"
custom = 0
for guild in range(guilds):
    for context in contexts:
        custom += client.resolve_prompt(str(100000 + guild), context).source == "custom"
stats = client.stream_stats()
print(json.dumps({"rss": rss(), "custom": custom, "stats": stats, "base": base}))
"""


def prompt(repository: int, name: str) -> bytes:
    line = f"Repository {repository}, {name}: write a careful summary of the conversation. "
    return (line * (3000 // len(line))).encode() + b"\n{messages}\n"


def repository_files(repository: int) -> dict[str, bytes]:
    files = {"PATH": PATH_FILE, "schema-version": b"v2\n"}
    files["prompts/default.md"] = prompt(repository, "default")
    for category in ("meeting", "discussion", "moderation"):
        files[f"prompts/{category}/default.md"] = prompt(repository, f"{category} default")
        for kind in ("brief", "detailed"):
            files[f"prompts/{category}/{kind}.md"] = prompt(repository, f"{category} {kind}")
    return files


def populate(database_url: str, repositories: int, per_repository: int) -> None:
    database = open_database(database_url, auto_upgrade=True)
    try:
        with database.session() as session:
            installations.upsert_installation(session, 77, "octo-org")
        for number in range(1, repositories + 1):
            files = repository_files(number)
            blob_ids = {path: snapshots.git_blob_sha(content) for path, content in files.items()}
            sha = snapshots.git_blob_sha(f"commit {number}".encode())
            head_at = T0 + timedelta(seconds=number)
            with database.session() as session:
                full_name = f"octo-org/prompts-{number}"
                installations.upsert_repository(
                    session,
                    number,
                    full_name,
                    private=False,
                    default_branch="main",
                    installation_id=77,
                )
                snapshots.store_blobs(session, {blob_ids[p]: c for p, c in files.items()})
                snapshot = snapshots.create_snapshot(
                    session, number, sha, blob_ids, valid=True, diagnostics=[]
                )
                branches.note_head(session, number, "main", sha, head_at)
                branches.activate(session, number, "main", snapshot.id, head_at)
                branches.set_branch_status(
                    session, number, "main", BranchStatus.OK, f"serving {sha[:7]}", synced_at=T0
                )
                for index in range(per_repository):
                    guild = str(100000 + (number - 1) * per_repository + index)
                    save_binding(
                        session,
                        guild,
                        repository_full_name=full_name,
                        repository_id=number,
                        branch=None,
                        actor="bench",
                        expected_version=None,
                    )
    finally:
        database.dispose()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def ask_everything(url: str, guilds: int) -> int:
    limits = httpx.Limits(max_connections=16)
    custom = 0
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, limits=limits, timeout=60
    ) as http:
        semaphore = asyncio.Semaphore(16)

        async def ask(guild: int, context: dict[str, str]) -> None:
            nonlocal custom
            async with semaphore:
                answer = await http.get(
                    f"/bridge/v1/guilds/{100000 + guild}/prompt", params=context
                )
                answer.raise_for_status()
                custom += answer.json()["source"] == "custom"

        await asyncio.gather(
            *(ask(guild, context) for guild in range(guilds) for context in CONTEXTS)
        )
    return custom


def bot(url: str, guilds: int, env: dict[str, str]) -> dict[str, Any]:
    import json

    output = subprocess.run(
        [sys.executable, "-c", BOT, url, TOKEN, str(guilds), json.dumps(CONTEXTS)],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repositories", type=int, default=1000)
    parser.add_argument("--guilds-per-repository", type=int, default=10)
    args = parser.parse_args()
    guilds = args.repositories * args.guilds_per_repository
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        directory = Path(tmp)
        database_url = f"sqlite:///{directory / 'guildprompts.db'}"
        started = time.monotonic()
        populate(database_url, args.repositories, args.guilds_per_repository)
        print(
            f"bench_memory: {guilds} guilds on {args.repositories} repositories, "
            f"{len(CONTEXTS)} contexts each (database written in "
            f"{time.monotonic() - started:.0f} s); load average {os.getloadavg()[0]:.1f} "
            f"on {os.cpu_count()} CPUs"
        )
        env = clean_env(
            DATABASE_URL=database_url,
            ENCRYPTION_KEYS=generate_key(),
            BRIDGE_TOKENS=TOKEN,
            RESOLVER_CACHE_SIZE=str(guilds * len(CONTEXTS) + 1000),
            LOG_LEVEL="warning",
        )
        with serve_process(directory / "serve", env, "--no-worker") as service:
            baseline = rss_mb(service.process.pid)
            started = time.monotonic()
            custom = asyncio.run(ask_everything(service.url, guilds))
            asked = time.monotonic() - started
            after = rss_mb(service.process.pid)
            streamed = bot(service.url, guilds, env)
            after_stream = rss_mb(service.process.pid)
        bare = bot("-", 0, env)
    total = guilds * len(CONTEXTS)
    print(
        f"service: RSS {after:.0f} MB after answering all {total} (guild, context) pairs "
        f"({custom} custom) in {asked:.0f} s; right after start {baseline:.0f} MB "
        f"(x{after / baseline:.2f}); {after_stream:.0f} MB after streaming everything to a bot  "
        f"[target < 200 MB: {'OK' if max(after, after_stream) < 200 else 'MISSED'}]"
    )
    stats = streamed["stats"]
    print(
        f"streaming bot: RSS {streamed['rss']:.0f} MB with {stats['guilds']} guilds, "
        f"{stats['snapshots']} snapshots, {stats['answers']} shared answers "
        f"({streamed['custom']} custom of {total} resolves); a process that only imported "
        f"bot_bridge {bare['rss']:.0f} MB  [target < 150 MB: "
        f"{'OK' if streamed['rss'] < 150 else 'MISSED'}]"
    )
    return 0 if max(after, after_stream) < 200 and streamed["rss"] < 150 else 1


if __name__ == "__main__":
    sys.exit(main())
