"""Blobs out of a commit's tarball: what a large sync downloads instead of one request per file.

GitHub's `tarball/{ref}` archive holds the commit under one top folder (`owner-name-sha7/`).
Only the regular files the sync asked for are read, and each is checked against the blob sha the
tree gave for its path (git's `blob <size>\\0` SHA-1), so a snapshot holds exactly the commit even
though the archive is a different download. Pure (no I/O beyond the bytes given).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping

from github_app.store.snapshots import git_blob_sha


class ArchiveError(ValueError):
    """The archive is unreadable, or lacks or contradicts a file the tree lists."""


def blobs_from_tarball(archive: bytes, wanted: Mapping[str, str]) -> dict[str, bytes]:
    """Blob sha -> content for every path -> sha of `wanted` (paths from the repository root)."""
    needed: dict[str, str] = dict(wanted)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
            for member in tar:
                _, _, path = member.name.partition("/")
                sha = needed.get(path)
                if sha is None or not member.isreg():
                    continue
                handle = tar.extractfile(member)
                content = handle.read() if handle is not None else b""
                if git_blob_sha(content) != sha:
                    raise ArchiveError(f"{path} in the archive does not match its blob {sha[:7]}")
                found[sha] = content
                del needed[path]
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"the repository archive is unreadable: {exc}") from None
    missing = [path for path, sha in needed.items() if sha not in found]
    if missing:
        raise ArchiveError(f"the repository archive lacks {len(missing)} files, e.g. {missing[0]}")
    return found
