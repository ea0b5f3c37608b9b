"""GitHub App credentials: the App's JWT and per-installation access tokens.

GitHub authenticates an App twice over: a short-lived JWT signed with the App's private key
(only good for /app routes), exchanged for installation access tokens (good for the
repositories of one installation, for about an hour). Both are cached here so a warm process
spends no request on authentication. This module owns no HTTP: the client passes in how to mint
a token, which keeps the token cache testable and the HTTP policy (retries, metrics) in one place.
Tokens never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

Clock = Callable[[], float]

JWT_BACKDATE = 60  # seconds `iat` lies in the past, against clock drift (GitHub's advice)
JWT_LIFETIME = 540  # seconds `exp` lies ahead: 9 minutes, under GitHub's 10-minute maximum
JWT_REUSE_MARGIN = 300  # replaced 5 minutes before expiry: room for a request's retries
TOKEN_REFRESH_MARGIN = 300  # an installation token is replaced 5 minutes before it expires


class AuthConfigError(ValueError):
    """The App's id or private key cannot be used (the message never contains the key)."""


@dataclass(frozen=True)
class InstallationToken:
    """An installation access token and its expiry (epoch seconds); the repr hides the token."""

    token: str = field(repr=False)
    expires_at: float

    @classmethod
    def from_response(cls, data: dict) -> InstallationToken:
        """Parse GitHub's `POST /app/installations/{id}/access_tokens` answer."""
        token, expires = data.get("token"), data.get("expires_at")
        if not isinstance(token, str) or not token or not isinstance(expires, str):
            raise ValueError("GitHub's access-token answer has no token or expires_at")
        return cls(token, datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp())


Minter = Callable[[int], Awaitable[InstallationToken]]


class AppAuth:
    """JWT and installation-token source for one GitHub App.

    `clock` is injectable so tests can share a controllable clock with the fake GitHub.
    """

    def __init__(self, app_id: str | int, private_key_pem: str, *, clock: Clock = time.time):
        self.app_id = str(app_id).strip()
        if not self.app_id:
            raise AuthConfigError("GITHUB_APP_ID is empty")
        self._key = _load_rsa_key(private_key_pem)
        self._clock = clock
        self._jwt: tuple[str, float] | None = None  # (token, exp)
        self._tokens: dict[int, InstallationToken] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"AppAuth(app_id={self.app_id!r})"

    def app_jwt(self) -> str:
        """A JWT for /app routes, reused while it has at least 5 minutes left."""
        now = int(self._clock())
        if self._jwt is not None and now < self._jwt[1] - JWT_REUSE_MARGIN:
            return self._jwt[0]
        exp = now + JWT_LIFETIME
        claims = {"iat": now - JWT_BACKDATE, "exp": exp, "iss": self.app_id}
        token = jwt.encode(claims, self._key, algorithm="RS256")
        self._jwt = (token, exp)
        return token

    async def installation_token(self, installation_id: int, mint: Minter) -> str:
        """A cached installation token, minted with `mint` when missing or near expiry.

        One mint at a time per installation: concurrent callers wait for the same mint instead of
        each spending a request (and an extra live token).
        """
        cached = self._fresh(installation_id)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            cached = self._fresh(installation_id)
            if cached is not None:
                return cached
            minted = await mint(installation_id)
            self._tokens[installation_id] = minted
            return minted.token

    def invalidate(self, installation_id: int) -> None:
        """Forget an installation's token (GitHub answered 401, or access was lost)."""
        self._tokens.pop(installation_id, None)

    def _fresh(self, installation_id: int) -> str | None:
        cached = self._tokens.get(installation_id)
        if cached is not None and self._clock() < cached.expires_at - TOKEN_REFRESH_MARGIN:
            return cached.token
        return None


def _load_rsa_key(pem: str) -> rsa.RSAPrivateKey:
    """Parse the PEM once at start-up so a bad key fails with a clear message, not on first use."""
    try:
        key = serialization.load_pem_private_key(pem.strip().encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise AuthConfigError(
            "GITHUB_PRIVATE_KEY: not a readable unencrypted PEM private key"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise AuthConfigError("GITHUB_PRIVATE_KEY: GitHub App keys are RSA keys")
    return key
