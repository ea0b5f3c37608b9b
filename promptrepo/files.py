"""Which paths belong to a prompt repository, and reading one from a directory.

The sync decides which blobs to download with `is_repository_file` and `nested_roots`, and the
CLI reads a checkout through the same filter, so `guildprompts validate` sees exactly what the
service would. A directory below the root holding its own PATH is another repository (a base pack
kept beside the repository extending it, as in examples/), never part of this one.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable
from pathlib import Path

PATH_FILE = "PATH"
SCHEMA_VERSION_FILE = "schema-version"
PROMPT_SUFFIXES = (".md", ".yaml", ".yml")
TESTS_FOLDER = "tests/"  # routing tests (promptrepo.routing_tests), never prompts
TEST_SUFFIXES = (".yaml", ".yml")
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f\\\ud800-\udfff]")  # controls, \, surrogates
# Repository documentation, never prompts. README is skipped at any depth (folders often carry
# one); the others only at the top, where projects keep them.
_ANY_DEPTH_DOCS = frozenset({"readme"})
_TOP_LEVEL_DOCS = frozenset(
    {
        "license",
        "licence",
        "changelog",
        "changes",
        "history",
        "contributing",
        "code_of_conduct",
        "security",
        "authors",
        "notice",
        "copying",
        "support",
    }
)


def is_test_file(path: str) -> bool:
    """A routing test file: .yaml or .yml under the top-level `tests/` folder."""
    return path.startswith(TESTS_FOLDER) and path.lower().endswith(TEST_SUFFIXES)


def is_repository_file(path: str) -> bool:
    """PATH, schema-version, files that can hold prompts (.md, .yaml, .yml) and routing tests.

    The top-level `tests/` folder holds routing tests only: nothing else in it is a prompt.
    """
    if path in (PATH_FILE, SCHEMA_VERSION_FILE):
        return True
    if path.startswith(TESTS_FOLDER) and not is_test_file(path):
        return False
    if not path or _UNSAFE_CHARS.search(path):
        return False
    segments = path.split("/")
    if any(not segment or segment.startswith(".") for segment in segments):
        return False  # dot-directories (.github/), dotfiles, `..`, empty segments
    name = segments[-1].lower()
    if not name.endswith(PROMPT_SUFFIXES):
        return False
    stem = name.rsplit(".", 1)[0]
    if stem in _ANY_DEPTH_DOCS:
        return False
    return not (len(segments) == 1 and stem in _TOP_LEVEL_DOCS)


def nested_roots(paths: Iterable[str]) -> frozenset[str]:
    """Directories below the root that hold a PATH of their own (`base/` for `base/PATH`)."""
    return frozenset(path[: -len(PATH_FILE)] for path in paths if path.endswith("/" + PATH_FILE))


def in_nested_repository(path: str, roots: frozenset[str]) -> bool:
    """Whether a path lies inside one of `nested_roots` (so belongs to another repository)."""
    return any(path.startswith(root) for root in roots)


def files_from_directory(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """The repository files under a directory, keyed by relative path with forward slashes.

    Dot-directories (.git, .github) are not entered and symbolic links are not followed, so a
    checkout cannot make validation read files outside it; nor are directories holding their
    own PATH (other repositories, see `nested_roots`).
    """
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", os.fspath(path))
    files: dict[str, bytes] = {}
    for directory, subdirectories, names in os.walk(root, followlinks=False):
        base = Path(directory)
        subdirectories[:] = sorted(
            d
            for d in subdirectories
            if not d.startswith(".") and not (base / d / PATH_FILE).is_file()
        )
        for name in sorted(names):
            full = base / name
            relative = full.relative_to(root).as_posix()
            if full.is_symlink() or not is_repository_file(relative):
                continue
            files[relative] = full.read_bytes()
    return files


class GitError(OSError):
    """git could not read a commit (not a checkout, an unknown ref, git missing)."""


def files_from_git(directory: str | os.PathLike[str], ref: str) -> dict[str, bytes]:
    """The repository files of commit `ref`, as `files_from_directory` reads a checkout.

    `directory` is the prompt repository's root inside a git checkout (paths are relative to
    it). Symbolic links and submodules are skipped, as the GitHub App skips them.
    """
    listing = _git(directory, "ls-tree", "-r", "-z", "--end-of-options", f"{ref}^{{commit}}")
    blobs: dict[str, str] = {}
    for entry in listing.split(b"\0"):
        if not entry:
            continue
        meta, _, raw_path = entry.partition(b"\t")
        mode, kind, sha = meta.decode().split()
        path = raw_path.decode("utf-8", "surrogateescape")
        if kind == "blob" and mode in ("100644", "100755") and is_repository_file(path):
            blobs[path] = sha
    if not blobs:
        return {}
    batch = _git(directory, "cat-file", "--batch", stdin="\n".join(blobs.values()) + "\n")
    contents: dict[str, bytes] = {}
    offset = 0
    while offset < len(batch):
        header_end = batch.index(b"\n", offset)
        sha, _, size = batch[offset:header_end].decode().split()
        start = header_end + 1
        contents[sha] = batch[start : start + int(size)]
        offset = start + int(size) + 1
    return {path: contents[sha] for path, sha in blobs.items()}


def _git(directory: str | os.PathLike[str], *args: str, stdin: str | None = None) -> bytes:
    import subprocess

    try:
        done = subprocess.run(  # noqa: S603 - fixed git arguments, no shell
            ["git", "-C", os.fspath(directory), *args],  # noqa: S607 - git from PATH
            input=stdin.encode() if stdin is not None else None,
            capture_output=True,
            check=False,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(errno.EIO, f"cannot run git: {exc}", os.fspath(directory)) from None
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(errno.EINVAL, (reason or ["git failed"])[-1], os.fspath(directory))
    return done.stdout
