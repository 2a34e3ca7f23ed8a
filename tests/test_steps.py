"""The lessons are honest: every solution passes, every starter fails exactly its exercises."""

from __future__ import annotations

from workshop import generate, starter
from workshop.checks import StepReport
from workshop.course import Course, Step


def test_solution_passes_every_check(
    a_step: Step, solution_reports: dict[Step, StepReport]
) -> None:
    report = solution_reports[a_step]
    assert report.tests, f"no tests ran for {a_step.name}:\n{report.output}"
    failing = [t.nodeid for t in report.tests if t.outcome != "passed"]
    assert not failing, f"the solution fails:\n{report.output}"


def test_starter_fails_exactly_its_exercises(
    a_step: Step, starter_reports: dict[Step, StepReport]
) -> None:
    report = starter_reports[a_step]
    assert report.tests, f"no tests ran for {a_step.name}:\n{report.output}"
    passing_exercise_tests = [
        t.nodeid for t in report.tests if t.exercises and t.outcome != "failed"
    ]
    failing_other_tests = [
        t.nodeid for t in report.tests if not t.exercises and t.outcome != "passed"
    ]
    assert not passing_exercise_tests, "these exercise tests do not fail on the starter"
    # Each exercise has a failure of its own: `workshop check` can say it is to do.
    assert {t.blame for t in report.tests if t.outcome == "failed"} == {
        e.id for e in a_step.exercises
    }
    assert not failing_other_tests, f"the starter breaks more than its exercises:\n{report.output}"
    # The starter imports and starts: something beyond the exercises was tested, and passed.
    assert any(not t.exercises for t in report.tests)


def test_every_exercise_is_complete(a_step: Step, solution_reports: dict[Step, StepReport]) -> None:
    """Each exercise has a marker, hints, tests and a docs section (rustlings' `dev check`)."""
    report = solution_reports[a_step]
    ids = [e.id for e in a_step.exercises]
    assert len(ids) >= 2 and len(ids) == len(set(ids)), ids
    solution_markers = [m.exercise_id for m in starter.markers(a_step, solution=True)]
    docs = a_step.docs_page.read_text(encoding="utf-8")
    for exercise in a_step.exercises:
        assert exercise.id.startswith(f"{a_step.number}."), exercise.id
        assert exercise.id in solution_markers, f"{exercise.id} has no marker in solution/"
        assert exercise.hints and all(h.strip() for h in exercise.hints), exercise.id
        assert report.tests_of(exercise), f"no test is marked with exercise {exercise.id}"
        assert f"{{ #{exercise.anchor} }}" in docs, f"the docs page has no {exercise.anchor}"
    assert set(solution_markers) <= set(ids)


def test_generated_files_are_in_sync(course: Course) -> None:
    """The starters and the step diffs are what `workshop dev sync` makes of the solutions."""
    stale = generate.stale_files(course)
    assert not stale, f"run `workshop dev sync`: {[str(p) for p in stale]} differ"


def test_starter_names_each_exercise_and_its_hint(a_step: Step, starter_course: Course) -> None:
    twin = starter_course.step(a_step.number)
    assert {m.exercise_id for m in starter.markers(twin)} == {e.id for e in a_step.exercises}
    code = "".join(p.read_text() for p in twin.app_dir.rglob("*.py"))
    for exercise in a_step.exercises:
        if exercise.stub is None:
            assert starter.default_stub(exercise.id) in code
