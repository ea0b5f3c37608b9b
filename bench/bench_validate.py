"""How long `guildprompts validate` takes on a 2,000-file repository (target: under 1 s).

Builds a schema v2 repository in a temporary directory (PATH, schema-version, 1,999 prompt files
with front matter, includes and placeholders), then prints the median wall time of several
`guildprompts validate` runs (a fresh process each time, as in CI) and of in-process `validate()`.

    .venv/bin/python bench/bench_validate.py [--runs 7] [--files 2000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from promptrepo import files_from_directory, validate

CATEGORIES = ("discussion", "meeting", "moderation", "support", "events")
PATH_FILE = """\
version: v2
routes:
  channel_specific: "prompts/{category}/channels/{channel}.md"
  perspective:
    path: "prompts/perspectives/{perspective}.yaml"
    when: {perspective: [developer, executive]}
  category_type: "prompts/{category}/{type}.md"
  category_default: "prompts/{category}/default.md"
  global_default: "prompts/default.md"
variables: {perspective: general}
"""
PROMPT = """\
---
description: Summary prompt number {number}.
metadata: {{owner: team-{number}}}
parameters: {{temperature: 0.{digit}, max_tokens: {tokens}}}
includes: [partials/style.md]
---
Summarise the conversation in #{{channel_name}} on {{guild_name}} ({{time_range}}) for the
{{category}} readers. Mention the {{message_count}} messages only when it helps.

Write a short overview, then the main points, then the open questions.

Messages:
{{messages}}
"""


def build(root: Path, count: int) -> None:
    """A valid repository of `count` files: every prompt reachable, no diagnostics."""
    (root / "partials").mkdir()
    (root / "PATH").write_text(PATH_FILE)
    (root / "schema-version").write_text("v2\n")
    (root / "partials" / "style.md").write_text("Be factual, neutral and brief.\n")
    (root / "prompts").mkdir()
    (root / "prompts" / "default.md").write_text(PROMPT.format(number=0, digit=3, tokens=500))
    (root / "prompts" / "perspectives").mkdir()
    (root / "prompts" / "perspectives" / "developer.yaml").write_text(
        "description: For developers.\nprompt: |\n  Summarise {messages} for developers.\n"
    )
    written = 5
    number = 0
    while written < count:
        number += 1
        category = CATEGORIES[number % len(CATEGORIES)]
        folder = root / "prompts" / category / "channels"
        if not folder.is_dir():
            folder.mkdir(parents=True)
            (folder.parent / "default.md").write_text(PROMPT.format(number=0, digit=1, tokens=9))
            written += 1
        text = PROMPT.format(number=number, digit=number % 10, tokens=100 + number)
        (folder / f"channel-{number}.md").write_text(text)
        written += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--files", type=int, default=2000)
    args = parser.parse_args()
    command = Path(sys.executable).with_name("guildprompts")
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        build(root, args.files)
        files = files_from_directory(root)
        diagnostics = validate(files)
        if diagnostics:
            print(f"benchmark repository is not clean: {diagnostics[0]}", file=sys.stderr)
            return 1
        walls = []
        for _ in range(args.runs):
            started = time.perf_counter()
            done = subprocess.run(
                [str(command), "validate", str(root)], capture_output=True, text=True, check=False
            )
            walls.append(time.perf_counter() - started)
            if done.returncode != 0:
                print(done.stdout + done.stderr, file=sys.stderr)
                return 1
        in_process = []
        for _ in range(args.runs):
            started = time.perf_counter()
            validate(files)
            in_process.append(time.perf_counter() - started)
    wall = statistics.median(walls)
    print(f"files: {len(files)}")
    print(f"guildprompts validate (subprocess, median of {args.runs}): {wall:.3f} s")
    print(f"validate() in process (median of {args.runs}): {statistics.median(in_process):.3f} s")
    print("target: under 1 s -> " + ("OK" if wall < 1 else "TOO SLOW"))
    return 0 if wall < 1 else 1


if __name__ == "__main__":
    sys.exit(main())
