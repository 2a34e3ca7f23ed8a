"""`workshop bench`: the step 04, 05 and 06 references under load, beside four baselines.

Each variant is served by uvicorn (one worker, 127.0.0.1, no access log; step 06 also with two
workers, and through a PgBouncer of the benchmark's own) on a database of the benchmark's own
with 10,000 items to ask for (from step 05 on, among other accounts' items), and loaded by wrk:
a load generator written in C, so the client never competes with the app for Python's
interpreter. Every round starts every variant afresh and loads them one after the other, in an
order that rotates from round to round, so a machine that gets busier hits them all alike; the
figures are the rounds' medians, at each number of client connections asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import itertools
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from sqlalchemy.engine import URL

from workshop.commands.serving import free_port
from workshop.course import COMMAND, Course, Step, WorkshopError
from workshop.postgres import (
    Server,
    create_database,
    drop_database,
    libpq_dsn,
    resolve_server,
    run_sync,
    server_version,
)
from workshop.postgres.pgbouncer import PgBouncer, PgBouncerMissing
from workshop.postgres.pgbouncer_config import find_pgbouncer, install_command, workshop_users
from workshop.postgres.server import CONNECT_TIMEOUT, TEST_DATABASE_PREFIX, WORKSHOP_DATABASE
from workshop.postgres.step_databases import step_database_names

from . import report
from .model import (
    ITEMS,
    REQUESTS,
    SETTLE_SECONDS,
    SHARE,
    VARIANTS,
    Figures,
    Options,
    Results,
    Variant,
    threads,
)

DATABASE = "workshop_bench"  # + "_04", "_05", "_06": one database per step's schema
INSTALL_WRK = (
    "The benchmark needs wrk, a load generator: install it with `sudo apt-get install wrk` "
    "(Debian, Ubuntu) or `brew install wrk` (macOS)."
)
# The step 05 variant's account: it logs in once per round. The others own items, no more.
BENCH_EMAIL = "bench@workshop.invalid"
OTHER_EMAIL = "other-{}@workshop.invalid"
# Three of these words describe each item; each search word matches about 300 items of 10,000.
VOCABULARY = (
    "amber anchor apple arrow badge basket beacon bell blanket bottle bridge brush bucket "
    "button cabin camera candle canvas carpet castle chair chess clock cloud compass copper "
    "cotton crystal cushion desk diamond drum eagle engine feather fence flute forest fountain "
    "garden glove granite guitar hammer harbor helmet honey island jacket jungle kettle ladder "
    "lantern leather lemon marble meadow mirror needle ocean orchid paddle paper pebble pencil "
    "pepper piano pillow planet pocket quartz rabbit ribbon river rocket saddle sailor scarf "
    "shadow silver spoon stone sugar summer table thunder timber tower trumpet tulip umbrella "
    "valley velvet violin wagon walnut window winter wizard yarn zebra"
)
WORDS = VOCABULARY.split()
# Not WORDS[0]: it describes every 100th item only (n * k % 100 is 0 for the same n, any k).
SEARCH_WORDS = WORDS[1::10]
COLORS = ("red", "green", "blue", "black", "white")

# -- the databases ------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchDatabase:
    url: URL  # as the administrator: seeding and cleaning up
    app_url: str  # as the step's app connects (from step 05 on, its own role)
    password: str | None  # the bench account's, where the schema has users
    share: int = 1  # the bench's items are ids share, 2 * share, ... (ITEMS * share in all)

    @property
    def rows(self) -> int:
        return ITEMS * self.share


def item_rows(owners: list[int | None]) -> Iterator[tuple[Any, ...]]:
    """ITEMS items for each owner, the owners' items in turn: item n of the last owner is
    id n * len(owners) (None: a table without owners)."""
    for n in range(1, ITEMS + 1):
        # n * k covers every word once per len(WORDS) items, for each k prime to it.
        a, b, c = (WORDS[n * k % len(WORDS)] for k in (1, 7, 31))
        attributes = json.dumps({"color": COLORS[n % len(COLORS)], "size": n % 10})
        row = (f"Item {n:05d}", f"A {a} {b} for the {c}.", Decimal(n % 50_000) / 100, attributes)
        for owner_id in owners:
            yield (*row, owner_id) if owner_id is not None else row


@dataclass(frozen=True)
class Accounts:
    """How a schema with users stores them: the hash function, and the hash's column (step
    06 renamed hashed_password to password_hash)."""

    hash_password: Callable[[str], str]
    column: str = "hashed_password"

    async def make(
        self, connection: asyncpg.Connection, email: str, hashed: str, active: bool
    ) -> int:
        column = self.column  # the model's column name, never input
        return int(
            await connection.fetchval(
                f"INSERT INTO users (email, {column}, is_active) VALUES ($1, $2, $3) "
                f"ON CONFLICT (email) DO UPDATE SET {column} = excluded.{column}, "
                "is_active = excluded.is_active RETURNING id",
                email,
                hashed,
                active,
            )
        )


def accounts_of(step: Step) -> Accounts | None:
    """How the step's reference stores users (None: it has none): its own hash function, and
    the column its model maps the hash to."""
    from sqlalchemy import inspect

    from workshop.course.loader import load_package

    package = load_package(step, solution=True)
    if not hasattr(package.models, "User"):
        return None
    column = inspect(package.models.User).columns["hashed_password"].name
    return Accounts(package.security.password_hash.hash, column)


async def seed(url: URL, accounts: Accounts | None) -> tuple[str | None, int]:
    """ITEMS items, written afresh unless they are as the benchmark left them. Where there are
    users, the bench account gets a new password (returned) and owns one item in SHARE, ids
    SHARE, 2 * SHARE, ...; accounts nobody logs in to own the others. Also returns the share."""
    connection = await asyncpg.connect(libpq_dsn(url), timeout=CONNECT_TIMEOUT)
    try:
        owners: list[int | None] = [None]
        password = None
        if accounts is not None:
            password = secrets.token_urlsafe(16)
            hashed = await asyncio.to_thread(accounts.hash_password, password)
            # "!" is no Argon2 hash: no password opens the other accounts.
            others = [
                await accounts.make(connection, OTHER_EMAIL.format(n), "!", False)
                for n in range(1, SHARE)
            ]
            owners = [*others, await accounts.make(connection, BENCH_EMAIL, hashed, True)]
        rows = ITEMS * len(owners)
        # What a run stopped half-way through created.
        await connection.execute("DELETE FROM items WHERE id > $1", rows)
        count, last = await connection.fetchrow("SELECT count(*), max(id) FROM items")
        misplaced = owners[-1] is not None and await connection.fetchval(
            "SELECT count(*) FROM items WHERE (owner_id = $1) <> (id % $2 = 0)",
            owners[-1],
            len(owners),
        )
        if (count, last) != (rows, rows) or misplaced:
            columns = ["name", "description", "price", "attributes"]
            columns += ["owner_id"] if owners[-1] is not None else []
            async with connection.transaction():
                # RESTART IDENTITY: the ids are 1 to rows, and the bench's are those wrk asks for.
                await connection.execute("TRUNCATE items RESTART IDENTITY")
                await connection.copy_records_to_table(
                    "items", records=item_rows(owners), columns=columns
                )
            await connection.execute("ANALYZE items")
    finally:
        await connection.close()
    return password, len(owners)


async def prepare(server: Server, step: Step, name: str) -> BenchDatabase:
    """Create, migrate (with the step's reference migrations) and seed a bench database."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from workshop.postgres.migrations import Migrations

    url = server.database_url(name)
    url_text = url.render_as_string(hide_password=False)
    migrations = Migrations(step, solution=True)
    try:
        await create_database(server.url, name)
        try:
            await migrations.upgrade(url_text)
        except CommandError:
            # A schema of another version of the course: the database is the bench's own.
            await drop_database(server.url, name)
            await create_database(server.url, name)
            await migrations.upgrade(url_text)
        password, share = await seed(url, accounts_of(step))
    except (SQLAlchemyError, asyncpg.PostgresError) as exc:
        raise WorkshopError(
            f"Preparing the benchmark's database {name} failed ({type(exc).__name__}): the "
            "server's user must be allowed to create databases and roles "
            f"(`{COMMAND} doctor` checks the server)."
        ) from exc
    app_url = migrations.app_url(url_text)
    return BenchDatabase(url=url, app_url=app_url, password=password, share=share)


async def forget_created(database: BenchDatabase) -> None:
    """Delete what a POST load created, so every variant meets the same rows."""
    connection = await asyncpg.connect(libpq_dsn(database.url), timeout=CONNECT_TIMEOUT)
    try:
        await connection.execute("DELETE FROM items WHERE id > $1", database.rows)
        await connection.execute("VACUUM items")
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def exclusive(server: Server, name: str) -> AsyncIterator[None]:
    """One benchmark at a time on these databases: two would load the machine twice."""
    connection = await asyncpg.connect(libpq_dsn(server.url), timeout=CONNECT_TIMEOUT)
    try:
        if not await connection.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", name):
            raise WorkshopError(f"Another benchmark runs on {name}: wait until it is done.")
        yield
    finally:
        await connection.close()  # which releases the lock


# -- the variants -------------------------------------------------------------------------


@dataclass
class Served:
    variant: Variant
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path
    token: str | None = None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # uvicorn shuts down: the app closes its pool
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def failed(self, what: str) -> WorkshopError:
        """An error that quotes the log's last exception (its last line, when it has none)."""
        lines = self.log.read_text(errors="replace").strip().splitlines() or ["(empty)"]
        errors = [line for line in lines if EXCEPTION_LINE.match(line)]
        return WorkshopError(
            f"The {self.variant.label} variant {what}; its log ({self.log}) says: "
            f"{(errors or lines)[-1]}"
        )


# The last line of a traceback: `RuntimeError: ...`, `asyncpg.exceptions.Foo: ...`.
EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception|Exit)\b.*:")


def start(course: Course, variant: Variant, url: str, logs: Path, loop: str = "auto") -> Served:
    """Serve a variant as `workshop run` serves a step: uvicorn, from the repository's root
    (its .env applies), with the environment's settings and DATABASE_URL set to `url`."""
    # WEB_CONCURRENCY: the workers step 06's connection budget counts (uvicorn's own too).
    env = {**os.environ, "DATABASE_URL": url, "WEB_CONCURRENCY": str(variant.workers)}
    # As `workshop run`: the environment's SECRET_KEY, else one of our own.
    env.setdefault("SECRET_KEY", secrets.token_urlsafe(32))
    port = free_port()
    log = logs / f"{variant.key}.log"
    command = [
        *(sys.executable, "-m", "uvicorn", variant.app),
        *("--app-dir", str(variant.folder(course))),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", str(variant.workers)),
        *("--loop", loop, "--no-access-log", "--log-level", "warning"),
    ]
    with log.open("wb") as output:  # the child keeps its own copy of the file
        process = subprocess.Popen(
            command, cwd=course.root, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    return Served(variant, process, f"http://127.0.0.1:{port}", log)


async def wait_until_ready(served: Served, client: httpx.AsyncClient, seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while served.process.poll() is None:
        with contextlib.suppress(httpx.TransportError):
            await client.get(f"{served.base_url}/items/1")  # any answer: it serves
            return
        if asyncio.get_running_loop().time() > deadline:
            raise served.failed(f"did not answer within {seconds:.0f} s")
        await asyncio.sleep(0.1)
    raise served.failed(f"stopped (exit code {served.process.returncode})")


async def log_in(served: Served, client: httpx.AsyncClient, password: str) -> str:
    form = {"username": BENCH_EMAIL, "password": password}
    answer = await client.post(f"{served.base_url}/auth/token", data=form)
    if answer.status_code != 200:
        raise served.failed(f"refused the bench account's login ({answer.status_code})")
    return str(answer.json()["access_token"])


async def answers(served: Served, client: httpx.AsyncClient, share: int) -> dict[str, Any]:
    """Each request once, checked: a variant that answers an error is not benchmarked."""
    headers = {"Authorization": f"Bearer {served.token}"} if served.token else {}
    item = {"name": f"bench check {secrets.token_hex(4)}", "description": "A lamp."}
    item |= {"price": "12.50", "attributes": {"color": "red"}}
    sent = {
        "get": ("GET", f"/items/{share}", None),  # the bench's first item
        "list": ("GET", "/items?limit=20", None),
        "search": ("GET", f"/items?q={SEARCH_WORDS[0]}", None),
        "create": ("POST", "/items", item),
    }
    bodies: dict[str, Any] = {}
    for request, (method, path, body) in sent.items():
        answer = await client.request(method, served.base_url + path, json=body, headers=headers)
        expected = 201 if request == "create" else 200
        if answer.status_code != expected:
            raise served.failed(f"answered {REQUESTS[request]} with {answer.status_code}")
        body = answer.json()
        if request == "create":
            if answer.headers.get("location") != f"/items/{body['id']}":
                raise served.failed("answered create without its Location header")
            # What the client sent comes back; the id and times are the server's own.
            body = {k: v for k, v in body.items() if k not in {"name", "id", *TIMES}}
        elif request == "search" and body["next_cursor"]:
            # The rank in the cursor is a float4: drivers give it different decimals.
            body = {**body, "next_cursor": True}
        bodies[request] = body
    return bodies


TIMES = {"created_at", "updated_at"}


def same_answers(served: list[Served], bodies: dict[str, dict[str, Any]]) -> None:
    """The variants on one database must answer as each other: the same JSON for the same
    rows, or the benchmark would compare different work."""
    for one, other in itertools.pairwise(served):
        if one.variant.step != other.variant.step:
            continue
        for request in REQUESTS:
            if bodies[one.variant.key][request] != bodies[other.variant.key][request]:
                raise WorkshopError(
                    f"The {one.variant.label} and {other.variant.label} variants answer "
                    f"{REQUESTS[request]} differently: the benchmark would compare different work."
                )


async def load(
    served: Served, request: str, seconds: int, connections: int, script: Path, share: int
) -> Figures:
    """wrk on one request for `seconds` with `connections` client connections; its figures."""
    arguments = {
        "get": [str(ITEMS), str(share)],  # ids share, 2 * share, ...: the bench's items
        "list": [],
        "create": [secrets.token_hex(4)],  # new names, whatever earlier runs left
        "search": list(SEARCH_WORDS),
    }[request]
    command = [
        *("wrk", f"-t{threads(connections)}", f"-c{connections}", f"-d{seconds}s"),
        # Slow answers are measured, not dropped as timeouts after wrk's default 2 s.
        *("--timeout", "10s", "-s", str(script), served.base_url, "--", request, *arguments),
    ]
    # The token goes through the environment: a command line is visible to every user.
    env = {**os.environ, "BENCH_TOKEN": served.token or ""}
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), seconds + 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("BENCH "):
            return Figures.from_wrk(json.loads(line.removeprefix("BENCH ")))
    message = err.decode(errors="replace").strip() or f"exit code {process.returncode}"
    raise WorkshopError(f"wrk gave no figures for {served.variant.label}: {message}")


class CPU:
    """The CPU time a process and its children (uvicorn's workers) used over a `with`, in
    cores, and the share of the whole machine's CPU time left idle meanwhile."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.cores = self.idle = 0.0

    def used(self) -> float:
        processes = [self.process, *self.process.children(recursive=True)]
        total = 0.0
        for process in processes:
            with contextlib.suppress(psutil.Error):  # a worker that ended meanwhile
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def __enter__(self) -> CPU:
        self.start = (time.monotonic(), self.used(), psutil.cpu_times())
        return self

    def __exit__(self, *exc_info: object) -> None:
        wall, used, machine = time.monotonic(), self.used(), psutil.cpu_times()
        self.cores = (used - self.start[1]) / (wall - self.start[0])
        before = self.start[2]
        total = sum(machine) - sum(before)
        self.idle = (machine.idle - before.idle) / total if total else 0.0


# -- the run ------------------------------------------------------------------------------


def machine(server: Server) -> str:
    """What the figures were measured on, in one line."""
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    wrk_version = (wrk.stdout or wrk.stderr).split(" [")[0].strip() or "wrk"
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load1:.2f} at the start · "
        f"Python {platform.python_version()} · PostgreSQL {server_version(server.url)} "
        f"({server.source}) · {wrk_version}"
    )


def run(
    course: Course,
    options: Options,
    *,
    output: Path | None = None,
    database: str = DATABASE,
    say: Callable[[str], None] = print,
) -> Results:
    """Run the benchmark; write results.md and results.png in `output` (build/bench/)."""
    if shutil.which("wrk") is None:
        raise WorkshopError(INSTALL_WRK)
    if "sync" in options.variants and importlib.util.find_spec("psycopg") is None:
        raise WorkshopError("The sync baseline needs psycopg: install it with `uv sync`.")
    if importlib.util.find_spec("matplotlib") is None:  # checked now, not after the run
        raise WorkshopError("The benchmark's plot needs matplotlib: install it with `uv sync`.")
    if options.pgbouncer and find_pgbouncer() is None:
        others = ",".join(key for key, variant in VARIANTS.items() if not variant.pgbouncer)
        raise PgBouncerMissing(
            f"The variants through PgBouncer need it: {install_command()} "
            f"(or leave them out: --variants {others})."
        )
    open_files(max(options.connections))
    # The servers' logs stay in the build folder, whatever `output` is (the docs, say).
    build = course.root / "build" / "bench"
    output = output or build
    server = resolve_server(course.root)
    steps = {VARIANTS[key].step for key in options.variants}
    names = {step: f"{database}_{step}" for step in steps}
    for name in names.values():
        # Never the learner's data, nor a test's: the benchmark truncates its tables.
        learners = {WORKSHOP_DATABASE, *step_database_names(course), server.url.database}
        if name in learners or name.startswith(TEST_DATABASE_PREFIX):
            raise WorkshopError(f"{name} is not a database the benchmark may fill: choose another.")
    if options.left_out:
        say(
            f"PgBouncer is not installed, so {', '.join(options.left_out)} are left out "
            f"({install_command()})."
        )
    results = Results(options, machine(server))
    (build / "logs").mkdir(parents=True, exist_ok=True)
    try:
        run_sync(_run(course, server, database, names, results, build, say))
    except asyncio.CancelledError:  # a SIGTERM
        raise WorkshopError("The benchmark was stopped before it was done.") from None
    results.files = report.write(results, output)
    return results


def open_files(connections: int) -> None:
    """Let wrk and the apps (they inherit it) open a socket per client connection and more:
    macOS allows 256 files a process by default, many Linux desktops 1,024."""
    if sys.platform == "win32":  # no such limit there (and no wrk: WSL runs the benchmark)
        return
    import resource

    needed = connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise WorkshopError(
                f"{connections} connections need {needed} open files a process, and this "
                f"shell allows {hard}: raise it (`ulimit -n {needed}`), or ask for fewer."
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@contextlib.contextmanager
def bench_pgbouncer(course: Course, server: Server, wanted: bool) -> Iterator[PgBouncer | None]:
    """A PgBouncer of the run's own, configured as the workshop's (transaction mode, its
    pool size), on any free port: the learner's, if it runs, keeps its clients and config."""
    if not wanted:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="workshop-bench-pgbouncer-"))
    bouncer = PgBouncer(folder)
    try:
        bouncer.start(server.url, workshop_users(course, server.url), port=None)
        yield bouncer
    finally:
        bouncer.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def _run(
    course: Course,
    server: Server,
    database: str,
    names: dict[str, str],
    results: Results,
    output: Path,
    say: Callable[[str], None],
) -> None:
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    # A SIGTERM ends the run as Ctrl+C does: through the `finally`s that stop every server.
    # (Only in the main thread: in a notebook, run_sync runs this in a worker thread.)
    previous = signal.getsignal(signal.SIGTERM)
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
        loop.add_signal_handler(signal.SIGTERM, task.cancel)  # type: ignore[union-attr]
    try:
        async with exclusive(server, database):
            say(f"Preparing {', '.join(sorted(names.values()))} ({ITEMS:,} items)...")
            databases = {
                step: await prepare(server, course.step(step), name) for step, name in names.items()
            }
            wanted = results.options.pgbouncer
            with bench_pgbouncer(course, server, wanted) as bouncer:
                async with httpx.AsyncClient(timeout=30) as client:
                    bench = Bench(course, results, databases, client, output, say, bouncer)
                    for number in range(results.options.rounds):
                        await bench.round(number)
    finally:
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError, TypeError):
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, previous)  # pytest's, or whoever had it before


@dataclass
class Bench:
    course: Course
    results: Results
    databases: dict[str, BenchDatabase]
    client: httpx.AsyncClient
    output: Path
    say: Callable[[str], None]
    bouncer: PgBouncer | None = None

    def serve(self, variant: Variant) -> Served:
        """Start the variant's app, as the run's options say."""
        logs = self.output / "logs"
        return start(self.course, variant, self.url(variant), logs, self.results.options.loop)

    async def ready(self, served: Served) -> None:
        """Wait until the app answers; log the bench account in where there are users."""
        await wait_until_ready(served, self.client, seconds=90)
        if (password := self.databases[served.variant.step].password) is not None:
            served.token = await log_in(served, self.client, password)

    def url(self, variant: Variant) -> str:
        """The database URL the variant's app gets: through PgBouncer, or straight."""
        url = self.databases[variant.step].app_url
        if variant.pgbouncer:
            assert self.bouncer is not None, "bench_pgbouncer() starts it for these variants"
            return self.bouncer.through(url)
        return url

    async def round(self, number: int) -> None:
        """Start every variant at once (their start-ups overlap), then load them one at a
        time, each stopped after its turn so that it holds no connection during the next."""
        keys = self.results.options.variants
        # Round 2 starts with the second variant, and so on: no variant always goes first
        # (or last) on a machine that warms up or gets busier.
        shift = number % len(keys)
        order = [VARIANTS[key] for key in keys[shift:] + keys[:shift]]
        served: list[Served] = []
        try:
            for variant in order:  # one at a time: the `finally` stops those started
                served.append(self.serve(variant))
            for one in served:
                await self.ready(one)
            bodies = {
                one.variant.key: await answers(
                    one, self.client, self.databases[one.variant.step].share
                )
                for one in served
            }
            same_answers(sorted(served, key=lambda one: one.variant.step), bodies)
            for database in self.databases.values():
                await forget_created(database)
            for one in served:
                await self.measure(one, number)
                one.stop()
        finally:
            for one in served:
                one.stop()

    async def measure(self, served: Served, number: int) -> None:
        """Every request on one variant, at each number of connections: a warm-up (which
        fills its pool, and opens the connections), then the load."""
        options = self.results.options
        database = self.databases[served.variant.step]
        script = self.course.root / "bench" / "requests.lua"
        for connections in options.connections:
            if options.warmup:
                for request in options.requests:
                    await load(served, request, options.warmup, connections, script, database.share)
                    after = f"the warm-up of {REQUESTS[request]} at {connections:,} connections"
                    await self.settle(served, f"round {number + 1}: {after}")
                await forget_created(database)
            for request in options.requests:
                with CPU(served.process.pid) as cpu:
                    figures = await load(
                        served, request, options.duration, connections, script, database.share
                    )
                figures = dataclasses.replace(figures, app_cores=cpu.cores, idle=cpu.idle)
                after = f"{REQUESTS[request]} at {connections:,} connections"
                await self.settle(served, f"round {number + 1}: {after}")
                key = (served.variant.key, request, connections)
                self.results.runs.setdefault(key, []).append(figures)
                self.say(
                    f"round {number + 1}/{options.rounds} · {served.variant.label} · "
                    f"{REQUESTS[request]} · {connections} connections: "
                    f"{figures.requests_per_second:,.0f} requests/s, "
                    f"p50 {figures.p50_ms:.1f} ms, p99 {figures.p99_ms:.1f} ms"
                    + (f", {figures.errors} errors" if figures.errors else "")
                )
                if request == "create":
                    await forget_created(database)

    async def settle(self, served: Served, after: str) -> None:
        """Wait until the app is done with what wrk left it. wrk stops at its duration and
        closes its connections, but the requests they sent are still in the app's line (a
        crowd's worth: 1,000 of them at 1,000 connections), and the app answers them all: the
        next load would wait behind them. The app's line is first come, first served, so a
        request sent now is answered after them. An app that has not answered it within
        SETTLE_SECONDS is stuck (the sync baseline under a crowd: see docs/performance.md):
        it is restarted, and the report says so."""
        headers = {"Authorization": f"Bearer {served.token}"} if served.token else {}
        share = self.databases[served.variant.step].share
        url = f"{served.base_url}/items/{share}"
        try:
            await self.client.get(url, headers=headers, timeout=SETTLE_SECONDS)
            return
        except httpx.TimeoutException:
            pass  # stuck: restarted below
        except httpx.TransportError as error:  # it ended, or refuses connections
            raise served.failed(f"did not answer after a load ({type(error).__name__})") from None
        self.results.restarts.append(f"{served.variant.label}, {after}")
        self.say(
            f"{served.variant.label} did not answer within {SETTLE_SECONDS} s of a load "
            f"({after}): restarted"
        )
        served.stop()
        again = self.serve(served.variant)
        served.process, served.base_url, served.log = again.process, again.base_url, again.log
        await self.ready(served)
