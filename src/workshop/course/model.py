"""The course on disk: where the repository is, its steps, and their exercises."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

# How the learner runs the toolkit: the README's way, which works without activating the venv.
COMMAND = "uv run workshop"


class WorkshopError(Exception):
    """A problem the learner can fix: its message is one sentence that says how."""

    exit_code = 1


class UnknownName(WorkshopError):
    """A step or exercise id that does not exist."""

    exit_code = 2


@dataclass(frozen=True)
class Exercise:
    id: str
    title: str
    hints: list[str]
    # What the starter keeps in place of the solution; None means `raise NotImplementedError(...)`.
    stub: str | None = None
    # The hint (from 1) that fits a failure of this test best, by the test's name: a check
    # whose failure the first hint does not explain (05.1's event loop: the hint on threads).
    hint_for: dict[str, int] = field(default_factory=dict)

    def hint_fitting(self, test_name: str | None) -> str:
        """The hint to show first when `test_name` (a test function's name) fails."""
        number = self.hint_for.get((test_name or "").split("[")[0], 1)
        return self.hints[min(number, len(self.hints)) - 1]

    @property
    def anchor(self) -> str:
        """The docs heading's id, for example `exercise-01.1`."""
        return f"exercise-{self.id}"


@dataclass(frozen=True)
class Serving:
    """How `workshop run` serves a step, unless told otherwise."""

    workers: int = 1  # uvicorn's worker processes
    pgbouncer: bool = False  # through the workshop's PgBouncer, when the machine has one


@dataclass(frozen=True)
class Step:
    dir: Path

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def number(self) -> str:
        return self.name.split("-", 1)[0]

    @property
    def solution_dir(self) -> Path:
        return self.dir / "solution"

    @property
    def app_dir(self) -> Path:
        return self.dir / "app"

    def package_dir(self, *, solution: bool) -> Path:
        return self.solution_dir if solution else self.app_dir

    @property
    def has_migrations(self) -> bool:
        return (self.dir / "alembic.ini").is_file()

    @property
    def docs_page(self) -> Path:
        return self.dir.parent.parent / "docs" / "steps" / f"{self.name}.md"

    @cached_property
    def _declared(self) -> dict[str, Any]:
        return tomllib.loads((self.dir / "exercises.toml").read_text(encoding="utf-8"))

    @cached_property
    def exercises(self) -> list[Exercise]:
        return [Exercise(**entry) for entry in self._declared.get("exercise", [])]

    @property
    def serving(self) -> Serving:
        """How `workshop run` serves it: exercises.toml's `[serve]` table, if it has one."""
        return Serving(**self._declared.get("serve", {}))

    def exercise(self, exercise_id: str) -> Exercise:
        for exercise in self.exercises:
            if exercise.id == exercise_id:
                return exercise
        ids = ", ".join(e.id for e in self.exercises) or "none"
        raise UnknownName(
            f"There is no exercise {exercise_id}: step {self.number}'s exercises are {ids}."
        )


def find_root(start: Path | None = None) -> Path:
    """The workshop repository that holds `start` (default: the current directory)."""
    if env_root := os.environ.get("WORKSHOP_ROOT"):
        return Path(env_root).resolve()
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "steps").is_dir() and (candidate / "pyproject.toml").is_file():
            return candidate
    raise UnknownName(
        "This is not the workshop repository: run the command from the folder you cloned."
    )


@lru_cache(maxsize=256)
def step_of(path: Path) -> Step | None:
    """The step a file belongs to: the nearest folder above it that has an `exercises.toml`.
    Remembered: pytest asks for each test, several times (and the Step keeps its exercises)."""
    for candidate in (path.resolve(), *path.resolve().parents):
        if (candidate / "exercises.toml").is_file():
            return Step(candidate)
    return None


@dataclass
class Course:
    root: Path = field(default_factory=find_root)

    @cached_property
    def steps(self) -> list[Step]:
        found = (p for p in sorted((self.root / "steps").iterdir()) if re.match(r"\d\d-", p.name))
        return [Step(p) for p in found if (p / "exercises.toml").is_file()]

    def step(self, number: str) -> Step:
        wanted = number.zfill(2)
        for step in self.steps:
            if step.number == wanted or step.name == number:
                return step
        known = ", ".join(s.number for s in self.steps)
        raise UnknownName(f"There is no step {number}: the steps are {known}.")

    def exercise(self, exercise_id: str) -> tuple[Step, Exercise]:
        if not re.fullmatch(r"\d{1,2}\.\d{1,2}", exercise_id):
            raise UnknownName(
                f"{exercise_id!r} is not an exercise id: they look like 01.2 (step, exercise)."
            )
        number = exercise_id.split(".")[0].zfill(2)
        try:
            step = self.step(number)
        except UnknownName:
            raise UnknownName(
                f"There is no exercise {exercise_id}: there is no step {number}."
            ) from None
        return step, step.exercise(exercise_id)
