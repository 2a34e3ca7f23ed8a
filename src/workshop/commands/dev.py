"""`workshop dev`: for maintainers, the generated files and the measures of the course."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from .. import postgres as database
from ..checks import wrong_answers
from ..course import Course, generate
from .common import (
    command,
    console,
    relative,
)

if TYPE_CHECKING:
    pass

app = typer.Typer(help="For maintainers: keep the generated files in sync.")


@command(app, "sync")
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


@command(app, "wrong-answers")
def dev_wrong_answers(
    steps: Annotated[
        list[str] | None,
        typer.Argument(help="Steps or exercises to try: 04, or 04.3 (default: all)."),
    ] = None,
) -> None:
    """Run each exercise's tests on every wrong answer in the catalogue: all must fail (and
    every accepted variant pass)."""

    from rich.table import Table

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
        if not verdict.caught_by and verdict.needs:
            caught = Text(f"NOT TRIED: {verdict.needs}", style="yellow")
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


@command(app, "timings")
def dev_timings(
    steps: Annotated[list[str] | None, typer.Argument(help="Steps (default: all).")] = None,
    runs: Annotated[int, typer.Option(min=1, help="Runs of each, after the first.")] = 3,
) -> None:
    """How long a learner waits for a verdict: check (cold, warm), pytest, and watch after a
    save, per step, on your code as it is."""

    from ..checks.timings import measure

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


@command(app, "transcript")
def dev_transcript(ctx: typer.Context) -> None:
    """Run the companion on a fresh copy of the course and write the docs' transcript."""
    from . import transcript

    course = Course()
    path = course.root / transcript.TRANSCRIPT
    path.write_text(transcript.make(course, ctx.find_root().command), encoding="utf-8")
    console.print(f"written: {relative(path, course.root)}")


@command(app, "reference")
def dev_reference(ctx: typer.Context) -> None:
    """Write the docs' reference pages: every setting (from the Settings classes) and every
    command (from this CLI's own help)."""
    from . import reference

    course = Course()
    for path in reference.write(course, ctx.find_root().command):
        console.print(f"written: {relative(path, course.root)}")
