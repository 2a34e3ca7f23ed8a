"""PgBouncer's admin console (the database `pgbouncer`): RELOAD, and its SHOW commands.

The console speaks only the simple query protocol: asyncpg can send it a command
(`execute`), not read rows, which psql can.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess

import asyncpg
from sqlalchemy.engine import URL

from .databases import run_sync
from .server import CONNECT_TIMEOUT, libpq_dsn, psql_command


def console_url(port: int, user: str, password: str) -> URL:
    return URL.create(
        "postgresql",
        username=user,
        password=password,
        host="127.0.0.1",
        port=port,
        database="pgbouncer",
    )


def reload(console: URL) -> None:
    """RELOAD: PgBouncer reads its config and its users again, before this returns."""

    async def send() -> None:
        connection = await asyncpg.connect(libpq_dsn(console), timeout=CONNECT_TIMEOUT)
        try:
            await connection.execute("RELOAD")
        finally:
            await connection.close()

    run_sync(send())


def show(console: URL, what: str) -> list[dict[str, str]]:
    """`SHOW <what>` (POOLS, CLIENTS, SERVERS, STATS, CONFIG...): its rows, as text."""
    env = {**os.environ, "PGPASSWORD": console.password or "", "PGCONNECT_TIMEOUT": "5"}
    dsn = libpq_dsn(console.set(password=None))
    done = subprocess.run(
        [psql_command(), dsn, "--csv", "--no-psqlrc", "-c", f"SHOW {what}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return list(csv.DictReader(io.StringIO(done.stdout)))
