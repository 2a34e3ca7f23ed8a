"""What an instructor (and CI) needs to know before a room of laptops: the course is sound.

Every solution passes, every starter fails exactly its exercises' tests, every wrong answer in
the catalogues fails its exercise's tests, every generated file is in sync, every exercise has
a marker, hints, tests and a docs section. The repository's own tests call these same functions.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..course import Course, Step, generate, starter
from ..postgres import resolve_server
from . import wrong_answers
from .run import StepReport, run_steps

Reports = dict[Step, StepReport]


def starter_copy(course: Course, destination: Path) -> Course:
    """A copy of the course whose app/ folders are freshly generated starters: the learner's
    own work in app/ cannot change what is verified."""
    shutil.copy(course.root / "pyproject.toml", destination)
    shutil.copytree(course.root / "docs", destination / "docs")
    for step in course.steps:
        ignore = shutil.ignore_patterns("app", "__pycache__")
        shutil.copytree(step.dir, destination / "steps" / step.name, ignore=ignore)
    for path, text in generate.expected_files(course).items():
        if path.is_relative_to(course.root / "steps"):
            target = destination / path.relative_to(course.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    return Course(destination)


def run_all(
    course: Course, copy: Course, env: Mapping[str, str] | None = None
) -> tuple[Reports, Reports]:
    """Every step's checks on its solution, and on its starter: two pytest processes side by
    side, all steps in each (as `pytest steps/` runs them)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        solutions = pool.submit(run_steps, course.steps, solution=True, env=env)
        starters = pool.submit(run_steps, copy.steps, solution=False, env=env)
        by_twin = starters.result()
        twins = zip(course.steps, copy.steps, strict=True)
        return solutions.result(), {step: by_twin[twin] for step, twin in twins}


def solution_problems(report: StepReport) -> list[str]:
    if not report.tests:
        return [f"{report.step.name}: no tests ran"]
    # A test this machine cannot run (`needs PgBouncer: ...`) is no fault of the solution's:
    # report.missing says what it lacks.
    return [
        f"{report.step.name}: the solution fails {t.nodeid}"
        for t in report.tests
        if t.outcome != "passed" and not t.needs
    ]


def starter_problems(report: StepReport) -> list[str]:
    step = report.step
    problems = [
        f"{step.name}: {t.nodeid} (exercise {', '.join(t.exercises)}) passes on the starter"
        for t in report.tests
        if t.exercises and t.outcome != "failed" and not t.needs
    ]
    problems += [
        f"{step.name}: {t.nodeid} (no exercise) fails on the starter"
        for t in report.tests
        if not t.exercises and t.outcome != "passed" and not t.needs
    ]
    if not any(not t.exercises for t in report.tests):
        problems.append(f"{step.name}: nothing beyond the exercises is tested on the starter")
    blamed = {t.blame for t in report.tests if t.outcome == "failed"}
    problems += [
        f"{step.name}: no failure on the starter is due to exercise {e.id}"
        for e in step.exercises
        if e.id not in blamed and not report.needs(e)
    ]
    return problems


def exercise_problems(step: Step, report: StepReport) -> list[str]:
    """rustlings' `dev check`: ids, markers, hints, tests and docs sections."""
    problems = []
    ids = [e.id for e in step.exercises]
    if len(ids) < 2 or len(ids) != len(set(ids)):
        problems.append(f"{step.name}: exercise ids {ids} are fewer than 2 or repeated")
    markers = [m.exercise_id for m in starter.markers(step, solution=True)]
    docs = step.docs_page.read_text(encoding="utf-8") if step.docs_page.is_file() else ""
    for exercise in step.exercises:
        where = f"{step.name}: exercise {exercise.id}"
        if not exercise.id.startswith(f"{step.number}."):
            problems.append(f"{where} has an id of another step")
        if exercise.id not in markers:
            problems.append(f"{where} has no marker in solution/")
        if not exercise.hints or not all(h.strip() for h in exercise.hints):
            problems.append(f"{where} has an empty hint")
        if not report.tests_of(exercise):
            problems.append(f"{where} has no test")
        names = {t.nodeid.rsplit("::", 1)[-1].split("[")[0] for t in report.tests_of(exercise)}
        for test, number in exercise.hint_for.items():
            if test not in names or not 1 <= number <= len(exercise.hints):
                problems.append(f"{where}: hint_for names {test} = {number}, not its test or hint")
        if f"{{ #{exercise.anchor} }}" not in docs:
            problems.append(f"{where} has no section in {step.docs_page.name}")
    problems += [
        f"{step.name}: a marker names {m}, not in exercises.toml" for m in markers if m not in ids
    ]
    return problems


def generated_problems(course: Course) -> list[str]:
    return [
        f"{path.relative_to(course.root)} is stale: `workshop dev sync`"
        for path in generate.stale_files(course)
    ]


def verify(course: Course, scratch: Path, env: Mapping[str, str] | None = None) -> list[str]:
    """Every problem with the course; [] when it is sound."""
    if env is None:
        # The copies run on this course's server, not on an embedded server of its own.
        url = resolve_server(course.root).url.render_as_string(hide_password=False)
        env = {**os.environ, "DATABASE_URL": url}
    (scratch / "starters").mkdir()
    (scratch / "wrong").mkdir()
    solutions, starters = run_all(course, starter_copy(course, scratch / "starters"), env)
    verdicts = wrong_answers.run_catalogue(course, course.steps, scratch / "wrong", env)
    problems = generated_problems(course)
    for step in course.steps:
        problems += solution_problems(solutions[step])
        problems += starter_problems(starters[step])
        problems += exercise_problems(step, solutions[step])
        problems += wrong_answers.problems(step, verdicts)
    return problems
