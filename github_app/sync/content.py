"""What a commit holds: the tree's prompt files to snapshot, and their validation.

Pure functions (no I/O): the sync lists the tree, `select_files` says which blobs it needs and
what the tree itself breaks (symlinks, submodules, oversized files), and `validate_files` runs
`promptrepo.validate` and parses the repository once for the records and the check run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import promptrepo
from github_app.github import TreeEntry
from github_app.sync.bases import NO_BASES, Composition, explained
from promptrepo import Diagnostic, PromptRepository, RepositoryError


@dataclass(frozen=True)
class Validation:
    """A commit's diagnostics, and its parsed repository when it loads (else why not)."""

    diagnostics: tuple[Diagnostic, ...]
    repository: PromptRepository | None
    load_error: str

    @property
    def errors(self) -> int:
        return sum(1 for item in self.diagnostics if item.severity == "error")

    @property
    def valid(self) -> bool:
        return self.errors == 0


@dataclass(frozen=True)
class CommitFiles:
    """What the transaction records: blobs to store and the snapshot's file list."""

    sha: str
    blob_ids: Mapping[str, str]  # path -> blob sha
    downloaded: Mapping[str, bytes]  # blob sha -> content, new
    validation: Validation
    composition: Composition = NO_BASES  # the bases it was checked with (sync.bases)


def select_files(
    entries: Sequence[TreeEntry], max_size: int
) -> tuple[dict[str, str], list[Diagnostic]]:
    """The repository files to snapshot (path -> blob sha) and what the tree itself breaks."""
    wanted: dict[str, str] = {}
    found: list[Diagnostic] = []
    nested = promptrepo.nested_roots(entry.path for entry in entries if entry.type == "blob")
    for entry in entries:
        if entry.is_submodule and _visible(entry.path):
            found.append(
                _diagnostic(
                    entry.path,
                    "submodule-ignored",
                    "warning",
                    f"{entry.path} is a submodule: guildprompts never follows submodules",
                    "Copy the prompts into this repository instead of a submodule.",
                )
            )
        if entry.type != "blob" or not promptrepo.is_repository_file(entry.path):
            continue
        if promptrepo.in_nested_repository(entry.path, nested):
            continue  # another repository kept in a directory of this one
        if entry.is_symlink:
            found.append(
                _diagnostic(
                    entry.path,
                    "symlink-ignored",
                    "warning",
                    f"{entry.path} is a symbolic link: guildprompts never follows links, so this "
                    "path does not exist for routes",
                    "Replace the link with a copy of the file (or point the route at the target).",
                )
            )
        elif entry.size is not None and entry.size > max_size:
            found.append(
                _diagnostic(
                    entry.path,
                    "file-too-large",
                    "error",
                    f"{entry.path} is {entry.size} bytes, over the limit of {max_size} bytes: "
                    "it was not downloaded",
                    "Split the prompt into smaller files joined with `includes:` (v2), or shorten "
                    "it.",
                )
            )
        else:
            wanted[entry.path] = entry.sha.lower()
    return wanted, found


def _visible(path: str) -> bool:
    return all(part and not part.startswith(".") for part in path.split("/"))


def _diagnostic(path: str, code: str, severity: Any, message: str, hint: str) -> Diagnostic:
    return Diagnostic(
        path=path, line=None, column=None, severity=severity, code=code, message=message, hint=hint
    )


TREE_CODES = frozenset({"submodule-ignored", "symlink-ignored", "file-too-large"})  # not in files


def validate_files(
    files: Mapping[str, bytes],
    extra: Sequence[Diagnostic],
    strict: bool,
    max_size: int,
    composition: Composition = NO_BASES,
    name: str = "",
) -> Validation:
    """Validate a commit's files, over the bases it extends (`composition`) when it has any."""
    report = promptrepo.validate_report(
        files,
        strict=strict,
        max_file_size=max_size,
        bases=composition.files or None,
        name=name,
    )
    found = explained(report.diagnostics, composition)
    diagnostics = tuple(sorted([*found, *composition.cycles, *extra], key=Diagnostic.sort_key))
    return analyse_commit(files, diagnostics, composition, name)


def analyse_commit(
    files: Mapping[str, bytes],
    diagnostics: tuple[Diagnostic, ...],
    composition: Composition = NO_BASES,
    name: str = "",
) -> Validation:
    """The parsed repository next to its diagnostics (for allowed_guilds and the preview)."""
    try:
        repository = promptrepo.load_repository(files, bases=composition.files or None, name=name)
        return Validation(diagnostics, repository, "")
    except RepositoryError as exc:
        return Validation(diagnostics, None, str(exc))
