"""App authentication: the JWT's claims and reuse, the installation-token cache and its locks."""

from __future__ import annotations

import asyncio
import logging

import jwt
import pytest

from github_app.auth import AppAuth, AuthConfigError, InstallationToken
from github_app.github import Unauthorized
from tests.fakegithub import Clock, FakeGitHub, generate_rsa_key, public_key_pem, shared_test_key

pytestmark = pytest.mark.anyio

MINTS = r"/access_tokens$"


@pytest.fixture
def fake() -> FakeGitHub:
    fake = FakeGitHub()
    fake.installation_id = fake.add_installation()
    fake.add_repo("octo/prompts", installation=fake.installation_id)
    fake.push("octo/prompts", "main", {"PATH": "x\n"})
    return fake


def test_jwt_claims_follow_githubs_rules_and_the_jwt_is_reused() -> None:
    clock = Clock(start=1_700_000_000)
    auth = AppAuth("12345", shared_test_key(), clock=clock)
    token = auth.app_jwt()
    claims = jwt.decode(
        token,
        public_key_pem(shared_test_key()),
        algorithms=["RS256"],
        options={"verify_exp": False, "verify_iat": False},
    )
    now = int(clock())
    assert claims["iss"] == "12345"
    assert now - 61 <= claims["iat"] <= now - 60
    assert claims["exp"] - claims["iat"] <= 600 and claims["exp"] <= now + 540
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    clock.advance(200)
    assert auth.app_jwt() == token  # still over 5 minutes left
    clock.advance(60)
    assert auth.app_jwt() != token


@pytest.mark.parametrize("pem", ["", "not a key", generate_rsa_key().replace("A", "B", 5)])
def test_an_unusable_private_key_is_a_clear_error_without_the_key(pem: str) -> None:
    with pytest.raises(AuthConfigError, match="GITHUB_PRIVATE_KEY") as info:
        AppAuth("1", pem)
    assert "MII" not in str(info.value)


def test_an_empty_app_id_is_a_clear_error() -> None:
    with pytest.raises(AuthConfigError, match="GITHUB_APP_ID"):
        AppAuth(" ", shared_test_key())


def test_tokens_are_not_in_reprs() -> None:
    token = InstallationToken.from_response(
        {"token": "ghs_secret_value_of_any_length", "expires_at": "2030-01-01T00:00:00Z"}
    )
    auth = AppAuth("1", shared_test_key())
    assert "ghs_secret" not in repr(token)
    assert "PRIVATE" not in repr(auth)
    assert token.expires_at == 1893456000.0


async def test_concurrent_callers_share_one_mint(fake: FakeGitHub) -> None:
    fake.latency = 0.02  # the mint is still in flight when the other callers arrive
    async with fake.github_client() as gh:
        results = await asyncio.gather(
            *(
                gh.get_repository("octo/prompts", installation_id=fake.installation_id)
                for _ in range(20)
            )
        )
    assert {r["full_name"] for r in results} == {"octo/prompts"}
    assert fake.count(MINTS) == 1


async def test_tokens_are_cached_until_five_minutes_before_expiry(fake: FakeGitHub) -> None:
    async with fake.github_client() as gh:

        async def read() -> None:
            await gh.get_repository("octo/prompts", installation_id=fake.installation_id)

        await read()
        fake.clock.advance(3600 - 301)
        await read()
        assert fake.count(MINTS) == 1
        fake.clock.advance(2)  # now within the 5-minute margin: minted again before use
        await read()
        assert fake.count(MINTS) == 2
        fake.clock.advance(3600 - 299)
        await read()
    assert fake.count(MINTS) == 3
    assert all(r.status < 400 for r in fake.requests)


async def test_a_revoked_token_is_replaced_once(fake: FakeGitHub) -> None:
    async with fake.github_client() as gh:
        await gh.get_repository("octo/prompts", installation_id=fake.installation_id)
        fake.revoke_tokens()
        repo = await gh.get_repository("octo/prompts", installation_id=fake.installation_id)
    assert repo["full_name"] == "octo/prompts"
    assert fake.count(MINTS) == 2
    assert [r.status for r in fake.requests] == [201, 200, 401, 201, 200]


async def test_a_token_refused_twice_is_unauthorized(fake: FakeGitHub) -> None:
    fake.fail_next(r"^/repos/octo/prompts$", status=401, times=2)
    async with fake.github_client() as gh:
        with pytest.raises(Unauthorized):
            await gh.get_repository("octo/prompts", installation_id=fake.installation_id)
    assert fake.count(MINTS) == 2


async def test_a_personal_access_token_passes_through(fake: FakeGitHub) -> None:
    pat = fake.add_pat(repos=["octo/prompts"])
    async with fake.github_client(auth=None) as gh:
        repo = await gh.get_repository("octo/prompts", token=pat)
    assert repo["private"] is True
    assert fake.count(MINTS) == 0


async def test_a_jwt_github_refuses_is_unauthorized_and_no_secret_is_logged(
    fake: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = AppAuth(fake.app_id, generate_rsa_key(), clock=fake.clock)
    async with fake.github_client(auth=wrong) as gh:
        with pytest.raises(Unauthorized) as info:
            await gh.get_repository("octo/prompts", installation_id=fake.installation_id)
    async with fake.github_client() as gh:
        fake.fail_next(r"/git/trees/", status=502)
        await gh.get_tree("octo/prompts", "main", installation_id=fake.installation_id)
    assert "could not be decoded" in str(info.value)
    logged = caplog.text + str(info.value)
    assert "retry" in caplog.text  # the retry was logged...
    for secret in [*fake.issued_secrets(), wrong.app_jwt(), "ghs_", "Bearer"]:
        assert secret not in logged  # ...without a credential
