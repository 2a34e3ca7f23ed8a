"""Your code against the reference: `workshop reset`, `diff` and `solution`, with a way back."""

from __future__ import annotations

import difflib
import shutil
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.syntax import Syntax

from ..course import COMMAND, Course, UnknownName, WorkshopError
from ..course.generate import DIFF_NAME
from ..course.starter import END, SNIPPET, START, package_files, starter_files
from .common import (
    LEARN,
    ExerciseArg,
    command,
    console,
    relative,
)

if TYPE_CHECKING:
    pass

app = typer.Typer()


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
