"""Refresh tests/contract/github-openapi.json: the parts of GitHub's REST API description the App
calls, trimmed from the `@octokit/openapi` npm package (MIT; GitHub's description, published
by Octokit).

    python tests/contract/refresh_openapi.py                    # runs `npm pack @octokit/openapi`
    python tests/contract/refresh_openapi.py octokit-openapi-23.0.2.tgz

Keeps, for every (method, path) in `github_app.github.ENDPOINTS`, the operation and every
component it references (transitively), so the contract tests read GitHub's own words without
the 13 MB description.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from github_app.github import ENDPOINTS  # noqa: E402

TARGET = Path(__file__).with_name("github-openapi.json")
MEMBER = "package/generated/api.github.com.json"


def _package(argument: str | None, workdir: Path) -> Path:
    if argument:
        return Path(argument)
    subprocess.run(["npm", "pack", "@octokit/openapi"], cwd=workdir, check=True)
    return next(workdir.glob("octokit-openapi-*.tgz"))


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref)
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def trim(description: dict[str, Any], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path in ENDPOINTS:
        if path.startswith("/repositories/"):
            continue  # GitHub's by-id alias of /repos/{owner}/{repo}: not in the description
        paths.setdefault(path, {})[method.lower()] = description["paths"][path][method.lower()]
    components: dict[str, dict[str, Any]] = {}
    pending: set[str] = set()
    _refs(paths, pending)
    done: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in done:
            continue
        done.add(ref)
        _, _, kind, name = ref.split("/", 3)
        value = description["components"][kind][name]
        components.setdefault(kind, {})[name] = value
        _refs(value, pending)
    return {
        "openapi": description["openapi"],
        "info": {
            **description["info"],
            "x-source": f"@octokit/openapi {version} (npm), {MEMBER}, trimmed by "
            "tests/contract/refresh_openapi.py to the endpoints guildprompts calls",
        },
        "paths": paths,
        "components": {kind: dict(sorted(items.items())) for kind, items in components.items()},
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        package = _package(sys.argv[1] if len(sys.argv) > 1 else None, Path(workdir))
        with tarfile.open(package) as archive:
            meta = json.load(archive.extractfile("package/package.json"))  # type: ignore[arg-type]
            description = json.load(archive.extractfile(MEMBER))  # type: ignore[arg-type]
    trimmed = trim(description, meta["version"])
    TARGET.write_text(json.dumps(trimmed, indent=1, sort_keys=True) + "\n")
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes, {len(trimmed['paths'])} paths)")


if __name__ == "__main__":
    main()
