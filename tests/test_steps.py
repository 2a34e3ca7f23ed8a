"""The lessons are honest: every solution passes, every starter fails exactly its exercises.

The same checks as `workshop verify` (workshop/verify.py), step by step.
"""

from __future__ import annotations

from workshop import starter, verify
from workshop.course import Course, Step


def test_solution_passes_every_check(a_step: Step, solution_reports: verify.Reports) -> None:
    report = solution_reports[a_step]
    assert not verify.solution_problems(report), report.output


def test_starter_fails_exactly_its_exercises(a_step: Step, starter_reports: verify.Reports) -> None:
    report = starter_reports[a_step]
    assert not verify.starter_problems(report), report.output


def test_every_exercise_is_complete(a_step: Step, solution_reports: verify.Reports) -> None:
    """Each exercise has a marker, hints, tests and a docs section (rustlings' `dev check`)."""
    assert not verify.exercise_problems(a_step, solution_reports[a_step])


def test_generated_files_are_in_sync(course: Course) -> None:
    """The starters, step diffs and hint blocks are what `workshop dev sync` makes."""
    assert not verify.generated_problems(course)


def test_starter_names_each_exercise_and_its_hint(a_step: Step, starter_course: Course) -> None:
    twin = starter_course.step(a_step.number)
    assert {m.exercise_id for m in starter.markers(twin)} == {e.id for e in a_step.exercises}
    code = "".join(p.read_text() for p in twin.app_dir.rglob("*.py"))
    for exercise in a_step.exercises:
        if exercise.stub is None:
            assert starter.default_stub(exercise.id) in code
