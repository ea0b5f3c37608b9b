"""Build the vcrpy cassettes in this folder from GitHub's documented examples.

Each answer is the example GitHub's OpenAPI description gives for that operation and status
(tests/contract/github-openapi.json), so a replay is evidence about GitHub's answers, not about
the project's fake. Edits, each said here: the installation token is "REDACTED" (cassettes hold
no credentials); the blob example's `sha` is replaced by the git hash of its own content (the
documented one is illustrative and would fail the client's check, which a test also shows); the
tree's blob entry points at that sha; the tag cassette's ref is the documented ref example
named `refs/tags/v0.0.1` and pointing at the documented tag object (GitHub documents no
annotated-tag ref), whose own example leads to its commit. Addresses use REPLAY_URL.

    python tests/cassettes/build_from_examples.py
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[1]))

from tests.contract.openapi import example  # noqa: E402

REPLAY_URL = "http://github-docs.invalid"
INSTALLATION = 1000
OWNER_REPO = "octocat/Hello-World"


def _interaction(
    method: str, path: str, status: int, body: Any, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    text = "" if body is None else json.dumps(body, sort_keys=True)
    answer_headers = {"content-type": ["application/json; charset=utf-8"]} if text else {}
    for key, value in (headers or {}).items():
        answer_headers[key.lower()] = [value]
    return {
        "request": {"body": "", "headers": {}, "method": method, "uri": REPLAY_URL + path},
        "response": {
            "body": {"string": text},
            "headers": answer_headers,
            "status": {"code": status, "message": ""},
        },
    }


def _token() -> dict[str, Any]:
    token = example("installation-token")
    token["token"] = "REDACTED"
    return {k: v for k, v in token.items() if k != "repositories"}


def content() -> list[dict[str, Any]]:
    blob = example("blob")
    data = json.loads(json.dumps(blob))
    raw = base64.b64decode(blob["content"])
    data["sha"] = hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()
    ref = example("git-ref")
    tree = example("git-tree-response-recursively-retrieving-a-tree")
    tree["tree"][0]["sha"] = data["sha"]
    commit = ref["object"]["sha"]
    repo = f"/repos/{OWNER_REPO}"
    return [
        _interaction("POST", f"/app/installations/{INSTALLATION}/access_tokens", 201, _token()),
        _interaction("GET", f"{repo}/git/ref/heads/featureA", 200, ref, {"etag": 'W/"doc"'}),
        _interaction("GET", f"{repo}/git/trees/{commit}?recursive=1", 200, tree),
        _interaction("GET", f"{repo}/git/blobs/{data['sha']}", 200, data),
        _interaction("GET", f"{repo}/git/blobs/{blob['sha']}", 200, blob),
    ]


def tag() -> list[dict[str, Any]]:
    """A followed ref that is an annotated tag: the branch's 404, the tag ref, the tag object."""
    tag_object = example("git-tag")
    ref = example("git-ref")
    repo = f"/repos/{OWNER_REPO}"
    ref["ref"] = f"refs/tags/{tag_object['tag']}"
    ref["url"] = f"https://api.github.com{repo}/git/{ref['ref']}"
    ref["object"] = {"type": "tag", "sha": tag_object["sha"], "url": tag_object["url"]}
    missing = {
        "message": "Not Found",
        "documentation_url": "https://docs.github.com/rest/git/refs#get-a-reference",
        "status": "404",
    }
    return [
        _interaction("POST", f"/app/installations/{INSTALLATION}/access_tokens", 201, _token()),
        _interaction("GET", f"{repo}/git/ref/heads/{tag_object['tag']}", 404, missing),
        _interaction(
            "GET", f"{repo}/git/ref/tags/{tag_object['tag']}", 200, ref, {"etag": 'W/"tag"'}
        ),
        _interaction("GET", f"{repo}/git/tags/{tag_object['sha']}", 200, tag_object),
    ]


def moved() -> list[dict[str, Any]]:
    repository = example("full-repository-default-response")
    by_id = f"/repositories/{repository['id']}"
    moved_body = {
        "message": "Moved Permanently",
        "url": REPLAY_URL + by_id,
        "documentation_url": "https://docs.github.com/rest/guides/best-practices-for-using-the-rest-api#follow-redirects",
    }
    return [
        _interaction("POST", f"/app/installations/{INSTALLATION}/access_tokens", 201, _token()),
        _interaction(
            "GET", "/repos/octocat/Old-Name", 301, moved_body, {"location": REPLAY_URL + by_id}
        ),
        _interaction("GET", by_id, 200, repository),
    ]


def deliveries() -> list[dict[str, Any]]:
    return [
        _interaction("GET", "/app/hook/deliveries?per_page=2", 200, example("hook-delivery-items"))
    ]


def main() -> None:
    builds = (("content", content), ("moved", moved), ("deliveries", deliveries), ("tag", tag))
    for name, build in builds:
        path = HERE / f"documented_{name}.yaml"
        path.write_text(yaml.safe_dump({"interactions": build(), "version": 1}, sort_keys=True))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
