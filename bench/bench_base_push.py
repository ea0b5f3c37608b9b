"""A push to a base against a direct push: push-to-live of each, interleaved in one service.

Issue 15's acceptance: "a push to the base changes what the guild serves within the same
push-to-live budget as a direct push". The harness is bench_push's (`guildprompts serve` with
its worker over SQLite in its own process, the fake GitHub on loopback with `--latency` added to
every request, the guild bound through the bridge's PUT config). Each run sets up:

- `guildprompts/base-pack`: public, the App installed on its own installation; the files of
  `examples/base` plus generated library prompts up to `--files`;
- `octo-org/prompts`: public, the App installed; `examples/guild`, whose PATH says
  `extends: guildprompts/base-pack@main` and which overrides `prompts/meeting.md`.

Its first sync waits for the base and queues the base's first read (set-up, not timed). Then,
`--pushes` times, one after another:

(a) direct: a push to the guild repository changing `prompts/meeting.md` (its own file), timed
    from the webhook POST until the bridge's answer for {category: meeting} shows it;
(b) base: a push to the base changing `prompts/discussion.md` (which the guild serves from the
    base), timed from the webhook POST until the answer for {category: discussion} shows it:
    the base's sync activates it and queues a `rebase` of the guild repository, which reads
    the guild's head (conditional), checks it again over the new base commit and activates the
    pair.

Requests per push: what the fake logged from the POST until every check run of the push is
completed (for (b): the base's, and the new one the rebase posts on the guild's head), split by
repository and endpoint.

    .venv/bin/python bench/bench_base_push.py [--pushes 10] [--runs 3] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_push import (  # noqa: E402
    BUDGET,
    REPO,
    Samples,
    answer,
    bare_round_trip,
    bound_service,
    completed,
    ms,
    parse_arguments,
    percentile,
    print_requests,
    timed_delivery,
)

from promptrepo import files_from_directory  # noqa: E402
from tests.fakegithub import FakeGitHub, LoggedRequest  # noqa: E402

BASE = "guildprompts/base-pack"
EXAMPLES = ROOT / "examples"
OWN_FILE, OWN_QUERY = "prompts/meeting.md", {"category": "meeting"}  # the guild's override
BASE_FILE, BASE_QUERY = "prompts/discussion.md", {"category": "discussion"}  # the base's
KINDS = ("direct", "base")


def _example(name: str) -> dict[str, bytes]:
    return dict(files_from_directory(EXAMPLES / name))


def _base_pack(files: int) -> dict[str, bytes]:
    content = _example("base")
    for index in range(files - len(content)):
        content[f"prompts/library/entry-{index:03}.md"] = f"Entry {index}: {{messages}}\n".encode()
    return content


def _marked(files: Mapping[str, bytes], path: str, marker: str) -> dict[str, bytes]:
    """`path` with `marker` as the first line of its body (after the front matter)."""
    head, separator, body = files[path].partition(b"\n---\n")
    assert separator, f"{path} has front matter"
    return {path: head + separator + f"{marker}\n".encode() + body}


def _serves_pair(http: httpx.Client, pair: str) -> bool:
    """The bridge serves the guild its own file and the base's, the base at commit `pair`."""
    own, base = answer(http, OWN_QUERY), answer(http, BASE_QUERY)
    return pair in str(own["status_message"]) and own["source"] == base["source"] == "custom"


def _repository_of(fake: FakeGitHub, request: LoggedRequest) -> str:
    """Which repository a request was for (by name or by id), or "-" (App, tokens)."""
    parts = request.path.split("/")
    if len(parts) > 3 and parts[1] == "repos":
        return fake.repo(f"{parts[2]}/{parts[3]}").full_name
    if len(parts) > 2 and parts[1] == "repositories":
        return next((r.full_name for r in fake.repos.values() if str(r.id) == parts[2]), "?")
    return "-"


def _push(
    fake: FakeGitHub,
    http: httpx.Client,
    kind: str,
    tag: str,
    poll: float,
    samples: Samples,
) -> None:
    marker = f"Push {tag}."
    repo, path, query = (
        (REPO, OWN_FILE, OWN_QUERY) if kind == "direct" else (BASE, BASE_FILE, BASE_QUERY)
    )
    guild_head = fake.head(REPO, "main")
    assert guild_head is not None
    runs_before = len(fake.check_runs_for(REPO, guild_head))
    sha = fake.push(repo, "main", _marked(fake.files(repo, "main"), path, marker))

    def settled() -> bool:  # a base push: the rebase's new check run on the guild's head too
        return completed(fake, sha, repo) and (
            kind == "direct" or completed(fake, guild_head, REPO, runs_before + 1)
        )

    live, requests = timed_delivery(
        fake,
        http,
        fake.webhook("push", fake.push_payload(repo, "main")),
        lambda: marker in str(answer(http, query)["content"]),
        settled,
        poll=poll,
        what=f"{kind} push {tag}",
    )
    samples.live.append(live)
    samples.requests.append(
        collections.Counter(f"{_repository_of(fake, r)}  {r.endpoint}" for r in requests)
    )


def _run(number: int, args: argparse.Namespace) -> dict[str, Samples]:
    fake = FakeGitHub()
    fake.add_repo(BASE, private=False, installation=fake.add_installation("guildprompts"))
    fake.push(BASE, "main", _base_pack(args.files))
    fake.add_repo(REPO, private=False, installation=fake.add_installation("octo-org"))
    fake.push(REPO, "main", _example("guild"))
    results = {kind: Samples() for kind in KINDS}
    base_head, guild_head = fake.head(BASE, "main"), fake.head(REPO, "main")
    assert base_head is not None and guild_head is not None
    pair = f"{BASE}@{base_head[:7]}"

    def ready(http: httpx.Client) -> bool:  # and the last set-up sync (the rebase) is done
        return _serves_pair(http, pair) and completed(fake, guild_head, REPO)

    with bound_service(fake, ready) as http:
        fake.latency = args.latency  # the first syncs ran without: they are set-up
        for index in range(args.pushes):
            for kind in KINDS:
                tag = f"r{number}-{kind}-{index}"
                _push(fake, http, kind, tag, args.poll, results[kind])
        fake.latency = 0.0
    return results


def _median_over_runs(per_run: list[Samples], q: int) -> float:
    return statistics.median(percentile(samples.live, q) for samples in per_run)


def _report(per_run: dict[str, list[Samples]], baseline: float) -> bool:
    """Print the numbers; True when both kinds of push are live within the budget (p95)."""
    for kind in KINDS:
        runs = per_run[kind]
        print(f"\n({'a' if kind == 'direct' else 'b'}) {kind} push:")
        for number, samples in enumerate(runs, 1):
            print(
                f"  run {number}: push-to-live p50 {ms(percentile(samples.live, 50))}  "
                f"p95 {ms(percentile(samples.live, 95))}  max {ms(max(samples.live))}"
            )
        p50 = _median_over_runs(runs, 50)
        print(
            f"  median over runs: p50 {ms(p50)}  p95 {ms(_median_over_runs(runs, 95))}  "
            f"(p50 = {p50 / baseline:.1f} x the bare round trip)"
        )
        counts = [counter for samples in runs for counter in samples.requests]
        totals = [sum(counter.values()) for counter in counts]
        print(
            f"  GitHub requests per push: median {statistics.median(totals):g}, max {max(totals)}"
        )
        print_requests(counts)
    print("\nbase push / direct push (medians over runs):")
    for q in (50, 95):
        a, b = _median_over_runs(per_run["direct"], q), _median_over_runs(per_run["base"], q)
        print(f"  p{q}: {ms(b)} / {ms(a)} = {b / a:.2f}  (+{ms(b - a).strip()})")
    verdicts = {kind: _median_over_runs(per_run[kind], 95) < BUDGET for kind in KINDS}
    print(
        f"push-to-live p95 < {BUDGET:g} s (bench_push's budget): "
        + "; ".join(f"{kind} {'PASS' if ok else 'FAIL'}" for kind, ok in verdicts.items())
    )
    return all(verdicts.values())


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(
        argv,
        __doc__,
        pushes=10,
        pushes_help="pushes of each kind per run",
        files_help="files in the base pack",
    )
    started = time.monotonic()
    baseline = bare_round_trip(args.latency)
    print(
        f"fake GitHub latency {args.latency * 1000:.0f} ms per request; base pack of "
        f"{args.files} files; {args.pushes} pushes of each kind per run, interleaved; "
        f"{args.runs} runs; bridge polled every {args.poll * 1000:.0f} ms"
    )
    print(f"baseline: one bare GET round trip to the fake over loopback: median {ms(baseline)}")
    runs = [_run(number, args) for number in range(1, args.runs + 1)]
    ok = _report({kind: [run[kind] for run in runs] for kind in KINDS}, baseline)
    print(f"\ntotal time {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
