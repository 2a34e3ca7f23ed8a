"""The generator: starters and diffs come from the solutions, and never eat a learner's work."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from workshop.course import Course, UnknownName, WorkshopError
from workshop.course.generate import stale_files, step_diff, sync
from workshop.course.starter import default_stub, render_starter

EXERCISES = """
[[exercise]]
id = "01.1"
title = "Add"
hints = ["Use +."]

[[exercise]]
id = "01.2"
title = "Name"
stub = "name = 'todo'"
hints = ["A string."]
"""

SOLUTION = """def add(a: int, b: int) -> int:
    # --8<-- [start:add]
    # EXERCISE 01.1: return the sum
    return a + b
    # END EXERCISE
    # --8<-- [end:add]


# EXERCISE 01.2: name the module
name = "calc"
# END EXERCISE
"""


def make_course(root: Path) -> Course:
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    for number in ("01", "02"):
        step = root / "steps" / f"{number}-calc"
        (step / "solution").mkdir(parents=True)
        (step / "exercises.toml").write_text(EXERCISES.replace("01.", f"{number}."))
        (step / "solution" / "calc.py").write_text(SOLUTION.replace("01.", f"{number}."))
    return Course(root)


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_render_starter_keeps_instructions_and_stubs(tmp_path: Path) -> None:
    course = make_course(tmp_path)
    step = course.steps[0]
    exercises = {e.id: e for e in step.exercises}
    starter = render_starter(SOLUTION, exercises, tmp_path / "calc.py")
    assert starter == (
        "def add(a: int, b: int) -> int:\n"
        "    # EXERCISE 01.1: return the sum\n"
        f"    {default_stub('01.1')}\n"
        "    # END EXERCISE\n"
        "\n\n"
        "# EXERCISE 01.2: name the module\n"
        "name = 'todo'\n"
        "# END EXERCISE\n"
    )


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("# EXERCISE 01.9: nothing\npass\n# END EXERCISE\n", "01.9 is not in exercises.toml"),
        ("# EXERCISE 01.1: open\npass\n", "01.1 has no `# END EXERCISE`"),
        ("pass\n# END EXERCISE\n", "`# END EXERCISE` without an `# EXERCISE`"),
        (
            "# EXERCISE 01.1: a\npass\n# EXERCISE 01.2: b\npass\n# END EXERCISE\n",
            "an `# EXERCISE` inside exercise 01.1",
        ),
    ],
)
def test_bad_markers_are_refused(tmp_path: Path, source: str, problem: str) -> None:
    step = make_course(tmp_path).steps[0]
    with pytest.raises(WorkshopError, match=problem):
        render_starter(source, {e.id: e for e in step.exercises}, tmp_path / "x.py")


def test_step_diff_shows_code_without_markers(tmp_path: Path) -> None:
    course = make_course(tmp_path)
    second = course.steps[1].solution_dir / "calc.py"
    second.write_text(second.read_text().replace("a + b", "b + a"))
    diff = step_diff(*course.steps)
    assert "-    return a + b\n+    return b + a\n" in diff
    assert "EXERCISE" not in diff and "--8<--" not in diff


def test_sync_never_overwrites_a_learners_work(tmp_path: Path) -> None:
    course = make_course(tmp_path)
    written, kept = sync(course)
    assert {p.name for p in written} == {"calc.py", "changes.diff"} and not kept
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "course")
    assert stale_files(course) == []

    # A learner completes an exercise: nothing is stale, and sync leaves the work alone.
    starter = course.steps[0].app_dir / "calc.py"
    finished = starter.read_text().replace(default_stub("01.1"), "return a + b")
    starter.write_text(finished)
    assert stale_files(course) == []
    assert sync(course) == ([], [])
    assert starter.read_text() == finished

    # A maintainer changes the solution: the starter is stale, but the learner's copy is kept
    # unless forced.
    solution = course.steps[0].solution_dir / "calc.py"
    solution.write_text(solution.read_text().replace("the sum", "a + b"))
    assert starter in stale_files(course)
    written, kept = sync(course)
    assert kept == [starter] and starter.read_text() == finished
    written, kept = sync(course, force=True)
    assert starter in written and "# EXERCISE 01.1: return a + b" in starter.read_text()


def test_unknown_ids_are_named(tmp_path: Path) -> None:
    course = make_course(tmp_path)
    with pytest.raises(UnknownName, match=r"There is no step 07: the steps are 01, 02\."):
        course.step("07")
