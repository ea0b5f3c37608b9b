"""A fake GitHub for the test suite that enforces GitHub's rules (see `tests.fakegithub.app`).

`keys` holds throwaway keys, signatures and a clock; `git` the git objects; `app` the ASGI app
with its auth and handlers; `server` runs any ASGI app on loopback.
"""

from tests.fakegithub.app import (
    ANNOTATIONS_PER_REQUEST,
    SUMMARY_LIMIT,
    ZERO_SHA,
    FakeGitHub,
    Installation,
    LoggedRequest,
    Webhook,
)
from tests.fakegithub.git import Repo, Submodule, Symlink, blob_sha
from tests.fakegithub.keys import Clock, generate_rsa_key, public_key_pem, shared_test_key, sign
from tests.fakegithub.server import serve_on_loopback

__all__ = [
    "ANNOTATIONS_PER_REQUEST",
    "SUMMARY_LIMIT",
    "ZERO_SHA",
    "Clock",
    "FakeGitHub",
    "Installation",
    "LoggedRequest",
    "Repo",
    "Submodule",
    "Symlink",
    "Webhook",
    "blob_sha",
    "generate_rsa_key",
    "public_key_pem",
    "serve_on_loopback",
    "shared_test_key",
    "sign",
]
