"""`python -m service serve | migrate | seed`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import importlib.util
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING

from service.config import ConfigError, Settings, load_settings
from service.logs import configure_logging

if TYPE_CHECKING:
    from hypercorn.config import Config

    from service.http_edge import EdgeSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger("service")


class DatabaseNotReady(Exception):
    """The database a command needs is missing or out of reach: one line, exit 1 (2 is for
    a bad setting; this one may be fixed by creating the database or by waiting)."""


def _require_database(settings: Settings) -> None:
    from service.db import connection_problem

    problem = asyncio.run(connection_problem(settings))
    if problem is not None:
        raise DatabaseNotReady(problem)


def migrate(settings: Settings) -> None:
    from alembic import command
    from alembic.config import Config

    # Checked first, so that only a migration's own failure ends in a traceback.
    _require_database(settings)
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "alembic"))
    config.attributes["database_url"] = settings.database_url
    command.upgrade(config, "head")
    logger.info("database schema is up to date")


async def _seed(settings: Settings) -> int:
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.ext.asyncio import AsyncSession

    from service.db import make_engine
    from service.errors import database_mistake
    from service.products.queries import seed_sample_products

    engine = make_engine(settings)
    try:
        async with AsyncSession(engine) as session:
            inserted = await seed_sample_products(session)
            await session.commit()
        return inserted
    except DBAPIError as error:
        mistake = database_mistake(error)  # not migrated yet
        if mistake is None:
            raise
        raise DatabaseNotReady(mistake) from None
    finally:
        await engine.dispose()


def seed(settings: Settings) -> None:
    _require_database(settings)
    inserted = asyncio.run(_seed(settings))
    if inserted:
        logger.info("seeded %d sample products", inserted)
    else:
        logger.info("products table not empty: no sample products added")


def _port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As hypercorn binds: connections of a previous run in TIME_WAIT do not hold the
        # port, a listening server does (Linux refuses that even with SO_REUSEADDR).
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _prepare_metrics_directory() -> None:
    """prometheus_client multiprocess mode: every worker writes its samples here.

    Set before any worker starts (they inherit the environment) and emptied, so a
    restart does not add the last run's counts.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="service-metrics-")


def _serve_metrics(host: str, port: int) -> None:
    """The API's /metrics on a port of its own, from this process: with several workers
    that is the supervisor, which answers for all of them (multiprocess mode) and, serving
    no requests, is never too busy to be scraped."""
    # Imported only now: prometheus_client chooses its multiprocess storage when imported,
    # from PROMETHEUS_MULTIPROC_DIR, which _prepare_metrics_directory has just set.
    from service.metrics import start_metrics_server

    try:
        start_metrics_server(port, host)
    except OSError as error:
        raise ConfigError(
            f"METRICS_PORT: {host}:{port} cannot be served: {error.strerror}"
        ) from None
    logger.info("serving /metrics on http://%s:%d/metrics", host, port)


def serve(settings: Settings, *, reload: bool = False) -> int:
    from hypercorn.config import Config
    from hypercorn.run import run

    if not _port_is_free(settings.host, settings.port):
        # With several workers hypercorn would quietly share the port with the other server.
        raise ConfigError(f"PORT: {settings.host}:{settings.port} is already in use")
    _prepare_metrics_directory()
    if settings.metrics_listener_port:
        _serve_metrics(settings.host, settings.metrics_listener_port)
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.application_path = "service.asgi:app"
    # One worker runs in this process; more are spawned, each building its own pools.
    config.workers = settings.web_concurrency if settings.web_concurrency > 1 else 0
    config.worker_class = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    config.backlog = 2048
    config.graceful_timeout = settings.graceful_timeout
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False  # no `server: hypercorn-h11` banner
    from service.http_edge import EdgeSettings
    from service.http_edge import install as install_http_edge

    edge = EdgeSettings(head_timeout=settings.http_read_timeout, h2c_enabled=settings.h2c_enabled)
    logger.info(
        "starting hypercorn on http://%s:%d with %d worker(s)",
        settings.host,
        settings.port,
        settings.web_concurrency,
    )
    if reload:
        # hypercorn's own reloader: one spawned worker, started again when a source file
        # changes. For development: it has neither our supervisor's graceful stop nor the
        # connection-level edge (http_edge.install), which only `serve` without it sets up.
        config.use_reloader = True
        config.workers = 1
        return run(config)
    if config.workers:
        return supervise_workers(config, edge)
    install_http_edge(edge)
    return run(config)


# After the grace period for its requests, what a worker gets to run its shutdown (close
# the pools, flush telemetry) before the supervisor kills it.
SHUTDOWN_MARGIN_SECONDS = 5.0


def supervise_workers(config: Config, edge: EdgeSettings) -> int:
    """Run `config.workers` hypercorn workers; on SIGTERM or SIGINT, stop them gracefully.

    Hand-written instead of hypercorn's own multi-worker `run` (hypercorn/run.py, 0.18): that
    one waits for the *first* worker to exit, then `terminate()`s the others, whose SIGTERM
    is left at its default (they watch a shared Event instead), so the requests still in
    flight on the slower workers were cut off. Here every worker handles SIGTERM itself, as
    in single-process mode (stop accepting, finish what is in flight within
    GRACEFUL_TIMEOUT, run after_serving); this process forwards the signal to each and waits
    for all of them. Otherwise as hypercorn: a worker that exits with 0 is replaced, one that
    fails stops the server with its exit code.
    """
    from multiprocessing import get_context
    from multiprocessing.connection import wait

    from hypercorn.asyncio.run import asyncio_worker, uvloop_worker

    from service.http_edge import run_worker

    worker_function = uvloop_worker if config.worker_class == "uvloop" else asyncio_worker
    sockets = config.create_sockets()
    context = get_context("spawn")
    workers: list[BaseProcess] = []
    stop_requested: list[int] = []  # the signal, once one came

    def start_worker() -> None:
        worker = context.Process(
            target=run_worker,
            kwargs={
                "worker": worker_function,
                "settings": edge,
                "config": config,
                "sockets": sockets,
            },
        )
        worker.start()
        workers.append(worker)

    def forward(signum: int, _frame: object) -> None:
        stop_requested.append(signum)
        for worker in workers:
            if worker.pid is not None and worker.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)

    # Workers inherit an ignored SIGINT until hypercorn installs their handler, so a Ctrl-C
    # to the whole process group during start-up reaches them through this process only.
    # (A handler, unlike SIG_IGN, is not inherited: SIGTERM can be caught here already.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, forward)
    for _ in range(config.workers):
        if not stop_requested:
            start_worker()
    signal.signal(signal.SIGINT, forward)

    exit_code = 0
    while not stop_requested:
        wait([worker.sentinel for worker in workers], timeout=0.2)
        for worker in [worker for worker in workers if worker.exitcode is not None]:
            workers.remove(worker)
            _forget_worker(worker)
            if worker.exitcode == 0 and not stop_requested:
                start_worker()  # it chose to stop (hypercorn's max_requests): replace it
            elif not stop_requested:
                logger.error("worker %s exited with %s: stopping", worker.pid, worker.exitcode)
                exit_code = worker.exitcode if worker.exitcode > 0 else 1  # < 0: a signal
                forward(signal.SIGTERM, None)

    for sock in sockets.insecure_sockets + sockets.secure_sockets:
        sock.close()  # this copy only: the socket closes when the last worker lets go
    deadline = time.monotonic() + config.graceful_timeout + SHUTDOWN_MARGIN_SECONDS
    while workers and time.monotonic() < deadline:
        wait([worker.sentinel for worker in workers], timeout=0.2)
        for worker in [worker for worker in workers if worker.exitcode is not None]:
            workers.remove(worker)
            _forget_worker(worker)
            # -SIGTERM: the signal came before the worker had its handler (still starting).
            if worker.exitcode not in (0, -signal.SIGTERM):
                exit_code = exit_code or 1
    for worker in workers:
        logger.warning("worker %s still running after the grace period: killed", worker.pid)
        worker.kill()
        worker.join()
        _forget_worker(worker)
        exit_code = exit_code or 1
    return exit_code


def _forget_worker(worker: BaseProcess) -> None:
    """Its live gauges leave the shared metrics directory (it may have had no time to)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and worker.pid is not None:
        from prometheus_client import multiprocess

        with contextlib.suppress(Exception):
            multiprocess.mark_process_dead(worker.pid)


COMMANDS = {
    "serve": "run the API under hypercorn on HOST:PORT with WEB_CONCURRENCY workers",
    "migrate": "bring the database schema to the newest migration (alembic upgrade head)",
    "seed": "insert the 10 sample products, only into an empty products table",
}


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    from service import __version__

    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="The service's commands. Settings come from environment variables "
        "and a .env file in the working directory (see the README's Configuration).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    serve_parser = commands.add_parser(
        "serve", help=COMMANDS["serve"], description=COMMANDS["serve"]
    )
    serve_parser.add_argument("--host", help="listen address (HOST)")
    serve_parser.add_argument("--port", type=int, help="listen port (PORT)")
    serve_parser.add_argument("--workers", type=int, help="worker processes (WEB_CONCURRENCY)")
    serve_parser.add_argument(
        "--reload",
        action="store_true",
        help="development: restart when a source file changes (one worker)",
    )
    for name in ("migrate", "seed"):
        commands.add_parser(name, help=COMMANDS[name], description=COMMANDS[name])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    try:
        overrides: dict[str, object] = {}
        if args.command == "serve":
            # Options win over the environment; None: not given.
            given = {"host": args.host, "port": args.port, "web_concurrency": args.workers}
            overrides = {name: value for name, value in given.items() if value is not None}
        settings = load_settings(**overrides)
        configure_logging(settings.log_level, settings.service_name)
        if args.command == "migrate":
            migrate(settings)
        elif args.command == "seed":
            seed(settings)
        else:
            return serve(settings, reload=args.reload)
    except ConfigError as error:
        print(error.code, file=sys.stderr)
        return 2
    except DatabaseNotReady as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
