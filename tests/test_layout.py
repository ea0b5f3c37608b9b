"""The packages' shape, read from the source: imports go one way and the bot's side installs alone.

promptrepo <- bot_bridge and promptrepo <- github_app: promptrepo is the pure format (stdlib and
PyYAML), bot_bridge is what a bot installs with `pip install guildprompts` (httpx, PyYAML,
discord.py with the `discord` extra), github_app is the service (`guildprompts[app]`).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import httpx
import pytest

from tests.harness import clean_env, serve_process

ROOT = Path(__file__).resolve().parent.parent

# Top-level modules each package may import besides the standard library and itself.
ALLOWED = {
    "promptrepo": {"yaml"},
    "bot_bridge": {"promptrepo", "httpx", "yaml", "discord"},
    "github_app": None,  # the service may use anything, except the bot's package (below)
}
FORBIDDEN = {
    "promptrepo": {"bot_bridge", "github_app"},
    "bot_bridge": {"github_app"},
    "github_app": {"bot_bridge"},
}
SERVICE_ONLY = {
    "sqlalchemy",
    "starlette",
    "uvicorn",
    "alembic",
    "cryptography",
    "prometheus_client",
    "jwt",
    "tenacity",
    "psycopg",
    "redis",
}


def imported_modules(package: str) -> dict[str, set[str]]:
    """Every top-level module a package's files import (at any depth, TYPE_CHECKING included)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                names.add(package if node.level else (node.module or "").split(".")[0])
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute | ast.Name)
                and getattr(node.func, "attr", getattr(node.func, "id", None))
                in ("import_module", "__import__")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and not node.args[0].value.startswith(".")
            ):
                names.add(node.args[0].value.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_go_one_way(package: str) -> None:
    wrong = {
        path: sorted(names & FORBIDDEN[package])
        for path, names in imported_modules(package).items()
        if names & FORBIDDEN[package]
    }
    assert not wrong, f"{package} imports against promptrepo <- bot_bridge / github_app: {wrong}"


@pytest.mark.parametrize("package", ["promptrepo", "bot_bridge"])
def test_the_bots_side_needs_nothing_of_the_service(package: str) -> None:
    allowed = ALLOWED[package] | {package} | set(sys.stdlib_module_names)
    foreign = {
        path: sorted(names - allowed)
        for path, names in imported_modules(package).items()
        if names - allowed
    }
    assert not foreign, f"{package} imports what `pip install guildprompts` lacks: {foreign}"
    assert not SERVICE_ONLY & allowed


def test_the_scan_sees_imports_in_every_form(tmp_path: Path, monkeypatch) -> None:
    """The scan is what the two tests above trust: it must see lazy and relative imports."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from github_app.store import models\n"
        "def later():\n    import sqlalchemy.orm\n"
        "    return __import__('starlette.routing')\n"
        "from . import b\n"
        "import importlib\nimportlib.import_module('uvicorn')\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (names,) = imported_modules("pkg").values()
    expected = {"typing", "github_app", "sqlalchemy", "starlette", "pkg", "importlib", "uvicorn"}
    assert names == expected


def test_ci_runs_readmes_test_command_after_lint_format_and_types() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    (command,) = [
        line.strip() for line in readme.splitlines() if line.strip().endswith("pytest -q")
    ]
    assert "'.[app," in command
    assert command in ci.splitlines()
    tests_at = ci.index(command)
    for check in (".venv/bin/ruff check .", ".venv/bin/ruff format --check .", ".venv/bin/mypy"):
        assert check in ci[:tests_at], f".ci/run must run `{check}` before the tests"


SLOW = pytest.mark.skipif(
    not os.environ.get("GUILDPROMPTS_SLOW"),
    reason="builds a fresh virtualenv (about a minute): set GUILDPROMPTS_SLOW=1; .ci/run does",
)


@SLOW
def test_a_bare_install_gives_the_bot_its_client_and_nothing_of_the_service(
    tmp_path: Path,
) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # Built from a copy: pip's in-tree build would leave build/ and *.egg-info in the checkout.
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "tests"
        ),
    )
    subprocess.run([*pip, str(source)], check=True, cwd=tmp_path, timeout=600)
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.lower()
    installed = {line.split("==")[0] for line in listed.splitlines()}
    service = {"sqlalchemy", "starlette", "uvicorn", "alembic", "cryptography", "prometheus-client"}
    assert "guildprompts" in installed
    assert not installed & service, sorted(installed & service)

    # Run from tmp_path, so the checkout's packages are not what gets imported.
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import sys, bot_bridge, promptrepo; from bot_bridge import AsyncBridgeClient;"
            "from bot_bridge.alerts import AlertStore; from bot_bridge import commands;"
            "print(bot_bridge.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    assert str(env_dir) in probe.stdout

    cli = env_dir / "bin" / "guildprompts"
    examples = subprocess.run(
        [str(cli), "validate", str(ROOT / "examples")], capture_output=True, text=True
    )
    assert examples.returncode == 0, examples.stderr
    serve = subprocess.run([str(cli), "serve"], capture_output=True, text=True, cwd=tmp_path)
    assert serve.returncode == 2
    assert serve.stderr == "guildprompts serve needs the service: pip install 'guildprompts[app]'\n"

    # The `app` extra is everything `serve` needs: it starts and answers (embedded SQLite).
    subprocess.run([*pip, f"{source}[app]"], check=True, cwd=tmp_path, timeout=600)
    env = clean_env(PATH=f"{env_dir / 'bin'}:{os.environ.get('PATH', '')}")
    with serve_process(tmp_path / "service", env, command=[str(cli)]) as service:
        assert httpx.get(f"{service.url}/healthz", timeout=5).status_code == 200
