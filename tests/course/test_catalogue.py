"""The catalogue's wrong answers land where a learner would write them, and only there."""

from __future__ import annotations

from pathlib import Path

import pytest

from workshop.checks.run import TestOutcome
from workshop.checks.wrong_answers import Case, Verdict, problems, processes_for
from workshop.course import Course, WorkshopError
from workshop.course.catalogue import Edit, WrongAnswer, apply

SOLUTION = '''"""A module."""

from decimal import (
    Decimal,
)


async def create(session):
    # EXERCISE 04.1: add and commit
    session.add(1)
    await session.commit()
    # END EXERCISE


async def update(session):
    # EXERCISE 04.1: the same exercise, a second block
    await session.commit()
    # END EXERCISE
'''


def test_an_edit_changes_its_block_only() -> None:
    wrong = WrongAnswer(
        "04.1", "flush", "never committed", edit=[Edit("await session.commit()", "pass")]
    )
    changed = apply(wrong, SOLUTION, Path("crud.py"))
    assert changed == SOLUTION.replace("    await session.commit()\n", "    pass\n", 1)


def test_code_replaces_the_chosen_block_and_imports_go_on_top() -> None:
    wrong = WrongAnswer(
        "04.1",
        "float",
        "money as a float",
        code="return float(1)",
        block=2,
        imports=["from math import fsum"],
    )
    changed = apply(wrong, SOLUTION, Path("crud.py"))
    assert changed is not None
    assert "    Decimal,\n)\nfrom math import fsum\n" in changed
    assert (
        "    # EXERCISE 04.1: the same exercise, a second block\n    return float(1)\n" in changed
    )
    assert changed.count("await session.commit()") == 1  # the first block is the solution's
    assert apply(WrongAnswer("04.2", "x", "y", code="pass"), SOLUTION, Path("crud.py")) is None


def test_blocks_are_counted_through_the_files() -> None:
    """An exercise with blocks in two files (06.4: crud.py, then security.py): `block = 3` is
    this file's first block when an earlier file held two, and `block = 1` is not here."""
    third = WrongAnswer("04.1", "third", "?", code="return 3", block=3)
    changed = apply(third, SOLUTION, Path("security.py"), before=2)
    assert changed is not None and changed.count("return 3") == 1
    assert changed.index("return 3") < changed.index("a second block")
    assert apply(WrongAnswer("04.1", "first", "?", code="pass"), SOLUTION, Path("x.py"), 2) is None


def test_an_edit_that_does_not_match_once_is_refused() -> None:
    wrong = WrongAnswer("04.1", "typo", "?", edit=[Edit("session.rollback()", "pass")])
    with pytest.raises(WorkshopError, match="typo"):
        apply(wrong, SOLUTION, Path("crud.py"))


def test_edits_may_reach_several_blocks_of_the_exercise() -> None:
    wrong = WrongAnswer(
        "04.1",
        "both",
        "never committed",
        block=[1, 2],
        edit=[
            Edit("session.add(1)\nawait session.commit()", "session.add(1)"),
            Edit("await session.commit()", "pass"),
        ],
    )
    changed = apply(wrong, SOLUTION, Path("crud.py"))
    assert changed is not None and "commit" not in changed.replace("add and commit", "")


def test_an_accepted_variant_must_pass_and_a_wrong_answer_must_fail(course: Course) -> None:
    step = course.step("01")
    exercise = step.exercises[0].id
    nodeid = f"steps/{step.name}/tests/test_x.py::test_y"

    def verdict(outcome: str, accepted: str | None) -> Verdict:
        wrong = WrongAnswer(exercise, "variant", "a mistake", code="pass", accepted=accepted)
        test = TestOutcome(nodeid, outcome, (exercise,), None, reason="assert 6 <= 5")
        return Verdict(step, wrong, [test])

    def complaints(outcome: str, accepted: str | None) -> list[str]:
        return [p for p in problems(step, [verdict(outcome, accepted)]) if "variant" in p]

    assert complaints("failed", None) == []
    assert complaints("passed", "fine because") == []
    assert "passes every test" in complaints("passed", None)[0]
    # An accepted variant that fails says why: a flaky check shows itself in CI's log.
    failed = complaints("failed", "fine because")[0]
    assert "is accepted (fine because), yet fails tests/test_x.py::test_y" in failed
    assert failed.endswith("(assert 6 <= 5)")


def test_the_accepted_variants_run_in_a_process_of_their_own(course: Course) -> None:
    """A wrong answer's garbage (a session never closed) warns when it is collected, in
    whichever test runs then: never in an accepted variant's, which must pass."""
    step = course.step("01")
    exercise = step.exercises[0].id

    def case(name: str, accepted: str | None) -> Case:
        return (
            step,
            WrongAnswer(exercise, name, "a mistake", code="pass", accepted=accepted),
            step,
        )

    cases = [case(f"wrong-{n}", None) for n in range(7)] + [case("fine", "fine because")]
    groups = processes_for(cases, 4)
    assert len(groups) == 4
    assert [wrong.name for _, wrong, _ in groups[-1]] == ["fine"]
    assert sorted(c[1].name for group in groups[:-1] for c in group) == [
        f"wrong-{n}" for n in range(7)
    ]
    assert len(processes_for(cases[:7], 4)) == 4  # without accepted ones, all four share
