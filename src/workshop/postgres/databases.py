"""Resolving the server (DATABASE_URL, else the embedded one) and making and dropping
databases on it, the learner's and the tests' throwaway ones."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import psutil
from sqlalchemy.engine import URL

from ..course import COMMAND, find_root
from .server import (
    CONNECT_TIMEOUT,
    TEST_DATABASE_PREFIX,
    WORKSHOP_DATABASE,
    DatabaseUnavailable,
    EmbeddedServer,
    ToolkitSettings,
    asyncpg_url,
    describe,
    libpq_dsn,
)

T = TypeVar("T")

# -- resolving the server -----------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A reachable PostgreSQL server and where it came from."""

    url: URL  # the server's own maintenance database, for admin work
    source: str  # "DATABASE_URL" or "embedded"

    def database_url(self, database: str) -> URL:
        return self.url.set(database=database)

    def scratch_database(self, name: str) -> str:
        """A notebook's database of its own: `name` (`notebook_03`), made afresh at each run.
        Under a test run (DATABASE_URL names one of its throwaway databases), a throwaway name
        of that run's own instead: a test run never drops the database an open notebook of the
        learner's is using (DROP ... WITH (FORCE) would end its sessions)."""
        if (self.url.database or "").startswith(TEST_DATABASE_PREFIX):
            return test_database_name(name)
        return name


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion, also where an event loop already runs (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as worker:
        return worker.submit(asyncio.run, coroutine).result()


async def _probe(url: URL) -> str:
    connection = await asyncpg.connect(libpq_dsn(url), timeout=CONNECT_TIMEOUT)
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


def server_version(url: URL) -> str:
    """Ask the server its version; DatabaseUnavailable when it does not answer."""
    try:
        return run_sync(_probe(url))
    except asyncpg.InvalidAuthorizationSpecificationError as exc:  # and InvalidPasswordError
        # It answers, and refuses who is asking: the fix is in the URL, not the server.
        raise DatabaseUnavailable(
            f"PostgreSQL at {describe(url)} refuses the connection ({exc}): put a user and a "
            "password it knows in DATABASE_URL, as in "
            "postgresql+asyncpg://postgres:postgres@localhost:5432/workshop."
        ) from exc
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        if url.query.get("host", "").endswith("pgdata"):  # the embedded server's socket
            raise DatabaseUnavailable(
                f"The embedded PostgreSQL does not answer ({type(exc).__name__}): "
                f"`{COMMAND} db stop`, then `{COMMAND} db start`."
            ) from exc
        raise DatabaseUnavailable(
            f"PostgreSQL at {describe(url)} (from DATABASE_URL) does not answer "
            f"({type(exc).__name__}): start that server (`docker compose up -d`), or remove "
            "DATABASE_URL from your environment and .env to use the embedded one."
        ) from exc


def resolve_server(root: Path | None = None, *, settings: ToolkitSettings | None = None) -> Server:
    """The server to use: DATABASE_URL when it is set, otherwise the embedded one."""
    root = root or find_root()
    settings = settings or ToolkitSettings.load(root)
    if settings.database_url:
        url = asyncpg_url(settings.database_url)
        server_version(url)
        return Server(url=url, source="DATABASE_URL")
    return Server(url=EmbeddedServer.for_root(root, settings).start(), source="embedded")


async def create_database(server: URL, name: str) -> None:
    """CREATE DATABASE, unless it exists (two processes may race to make it)."""
    connection = await asyncpg.connect(libpq_dsn(server), timeout=CONNECT_TIMEOUT)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def drop_database(server: URL, name: str) -> None:
    connection = await asyncpg.connect(libpq_dsn(server), timeout=CONNECT_TIMEOUT)
    try:
        # WITH (FORCE) ends sessions a failed test left behind (PostgreSQL 13+).
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def test_database_name(label: str) -> str:
    """A throwaway database's name; it carries the pid of the process that owns it."""
    return f"{TEST_DATABASE_PREFIX}{label}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


test_database_name.__test__ = False  # type: ignore[attr-defined]  # not a test, whatever its name


async def drop_orphaned_test_databases(server: URL) -> list[str]:
    """Drop the throwaway databases of test runs that died before they could drop them.

    Only for the embedded server: it is this machine's own, so a pid that is not running
    here is a run that is over. A shared server's databases may belong to other machines.
    """
    connection = await asyncpg.connect(libpq_dsn(server), timeout=CONNECT_TIMEOUT)
    try:
        names = await connection.fetch(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            TEST_DATABASE_PREFIX,
        )
    finally:
        await connection.close()
    orphans = [
        row["datname"]
        for row in names
        if (pid := row["datname"].split("_")[-2]).isdigit() and not psutil.pid_exists(int(pid))
    ]
    for name in orphans:
        await drop_database(server, name)
    return orphans


def workshop_database_url(root: Path | None = None) -> URL:
    """The database of the steps without a schema (01, 02) and of the notebooks: the one
    DATABASE_URL names, as given, else `workshop` on the server. The steps with migrations
    work on databases of their own: see step_databases.py."""
    server = resolve_server(root)
    if server.source == "DATABASE_URL" and server.url.database:
        return server.url
    run_sync(create_database(server.url, WORKSHOP_DATABASE))
    return server.database_url(WORKSHOP_DATABASE)
