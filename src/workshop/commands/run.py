"""`workshop run`: serve a step's app on its own database, migrated, with reload."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import asyncpg
import typer

from .. import postgres as database
from ..course import COMMAND, Course, WorkshopError
from .common import (
    LEARN,
    SolutionOpt,
    StepArg,
    command,
    console,
)
from .serving import log_config

if TYPE_CHECKING:
    from ..postgres.migrations import Migrations
    from ..postgres.step_databases import StepDatabase

app = typer.Typer()


@command(app, panel=LEARN)
def run(
    step: StepArg,
    solution: SolutionOpt = False,
    port: Annotated[int, typer.Option(help="The port to serve on.")] = 8000,
    reload: Annotated[
        bool | None,
        typer.Option(
            "--reload/--no-reload",
            help="Restart when a file changes (default: with one worker).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes (default: the step's own).", show_default=False),
    ] = None,
    pgbouncer: Annotated[
        bool | None,
        typer.Option(
            "--pgbouncer/--no-pgbouncer",
            help="Through the workshop's PgBouncer (default: the step's own).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve a step's app on 127.0.0.1, on the step's database (`db status` lists them).

    From step 06: 2 worker processes, through PgBouncer when this machine has it.
    A reload restarts one process: an explicit --reload serves one worker.
    """
    import uvicorn

    from ..postgres import step_databases

    course = Course()
    chosen = course.step(step)
    workers, reload = workers_and_reload(chosen.serving.workers, workers, reload)
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise WorkshopError(
                f"Port {port} is taken: stop what serves it, or use `{COMMAND} run {step} "
                f"--port {port + 1}`."
            )
    server = database.resolve_server(course.root)
    target = step_databases.step_database(course, server, chosen)
    if (made := step_databases.made_message(target)) is not None:
        console.print(made)
    url_text = target.url.render_as_string(hide_password=False)
    if chosen.has_migrations:
        from ..postgres.migrations import Migrations  # Alembic costs a third of a second to import

        migrations = Migrations(chosen, solution)
        migrate(migrations, url_text, target)
        url_text = migrations.app_url(url_text)  # as the app's role, from step 05 on
    step_databases.remember_run(course, server, chosen)
    via = ""
    if chosen.serving.pgbouncer if pgbouncer is None else pgbouncer:
        url_text, via = through_pgbouncer(course, server, url_text, asked=pgbouncer is not None)
    # The app's Settings read the environment; the reloader's or the workers' processes
    # inherit it. WEB_CONCURRENCY: how many workers share the connection budget (step 06).
    os.environ["DATABASE_URL"] = url_text
    os.environ["WEB_CONCURRENCY"] = str(workers)
    if not learners_secret(course.root):
        os.environ["SECRET_KEY"] = local_secret(course.root)
    package = "solution" if solution else "app"
    processes = f"{workers} workers" if workers > 1 else "1 worker"
    console.print(
        f"Serving [bold]{chosen.name}[/] ({package}/) with {processes}{via} on PostgreSQL "
        f"at {database.describe(target.url)}\n"
        f"Try it: [bold]http://127.0.0.1:{port}/docs[/]   (Ctrl+C stops it)",
        soft_wrap=True,
    )
    uvicorn.run(
        f"{package}.main:app",
        app_dir=str(chosen.dir),
        host="127.0.0.1",
        port=port,
        reload=reload,
        reload_dirs=[str(chosen.package_dir(solution=solution))] if reload else None,
        workers=workers,
        log_config=log_config(),
    )


def workers_and_reload(default: int, workers: int | None, reload: bool | None) -> tuple[int, bool]:
    """How many workers, and whether to reload: uvicorn's reloader restarts one process, so
    the two do not mix. Reload is on unless there are several workers; an explicit --reload
    wins over the step's default workers, and refuses an explicit --workers above 1."""
    if workers is not None and workers < 1:
        raise WorkshopError(f"--workers {workers}: one worker process at least.")
    if reload and workers is not None and workers > 1:
        raise WorkshopError(
            f"--reload restarts one process, and --workers {workers} asks for more: "
            "choose one (--no-reload serves the workers)."
        )
    if reload:
        if default > 1 and workers is None:
            console.print(f"--reload serves 1 worker, not the step's {default}.")
        return 1, True
    count = workers or default
    return count, reload is None and count == 1


def through_pgbouncer(
    course: Course, server: database.Server, url: str, *, asked: bool
) -> tuple[str, str]:
    """The app's URL through the workshop's PgBouncer (started if need be), and what to say
    of it; without pgbouncer on the machine, the URL as it was, and a line that says so."""
    from ..postgres.pgbouncer import PgBouncer
    from ..postgres.pgbouncer_config import find_pgbouncer, install_command, workshop_users

    if find_pgbouncer() is None:
        if asked:
            raise WorkshopError(f"PgBouncer is not installed: {install_command()}.")
        console.print(
            "PgBouncer is not installed, so the app connects straight to PostgreSQL "
            f"(the step serves through it once you have it: {install_command()}).",
            soft_wrap=True,
            markup=False,
        )
        return url, ""
    bouncer = PgBouncer.for_root(course.root)
    status = bouncer.start(server.url, workshop_users(course, server.url))
    return bouncer.through(url), f" through PgBouncer (127.0.0.1:{status.port}, {status.pool_mode})"


def learners_secret(root: Path) -> bool:
    """Whether the learner set a SECRET_KEY of their own: in the environment or in `.env`,
    which the app's Settings read too (a key set here would hide the one in `.env`)."""
    from dotenv import dotenv_values

    return bool(os.environ.get("SECRET_KEY") or dotenv_values(root / ".env").get("SECRET_KEY"))


def local_secret(root: Path) -> str:
    """A SECRET_KEY for this machine's workshop, made once and kept in .workshop/."""
    path = root / ".workshop" / "secret_key"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def migrate(migrations: Migrations, url: str, target: StepDatabase) -> None:
    """Bring the step's database to the step's latest revision."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from ..postgres.step_databases import unknown_schema_message

    number = migrations.step.number
    try:
        changed = database.run_sync(migrations.upgrade(url))
    except CommandError as exc:  # a revision this step does not know: a later step's
        raise WorkshopError(unknown_schema_message(target, migrations.step, exc)) from exc
    except (SQLAlchemyError, asyncpg.PostgresError) as exc:
        raise WorkshopError(
            f"Migrating step {number}'s database failed "
            f"({type(exc).__name__}): DATABASE_URL's user must own the database and may "
            "create roles (`workshop doctor` checks the server)."
        ) from exc
    where = target.name if target.own else "the database"
    if changed:  # going back to a step finds its database as it was left: nothing to say
        console.print(f"Migrated {where} to step {number}'s latest revision.")
