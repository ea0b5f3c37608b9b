"""Shared fixtures: real PostgreSQL and Redis when they answer, a fresh database per test.

Tests that need a server skip with the reason when none answers, except where
GUILDPROMPTS_REQUIRE_SERVICES=1 (set by .ci/run): there a missing server fails the test.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from tests.browser import browser  # noqa: F401 (the browser tests' shared fixture)

if TYPE_CHECKING:
    from github_app.runtime import Runtime
    from tests.harness import Store

# Hypothesis profiles: "ci" (loaded by default) keeps the stateful serving test under two minutes
# per database; `pytest --hypothesis-profile=long` runs it for thousands of steps.
_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile(
    "ci", max_examples=20, stateful_step_count=30, deadline=None, suppress_health_check=_SLOW
)
settings.register_profile(
    "long", max_examples=100, stateful_step_count=60, deadline=None, suppress_health_check=_SLOW
)
settings.load_profile("ci")

PG_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
FIXTURES = Path(__file__).parent / "fixtures"


def _services_required() -> bool:
    return os.environ.get("GUILDPROMPTS_REQUIRE_SERVICES") == "1"


def _unavailable(what: str, why: str) -> None:
    message = f"{what} is not reachable ({why})"
    if _services_required():
        pytest.fail(message + "; GUILDPROMPTS_REQUIRE_SERVICES=1 requires it")
    pytest.skip(message)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """URL of the server's maintenance database, after checking that it answers."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(PG_ADMIN_URL)
    if not _port_open(url.host or "127.0.0.1", url.port or 5432):
        _unavailable("PostgreSQL", f"nothing listens on {url.host}:{url.port}")
    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:
        _unavailable("PostgreSQL", type(exc).__name__)
    return PG_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"gp_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'guildprompts.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database (number 15) emptied before and after the test."""
    try:
        import redis
    except ImportError:
        _unavailable("Redis", "the redis package is not installed")
    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        client.ping()
    except Exception as exc:
        _unavailable("Redis", type(exc).__name__)
    client.flushdb()
    try:
        yield REDIS_TEST_URL
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def db(database_url: str) -> Iterator[object]:
    """An upgraded `github_app.store.db.Database`, once on SQLite and once on PostgreSQL."""
    from github_app.store.migrate import open_database

    database = open_database(database_url, auto_upgrade=True)
    yield database
    database.dispose()


@pytest.fixture
async def runtime(sqlite_url: str) -> AsyncIterator[Runtime]:
    """A Runtime without the App on SQLite, with the bridge's settings (`bridge_runtime`)."""
    from tests.harness import bridge_runtime

    runtime = bridge_runtime(sqlite_url)
    yield runtime
    await runtime.aclose()


@pytest.fixture
def store(runtime: Runtime) -> Store:
    """`harness.Store` on `runtime`: bridge states written straight into the store."""
    from tests.harness import Store

    return Store(runtime)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of examples/ to edit: the local checkout `guildprompts preview` serves. Without
    its routing tests, which pin down the very files these tests edit."""
    from tests.harness import EXAMPLES

    target = tmp_path / "prompts-repo"
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns("tests"))
    return target
