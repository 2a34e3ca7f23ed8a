"""The `workshop` command: run a step, check it, get hints, manage the database."""

from __future__ import annotations

import functools
import os
import secrets
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import asyncpg
import typer
from rich.console import Console
from rich.text import Text

from . import database, generate, warm
from .course import COMMAND, Course, WorkshopError
from .serving import log_config

if TYPE_CHECKING:
    from .migrations import Migrations
    from .step_databases import StepDatabase

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

LEARN, TOOLS, TEACH = "Learn", "Tools", "Instructors and maintainers"

app = typer.Typer(
    help="Your companion for the FastAPI + PostgreSQL workshop. Without a command: where you are.",
    invoke_without_command=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The PostgreSQL the workshop uses (embedded, or DATABASE_URL).")
dev_app = typer.Typer(help="For maintainers: keep the generated files in sync.")
app.add_typer(db_app, name="db", rich_help_panel=TOOLS)
app.add_typer(dev_app, name="dev", rich_help_panel=TEACH)

StepArg = Annotated[str, typer.Argument(help="The step's number, for example 01.")]
SolutionOpt = Annotated[bool, typer.Option("--solution", help="Use the reference solution.")]


# True when this process is the `workshop` command itself (not a test's CliRunner).
as_the_command = False


def main() -> None:
    global as_the_command
    as_the_command = True
    app()


def command(
    group: typer.Typer, name: str | None = None, panel: str | None = None, **options: Any
) -> Callable[..., Any]:
    """Register a command whose WorkshopError becomes its one sentence and exit code;
    `options` go to Typer's `command()`."""

    def register(func: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(func)
        def friendly(*args: Any, **kwargs: Any) -> None:
            try:
                func(*args, **kwargs)
            except WorkshopError as exc:
                errors.print(str(exc), soft_wrap=True, markup=False)
                raise typer.Exit(exc.exit_code) from None

        group.command(name, rich_help_panel=panel, **options)(friendly)
        return func

    return register


def relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


# -- learning -------------------------------------------------------------------------------


@command(app, panel=LEARN)
def run(
    step: StepArg,
    solution: SolutionOpt = False,
    port: Annotated[int, typer.Option(help="The port to serve on.")] = 8000,
    reload: Annotated[bool, typer.Option(help="Restart when a file changes.")] = True,
) -> None:
    """Serve a step's app on 127.0.0.1, on the step's database (`db status` lists them)."""
    import uvicorn

    from . import step_databases

    course = Course()
    chosen = course.step(step)
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
        from .migrations import Migrations  # Alembic costs a third of a second to import

        migrations = Migrations(chosen, solution)
        migrate(migrations, url_text, target)
        url_text = migrations.app_url(url_text)  # as the app's role, from step 05 on
    step_databases.remember_run(course, server, chosen)
    # The app's Settings read the environment; the reloader's worker process inherits it.
    os.environ["DATABASE_URL"] = url_text
    if not learners_secret(course.root):
        os.environ["SECRET_KEY"] = local_secret(course.root)
    package = "solution" if solution else "app"
    console.print(
        f"Serving [bold]{chosen.name}[/] ({package}/) on PostgreSQL at "
        f"{database.describe(target.url)}\n"
        f"Try it: [bold]http://127.0.0.1:{port}/docs[/]   (Ctrl+C stops it)"
    )
    uvicorn.run(
        f"{package}.main:app",
        app_dir=str(chosen.dir),
        host="127.0.0.1",
        port=port,
        reload=reload,
        reload_dirs=[str(chosen.package_dir(solution=solution))] if reload else None,
        log_config=log_config(),
    )


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

    from .step_databases import unknown_schema_message

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


# -- the database ---------------------------------------------------------------------------


StepOpt = Annotated[
    str | None,
    typer.Option("--step", help="Whose database, for example 04 (default: the step run last)."),
]


def step_target(number: str | None) -> StepDatabase:
    """The database a `db` command works on: the step's asked for, else the step run last."""
    from . import step_databases

    course = Course()
    server = database.resolve_server(course.root)
    chosen = step_databases.chosen_step(course, server, number)
    target = step_databases.step_database(course, server, chosen)
    if (made := step_databases.made_message(target)) is not None:
        # On stderr: `export DATABASE_URL="$(workshop db url)"` reads stdout.
        number = target.step.number if target.step else "NN"
        errors.print(f"{made} `{COMMAND} run {number}` migrates it.", soft_wrap=True, markup=False)
    return target


@command(db_app, "url")
def db_url(step: StepOpt = None) -> None:
    """Print the URL of a step's database (starting the embedded server if needed)."""
    url = step_target(step).url
    print(url.render_as_string(hide_password=False))


@command(db_app, "start")
def db_start() -> None:
    """Start the embedded server (or check the DATABASE_URL one)."""
    url = database.workshop_database_url(Course().root)
    version = database.server_version(url)
    console.print(f"PostgreSQL {version} is running at {database.describe(url)}.")


@command(db_app, "stop")
def db_stop() -> None:
    """Stop the embedded server (and the warm process that runs checks, if there is one)."""
    root = Course().root
    warm.stop(root)
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


@command(db_app, "status")
def db_status() -> None:
    """Say which server the workshop uses, whether it answers (exit code 1 if not), and
    which database each step works on."""
    from . import step_databases

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
    for line in step_databases.status_lines(course, server):
        console.print(line, soft_wrap=True, markup=False)


@command(db_app, "reset")
def db_reset(
    step: Annotated[
        str | None, typer.Option("--step", help="Only this step's database, for example 05.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask first.")] = False,
) -> None:
    """Drop the workshop's databases, or one step's (its data is lost); `run` makes them again."""
    from . import step_databases

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
    db_app,
    "psql",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def db_psql(ctx: typer.Context, step: StepOpt = None) -> None:
    """Open psql on a step's database; psql's own options follow (-c "SELECT 1")."""
    url = step_target(step).url
    # The password travels in the environment, never on a command line others can list.
    env = {**os.environ, "PGPASSWORD": url.password or ""}
    dsn = database.libpq_dsn(url.set(password=None))
    done = subprocess.run([database.psql_command(), dsn, *ctx.args], env=env, check=False)
    raise typer.Exit(done.returncode)


# -- maintainers ----------------------------------------------------------------------------


@command(dev_app, "sync")
def dev_sync(
    check_only: Annotated[bool, typer.Option("--check", help="Only report what is stale.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite files changed by hand, too.")
    ] = False,
) -> None:
    """Regenerate every step's app/ (the starter) and diff from its solution/."""
    course = Course()
    if check_only:
        stale = generate.stale_files(course)
        for path in stale:
            console.print(f"stale: {relative(path, course.root)}")
        if stale:
            raise typer.Exit(1)
        console.print("Every generated file is in sync with the solutions.")
        return
    written, kept = generate.sync(course, force=force)
    for path in written:
        console.print(f"written: {relative(path, course.root)}")
    for path in kept:
        console.print(f"kept (changed by hand; --force overwrites): {relative(path, course.root)}")
    if not written and not kept:
        console.print("Every generated file is in sync with the solutions.")


@command(dev_app, "wrong-answers")
def dev_wrong_answers(
    steps: Annotated[
        list[str] | None,
        typer.Argument(help="Steps or exercises to try: 04, or 04.3 (default: all)."),
    ] = None,
) -> None:
    """Run each exercise's tests on every wrong answer in the catalogue: all must fail (and
    every accepted variant pass)."""
    import tempfile

    from rich.table import Table

    from . import wrong_answers

    course = Course()
    names = steps or []
    chosen = list({course.step(s.split(".")[0]): None for s in names}) or course.steps
    exercises = {s for s in names if "." in s} or None
    url = database.resolve_server(course.root).url.render_as_string(hide_password=False)
    env = {**os.environ, "DATABASE_URL": url}
    with tempfile.TemporaryDirectory() as scratch, console.status("Trying the wrong answers..."):
        verdicts = wrong_answers.run_catalogue(
            course, chosen, Path(scratch), env, exercises=exercises
        )
    table = Table("wrong answer", "mistake", "caught by")
    for column in table.columns:
        column.overflow = "fold"  # names are read whole, never cut with an ellipsis
    for verdict in verdicts:
        caught = Text("\n".join(verdict.caught_by)) or Text("NOT CAUGHT", style="red")
        if verdict.wrong.accepted is not None:
            caught = Text("accepted: ") + Text(verdict.wrong.accepted) + Text(" / ") + caught
        table.add_row(Text(verdict.wrong.label), Text(verdict.wrong.mistake), caught)
    console.print(table)
    problems = [p for step in chosen for p in wrong_answers.problems(step, verdicts)]
    if exercises:  # a part of a catalogue proves nothing of how many each exercise has
        problems = [p for p in problems if "fewer than" not in p]
    for problem in problems:
        console.print(Text("problem ", style="red") + Text(problem))
    if problems:
        raise typer.Exit(1)
    console.print(f"Every one of {len(verdicts)} wrong answers fails its exercise's tests.")


@command(dev_app, "timings")
def dev_timings(
    steps: Annotated[list[str] | None, typer.Argument(help="Steps (default: all).")] = None,
    runs: Annotated[int, typer.Option(min=1, help="Runs of each, after the first.")] = 3,
) -> None:
    """How long a learner waits for a verdict: check (cold, warm), pytest, and watch after a
    save, per step, on your code as it is."""
    from rich.table import Table

    from .timings import measure

    course = Course()
    chosen = [course.step(number) for number in steps] if steps else course.steps
    table = Table(title="Seconds to a verdict (warm: median)")
    for column in ("step", "check, cold", "check, warm", "pytest, warm", "watch, after a save"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for step in chosen:
        with console.status(f"Timing step {step.name}..."):
            timing = measure(course, step, runs)
        figures = (timing.check_cold, timing.check_warm, timing.pytest_warm, timing.after_save)
        table.add_row(step.name, *(f"{seconds:.2f}" for seconds in figures))
    console.print(table)


@command(dev_app, "transcript")
def dev_transcript() -> None:
    """Run the companion on a fresh copy of the course and write the docs' transcript."""
    from . import transcript

    course = Course()
    path = course.root / transcript.TRANSCRIPT
    path.write_text(transcript.make(course), encoding="utf-8")
    console.print(f"written: {relative(path, course.root)}")


@command(dev_app, "reference")
def dev_reference() -> None:
    """Write the docs' reference pages: every setting (from the Settings classes) and every
    command (from this CLI's own help)."""
    from . import reference

    course = Course()
    for path in reference.write(course):
        console.print(f"written: {relative(path, course.root)}")


@command(app, "bench", panel=TEACH)
def bench_command(
    quick: Annotated[
        bool, typer.Option("--quick", help="One short round, in under a minute: does it run?")
    ] = False,
    rounds: Annotated[
        int | None, typer.Option(min=1, help="Rounds of every variant (default 2; quick: 1).")
    ] = None,
    duration: Annotated[
        int | None, typer.Option(min=1, help="Seconds of load per request (default 8; quick: 1).")
    ] = None,
    connections: Annotated[int, typer.Option(min=1, help="Connections wrk keeps open.")] = 32,
    variants: Annotated[
        str,
        typer.Option(
            help="Which, comma-separated: raw, fastapi, core, sync, 04, 05 (default: all)."
        ),
    ] = "",
    requests: Annotated[
        str,
        typer.Option(help="Which, comma-separated: get, list, create, search (default: all)."),
    ] = "",
    output: Annotated[
        Path | None,
        typer.Option(help="Where results.md and results.png go (docs/performance for the docs)."),
    ] = None,
) -> None:
    """Load the step 04 and 05 references beside four baselines with wrk; write build/bench/."""
    from . import bench

    course = Course()
    options = bench.Options.make(
        quick=quick,
        rounds=rounds,
        duration=duration,
        connections=connections,
        variants=[key.strip() for key in variants.split(",") if key.strip()],
        requests=[kind.strip() for kind in requests.split(",") if kind.strip()],
    )
    results = bench.run(
        course, options, output=output, say=lambda line: console.print(line, markup=False)
    )
    console.print(bench.summary(results))
    for path in results.files:
        console.print(f"written: {relative(path, course.root)}", markup=False)


# The learner's companion commands (status, check, hint, watch, reset, diff, ...) register
# themselves on `app`; imported last, as they use what this module defines.
from . import companion  # noqa: E402, F401
