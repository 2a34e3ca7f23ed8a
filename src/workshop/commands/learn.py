"""The learner's loop: where you are, `status`, `check`, `hint` and `watch`."""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import subprocess
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .. import warm
from ..checks import progress
from ..checks.run import CHECK_IMPORTS, StepReport, run_checks
from ..course import COMMAND, Course, Exercise, Step, WorkshopError, starter
from . import common
from .common import (
    LEARN,
    ExerciseArg,
    OptionalStep,
    command,
    console,
    errors,
    relative,
)

if TYPE_CHECKING:
    pass

app = typer.Typer()


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
    in_process = common.as_the_command
    code = check_and_say(course, chosen, solution=solution, in_process=in_process)
    if in_process:
        # The next check goes to a warm process that has the libraries loaded (see workshop.warm).
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
        waiting = report.done(exercise) or state == report.needs(exercise)
        colour = "green" if state == "done" else "yellow" if waiting else "red"
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
    for missing in report.missing:
        # Not done, and not the learner's to do: this machine cannot check them yet.
        ids = ", ".join(e.id for e in chosen.exercises if report.needs(e) == missing)
        console.print(f"Checking {ids or 'the step'} {missing}", soft_wrap=True, markup=False)
    to_do = [e for e in report.unfinished if report.state(e) != report.needs(e)]
    if to_do:
        exercise = to_do[0]
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
        for name in CHECK_IMPORTS:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        # As the warm process does (see workshop.warm): the children's collections skip it.
        gc.freeze()
    while True:
        console.clear()
        check_in_a_child(course, chosen)
        console.print(f"\nWatching {relative(chosen.app_dir, course.root)} (Ctrl+C stops)...")
        for _ in changes(chosen.app_dir, chosen.dir / "tests", debounce=200, step=50):
            break
