"""Who may read, proven through the HTTP API: a token is tried before it is kept, privatizing a
repository stops serving unallowed guilds at once, and publicizing it serves them again."""

from __future__ import annotations

import time

import pytest

from github_app.store import bindings, deliveries, installations
from tests.harness import FULL_NAME, GUILD, OTHER_GUILD, bridge_world, eventually, valid_files

pytestmark = pytest.mark.anyio

ONLY_OTHER = valid_files(OTHER_GUILD)  # GUILD is not in allowed_guilds


async def test_a_bogus_token_never_binds(database_url: str) -> None:
    async with bridge_world(database_url, private=True) as world:
        world.push(ONLY_OTHER)
        elsewhere = world.fake.add_pat(repos=["someone/else"])
        for token, status in (
            ("github_pat_" + "0" * 40, 403),  # GitHub answers 401: never issued, or revoked
            (elsewhere, 403),  # a real token that cannot see this repository (404)
        ):
            response = await world.bind(GUILD, token=token)
            assert response.status_code == status, response.text
            assert "cannot read" in response.json()["message"]
            assert token not in response.text
            config = await world.http.get(f"/bridge/v1/guilds/{GUILD}/config")
            assert config.status_code == 404, "nothing was stored"
            assert world.db(bindings.get_pending, GUILD) is None
        prompt = await world.prompt(GUILD)
        assert prompt["commit_sha"] is None


async def test_a_token_that_cannot_read_the_branch_is_refused(database_url: str) -> None:
    async with bridge_world(database_url, private=True) as world:
        world.push(ONLY_OTHER)
        token = world.fake.add_pat(repos=[FULL_NAME])
        response = await world.bind(GUILD, token=token, branch="no-such-branch")
        assert response.status_code == 422, response.text
        assert "branch no-such-branch" in response.json()["message"]
        assert world.db(bindings.get_pending, GUILD) is None


async def test_a_tried_token_serves_the_guild_and_its_revocation_stops_it(
    database_url: str,
) -> None:
    async with bridge_world(database_url, private=True) as world:
        sha = world.push(ONLY_OTHER)
        token = world.fake.add_pat(repos=[FULL_NAME])
        response = await world.bind(GUILD, token=token)
        assert response.status_code == 200, response.text
        assert (await world.prompt(GUILD))["commit_sha"] == sha
        world.fake.revoke_pat(token)
        from github_app.loops import reconcile

        assert await reconcile(world.runtime) == 1  # the loop tries the token: refused

        async def stopped() -> bool:
            await world.cache.check()
            return (await world.prompt(GUILD))["commit_sha"] is None

        await eventually(stopped, timeout=10)


async def test_privatized_stops_serving_unallowed_guilds_within_a_second(
    database_url: str,
) -> None:
    async with bridge_world(database_url, private=False) as world:
        sha = world.push(ONLY_OTHER)
        for guild in (GUILD, OTHER_GUILD):
            response = await world.bind(guild)
            assert response.status_code == 200, response.text
            assert (await world.prompt(guild))["commit_sha"] == sha
        world.fake.update_repo(FULL_NAME, private=True)
        started = time.monotonic()
        await world.deliver("repository", world.fake.repository_payload(FULL_NAME, "privatized"))

        async def stopped() -> bool:
            return (await world.prompt(GUILD))["commit_sha"] is None

        await eventually(stopped, timeout=1.0, interval=0.01)
        assert time.monotonic() - started < 1.0
        config = (await world.http.get(f"/bridge/v1/guilds/{GUILD}/config")).json()
        assert config["state"] == "no_access"
        assert "private" in config["status_message"] and GUILD in config["status_message"]
        assert (await world.prompt(OTHER_GUILD))["commit_sha"] == sha, "allowed: still served"

        world.fake.update_repo(FULL_NAME, private=False)
        await world.deliver("repository", world.fake.repository_payload(FULL_NAME, "publicized"))

        async def served_again() -> bool:
            await world.cache.check()
            return (await world.prompt(GUILD))["commit_sha"] == sha

        await eventually(served_again, timeout=10)


async def test_a_late_publicized_event_does_not_open_a_private_repository(
    database_url: str,
) -> None:
    """Visibility is asked of GitHub: events about it may arrive in any order."""
    async with bridge_world(database_url, private=False) as world:
        world.push(ONLY_OTHER)
        assert (await world.bind(GUILD)).status_code == 200
        publicized = world.fake.repository_payload(FULL_NAME, "publicized")  # sent long ago
        world.fake.update_repo(FULL_NAME, private=True)
        await world.deliver("repository", world.fake.repository_payload(FULL_NAME, "privatized"))
        late = await world.deliver("repository", publicized)
        guid = late.json()["delivery_id"]

        async def processed() -> bool:
            row = world.db(deliveries.get_delivery, guid)
            return row is not None and row.state == "done"

        await eventually(processed, timeout=10)
        await world.cache.check()
        assert (await world.prompt(GUILD))["commit_sha"] is None
        repository = world.db(installations.get_repository, world.repository_id)
        assert repository is not None and repository.private
