"""Which files belong to a repository, and reading one from disk like the sync would see it."""

from __future__ import annotations

import os

import pytest

from promptrepo import files_from_directory, is_repository_file, validate


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("PATH", True),
        ("schema-version", True),
        ("prompts/default.md", True),
        ("prompts/meeting/notes.YAML", True),
        ("prompts/x.yml", True),
        ("prompts/x.txt", False),
        ("prompts/x", False),
        ("README.md", False),
        ("readme.md", False),
        ("prompts/README.md", False),
        ("LICENSE", False),
        ("LICENSE.md", False),
        ("CHANGELOG.md", False),
        ("CONTRIBUTING.md", False),
        ("prompts/changelog.md", True),  # a channel may be called "changelog"
        (".github/workflows/ci.yml", False),
        ("prompts/.drafts/x.md", False),
        (".hidden.md", False),
        ("docs/../PATH", False),
        ("/etc/x.md", False),
        ("a//b.md", False),
        ("a\\b.md", False),
        ("a\nb.md", False),
        ("sub/PATH", False),
        ("", False),
    ],
)
def test_is_repository_file(path: str, expected: bool) -> None:
    assert is_repository_file(path) is expected


def test_files_from_directory_reads_what_the_sync_would_fetch(tmp_path) -> None:
    (tmp_path / "prompts" / "meeting").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".github").mkdir()
    (tmp_path / "PATH").write_bytes(b"prompts/default.md\n")
    (tmp_path / "prompts" / "meeting" / "default.md").write_bytes(b"M\r\n")
    (tmp_path / "prompts" / "notes.txt").write_text("x")
    (tmp_path / "README.md").write_text("readme")
    (tmp_path / ".git" / "x.md").write_text("git internals")
    (tmp_path / ".github" / "ci.yml").write_text("ci")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.md"
    outside.write_text("secret")
    os.symlink(outside, tmp_path / "prompts" / "link.md")
    assert files_from_directory(tmp_path) == {
        "PATH": b"prompts/default.md\n",
        "prompts/meeting/default.md": b"M\r\n",
    }


def test_a_directory_with_its_own_path_is_another_repository(tmp_path) -> None:
    (tmp_path / "base" / "prompts").mkdir(parents=True)
    (tmp_path / "PATH").write_bytes(b"prompts/default.md\n")
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "default.md").write_bytes(b"Own")
    (tmp_path / "base" / "PATH").write_bytes(b"prompts/default.md\n")
    (tmp_path / "base" / "prompts" / "default.md").write_bytes(b"Base")
    own = files_from_directory(tmp_path)
    assert own == {"PATH": b"prompts/default.md\n", "prompts/default.md": b"Own"}
    assert files_from_directory(tmp_path / "base")["prompts/default.md"] == b"Base"
    tree = {**own, "base/PATH": b"x", "base/prompts/default.md": b"Base"}
    assert validate(tree) == validate(own) == []


def test_files_from_directory_refuses_a_missing_directory(tmp_path) -> None:
    with pytest.raises(NotADirectoryError):
        files_from_directory(tmp_path / "nope")
