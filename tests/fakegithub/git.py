"""Git objects of the fake: blobs hashed as git does, repositories, installations."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

TAGGER = ("Fake Tagger", "tagger@example.com")  # who writes annotated tags


@dataclass(frozen=True)
class Symlink:
    """A `push` value making a symbolic link (mode 120000) to `target`."""

    target: str


@dataclass(frozen=True)
class Submodule:
    """A `push` value making a submodule entry (mode 160000, type commit)."""

    sha: str = "1" * 40


def _git_hash(kind: str, body: bytes) -> str:
    return hashlib.sha1(f"{kind} {len(body)}\0".encode() + body).hexdigest()


def blob_sha(content: bytes | str) -> str:
    """The git blob SHA-1 of `content` (what `git hash-object` prints)."""
    return _git_hash("blob", content.encode() if isinstance(content, str) else content)


@dataclass
class Repo:
    id: int
    full_name: str
    private: bool
    installation: int | None
    default_branch: str
    blobs: dict[str, bytes] = field(default_factory=dict)
    trees: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)  # (mode, name, sha)
    commits: dict[str, dict[str, Any]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    # A tag -> what refs/tags/NAME points to: a commit (lightweight) or a tag object (annotated).
    tags: dict[str, str] = field(default_factory=dict)
    tag_objects: dict[str, dict[str, Any]] = field(default_factory=dict)  # sha -> tag object
    # branch (or "refs/tags/NAME") -> what it pointed to, in order; ZERO_SHA = deleted
    reflog: dict[str, list[str]] = field(default_factory=dict)

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]

    def peel(self, sha: str) -> str:
        """The commit a sha names: itself, or what an annotated tag (of tags) points to."""
        while sha in self.tag_objects:
            sha = self.tag_objects[sha]["object"]
        return sha

    def commit_of(self, ref: str) -> str:
        """The commit a branch, a tag or a sha names (a branch wins over a tag of its name);
        an unknown name is returned as it is, for the caller's 404."""
        if ref in self.branches:
            return self.branches[ref]
        return self.peel(self.tags.get(ref, ref))

    def kind_of(self, sha: str) -> str | None:
        """The type of a stored object ("commit", "tag", "tree" or "blob"), None if unknown."""
        for kind, objects in (
            ("commit", self.commits),
            ("tag", self.tag_objects),
            ("tree", self.trees),
            ("blob", self.blobs),
        ):
            if sha in objects:
                return kind
        return None

    def write_tag(self, name: str, target: str, message: str, at: int) -> str:
        """Store an annotated tag object on `target` (a commit or a tag object), tagged at `at`
        (epoch seconds), as `git tag -a` does; return its sha."""
        kind = self.kind_of(target)
        tagger = f"{TAGGER[0]} <{TAGGER[1]}> {at} +0000"
        text = f"object {target}\ntype {kind}\ntag {name}\ntagger {tagger}\n\n{message}\n"
        sha = _git_hash("tag", text.encode())
        self.tag_objects[sha] = {
            "tag": name,
            "object": target,
            "type": kind,
            "message": message + "\n",
            "at": at,
        }
        return sha

    def flatten(self, tree_sha: str, base: str = "") -> dict[str, tuple[str, str]]:
        """path -> (mode, sha) for every non-tree entry under a tree."""
        files: dict[str, tuple[str, str]] = {}
        for mode, name, sha in self.trees[tree_sha]:
            if mode == "40000":
                files.update(self.flatten(sha, f"{base}{name}/"))
            else:
                files[base + name] = (mode, sha)
        return files

    def store(self, value: bytes | str | Symlink | Submodule) -> tuple[str, str]:
        """Store a `push` value as a blob (unless a submodule); return its (mode, sha)."""
        if isinstance(value, Submodule):
            return "160000", value.sha
        if isinstance(value, Symlink):
            mode, content = "120000", value.target.encode()
        else:
            mode, content = "100644", value.encode() if isinstance(value, str) else value
        sha = blob_sha(content)
        self.blobs[sha] = content
        return mode, sha

    def write_tree(self, files: dict[str, tuple[str, str]]) -> str:
        """Store the trees for path -> (mode, sha) and return the root tree's sha."""
        nested: dict[str, Any] = {}
        for path, entry in files.items():
            *dirs, name = path.split("/")
            node = nested
            for part in dirs:
                node = node.setdefault(part, {})
            node[name] = entry
        return self._write_node(nested)

    def _write_node(self, node: dict[str, Any]) -> str:
        entries = []
        for name, value in node.items():
            if isinstance(value, dict):
                entries.append(("40000", name, self._write_node(value)))
            else:
                entries.append((value[0], name, value[1]))
        entries.sort(key=lambda e: e[1] + "/" if e[0] == "40000" else e[1])  # git's order
        body = b"".join(f"{m} {n}".encode() + b"\0" + bytes.fromhex(s) for m, n, s in entries)
        sha = _git_hash("tree", body)
        self.trees[sha] = entries
        return sha
