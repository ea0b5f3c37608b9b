"""`guildprompts serve` as a real process: a fresh machine, then a push end to end.

Each run starts the command on a free port in an empty directory with an environment stripped
of every guildprompts variable, and stops it with SIGTERM, as a process manager would.
"""

from __future__ import annotations

import re
import shlex
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from github_app.cli import build_parser
from github_app.secrets import generate_key
from github_app.settings import documented_variables
from github_app.store import deliveries
from github_app.store.migrate import open_database
from tests.fakegithub import FakeGitHub, serve_on_loopback
from tests.harness import (
    SERVE_STARTUP_TIMEOUT,
    Service,
    app_env,
    bearer,
    clean_env,
    free_port,
    guildprompts_command,
    serve_process,
    wait_for,
)
from tests.harness import TOKEN as BRIDGE_TOKEN

ROOT = Path(__file__).resolve().parent.parent
PUSH_TO_LIVE_LIMIT = 5.0  # seconds from the webhook's 202 to the bridge serving the push
PROMPTS_REPO = "octo-org/prompts"
PATH_FILE = "version: v2\nroutes:\n  global_default: prompts/default.md\n"


@contextmanager
def serve(cwd: Path, env: dict[str, str], *args: str) -> Iterator[Service]:
    """`guildprompts serve` running until the block ends, then SIGTERM and a clean exit."""
    with serve_process(cwd, env, *args) as service:
        yield service
    # uvicorn re-raises the SIGTERM it handled once the app has shut down.
    assert service.process.returncode in (0, -signal.SIGTERM), service.log
    assert "Application shutdown complete" in service.log


def assert_no_secret(log: str, secrets: list[str]) -> None:
    for secret in secrets:
        for piece in [secret, *secret.splitlines()]:
            if len(piece.strip()) >= 8:
                assert piece.strip() not in log, "a secret reached the log"


def test_a_fresh_machine_serves_defaults_and_points_to_setup(tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "fresh"
    env = clean_env(BRIDGE_TOKENS=BRIDGE_TOKEN, PORT=str(port), LOG_LEVEL="debug")
    with serve(home, env) as service, httpx.Client(base_url=service.url, timeout=10) as http:
        assert service.url.endswith(f":{port}")  # PORT is honoured
        assert http.get("/healthz").json() == {"status": "alive"}

        ready = http.get("/readyz")
        assert ready.status_code == 200
        checks = ready.json()["checks"]
        assert checks["app"]["status"] == "not configured"
        assert checks["database"] == {"ok": True, "dialect": "sqlite"}
        assert checks["background"]["tasks"] == {"invalidation": "running", "worker": "running"}

        metrics = http.get("/metrics")
        assert metrics.status_code == 200
        assert "guildprompts_queue_depth 0.0" in metrics.text

        hook = FakeGitHub().webhook("ping", {"zen": "hello"})
        webhook = http.post("/api/github/webhooks", content=hook.body, headers=hook.headers)
        assert webhook.status_code == 503
        assert "App not configured: open /setup" in webhook.text

        prompt = http.get(
            "/bridge/v1/guilds/123/prompt",
            params={"category": "discussion", "type": "brief"},
            headers=bearer(),
        )
        assert prompt.status_code == 200
        assert prompt.json()["source"] == "default"
        assert prompt.json()["content"]
        assert http.get("/bridge/v1/guilds/123/prompt").status_code == 401

        assert http.get("/setup").status_code == 200
        assert 'href="/setup"' in http.get("/").text

    log = service.log
    assert (
        f"App not configured: open http://127.0.0.1:{port}/setup; missing: GITHUB_APP_ID, "
        "GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH, GITHUB_WEBHOOK_SECRET"
    ) in log
    assert (home / "guildprompts.db").is_file()
    key_file = home / ".guildprompts.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert_no_secret(log, [BRIDGE_TOKEN, key_file.read_text().strip()])


def test_one_push_end_to_end_with_credentials_for_the_fake_github(tmp_path: Path) -> None:
    fake = FakeGitHub()
    installation = fake.add_installation("octo-org")
    fake.add_repo(PROMPTS_REPO, private=False, installation=installation)
    fake.push(PROMPTS_REPO, "main", {"PATH": PATH_FILE, "prompts/default.md": "First. {messages}"})
    encryption_key = generate_key()
    with serve_on_loopback(fake) as api_url:
        env = clean_env(
            **app_env(fake),
            GITHUB_API_URL=api_url,
            BRIDGE_TOKENS=BRIDGE_TOKEN,
            ENCRYPTION_KEYS=encryption_key,
            RECONCILE_INTERVAL="3600",
            LOG_LEVEL="debug",
        )
        with (
            serve(tmp_path / "configured", env) as service,
            httpx.Client(base_url=service.url, timeout=30, headers=bearer()) as http,
        ):

            def serving() -> str:
                answer = http.get("/bridge/v1/guilds/111/prompt", params={"category": "meeting"})
                assert answer.status_code == 200, answer.text
                return answer.json()["content"]

            bound = http.put(
                "/bridge/v1/guilds/111/config",
                json={
                    "repository": PROMPTS_REPO,
                    "branch": None,
                    "token": None,
                    "actor": "42",
                },
            )
            assert bound.status_code in (200, 202), bound.text
            wait_for(lambda: serving().startswith("First."), what="the bound repository")

            sha = fake.push(PROMPTS_REPO, "main", {"prompts/default.md": "Second. {messages}"})
            hook = fake.webhook("push", fake.push_payload(PROMPTS_REPO, "main"))
            accepted = http.post("/api/github/webhooks", content=hook.body, headers=hook.headers)
            assert accepted.status_code == 202, accepted.text
            sent = time.monotonic()
            wait_for(
                lambda: serving().startswith("Second."),
                timeout=PUSH_TO_LIVE_LIMIT,
                what="the pushed content",
            )
            push_to_live = time.monotonic() - sent
            print(f"push-to-live over a real process: {push_to_live * 1000:.0f} ms")

            ready = http.get("/readyz").json()
            assert ready["status"] == "ready", ready
            assert ready["checks"]["app"]["status"] == "valid"
            runs = wait_for(
                lambda: [
                    run
                    for run in fake.check_runs_for(PROMPTS_REPO, sha)
                    if run.get("status") == "completed"
                ],
                what="the check run on the pushed commit",
            )
            assert runs[-1]["conclusion"] == "success"
            exposition = http.get("/metrics").text
            assert re.search(
                r'guildprompts_active_snapshot_age_seconds\{branch="main",'
                r'repository="octo-org/prompts"\} ',
                exposition,
            )
            assert re.search(r"^guildprompts_push_to_live_seconds_count [1-9]", exposition, re.M)

    assert "App not configured" not in service.log
    assert_no_secret(service.log, [*fake.issued_secrets(), BRIDGE_TOKEN, encryption_key])


def test_the_worker_processes_stored_deliveries_until_sigterm(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'guildprompts.db'}"
    database = open_database(database_url, auto_upgrade=True)
    with database.session() as session:
        deliveries.record_delivery(
            session,
            "ping-for-the-worker",
            "ping",
            None,
            None,
            None,
            {"zen": "Design for failure.", "hook_id": 1},
        )

    def state() -> str | None:
        with database.session() as session:
            row = deliveries.get_delivery(session, "ping-for-the-worker")
            return row.state if row is not None and row.state == "done" else None

    log_path = tmp_path / "worker.log"
    env = clean_env(DATABASE_URL=database_url, ENCRYPTION_KEYS=generate_key())
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [*guildprompts_command(), "worker"],
            cwd=tmp_path,
            env=env,
            stdout=log_file,
            stderr=log_file,
        )
    try:
        wait_for(state, timeout=SERVE_STARTUP_TIMEOUT, what="the worker to process the delivery")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        database.dispose()
    log = log_path.read_text()
    assert process.returncode == 0, log
    assert "App not configured: open the web service's /setup" in log


def test_an_invalid_variable_stops_start_up_naming_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [*guildprompts_command(), "serve"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=clean_env(PORT="eighty"),
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "guildprompts serve: configuration error: PORT: invalid value "
        "(expected a port number from 1 to 65535, got 'eighty')"
    ]


def test_a_postgresql_database_behind_says_which_command_to_run(
    tmp_path: Path, postgres_url: str
) -> None:
    result = subprocess.run(
        [*guildprompts_command(), "serve", "--port", str(free_port())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(DATABASE_URL=postgres_url, ENCRYPTION_KEYS=generate_key()),
    )
    assert result.returncode == 1
    assert "run `guildprompts db upgrade`" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_procfile_runs_commands_the_cli_accepts() -> None:
    entries = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line
    )
    assert set(entries) == {"release", "web", "worker"}
    parser = build_parser()
    commands = {name: shlex.split(command) for name, command in entries.items()}
    assert all(argv[0] == "guildprompts" for argv in commands.values())
    assert parser.parse_args(commands["release"][1:]).db_command == "upgrade"
    web = parser.parse_args(commands["web"][1:])
    assert (web.command, web.host, web.no_worker) == ("serve", "0.0.0.0", True)
    assert parser.parse_args(commands["worker"][1:]).command == "worker"


def test_the_readme_documents_every_configuration_variable() -> None:
    """README's table is `documented_variables()`, row for row, so it cannot drift."""
    readme = (ROOT / "README.md").read_text()
    expected = []
    for name, default, doc in documented_variables():
        shown = {"True": "true", "False": "false"}.get(default, default)
        expected.append(f"| `{name}` | {f'`{shown}`' if shown else '(empty)'} | {doc} |")
    table = re.search(
        r"\| Variable \| Default \| Meaning \|\n\|---\|---\|---\|\n((?:\|.*\n)+)", readme
    )
    assert table is not None, "README has no configuration table"
    assert table.group(1).splitlines() == expected
