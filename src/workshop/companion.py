"""The learner's companion: where you are, what to do next, and a way back when stuck."""

from __future__ import annotations

import contextlib
import difflib
import gc
import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from . import cli, database, progress, starter, verify, warm, wrong_answers
from .checks import StepReport, run_checks
from .cli import COMMAND, LEARN, TEACH, TOOLS, app, command, console, errors, relative
from .course import Course, Exercise, Step, UnknownName, WorkshopError
from .generate import DIFF_NAME
from .starter import END, SNIPPET, START, package_files, starter_files

OptionalStep = Annotated[
    str | None, typer.Argument(help="The step's number, for example 01 (default: yours).")
]
ExerciseArg = Annotated[str, typer.Argument(help="The exercise, for example 01.2.")]


def marker_of(step: Step, exercise: Exercise, *, solution: bool = False) -> starter.Marker | None:
    found = starter.markers(step, solution=solution)
    return next((m for m in found if m.exercise_id == exercise.id), None)


def next_commands(step: Step, exercise: Exercise | None) -> list[str]:
    if exercise is None:
        return [
            f"{COMMAND} run {step.number}",
            f"{COMMAND} status",
            f"{COMMAND} diff {step.number}",
        ]
    return [
        f"{COMMAND} check {step.number}",
        f"{COMMAND} hint {exercise.id}",
        f"{COMMAND} watch {step.number}",
    ]


# -- where you are --------------------------------------------------------------------------


@app.callback()
def where_you_are(ctx: typer.Context) -> None:
    """Where you are: your step, how many of its exercises are done, the next exercise with
    the file and line of its marker, and the commands you most likely want next."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        course = Course()
        step, state, exercise = progress.current(course)
    except WorkshopError as exc:
        console.print(str(exc), soft_wrap=True, markup=False)
        raise typer.Exit(exc.exit_code) from None
    done = sum(state.done.values())
    console.print(
        f"You are on step [bold]{step.name}[/]: {done} of {len(state.done)} exercises done."
    )
    if exercise is not None:
        console.print(f"Next: exercise [bold]{exercise.id}[/], {escape(exercise.title)}.")
        if (marker := marker_of(step, exercise)) is not None:
            place = f"{relative(marker.path, course.root)}:{marker.line}"
            console.print(f"  {place}  {marker.instruction}", soft_wrap=True, markup=False)
    elif state.complete:
        console.print("Every step is complete. Well done.")
    console.print("Then:")
    for line in next_commands(step, exercise):
        console.print(f"  {line}")


@command(app, panel=LEARN)
def status(
    as_json: Annotated[bool, typer.Option("--json", help="The same, for scripts.")] = False,
) -> None:
    """Every step and exercise, done or not (from the real checks, cached).

    The answers come from one pytest run per step and are kept in .workshop/, so a second call
    is instant until you change a file. --json gives the same for scripts: an instructor can
    collect a room's progress.
    """
    course = Course()
    with console.status("Checking every step (the first time takes a while)..."):
        states = progress.course_progress(course)
    if as_json:
        print(json.dumps([asdict(s) | {"complete": s.complete} for s in states], indent=1))
        return
    table = Table(title="Your progress")
    for column in ("step", "exercise", "title", "state"):
        table.add_column(column)
    for step, state in zip(course.steps, states, strict=True):
        for exercise in step.exercises:
            mark = "[green]done[/]" if state.done[exercise.id] else "[red]to do[/]"
            table.add_row(step.name, exercise.id, Text(exercise.title), mark)
    console.print(table)


@command(app, panel=LEARN)
def check(
    step: OptionalStep = None,
    solution: Annotated[bool, typer.Option("--solution", help="Check the reference.")] = False,
) -> None:
    """Run a step's checks on your code and say what to do next (exit 0: step complete).

    Without a step, the one you are on. It says which exercises are done and, for the first
    one that is not, its instruction, where its marker is, what its first failing check says,
    its first hint and its docs section.
    """
    course = Course()
    chosen = course.step(step) if step else progress.current(course)[0]
    # As the `workshop` command, nothing else runs pytest in this process: run it here, and
    # spare a second interpreter's start-up. Under a test's CliRunner, in a new process.
    in_process = cli.as_the_command
    code = check_and_say(course, chosen, solution=solution, in_process=in_process)
    if in_process:
        # The next check goes to a warm process that has the libraries loaded (see warm.py).
        warm.start(course.root)
    if code:
        raise typer.Exit(code)


def check_and_say(
    course: Course, chosen: Step, *, solution: bool = False, in_process: bool = False
) -> int:
    """`check`'s work: the step's checks, the table, and what to do next. Its exit code."""
    with console.status(f"Checking step {chosen.name}..."):
        report = run_checks(chosen, solution=solution, in_process=in_process)
    if not solution:
        progress.remember(course, chosen, report=report)
    table = Table(title=f"Step {chosen.name}", caption=counted(report), caption_justify="left")
    for column in ("exercise", "title", "checks"):
        table.add_column(column)
    for exercise in chosen.exercises:
        state = report.state(exercise)
        colour = "green" if state == "done" else "yellow" if report.done(exercise) else "red"
        table.add_row(exercise.id, Text(exercise.title), Text(state, style=colour))
    console.print(table)
    for failure in report.other_failures:
        console.print(
            f"[red]failing[/] {escape(failure.nodeid)} (not an exercise: it worked before)"
        )
    if report.other_failures:
        # Something beyond the exercises broke (a syntax error, say): pytest's own words.
        tail = "\n".join(report.output.strip().splitlines()[-15:])
        console.print(tail, soft_wrap=True, markup=False)
    if report.complete:
        console.print(f"[green]Step {chosen.number} is complete.[/]")
        return 0
    if report.unfinished:
        exercise = report.unfinished[0]
        where = marker_of(chosen, exercise, solution=solution)
        console.print(f"\nNext: [bold]exercise {exercise.id}[/]: {escape(exercise.title)}")
        if where is not None:
            place = f"{relative(where.path, course.root)}:{where.line}"
            console.print(f"  {place}  {where.instruction}", soft_wrap=True, markup=False)
        test_name = None
        if (failure := report.first_failure(exercise)) is not None:
            # What the first failing check says: the real cause, before any hint.
            name = failure.nodeid.split("/tests/", 1)[-1]
            test_name = name.rsplit("::", 1)[-1]
            console.print(f"  Failing: tests/{name}", soft_wrap=True, markup=False)
            if failure.reason:
                console.print(f"    {failure.reason}", soft_wrap=True, markup=False)
        hint = exercise.hint_fitting(test_name)
        console.print(f"  Hint: {hint}", soft_wrap=True, markup=False)
        console.print(f"  Docs: {relative(chosen.docs_page, course.root)}#{exercise.anchor}")
        console.print(f"  More hints: {COMMAND} hint {exercise.id}", soft_wrap=True)
    return 1


def counted(report: StepReport) -> str:
    """Why the rows do not add up to pytest's count: it says so under the table."""
    tests = report.tests
    failed = sum(t.outcome == "failed" for t in tests)
    shared = sum(len(t.exercises) > 1 for t in tests)
    others = sum(not t.exercises for t in tests)
    return (
        f"{len(tests)} checks, as pytest counts them ({failed} failing): {others} check what "
        f"the step had before its exercises, and {shared} check two exercises or more and "
        "count in each of their rows."
    )


def hints_path(course: Course) -> Path:
    return course.root / ".workshop" / "hints.json"


@command(app, panel=LEARN)
def hint(
    exercise_id: ExerciseArg,
    show_all: Annotated[bool, typer.Option("--all", help="Every hint at once.")] = False,
) -> None:
    """An exercise's next hint (each call shows one more), or all of them."""
    course = Course()
    chosen, exercise = course.exercise(exercise_id)
    path = hints_path(course)
    try:
        seen: dict[str, int] = json.loads(path.read_text())
    except (OSError, ValueError):
        seen = {}
    count = (
        len(exercise.hints) if show_all else min(seen.get(exercise.id, 0) + 1, len(exercise.hints))
    )
    seen[exercise.id] = max(count, seen.get(exercise.id, 0))
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(seen))
    console.print(f"[bold]Exercise {exercise.id}[/]: {escape(exercise.title)}")
    for number, text in enumerate(exercise.hints[:count], start=1):
        # Verbatim: Rich would take `Mapped[str]`'s brackets for a style and drop them.
        console.print(f"  {number}. {text}", soft_wrap=True, markup=False)
    if count < len(exercise.hints):
        console.print(
            f"  ({len(exercise.hints) - count} more: `{COMMAND} hint {exercise.id}` again)"
        )
    else:
        console.print(f"  (no more hints: `{COMMAND} solution {exercise.id}` shows the answer)")
    console.print(f"  Docs: {relative(chosen.docs_page, course.root)}#{exercise.anchor}")


# What every check imports before its first test: `watch` imports them once, then forks a
# child per check, which starts with them loaded. The step's own code is never among them:
# each child imports the files as they are now.
WARM_MODULES = (
    "pytest",
    "pytest_asyncio",
    "fastapi",
    "pydantic_settings",
    "sqlalchemy.ext.asyncio",
    "sqlalchemy.dialects.postgresql.asyncpg",
    "asyncpg",
    "httpx",
    "asgi_lifespan",
    "alembic.command",
    "jwt",
    "pwdlib",
    "workshop.pytest_plugin",
    "workshop.migrations",
)


def check_in_a_child(course: Course, chosen: Step) -> None:
    """One check in a forked child of this warm process; where there is no fork (Windows),
    in a new process, as `workshop check` does."""
    if not hasattr(os, "fork"):
        arguments = [sys.executable, "-m", "workshop", "check", chosen.number]
        subprocess.run(arguments, cwd=course.root, check=False)
        return
    sys.stdout.flush()
    if (pid := os.fork()) == 0:
        code = 1
        try:
            code = check_and_say(course, chosen, in_process=True)
        except WorkshopError as exc:
            errors.print(str(exc), soft_wrap=True, markup=False)
        except BaseException:
            traceback.print_exc()  # os._exit below would end the child before Python says it
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)  # the child ends here: none of the parent's clean-up runs twice
    os.waitpid(pid, 0)


@command(app, panel=LEARN)
def watch(step: OptionalStep = None) -> None:
    """Check the step again each time one of its files is saved (Ctrl+C stops).

    It keeps the libraries loaded between checks, so a verdict after a save comes faster than
    a check of its own.
    """
    from watchfiles import watch as changes

    course = Course()
    chosen = course.step(step) if step else progress.current(course)[0]
    with console.status("Getting ready..."):
        for name in WARM_MODULES:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        gc.freeze()  # as the warm process does (see warm.py): the children's collections skip it
    while True:
        console.clear()
        check_in_a_child(course, chosen)
        console.print(f"\nWatching {relative(chosen.app_dir, course.root)} (Ctrl+C stops)...")
        for _ in changes(chosen.app_dir, chosen.dir / "tests", debounce=200, step=50):
            break


def show_code(code: str, lexer: str) -> None:
    """Code in colour on a terminal, wrapped, never cut; as plain text into a pipe."""
    if console.is_terminal:
        console.print(Syntax(code, lexer, background_color="default", word_wrap=True))
    else:
        print(code, end="")


# -- a way back -----------------------------------------------------------------------------


def backup(course: Course, files: list[Path]) -> Path:
    """Copy the learner's files to .workshop/backups/<time>/, keeping their paths."""
    folder = course.root / ".workshop" / "backups" / datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    for path in files:
        target = folder / path.relative_to(course.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return folder


def block(lines: list[str], exercise_id: str) -> tuple[int, int] | None:
    """The lines from an exercise's marker to its END marker (inclusive), if both are there."""
    for start, line in enumerate(lines):
        found = START.match(line)
        if found and found["id"] == exercise_id:
            for end in range(start + 1, len(lines)):
                if END.match(lines[end]):
                    return start, end
            return None
    return None


@command(app, panel=LEARN)
def reset(
    step: Annotated[str, typer.Argument(help="The step, for example 01.")],
    exercise_id: Annotated[
        str | None, typer.Option("--exercise", help="Only this exercise's block, e.g. 01.2.")
    ] = None,
) -> None:
    """Put back the starter of a step (or of one exercise), after saving your files.

    With --exercise, only that exercise's block, between its EXERCISE and END EXERCISE
    markers. Your files are saved first in .workshop/backups/, and the command says where.
    """
    course = Course()
    chosen = course.step(step)
    starters = starter_files(chosen)
    if exercise_id is None:
        mine = [p for p in package_files(chosen.app_dir)]
        saved = backup(course, mine)
        for rel, text in starters.items():
            (chosen.app_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (chosen.app_dir / rel).write_text(text, encoding="utf-8")
        kept = relative(saved, course.root)
        console.print(f"Step {chosen.number} is back to its starter. Your files: {kept}")
        return
    if exercise_id.split(".")[0].zfill(2) != chosen.number:
        raise UnknownName(
            f"Exercise {exercise_id} is not step {chosen.number}'s: "
            f"`{COMMAND} reset {exercise_id.split('.')[0].zfill(2)} --exercise {exercise_id}`."
        )
    exercise = chosen.exercise(exercise_id)
    changed: list[tuple[Path, str]] = []
    for rel, text in starters.items():
        fresh = text.splitlines(keepends=True)
        if (span := block(fresh, exercise.id)) is None:
            continue
        path = chosen.app_dir / rel
        current = (
            path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []
        )
        if (mine := block(current, exercise.id)) is None:
            raise WorkshopError(
                f"The markers of exercise {exercise.id} are gone from "
                f"{relative(path, course.root)}: `{COMMAND} reset {chosen.number}` puts back "
                "the whole step."
            )
        updated = current[: mine[0]] + fresh[span[0] : span[1] + 1] + current[mine[1] + 1 :]
        changed.append((path, "".join(updated)))
    saved = backup(course, [path for path, _ in changed])
    for path, text in changed:
        path.write_text(text, encoding="utf-8")
    console.print(
        f"Exercise {exercise.id} is back to its starter. Your files: {relative(saved, course.root)}"
    )


@command(app, panel=LEARN)
def diff(
    step: Annotated[str, typer.Argument(help="The step, for example 02.")],
    previous: Annotated[
        bool, typer.Option("--previous", help="The reference against the step before.")
    ] = False,
) -> None:
    """Your app/ against the reference solution (or the reference against the last step's)."""
    course = Course()
    chosen = course.step(step)
    if previous:
        path = chosen.dir / DIFF_NAME
        if not path.exists():
            raise UnknownName(f"Step {chosen.number} is the first: there is no step before it.")
        text = path.read_text(encoding="utf-8")
    else:
        chunks = []
        for solution_file in package_files(chosen.solution_dir):
            rel = solution_file.relative_to(chosen.solution_dir)
            mine = chosen.app_dir / rel
            reference = solution_file.read_text(encoding="utf-8").splitlines(keepends=True)
            chunks += difflib.unified_diff(
                mine.read_text(encoding="utf-8").splitlines(keepends=True) if mine.exists() else [],
                [line for line in reference if not SNIPPET.match(line)],  # the docs' markers
                fromfile=f"app/{rel.as_posix()} (yours)",
                tofile=f"solution/{rel.as_posix()}",
            )
        text = "".join(chunks)
    show_code(text or "(no difference)\n", "diff")


@command(app, panel=LEARN)
def solution(
    exercise_id: ExerciseArg,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask first.")] = False,
) -> None:
    """Show the reference code of one exercise (asks first: try the hints before)."""
    course = Course()
    chosen, exercise = course.exercise(exercise_id)
    if not yes:
        typer.confirm(f"Show the solution of exercise {exercise.id}?", abort=True)
    for path in package_files(chosen.solution_dir):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        if (span := block(lines, exercise.id)) is not None:
            code = "".join(x for x in lines[span[0] : span[1] + 1] if not SNIPPET.match(x))
            console.print(relative(path, course.root))
            show_code(code, "python")


# -- tools ----------------------------------------------------------------------------------


@command(app, panel=TOOLS)
def doctor() -> None:
    """Check this machine: Python, packages, the database, port 8000, docs and notebooks.

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
    console.print(table)
    if problems:
        raise typer.Exit(1)


@command(app, "verify", panel=TEACH)
def verify_course() -> None:
    """Every solution passes, every starter fails just its exercises, all is in sync."""
    course = Course()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch, console.status("Verifying the course..."):
        problems = verify.verify(course, Path(scratch))
    for problem in problems:
        console.print(f"[red]problem[/] {escape(problem)}", soft_wrap=True)
    seconds = time.monotonic() - started
    if problems:
        console.print(f"{len(problems)} problem(s) in {seconds:.0f} s.")
        raise typer.Exit(1)
    wrong = sum(len(wrong_answers.catalogue(step)) for step in course.steps)
    console.print(
        f"[green]The course is sound[/]: {len(course.steps)} steps, {wrong} wrong answers "
        f"rejected, in {seconds:.0f} s."
    )
