"""`guildprompts serve` and `guildprompts worker`: the two long-running processes.

`serve` runs the web app with uvicorn (and, unless `--no-worker`, the worker and its loops in the
same process: one command on a fresh machine). `worker` runs the worker and its loops alone, for
deployments that scale web processes separately (see the Procfile).

Both start even without a GitHub App (a fresh machine): the log says what is missing and where
to create the App. Everything a person can fix (an invalid variable, a database that does not
answer or is behind, unusable encryption keys) ends start-up with one line naming it and a
non-zero status: 2 for configuration, 1 for the environment.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from github_app.runtime import Runtime
    from github_app.settings import Settings

_WILDCARD_HOSTS = {"0.0.0.0", "::", ""}  # noqa: S104 - only compared, to print a usable link


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="Run the service: webhooks, the bot bridge, /setup, metrics and health.",
        description="Run the web service (default 127.0.0.1:8000; HOST and PORT are honoured) "
        "with the worker in the same process unless --no-worker.",
    )
    serve.add_argument("--host", default=None, help="address to bind (default: HOST or 127.0.0.1)")
    serve.add_argument(
        "--port", type=_port, default=None, help="port to listen on (default: PORT or 8000)"
    )
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="do not process deliveries here (a `guildprompts worker` does)",
    )
    serve.set_defaults(run=run_serve)

    worker = subparsers.add_parser(
        "worker",
        help="Process stored deliveries and run the reconcile loop, without HTTP.",
        description="Run the worker, the reconcile loop, the redelivery sweep and the retention "
        "job until SIGTERM or SIGINT.",
    )
    worker.set_defaults(run=run_worker)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {text!r}")
    return port


def run_serve(args: argparse.Namespace) -> int:
    settings = _settings("serve")
    if settings is None:
        return 2
    host = args.host or settings.host
    port = args.port or settings.port
    busy = _address_in_use(host, port)
    if busy:
        print(f"guildprompts serve: {busy}", file=sys.stderr)
        return 1
    setup = f"{settings.public_url or f'http://{_shown(host)}:{port}'}/setup"
    runtime, status = _open("serve", settings, setup)
    if runtime is None:
        return status
    import uvicorn

    from github_app.runtime import favour_event_loop
    from github_app.slow_clients import BodyReadTimeout, server_options
    from github_app.web import create_app

    favour_event_loop()
    app = BodyReadTimeout(create_app(runtime, run_worker=not args.no_worker))
    # log_config=None keeps the redacting handler `configure_logging` installed.
    uvicorn.run(
        app,
        **server_options(),
        host=host,
        port=port,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=15,
        server_header=False,
    )
    return 0


def run_worker(args: argparse.Namespace) -> int:
    settings = _settings("worker")
    if settings is None:
        return 2
    setup = f"{settings.public_url}/setup" if settings.public_url else "the web service's /setup"
    runtime, status = _open("worker", settings, setup)
    if runtime is None:
        return status
    import asyncio

    asyncio.run(_work(runtime))
    return 0


async def _work(runtime: Runtime) -> None:
    """The loops until SIGTERM or SIGINT, then a clean stop (the current delivery finishes).

    With REDIS_URL, this process also publishes its activations on Redis: it has no bridge of
    its own, and the web processes learn of them at once instead of at their next poll.
    """
    import asyncio
    import logging
    import signal

    from github_app.loops import run_background

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    work = [run_background(runtime, stop, worker=True)]
    if runtime.settings.redis_url:
        from github_app.bridge.invalidation import publish_activations

        work.append(publish_activations(runtime, stop))
    logging.getLogger("guildprompts.worker").info(
        "worker started (%s); stop it with SIGTERM or Ctrl-C", runtime.database.display_url
    )
    try:
        await asyncio.gather(*work)
    finally:
        stop.set()
        await runtime.aclose()


def _settings(command: str) -> Settings | None:
    """The settings, logging configured from them; None (after one line on stderr) if invalid."""
    from github_app.logs import configure_logging
    from github_app.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"guildprompts {command}: configuration error: {exc}", file=sys.stderr)
        return None
    configure_logging(settings.log_format, settings.log_level)
    return settings


def _open(command: str, settings: Settings, setup: str) -> tuple[Runtime | None, int]:
    """The runtime, or None and the exit status after saying what to fix."""
    import logging

    from github_app.auth import AuthConfigError
    from github_app.health import missing_credentials
    from github_app.runtime import build_runtime
    from github_app.secrets import SecretsError
    from github_app.settings import SettingsError
    from github_app.store.errors import StoreError

    try:
        runtime = build_runtime(settings)
    except (SettingsError, AuthConfigError) as exc:
        print(f"guildprompts {command}: configuration error: {exc}", file=sys.stderr)
        return None, 2
    except (StoreError, SecretsError) as exc:
        print(f"guildprompts {command}: {exc}", file=sys.stderr)
        return None, 1
    if not runtime.app_configured:
        logging.getLogger("guildprompts.service").warning(
            "App not configured: open %s; missing: %s",
            setup,
            ", ".join(missing_credentials(runtime)),
        )
    return runtime, 0


def _address_in_use(host: str, port: int) -> str:
    """Why `host:port` cannot be bound (one line saying what to do), or "" when it can.

    uvicorn would log its own `[Errno 98]` with a traceback-like line; a person needs the fix.
    """
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=1)
    except socket.gaierror as exc:
        return f"cannot listen on {host!r}: {exc.strerror}; use --host or HOST"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"port {port} on {host} is already in use (another guildprompts?): stop "
                    "that process or choose another port with --port or PORT"
                )
            return f"cannot listen on {host}:{port} ({exc.strerror}): use --host/--port"
    return ""


def _shown(host: str) -> str:
    """A host a browser can open: a wildcard bind is reachable on localhost."""
    if host in _WILDCARD_HOSTS:
        return "localhost"
    return f"[{host}]" if ":" in host else host
