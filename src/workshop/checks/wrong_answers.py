"""Each catalogue's wrong answers tried against their exercise's tests (see
workshop.course.catalogue): every one must fail them, every accepted variant pass."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..course import Course, Step, WorkshopError
from ..course.catalogue import CATALOGUE, WrongAnswer, catalogue, copy_for
from .run import StepReport, TestOutcome, run_steps

# Fewer than this many wrong answers, and an exercise's checks are not proven.
AT_LEAST = 3
Case = tuple[Step, WrongAnswer, Step]  # the step, the wrong answer, the copy that holds it


@dataclass(frozen=True)
class Verdict:
    """What the exercise's tests said of one wrong answer."""

    step: Step
    wrong: WrongAnswer
    tests: list[TestOutcome]
    error: str | None = None  # why it could not be tried (it does not apply, or compile)

    @property
    def failures(self) -> list[tuple[str, str | None]]:
        """The tests that fail on it, as `tests/file.py::name`, each with its reason."""
        return [(t.nodeid.split("/", 2)[2], t.reason) for t in self.tests if t.outcome == "failed"]

    @property
    def caught_by(self) -> list[str]:
        return [test for test, _ in self.failures]

    @property
    def needs(self) -> str | None:
        """What this machine lacks to try it, when tests of its exercise skipped for want of
        it (`needs PgBouncer: ...`)."""
        return next((t.needs for t in self.tests if t.needs), None)


def run_catalogue(
    course: Course,
    steps: list[Step],
    scratch: Path,
    env: Mapping[str, str] | None = None,
    *,
    processes: int = 4,
    exercises: set[str] | None = None,
) -> list[Verdict]:
    """Every wrong answer of these steps, each in its own copy, against its exercise's tests
    only (of `exercises` only, when given); the copies run in `processes` pytest processes side
    by side, the accepted variants in one of their own."""
    shutil.copy(course.root / "pyproject.toml", scratch)
    cases: list[Case] = []
    broken: list[Verdict] = []
    for step in steps:
        for index, wrong in enumerate(catalogue(step), start=1):
            if exercises and wrong.exercise not in exercises:
                continue
            try:
                cases.append((step, wrong, copy_for(step, wrong, index, scratch / "steps")))
            except WorkshopError as exc:
                broken.append(Verdict(step, wrong, [], error=str(exc)))
    if not cases:
        return broken
    groups = processes_for(cases, processes)

    def run(group: list[Case]) -> dict[Step, StepReport]:
        # Only the exercise's own tests, in each copy: `-k` matches the copy's folder name.
        only = " or ".join(
            f"({twin.name} and ex{wrong.exercise.replace('.', '_')})" for _, wrong, twin in group
        )
        args = ["-k", only, "--first-failure-per-step"]
        return run_steps([twin for *_, twin in group], env=env, args=args)

    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        reports: dict[Step, StepReport] = {}
        for done in pool.map(run, groups):
            reports.update(done)
    return broken + [Verdict(step, wrong, reports[twin].tests) for step, wrong, twin in cases]


def processes_for(cases: list[Case], processes: int) -> list[list[Case]]:
    """The cases each pytest process runs, in turn. A wrong answer may leave garbage behind (a
    session never closed, an engine never disposed), and its warning, when the garbage
    collector finds it, fails whichever test runs then (warnings are errors): the accepted
    variants, which must pass, run in a process of their own, never after a wrong answer."""
    accepted = [case for case in cases if case[1].accepted is not None]
    wrong = [case for case in cases if case[1].accepted is None]
    share = max(1, processes - 1) if accepted else processes
    groups = [wrong[i::share] for i in range(share) if wrong[i::share]]
    return [*groups, accepted] if accepted else groups


def problems(step: Step, verdicts: list[Verdict]) -> list[str]:
    """What the catalogue shows wrong with the step's checks; [] when every wrong answer is
    caught and every exercise has enough of them."""
    found = []
    mine = [v for v in verdicts if v.step == step]
    for exercise in step.exercises:
        count = sum(1 for w in catalogue(step, exercise.id) if w.accepted is None)
        if count < AT_LEAST:
            found.append(
                f"{step.name}: exercise {exercise.id} has {count} wrong answer(s) in "
                f"{CATALOGUE}, fewer than {AT_LEAST}"
            )
    for verdict in mine:
        where = f"{step.name}: wrong answer {verdict.wrong.label}"
        if verdict.error is not None:
            found.append(verdict.error)
        elif verdict.wrong.exercise not in {e.id for e in step.exercises}:
            found.append(f"{where} names an exercise the step does not have")
        elif not verdict.tests:
            found.append(f"{where}: no test of its exercise ran")
        elif verdict.wrong.accepted is not None:
            if verdict.failures:
                found.append(
                    f"{where} is accepted ({verdict.wrong.accepted}), yet fails "
                    + ", ".join(f"{test} ({reason})" for test, reason in verdict.failures)
                )
        elif not verdict.caught_by and verdict.needs:
            found.append(f"{where} could not be tried on this machine: it {verdict.needs}")
        elif not verdict.caught_by:
            found.append(f"{where} passes every test of its exercise ({verdict.wrong.mistake})")
    return found
