"""How long the routing diff of a check run takes on a 2,000-file repository.

Builds the repository of bench_validate.py, changes 10 channel prompts and one category prompt,
then prints the median time of `diff_files` (both commits parsed, every context that matters
resolved twice and compared) and of rendering its Markdown, next to `validate()` of the same
files in the same process (the check run's other work), as a ratio: the machine is shared and
noisy, so the ratio is the number to compare between runs.

    .venv/bin/python bench/bench_diff.py [--runs 5] [--files 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_validate import build

from promptrepo import files_from_directory, validate
from promptrepo.routing_diff import diff_files, render_markdown


def median_time(runs: int, work) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--files", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        build(root, args.files)
        base = files_from_directory(root)
    head = dict(base)
    changed = [path for path in sorted(base) if "/channels/" in path][:10]
    changed.append("prompts/meeting/default.md")
    for path in changed:
        head[path] = head[path].replace(b"main points", b"decisions")
    result = diff_files(base, head)
    print(f"files: {len(base)}, changed: {len(changed)}")
    print(f"contexts compared: {result.contexts_compared}, changes: {len(result.changes)}")
    diff = median_time(args.runs, lambda: diff_files(base, head))
    markdown = median_time(args.runs, lambda: render_markdown(result))
    baseline = median_time(args.runs, lambda: validate(head))
    print(f"diff_files (median of {args.runs}): {diff:.3f} s")
    print(f"render_markdown (median of {args.runs}): {markdown * 1000:.1f} ms")
    print(f"validate() of head, same process (median of {args.runs}): {baseline:.3f} s")
    print(f"diff / validate: {diff / baseline:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
