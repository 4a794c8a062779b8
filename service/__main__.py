"""`python -m service serve | migrate | seed`."""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib.util
import logging
import os
import socket
import sys
import tempfile
from pathlib import Path

from service.config import ConfigError, Settings, load_settings
from service.logs import configure_logging

PROJECT_ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger("service")


def migrate(settings: Settings) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "alembic"))
    config.attributes["database_url"] = settings.database_url
    command.upgrade(config, "head")
    logger.info("database schema is up to date")


async def _seed(settings: Settings) -> int:
    from sqlalchemy.ext.asyncio import AsyncSession

    from service.db import make_engine
    from service.products.queries import seed_sample_products

    engine = make_engine(settings)
    try:
        async with AsyncSession(engine) as session:
            inserted = await seed_sample_products(session)
            await session.commit()
        return inserted
    finally:
        await engine.dispose()


def seed(settings: Settings) -> None:
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


def serve(settings: Settings) -> int:
    from hypercorn.config import Config
    from hypercorn.run import run

    if not _port_is_free(settings.host, settings.port):
        # With several workers hypercorn would quietly share the port with the other server.
        raise ConfigError(f"PORT: {settings.host}:{settings.port} is already in use")
    _prepare_metrics_directory()
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
    logger.info(
        "starting hypercorn on http://%s:%d with %d worker(s)",
        settings.host,
        settings.port,
        settings.web_concurrency,
    )
    return run(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service")
    parser.add_argument("command", choices=("serve", "migrate", "seed"))
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level, settings.service_name)
        if args.command == "migrate":
            migrate(settings)
        elif args.command == "seed":
            seed(settings)
        else:
            return serve(settings)
    except ConfigError as error:
        print(error.code, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
