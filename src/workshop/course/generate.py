"""Every generated file of the course: the starters, each step's diff against the last, and
the hints blocks of the docs pages (from exercises.toml).

`workshop dev sync` writes them; a test fails when a committed one differs from what this
module makes, so a maintainer changes a lesson in one place: the step's `solution/`.
"""

from __future__ import annotations

import difflib
import subprocess
import textwrap
from itertools import pairwise
from pathlib import Path

from .model import Course, Step, WorkshopError
from .starter import END, SNIPPET, START, package_files, starter_files, tidy

DIFF_NAME = "changes.diff"


def code_lines(path: Path) -> list[str]:
    """A solution file's lines without the course's markers: only what the code says."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    code = [x for x in lines if not (SNIPPET.match(x) or START.match(x) or END.match(x))]
    return tidy("".join(code)).splitlines(keepends=True)


def step_diff(previous: Step, step: Step) -> str:
    """What a step's solution changes in the previous step's, as a unified diff."""
    names = sorted(
        {p.relative_to(previous.solution_dir) for p in package_files(previous.solution_dir)}
        | {p.relative_to(step.solution_dir) for p in package_files(step.solution_dir)}
    )
    chunks = []
    for name in names:
        chunks.extend(
            difflib.unified_diff(
                code_lines(previous.solution_dir / name),
                code_lines(step.solution_dir / name),
                fromfile=f"{previous.name}/{name.as_posix()}",
                tofile=f"{step.name}/{name.as_posix()}",
            )
        )
    return "".join(chunks)


HINTS = '??? tip "Hints"\n'


def docs_with_hints(step: Step) -> str:
    """The step's docs page with each exercise's hints block written from exercises.toml."""
    page = step.docs_page.read_text(encoding="utf-8")
    for exercise in step.exercises:
        heading = page.find(f"{{ #{exercise.anchor} }}")
        start = page.find(HINTS, heading)
        if heading < 0 or start < 0:
            raise WorkshopError(
                f"{step.docs_page.name} needs a section {{ #{exercise.anchor} }} with a "
                f"{HINTS.strip()} block."
            )
        end = page.find("\n\n", start)
        hints = "".join(
            textwrap.fill(
                hint,
                width=96,
                initial_indent=f"    {number}. ",
                subsequent_indent="       ",
                break_on_hyphens=False,
                break_long_words=False,
            )
            + "\n"
            for number, hint in enumerate(exercise.hints, start=1)
        )
        page = page[:start] + HINTS + hints.rstrip("\n") + page[end:]
    return page


def expected_files(course: Course) -> dict[Path, str]:
    """Every generated file, by absolute path, with the text it should have."""
    files = {}
    for step in course.steps:
        files.update({step.app_dir / rel: text for rel, text in starter_files(step).items()})
        if step.docs_page.is_file():
            files[step.docs_page] = docs_with_hints(step)
    for previous, step in pairwise(course.steps):
        files[step.dir / DIFF_NAME] = step_diff(previous, step)
    return files


def committed_text(path: Path) -> str | None:
    """The file as the repository's last commit has it (None: not committed, or no git)."""
    try:
        done = subprocess.run(
            ["git", "show", f"HEAD:./{path.name}"],
            cwd=path.parent,
            capture_output=True,
            check=False,
        )
    except OSError:  # no git on this machine
        return None
    return done.stdout.decode("utf-8") if done.returncode == 0 else None


def current_text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def stale_files(course: Course) -> list[Path]:
    """Generated files that are neither on disk nor in the last commit what they should be.

    A learner's own work in `app/` does not make a starter stale: what counts is that the
    starter the repository ships (its last commit, or the file on disk) is the generated one.
    """
    expected = expected_files(course)
    stale = [
        path
        for path, text in expected.items()
        if current_text(path) != text and committed_text(path) != text
    ]
    extra = [
        path
        for step in course.steps
        for path in package_files(step.app_dir)
        if path not in expected and committed_text(path) is not None
    ]
    return sorted(stale + extra)


def in_git(path: Path) -> bool:
    """Whether the file's folder is in a git checkout (not a ZIP download, say)."""
    folder = next((p for p in (path, *path.parents) if p.is_dir()), path)
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--is-inside-work-tree"],
            cwd=folder,
            capture_output=True,
            check=False,
        )
    except OSError:  # no git on this machine
        return False
    return done.returncode == 0


def learners_work(path: Path) -> bool:
    """Whether a file holds changes someone made by hand: since the last commit, or, with
    no git to ask, whenever it differs (then nothing can tell it from a learner's work)."""
    current = current_text(path)
    if current is None:
        return False
    if not in_git(path):
        return True
    committed = committed_text(path)
    return committed is not None and current != committed


def sync(course: Course, *, force: bool = False) -> tuple[list[Path], list[Path]]:
    """Write every generated file that differs; returns (written, kept).

    A file someone changed by hand since the last commit (a learner's exercise) is kept,
    unless `force`: regenerating must never lose a learner's work by surprise.
    """
    written, kept = [], []
    expected = expected_files(course)
    starters = [step.app_dir for step in course.steps]
    for path in stale_files(course):
        if path not in expected and not learners_work(path):
            path.unlink()  # a starter file whose solution file is gone
            written.append(path)
    for path, text in expected.items():
        if current_text(path) == text:
            continue
        if not force and committed_text(path) == text:
            continue  # the committed starter is right; what differs is a learner's work
        # Only a starter can hold a learner's work; docs pages are the maintainers'.
        if learners_work(path) and not force and any(path.is_relative_to(d) for d in starters):
            kept.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written, kept
