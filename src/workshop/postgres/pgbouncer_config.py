"""The toolkit's PgBouncer: which pgbouncer (and how to install one), its pgbouncer.ini, its
users and their passwords, and the user it runs as under root."""

from __future__ import annotations

import configparser
import contextlib
import functools
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import URL

from ..course import COMMAND, Course
from .databases import run_sync
from .roles import role_password

# The user of PgBouncer's admin console (`SHOW POOLS;` in the database `pgbouncer`): a user of
# PgBouncer's own, not a role of the server.
ADMIN = "pgbouncer"

# Where the packages put it when it is not on PATH (/usr/sbin is on no user's PATH on Debian).
KNOWN_PLACES = (
    "/usr/sbin/pgbouncer",
    "/usr/local/sbin/pgbouncer",
    "/opt/homebrew/bin/pgbouncer",
    "/usr/local/bin/pgbouncer",
    "/opt/homebrew/opt/pgbouncer/bin/pgbouncer",
    "/usr/local/opt/pgbouncer/bin/pgbouncer",
)

CONFIG = """\
;; The workshop's PgBouncer, written by the toolkit each time it starts it (edits are lost):
;; `{command} db start` starts it, `db stop` stops it, `db status` says how it runs.

[databases]
;; Every database, under the name the client asks for, on the workshop's server.
* = {upstream}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
;; No Unix socket: clients come over TCP, from this machine only.
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {userlist}
admin_users = {admin}

;; A server connection goes back to the pool at the end of each transaction, to serve the
;; next client's. What a client leaves on it outside a transaction (a SET, set_config(...,
;; false), a named prepared statement) stays there for whoever comes next: nothing resets it.
pool_mode = transaction
;; Server connections per database and user, the queries that run at once. Every worker's
;; pool (POOL_SIZE + MAX_OVERFLOW) is a client here, and waits for one of these instead of
;; holding a PostgreSQL backend of its own: 10 keeps a 2-core machine busy (the tests' own
;; PgBouncer has 2, so that a test can see which one the next transaction gets).
default_pool_size = {pool_size}
;; Clients at once: the workers' pools together, the tests', a psql or two.
max_client_conn = {max_clients}
;; Seconds a query waits for a server connection before its client gets an error (the app
;; answers 503), rather than a queue that grows for PgBouncer's default two minutes.
query_wait_timeout = {query_wait}
;; PostgreSQL restarted: try again within a second, not PgBouncer's default fifteen.
server_login_retry = 1
server_connect_timeout = 5
{prepared};; Errors only in the log: a test run makes thousands of connections.
log_connections = 0
log_disconnections = 0
logfile = {log}
pidfile = {pidfile}
"""

# PgBouncer 1.21 tracks prepared statements itself when this is above 0 (1.24 and later: 200
# by default). Off, as before 1.21 (Debian 12 ships 1.18): the app must not count on it.
PREPARED = """\
;; PgBouncer's own tracking of prepared statements, off: the app must not count on it
;; (before 1.21 there is none, and from 1.24 it is on by default).
max_prepared_statements = 0
"""

# The names of its files in its folder.
FILES = {
    "ini": "pgbouncer.ini",
    "userlist": "userlist.txt",
    "log": "pgbouncer.log",
    "pidfile": "pgbouncer.pid",
}
# Server connections per database and user (see CONFIG).
POOL_SIZE = 10
MAX_CLIENTS = 200
QUERY_WAIT_SECONDS = 10


def upstream_line(upstream: URL) -> str:
    """The server, as a [databases] entry: a socket's folder, or a host, and a port."""
    host = upstream.query.get("host") or upstream.host or "127.0.0.1"
    return f"host={host} port={upstream.port or 5432}"


def config_text(
    upstream: URL, folder: Path, port: int, pool_size: int, version: tuple[int, ...]
) -> str:
    """pgbouncer.ini for a PgBouncer whose files are in `folder` (see FILES)."""
    return CONFIG.format(
        command=COMMAND,
        upstream=upstream_line(upstream),
        port=port,
        userlist=folder / FILES["userlist"],
        admin=ADMIN,
        pool_size=pool_size,
        max_clients=MAX_CLIENTS,
        query_wait=QUERY_WAIT_SECONDS,
        prepared=PREPARED if version >= (1, 21) else "",
        log=folder / FILES["log"],
        pidfile=folder / FILES["pidfile"],
    )


def read_users(path: Path) -> dict[str, str]:
    """The auth_file's users and passwords: `"name" "password"` a line."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    users = {}
    for line in lines:
        quoted = [q.replace('""', '"') for q in re.findall(r'"((?:[^"]|"")*)"', line)]
        if len(quoted) >= 2:
            users[quoted[0]] = quoted[1]
    return users


def write_users(path: Path, users: dict[str, str]) -> None:
    """Write the auth_file, readable by its owner only: it holds passwords in the clear,
    which PgBouncer needs to log in to the server for its clients."""
    path.parent.mkdir(parents=True, exist_ok=True)
    quoted = {n.replace('"', '""'): p.replace('"', '""') for n, p in users.items()}
    text = "".join(f'"{name}" "{password}"\n' for name, password in sorted(quoted.items()))
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    owner = path.parent.stat()
    if hasattr(os, "chown") and os.geteuid() == 0:
        os.chown(path, owner.st_uid, owner.st_gid)  # PgBouncer's own user, under root


def app_roles(course: Course) -> list[str]:
    """The app roles of the steps that have one (step 05 on: `app_role` in alembic.ini)."""
    roles = []
    for step in course.steps:
        parser = configparser.ConfigParser(interpolation=None)
        with contextlib.suppress(OSError, configparser.Error):
            parser.read(step.dir / "alembic.ini")
        role = parser.get("alembic", "app_role", fallback=None)
        if role and role not in roles:
            roles.append(role)
    return roles


def workshop_users(course: Course, server: URL) -> dict[str, str | None]:
    """Who may go through the workshop's PgBouncer: the server URL's own user, and every
    step's app role with the password the toolkit keeps for it on this server."""
    users: dict[str, str | None] = {server.username or "postgres": server.password or None}
    for role in app_roles(course):
        users[role] = run_sync(role_password(server, role))
    return users


def install_command(platform: str = sys.platform) -> str:
    """How to install PgBouncer on this kind of machine, in one line."""
    if platform == "darwin":
        return "brew install pgbouncer"
    if platform.startswith(("win", "cygwin")):
        return (
            "PgBouncer has no Windows package: `docker compose up -d pgbouncer`, or work in WSL "
            "and `sudo apt-get install pgbouncer` there"
        )
    return "sudo apt-get install pgbouncer"


def install_everywhere() -> str:
    """How to install PgBouncer on each kind of machine the workshop runs on."""
    return (
        f"Debian/Ubuntu: `{install_command('linux')}`; macOS: `{install_command('darwin')}`; "
        f"Windows: {install_command('win32')}."
    )


def find_pgbouncer() -> Path | None:
    """The machine's pgbouncer: on PATH, else where Debian's package or Homebrew puts it."""
    if found := shutil.which("pgbouncer"):
        return Path(found)
    return next((Path(p) for p in KNOWN_PLACES if os.access(p, os.X_OK)), None)


@functools.lru_cache(maxsize=8)
def version(binary: Path) -> tuple[int, ...]:
    """PgBouncer's version, as numbers: (1, 18, 0)."""
    said = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    found = re.search(r"PgBouncer (\d+)\.(\d+)(?:\.(\d+))?", said)
    return tuple(int(n) for n in found.groups("0")) if found else (0,)


def run_as(upstream: URL) -> tuple[int, int] | None:
    """Under root, the user PgBouncer runs as (it refuses root): the embedded server's own,
    who may open its socket; `nobody` for a server it reaches over TCP. None: not root."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    import pwd

    if socket_dir := upstream.query.get("host"):
        owner = Path(str(socket_dir)).stat()
        if owner.st_uid != 0:
            return owner.st_uid, owner.st_gid
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


def free_port(preferred: int | None = None) -> int:
    """`preferred` when nothing listens on it, else a port on 127.0.0.1 that nothing uses."""
    with socket.socket() as probe:
        # As PgBouncer binds: a port it left a moment ago is still its to take.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):
            if preferred:
                probe.bind(("127.0.0.1", preferred))
                return preferred
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
