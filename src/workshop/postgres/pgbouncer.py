"""PgBouncer beside the workshop's PostgreSQL (step 06): the machine's own pgbouncer, run by the
toolkit in transaction mode, with its config, users, log and pid file in a folder of its own
(`.workshop/pgbouncer/`).

It listens on 127.0.0.1 only, on a port of its own, and sends every database name to the
server the workshop uses: the embedded one through its Unix socket, or DATABASE_URL's. Its
users are the workshop's login roles, with the passwords the toolkit keeps for them.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import secrets
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
from sqlalchemy.engine import URL, make_url

from ..course import COMMAND, WorkshopError
from . import pgbouncer_console
from .pgbouncer_config import (
    ADMIN,
    FILES,
    POOL_SIZE,
    config_text,
    find_pgbouncer,
    free_port,
    install_command,
    read_users,
    run_as,
    version,
    write_users,
)
from .pgbouncer_console import console_url
from .server import EmbeddedServer, ToolkitSettings

# PgBouncer's own default port, 6432, is the one a pgbouncer package's system service holds:
# the workshop's takes the next, or any free port when that one is taken.
PREFERRED_PORT = 6433
# Set (CI sets it), the tests that need PgBouncer fail without one instead of skipping.
REQUIRE = "WORKSHOP_REQUIRE_PGBOUNCER"
STARTUP_SECONDS = 10.0


class PgBouncerMissing(WorkshopError):
    """This machine has no pgbouncer."""


class PgBouncerFailed(WorkshopError):
    """The pgbouncer found did not start, or does not run."""


@dataclass(frozen=True)
class Status:
    """A running PgBouncer: its process, where it listens, and how it pools."""

    pid: int
    port: int
    pool_mode: str
    upstream: str  # its [databases] line: where it sends the clients


@dataclass(frozen=True)
class PgBouncer:
    """A PgBouncer run by the toolkit, all of whose files are in `folder`."""

    folder: Path

    @classmethod
    def for_root(cls, root: Path, settings: ToolkitSettings | None = None) -> PgBouncer:
        """The learner's: beside the embedded server's data (a test's server keeps its own)."""
        return cls(EmbeddedServer.for_root(root, settings).pgdata.parent / "pgbouncer")

    @property
    def ini(self) -> Path:
        return self.folder / FILES["ini"]

    @property
    def log(self) -> Path:
        return self.folder / FILES["log"]

    @property
    def pidfile(self) -> Path:
        return self.folder / FILES["pidfile"]

    @property
    def userlist(self) -> Path:
        return self.folder / FILES["userlist"]

    def _config(self) -> configparser.ConfigParser | None:
        parser = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
        try:
            parser.read_string(self.ini.read_text())
        except (OSError, configparser.Error):
            return None
        return parser

    def pid(self) -> int | None:
        """The running PgBouncer's process id, None when it does not run."""
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            pid = int(self.pidfile.read_text().strip())
            process = psutil.Process(pid)
            # A pid file outlives a crash, and its number may be another program's since.
            if "pgbouncer" in process.name() and process.status() != psutil.STATUS_ZOMBIE:
                return pid
        return None

    def status(self) -> Status | None:
        """How the running PgBouncer is configured; None when it does not run."""
        pid, config = self.pid(), self._config()
        if pid is None or config is None:
            return None
        return Status(
            pid=pid,
            port=config.getint("pgbouncer", "listen_port"),
            pool_mode=config.get("pgbouncer", "pool_mode"),
            upstream=config.get("databases", "*"),
        )

    def start(
        self,
        upstream: URL,
        users: Mapping[str, str | None],
        *,
        port: int | None = PREFERRED_PORT,
        pool_size: int = POOL_SIZE,
    ) -> Status:
        """Run PgBouncer in front of `upstream` (the server's URL), for `users` (name:
        password; None for a user the server lets in without one), on the port it had, else
        `port` if free, else any (None: any), with `pool_size` server connections per database
        and user. One that runs already so keeps running, and learns the users it does not
        know yet."""
        binary = find_pgbouncer()
        if binary is None:
            raise PgBouncerMissing(f"PgBouncer is not installed: {install_command()}.")
        if (running := self.status()) is not None:
            if config_text(upstream, self.folder, running.port, pool_size, version(binary)) == (
                self.ini.read_text()
            ):
                self.add_users(users)
                return running
            self.stop()
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        old = self._config()
        port = free_port(old.getint("pgbouncer", "listen_port") if old else port)
        config = config_text(upstream, self.folder, port, pool_size, version(binary))
        self.ini.write_text(config)
        known = read_users(self.userlist)
        write_users(self.userlist, {**known, **_passwords({ADMIN: None, **users}, known)})
        owner = run_as(upstream)
        if owner is not None:
            for path in (self.folder, self.ini, self.userlist):
                os.chown(path, *owner)
            for parent in self.folder.parents:
                # Its user must pass through the folders above its own (to pass, not to list),
                # as the embedded server's must to reach its data.
                parent.chmod(parent.stat().st_mode | stat.S_IXOTH)
        self._launch(binary, owner)
        return self._wait_until_up(port)

    def restart(self) -> Status:
        """Stop it and start it again as it was (its port, its users): every client loses
        its connection, as when a PgBouncer is restarted in production."""
        binary, config = find_pgbouncer(), self._config()
        if binary is None or config is None:
            raise PgBouncerFailed(f"There is no PgBouncer to restart in {self.folder}.")
        self.stop()
        folder = self.folder.stat()
        under_root = os.name == "posix" and os.geteuid() == 0 and folder.st_uid != 0
        self._launch(binary, (folder.st_uid, folder.st_gid) if under_root else None)
        return self._wait_until_up(config.getint("pgbouncer", "listen_port"))

    def _launch(self, binary: Path, owner: tuple[int, int] | None) -> None:
        as_user = {"user": owner[0], "group": owner[1], "extra_groups": []} if owner else {}
        with tempfile.TemporaryFile("w+") as said:
            # -d: it runs on as a daemon, writing to its log; it refuses to run as root.
            done = subprocess.run(
                [str(binary), "-d", str(self.ini)],
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=said,
                stderr=said,
                timeout=STARTUP_SECONDS,
                check=False,
                **as_user,  # type: ignore[arg-type]
            )
            said.seek(0)
            if done.returncode != 0:
                raise self._failed(said.read())

    def _wait_until_up(self, port: int) -> Status:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if (running := self.status()) is not None:
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        return running
            time.sleep(0.02)
        raise self._failed("")

    def _failed(self, said: str) -> PgBouncerFailed:
        with contextlib.suppress(OSError):
            said += self.log.read_text(errors="replace")[-2000:]
        last = [line for line in said.splitlines() if line.strip()][-1:] or ["it said nothing"]
        return PgBouncerFailed(
            f"PgBouncer did not start ({last[0].strip()}); its log is {self.log}."
        )

    def stop(self) -> bool:
        """Stop it at once, clients and all; False when it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        binary = find_pgbouncer()
        with contextlib.suppress(psutil.Error, OSError):
            binary = Path(psutil.Process(pid).exe())  # the one running, if it says
        # Its immediate shutdown: SIGTERM until 1.23, which made SIGTERM wait for every client.
        immediate = signal.SIGTERM
        if binary is not None and version(binary) >= (1, 23):
            immediate = signal.SIGQUIT
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            process.send_signal(immediate)
            try:
                process.wait(timeout=STARTUP_SECONDS)
            except psutil.TimeoutExpired:
                process.kill()
                process.wait(timeout=STARTUP_SECONDS)
        self.pidfile.unlink(missing_ok=True)
        return True

    def add_users(self, users: Mapping[str, str | None]) -> None:
        """Let these users in too (a running PgBouncer reads its users again)."""
        known = read_users(self.userlist)
        wanted = {**known, **_passwords(users, known)}
        if wanted != known:
            write_users(self.userlist, wanted)
            self.reload()

    def console(self) -> URL:
        """The admin console's URL (user `pgbouncer`, database `pgbouncer`)."""
        if (running := self.status()) is None:
            raise PgBouncerFailed(f"PgBouncer is not running: `{COMMAND} db start` starts it.")
        return console_url(running.port, ADMIN, read_users(self.userlist)[ADMIN])

    def reload(self) -> None:
        """Make the running PgBouncer read its config and users again (its RELOAD)."""
        if self.status() is not None:
            pgbouncer_console.reload(self.console())

    def show(self, what: str) -> list[dict[str, str]]:
        """The admin console's `SHOW <what>` (POOLS, CLIENTS, STATS...): its rows, as text."""
        return pgbouncer_console.show(self.console(), what)

    def through(self, url: str | URL) -> str:
        """The same user and database, through this PgBouncer: a SQLAlchemy URL (asyncpg)."""
        parsed = make_url(url) if isinstance(url, str) else url
        running = self.status()
        if running is None:
            raise PgBouncerFailed(f"PgBouncer is not running: `{COMMAND} db start` starts it.")
        user = parsed.username or "postgres"
        self.add_users({user: parsed.password or None})
        password = parsed.password or read_users(self.userlist)[user]
        direct = parsed.difference_update_query(["host", "port"])
        via = direct.set(host="127.0.0.1", port=running.port, username=user, password=password)
        return via.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def _passwords(users: Mapping[str, str | None], known: Mapping[str, str]) -> dict[str, str]:
    """Each user's password: its own, else the one PgBouncer has, else one made now (the
    server lets it in without one: PgBouncer still asks its clients for one)."""
    return {
        user: password or known.get(user) or secrets.token_urlsafe(18)
        for user, password in users.items()
    }
