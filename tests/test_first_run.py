"""First run as a newcomer does it: `serve` in an empty directory, then the bot's token, then a
prompt; and the command line's answers to the usual first mistakes (one line each, no trace).
"""

from __future__ import annotations

import socket
import stat
import subprocess
import time
from pathlib import Path

import httpx

from tests.harness import clean_env, free_port, guildprompts_command, serve_process


def run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*guildprompts_command(), *args],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_in_an_empty_directory_then_bridge_token_then_a_default_prompt(
    tmp_path: Path,
) -> None:
    home = tmp_path / "fresh"
    with serve_process(home, clean_env(PORT=str(free_port()))) as service:
        token = run(home, "bridge-token")
        assert token.returncode == 0, token.stderr
        bearer = {"Authorization": f"Bearer {token.stdout.strip()}"}
        with httpx.Client(base_url=service.url, timeout=10) as http:
            prompt = http.get(
                "/bridge/v1/guilds/123/prompt", params={"category": "meeting"}, headers=bearer
            )
            assert prompt.status_code == 200, prompt.text
            assert prompt.json()["source"] == "default" and prompt.json()["content"]
            assert http.get("/bridge/v1/guilds/123/prompt").status_code == 401
            ready = http.get("/readyz").json()["checks"]["bridge"]
            landing = http.get("/").text
    token_file = home / ".guildprompts.bridge-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip() == token.stdout.strip()
    assert ready == {"ok": True, "status": "enabled"}
    assert "<code>.guildprompts.bridge-token</code>" in landing
    assert f"generated a bridge token for the bot in {token_file}" in service.log
    assert token.stdout.strip() not in service.log
    # The same token on the next start and the next call: generated once.
    assert run(home, "bridge-token").stdout == token.stdout


def test_a_shared_database_without_bridge_tokens_says_the_bridge_is_disabled(
    tmp_path: Path, postgres_url: str
) -> None:
    from github_app.secrets import generate_key

    env = clean_env(
        DATABASE_URL=postgres_url, ENCRYPTION_KEYS=generate_key(), PORT=str(free_port())
    )
    assert run(tmp_path, "db", "upgrade", **env).returncode == 0
    with (
        serve_process(tmp_path / "web", env) as service,
        httpx.Client(base_url=service.url) as http,
    ):
        ready = http.get("/readyz").json()["checks"]["bridge"]
        landing = http.get("/").text
        refused = http.get("/bridge/v1/guilds/1/prompt", headers={"Authorization": "Bearer x"})
    disabled = (
        "the bridge is disabled: BRIDGE_TOKENS is unset and the database is shared, so no token "
        "is generated; set BRIDGE_TOKENS to the token(s) your bot presents"
    )
    assert ready == {"ok": True, "status": "disabled", "error": disabled}
    assert disabled in landing
    assert disabled in service.log
    assert refused.status_code == 401
    token = run(tmp_path, "bridge-token", **env)
    assert token.returncode == 2
    assert token.stderr == f"guildprompts bridge-token: {disabled}\n"
    assert not (tmp_path / ".guildprompts.bridge-token").exists()


def test_version() -> None:
    result = run(Path.cwd(), "--version")
    assert result.returncode == 0
    from importlib.metadata import version

    assert result.stdout == f"guildprompts {version('guildprompts')}\n"


def test_a_bad_variable_value_is_one_line(tmp_path: Path) -> None:
    result = run(tmp_path, "serve", PORT="abc")
    assert result.returncode == 2
    assert result.stderr == (
        "guildprompts serve: configuration error: PORT: invalid value (expected a port number "
        "from 1 to 65535, got 'abc')\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_port_in_use_is_one_line_saying_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(tmp_path, "serve", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr == (
        f"guildprompts serve: port {port} on 127.0.0.1 is already in use (another "
        "guildprompts?): stop that process or choose another port with --port or PORT\n"
    )


def test_a_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "PATH").write_text("version: v2\nroutes:\n  global_default: p/{category}.md\n")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "meeting.md").write_text("line\n" * 20000)
    command = [*guildprompts_command(), "resolve", str(tmp_path), "--category", "meeting"]
    producer = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env()
    )
    assert producer.stdout is not None
    producer.stdout.readline()
    producer.stdout.close()  # what `| head -1` does
    started = time.monotonic()
    status = producer.wait(timeout=60)
    stderr = producer.stderr.read().decode() if producer.stderr else ""
    assert time.monotonic() - started < 60
    assert stderr == ""
    assert status == 0


def test_probot_variable_names_are_accepted() -> None:
    from github_app.settings import Settings

    probot = Settings.from_env(
        {"APP_ID": "12", "PRIVATE_KEY": "pem-text", "WEBHOOK_SECRET": "s3cret-value"},
        env_file=None,
    )
    assert probot.github_app_id == "12"
    assert probot.github_private_key == "pem-text"
    assert probot.github_webhook_secrets == ("s3cret-value",)
    assert probot.app_configured
    ours = Settings.from_env({"APP_ID": "12", "GITHUB_APP_ID": "34"}, env_file=None)
    assert ours.github_app_id == "34"  # the documented name wins
    path = Settings.from_env({"PRIVATE_KEY_PATH": "/etc/app.pem"}, env_file=None)
    assert path.github_private_key_path == "/etc/app.pem"


def test_bridge_token_prints_the_configured_token_and_creates_nothing(tmp_path: Path) -> None:
    result = run(tmp_path, "bridge-token", BRIDGE_TOKENS="configured-token-1, another-token-2")
    assert result.returncode == 0
    assert result.stdout == "configured-token-1\n"
    assert list(tmp_path.iterdir()) == []
