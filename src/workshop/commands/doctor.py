"""`workshop doctor`: what this machine has, and what the workshop needs of it."""

from __future__ import annotations

import shutil
import socket
import sys
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from rich.text import Text

from .. import postgres as database
from ..course import Course, WorkshopError
from .common import (
    TOOLS,
    command,
    console,
)

if TYPE_CHECKING:
    pass

app = typer.Typer()


@command(app, panel=TOOLS)
def doctor() -> None:
    """Check this machine: Python, packages, the database, port 8000, docs, notebooks, PgBouncer.

    The database: whether it answers, its version, whether a database can be created. Each
    problem comes with its fix; exit code 1 if anything is broken.
    """
    course = Course()
    problems = 0
    table = Table(title="workshop doctor")
    for column in ("check", "state", "fix"):
        table.add_column(column)

    def report(name: str, ok: bool, state: str, fix: str = "") -> None:
        nonlocal problems
        problems += not ok
        table.add_row(name, f"[green]{state}[/]" if ok else f"[red]{state}[/]", "" if ok else fix)

    version = ".".join(map(str, sys.version_info[:3]))
    report("Python", sys.version_info >= (3, 11), version, "Install Python 3.11 or newer.")
    for module in ("fastapi", "sqlalchemy", "asyncpg", "alembic", "jwt", "pwdlib"):
        try:
            __import__(module)
            report(f"package {module}", True, "installed")
        except ImportError:
            report(f"package {module}", False, "missing", "Run `uv sync` in the repository.")
    try:
        server = database.resolve_server(course.root)
        report("database", True, f"{server.source}: {database.describe(server.url)}")
        report("PostgreSQL", True, database.server_version(server.url))
        name = database.test_database_name("doctor")
        database.run_sync(database.create_database(server.url, name))
        database.run_sync(database.drop_database(server.url, name))
        report("create a database", True, "yes")
    except WorkshopError as exc:
        report("database", False, "unavailable", str(exc))
    except Exception as exc:  # a server that answers but refuses CREATE DATABASE
        report("create a database", False, type(exc).__name__, "Use a user that may CREATEDB.")
    with socket.socket() as probe:
        taken = probe.connect_ex(("127.0.0.1", 8000)) == 0
    report(
        "port 8000",
        not taken,
        "taken" if taken else "free",
        "Stop what serves it, or `run NN --port 8001`.",
    )
    for name, module in (
        ("docs (mkdocs)", "mkdocs"),
        ("notebooks (nbclient)", "nbclient"),
        ("notebooks (jupytext)", "jupytext"),
    ):
        try:
            __import__(module)
            report(name, True, "installed")
        except ImportError:
            report(name, False, "missing", "Run `uv sync` (it installs the dev group).")
    # Only `workshop bench` needs wrk: without it the course still works, so no exit code 1.
    wrk = shutil.which("wrk") is not None
    table.add_row(
        "load generator (wrk)",
        "[green]installed[/]" if wrk else "[yellow]missing[/]",
        "" if wrk else "For `bench` only: `sudo apt-get install wrk` or `brew install wrk`.",
    )
    # Only step 06 needs PgBouncer: without it, its checks say so and the rest works.
    from ..postgres.pgbouncer_config import find_pgbouncer, install_everywhere, version

    if (pgbouncer := find_pgbouncer()) is not None:
        installed = ".".join(map(str, version(pgbouncer)))
        table.add_row("PgBouncer (step 06)", f"[green]{installed}[/]", "")
    else:
        how = Text(f"For step 06: {install_everywhere()}")
        table.add_row("PgBouncer (step 06)", "[yellow]missing[/]", how)
    console.print(table)
    if problems:
        raise typer.Exit(1)
