"""The lessons are honest: every solution passes, every starter fails exactly its exercises.

The same checks as `workshop verify` (workshop/checks/verify.py), step by step.
"""

from __future__ import annotations

import re
import sys
from types import ModuleType

import pytest

from workshop.checks import verify, wrong_answers
from workshop.course import Course, Step, starter
from workshop.course.loader import load_package


def test_solution_passes_every_check(a_step: Step, solution_reports: verify.Reports) -> None:
    report = solution_reports[a_step]
    assert not verify.solution_problems(report), report.output
    if report.missing:  # its checks that need what this machine lacks did not run
        pytest.skip("; ".join(report.missing))


def test_starter_fails_exactly_its_exercises(a_step: Step, starter_reports: verify.Reports) -> None:
    report = starter_reports[a_step]
    assert not verify.starter_problems(report), report.output


@pytest.mark.exhaustive
def test_every_wrong_answer_fails_its_exercise(
    a_step: Step, verdicts: list[wrong_answers.Verdict]
) -> None:
    """Each exercise's catalogue of wrong answers: its tests reject every one of them."""
    assert not wrong_answers.problems(a_step, verdicts)


def test_a_starter_run_ends_on_what_to_do(a_step: Step, starter_reports: verify.Reports) -> None:
    """The last lines a learner reads name the exercises to do, not a page of warnings."""
    output = starter_reports[a_step].output
    assert "ResourceWarning" not in output
    assert "is not finished: `uv run workshop hint" in output


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


def test_hints_quote_only_names_the_step_has(a_step: Step) -> None:
    """A hint that says `Item.search` sends the learner after a name that is not there: every
    dotted name a hint quotes, from a class or module of the step, must exist."""
    package = load_package(a_step, solution=True)
    owned: dict[str, object] = {}
    for module in [
        package,
        *(m for n, m in sys.modules.items() if n.startswith(f"{package.__name__}.")),
    ]:
        for name, value in vars(module).items():
            defined_here = getattr(value, "__module__", getattr(value, "__name__", ""))
            if isinstance(value, type | ModuleType) and defined_here.startswith(package.__name__):
                owned[name] = value
    for exercise in a_step.exercises:
        for hint in exercise.hints:
            for quoted in re.findall(r"`([^`]+)`", hint):
                for first, rest in re.findall(r"\b([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*)+)", quoted):
                    if first not in owned:
                        continue
                    value = owned[first]
                    for attribute in rest.strip(".").split("."):
                        assert hasattr(value, attribute), f"{exercise.id}: `{quoted}`"
                        value = getattr(value, attribute)
