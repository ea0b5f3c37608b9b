"""What a guild admin may type as the repository to bind, reduced to GitHub's `owner/name`.

Admins paste whatever their browser or `git clone` shows: `owner/name`, `https://github.com/
owner/name`, the same with `.git`, a trailing slash, `http://`, `www.`, or the SSH form
`git@github.com:owner/name.git`. All of these name one repository; anything on another host is
refused, since the App only reads the GitHub it is registered on (`GITHUB_URL`, which may be an
Enterprise host). Names are checked against GitHub's own rules so a typo gets a clear message
here instead of a confusing 404 from a sync later.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

__all__ = ["RepositoryNameError", "parse_repository"]

# GitHub: owners are 1-39 letters, digits or single hyphens (not at either end); repository
# names are 1-100 of letters, digits, '.', '_' and '-', and never "." or "..".
_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
_SSH = re.compile(r"(?:ssh://)?git@(?P<host>[^:/]+)[:/](?P<path>.+)")
_MAX_INPUT = 500


class RepositoryNameError(ValueError):
    """The text does not name a repository on the configured GitHub host; says why."""


def parse_repository(text: object, github_url: str) -> str:
    """`owner/name` of the repository `text` names on `github_url`'s host."""
    if not isinstance(text, str) or not text.strip():
        raise RepositoryNameError(
            "give the repository as owner/name or its GitHub URL, e.g. octo-org/prompts"
        )
    value = text.strip()
    if len(value) > _MAX_INPUT:
        raise RepositoryNameError("the repository is too long to be a GitHub repository")
    expected_host = _host(github_url)
    ssh = _SSH.fullmatch(value)
    if ssh is not None:
        _check_host(ssh.group("host"), expected_host, github_url)
        path = ssh.group("path")
    elif "://" in value:
        parts = urlsplit(value)
        if parts.scheme.lower() not in {"http", "https"}:
            raise RepositoryNameError(
                f"{parts.scheme}:// is not a GitHub web address: use owner/name or an https URL"
            )
        if parts.query or parts.fragment:
            raise RepositoryNameError(
                "give the repository's own address, without ?query or #fragment"
            )
        _check_host(parts.hostname or "", expected_host, github_url, _port(parts))
        path = _strip_prefix(parts.path, urlsplit(github_url).path)
    elif value.split("/", 1)[0].lower() in {expected_host, f"www.{expected_host}"}:
        path = value.split("/", 1)[1] if "/" in value else ""  # github.com/owner/name
    else:
        path = value
    return _owner_name(path)


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:  # urllib's own message names neither the input nor the fix
        raise RepositoryNameError(
            f"{parts.netloc} has an invalid port: give owner/name or the repository's https "
            "URL as GitHub shows it"
        ) from None


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _check_host(host: str, expected: str, github_url: str, port: int | None = None) -> None:
    host = host.lower()
    expected_port = urlsplit(github_url).port
    same = host in {expected, f"www.{expected}"} and port in {None, expected_port, 80, 443}
    if not same:
        shown = github_url.split("://", 1)[-1]
        raise RepositoryNameError(
            f"only repositories on {shown} can be bound (this guildprompts reads that GitHub); "
            f"{host or 'this address'} is another host"
        )


def _strip_prefix(path: str, prefix: str) -> str:
    """GitHub Enterprise may live under a path (https://host/github/owner/name)."""
    prefix = prefix.rstrip("/")
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        return path[len(prefix) :]
    return path


def _owner_name(path: str) -> str:
    segments = [segment for segment in path.strip().strip("/").split("/") if segment]
    if len(segments) != 2:
        if len(segments) > 2:
            raise RepositoryNameError(
                "give the repository itself (owner/name), not a file, branch or page inside it; "
                "the branch is a separate argument"
            )
        raise RepositoryNameError(
            "give the repository as owner/name or its GitHub URL, e.g. octo-org/prompts"
        )
    owner, name = segments
    if name.lower().endswith(".git"):
        name = name[: -len(".git")]
    if not _OWNER.fullmatch(owner):
        raise RepositoryNameError(
            f"{owner[:60]!r} is not a GitHub account name (letters, digits and single hyphens, "
            "at most 39 characters)"
        )
    if not _NAME.fullmatch(name) or name in {".", ".."}:
        raise RepositoryNameError(
            f"{name[:60]!r} is not a GitHub repository name (letters, digits, '.', '_' and '-', "
            "at most 100 characters)"
        )
    return f"{owner}/{name}"
