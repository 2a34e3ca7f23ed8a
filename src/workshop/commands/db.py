"""`workshop db`: the PostgreSQL the workshop uses (embedded, or DATABASE_URL)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from sqlalchemy.engine import URL, make_url

from .. import postgres as database
from .. import warm
from ..course import COMMAND, Course, WorkshopError
from .common import (
    command,
    console,
    errors,
    relative,
)

if TYPE_CHECKING:
    from ..postgres.step_databases import StepDatabase

app = typer.Typer(help="The PostgreSQL the workshop uses (embedded, or DATABASE_URL).")

StepOpt = Annotated[
    str | None,
    typer.Option("--step", help="Whose database, for example 04 (default: the step run last)."),
]


PgBouncerOpt = Annotated[
    bool,
    typer.Option("--pgbouncer", help="Through the workshop's PgBouncer (started if need be)."),
]


def via_pgbouncer(url: URL) -> URL:
    """The same user and database, through the workshop's PgBouncer, started if need be."""
    from ..postgres.pgbouncer import PgBouncer
    from ..postgres.pgbouncer_config import workshop_users

    course = Course()
    server = database.resolve_server(course.root)
    bouncer = PgBouncer.for_root(course.root)
    bouncer.start(server.url, workshop_users(course, server.url))
    return make_url(bouncer.through(url))


def step_target(number: str | None) -> StepDatabase:
    """The database a `db` command works on: the step's asked for, else the step run last."""
    from ..postgres import step_databases

    course = Course()
    server = database.resolve_server(course.root)
    chosen = step_databases.chosen_step(course, server, number)
    target = step_databases.step_database(course, server, chosen)
    if (made := step_databases.made_message(target)) is not None:
        # On stderr: `export DATABASE_URL="$(workshop db url)"` reads stdout.
        number = target.step.number if target.step else "NN"
        errors.print(f"{made} `{COMMAND} run {number}` migrates it.", soft_wrap=True, markup=False)
    return target


@command(app, "url")
def db_url(step: StepOpt = None, pgbouncer: PgBouncerOpt = False) -> None:
    """Print the URL of a step's database (starting the embedded server if needed)."""
    url = step_target(step).url
    print((via_pgbouncer(url) if pgbouncer else url).render_as_string(hide_password=False))


@command(app, "start")
def db_start() -> None:
    """Start the embedded server (or check the DATABASE_URL one), and PgBouncer in front of
    it when this machine has one (step 06 serves through it)."""
    course = Course()
    url = database.workshop_database_url(course.root)
    version = database.server_version(url)
    console.print(f"PostgreSQL {version} is running at {database.describe(url)}.")
    console.print(start_pgbouncer(course, database.resolve_server(course.root)), markup=False)


def start_pgbouncer(course: Course, server: database.Server) -> str:
    """Start the workshop's PgBouncer in front of the server; what to say about it."""
    from ..postgres.pgbouncer import PgBouncer
    from ..postgres.pgbouncer_config import find_pgbouncer, install_command, workshop_users

    if (binary := find_pgbouncer()) is None:
        return f"PgBouncer is not installed (step 06 serves through it): {install_command()}."
    status = PgBouncer.for_root(course.root).start(server.url, workshop_users(course, server.url))
    return f"{pgbouncer_line(binary, status.port, status.pool_mode)}, in front of it."


def pgbouncer_line(binary: Path, port: int, pool_mode: str) -> str:
    from ..postgres.pgbouncer_config import version

    number = ".".join(map(str, version(binary)))
    return f"PgBouncer {number} is running on 127.0.0.1:{port}, pool mode {pool_mode}"


def pgbouncer_status(root: Path) -> str:
    """`db status`'s line on PgBouncer."""
    from ..postgres.pgbouncer import PgBouncer
    from ..postgres.pgbouncer_config import find_pgbouncer, install_command

    if (binary := find_pgbouncer()) is None:
        return f"PgBouncer is not installed (step 06 serves through it): {install_command()}."
    bouncer = PgBouncer.for_root(root)
    if (status := bouncer.status()) is None:
        return f"PgBouncer is stopped: `{COMMAND} db start` starts it."
    return (
        f"{pgbouncer_line(binary, status.port, status.pool_mode)} "
        f"(config: {relative(bouncer.ini, root)})."
    )


@command(app, "stop")
def db_stop() -> None:
    """Stop the embedded server, and the workshop's PgBouncer and the warm process that runs
    checks, if they run."""
    from ..postgres.pgbouncer import PgBouncer

    root = Course().root
    warm.stop(root)
    if PgBouncer.for_root(root).stop():
        console.print("PgBouncer is stopped.")
    if database.ToolkitSettings.load(root).database_url:
        console.print("DATABASE_URL points at a server of your own: the workshop leaves it alone.")
        return
    embedded = database.EmbeddedServer.for_root(root)
    if not embedded.is_running():
        console.print("The embedded PostgreSQL was not running.")
        return
    if not embedded.stop():
        raise WorkshopError(f"The embedded PostgreSQL did not stop: see {embedded.pgdata / 'log'}.")
    console.print("The embedded PostgreSQL is stopped.")


@command(app, "status")
def db_status() -> None:
    """Say which server the workshop uses, whether it answers (exit code 1 if not), where
    PgBouncer listens and how it pools, and which database each step works on."""
    from ..postgres import step_databases

    course = Course()
    root = course.root
    settings = database.ToolkitSettings.load(root)
    if settings.database_url:
        url = database.asyncpg_url(settings.database_url)
        version = database.server_version(url)
        console.print(f"DATABASE_URL: PostgreSQL {version} at {database.describe(url)}.")
        server = database.Server(url=url, source="DATABASE_URL")
    else:
        embedded = database.EmbeddedServer.for_root(root, settings)
        if not embedded.is_running():
            console.print(
                f"The embedded PostgreSQL is stopped (data: {relative(embedded.pgdata, root)})."
            )
            console.print(f"Start it with `{COMMAND} db start`.")
            raise typer.Exit(1)
        url = embedded.start()
        version = database.server_version(url)
        console.print(
            f"Embedded PostgreSQL {version} is running (data: {relative(embedded.pgdata, root)})."
        )
        server = database.Server(url=url, source="embedded")
    console.print(pgbouncer_status(root), soft_wrap=True, markup=False)
    for line in step_databases.status_lines(course, server):
        console.print(line, soft_wrap=True, markup=False)


@command(app, "reset")
def db_reset(
    step: Annotated[
        str | None, typer.Option("--step", help="Only this step's database, for example 05.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask first.")] = False,
) -> None:
    """Drop the workshop's databases, or one step's (its data is lost); `run` makes them again."""
    from ..postgres import step_databases

    course = Course()
    server = database.resolve_server(course.root)
    if not step_databases.keeps_step_databases(server):
        raise WorkshopError(
            "DATABASE_URL names a database of your own: the workshop leaves its data alone."
        )
    chosen = course.step(step) if step else None
    names = (
        [step_databases.database_name(chosen)]
        if chosen
        else step_databases.step_database_names(course)
    )
    found = database.run_sync(step_databases.existing_databases(server.url, names))
    present = [name for name in names if name in found]
    if not present:
        console.print(f"Nothing to drop: there is no {' nor '.join(names)}.")
        return
    if not yes:
        it = "it" if len(present) == 1 else "them"
        typer.confirm(f"Drop {', '.join(present)}, and every table and row in {it}?", abort=True)
    for name in present:
        database.run_sync(database.drop_database(server.url, name))
    if chosen is not None:
        console.print(
            f"Dropped {present[0]}: `{COMMAND} run {chosen.number}` makes it again, "
            "from the step before's database."
        )
    else:
        console.print(
            f"Dropped {', '.join(present)}: `{COMMAND} run NN` makes a step's database again."
        )


@command(
    app,
    "psql",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def db_psql(ctx: typer.Context, step: StepOpt = None, pgbouncer: PgBouncerOpt = False) -> None:
    """Open psql on a step's database; psql's own options follow (-c "SELECT 1")."""
    url = step_target(step).url
    psql(via_pgbouncer(url) if pgbouncer else url, ctx.args)


@command(
    app,
    "pgbouncer",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def db_pgbouncer(ctx: typer.Context) -> None:
    """Open psql on PgBouncer's admin console (SHOW POOLS;); psql's own options follow."""
    from ..postgres.pgbouncer import PgBouncer

    psql(PgBouncer.for_root(Course().root).console(), ctx.args)


def psql(url: URL, arguments: list[str]) -> None:
    # The password travels in the environment, never on a command line others can list.
    env = {**os.environ, "PGPASSWORD": url.password or ""}
    dsn = database.libpq_dsn(url.set(password=None))
    done = subprocess.run([database.server.psql_command(), dsn, *arguments], env=env, check=False)
    raise typer.Exit(done.returncode)
