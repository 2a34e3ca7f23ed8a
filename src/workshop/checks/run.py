"""Run a step's checks in a pytest process of their own and read the outcome per exercise."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..course import Exercise, Step, WorkshopError

# How a test's skip reason starts when this machine lacks what the test needs (a test that
# needs PgBouncer skips with `needs PgBouncer: <install command>`: see pgbouncer.py).
NEEDS = "needs "

# What every check imports before its first test: `watch` imports them once, then forks a
# child per check, which starts with them loaded. The step's own code is never among them:
# each child imports the files as they are now.
CHECK_IMPORTS = (
    "pytest",
    "pytest_asyncio",
    "fastapi",
    "pydantic_settings",
    "sqlalchemy.ext.asyncio",
    "sqlalchemy.dialects.postgresql.asyncpg",
    "asyncpg",
    "httpx",
    "asgi_lifespan",
    "alembic.command",
    "jwt",
    "pwdlib",
    "workshop.checks.plugin",
    "workshop.postgres.migrations",
)


@dataclass(frozen=True)
class TestOutcome:
    __test__ = False  # a result, not a test

    nodeid: str
    outcome: str  # passed, failed or skipped
    exercises: tuple[str, ...]
    blame: str | None  # the exercise a failure is due to (see the pytest plugin)
    reason: str | None = None  # why it failed (or skipped), in one line

    @property
    def needs(self) -> str | None:
        """What this machine lacks for it (`needs PgBouncer: <install command>`), when it
        skipped for that reason."""
        if self.outcome == "skipped" and self.reason and self.reason.startswith(NEEDS):
            return self.reason
        return None


@dataclass(frozen=True)
class StepReport:
    step: Step
    solution: bool
    tests: list[TestOutcome]
    output: str  # what pytest printed

    def tests_of(self, exercise: Exercise) -> list[TestOutcome]:
        return [t for t in self.tests if exercise.id in t.exercises]

    def done(self, exercise: Exercise) -> bool:
        """It has tests, none of them failed because of it, and none skipped for want of
        something on this machine (some may still wait for another exercise: `waits_on`)."""
        tests = self.tests_of(exercise)
        return (
            bool(tests)
            and not any(t.blame == exercise.id for t in tests)
            and self.needs(exercise) is None
        )

    def needs(self, exercise: Exercise) -> str | None:
        """What this machine lacks to check it: `needs PgBouncer: <install command>`."""
        return next((t.needs for t in self.tests_of(exercise) if t.needs), None)

    def waits_on(self, exercise: Exercise) -> list[str]:
        """The other exercises that its failing tests are blamed on."""
        blamed = {t.blame for t in self.tests_of(exercise) if t.outcome == "failed"}
        return sorted(b for b in blamed if b is not None and b != exercise.id)

    def state(self, exercise: Exercise) -> str:
        """`done`, `to do (2/3 pass)` or `waits on 05.4 (7/9 pass)`: what a learner reads."""
        tests = self.tests_of(exercise)
        passed = sum(t.outcome == "passed" for t in tests)
        blamed = any(t.blame == exercise.id for t in tests)
        if (needs := self.needs(exercise)) is not None and not blamed:
            return needs
        if not self.done(exercise):
            return f"to do ({passed}/{len(tests)} pass)"
        if waits := self.waits_on(exercise):
            return f"waits on {', '.join(waits)} ({passed}/{len(tests)} pass)"
        return "done"

    def first_failure(self, exercise: Exercise) -> TestOutcome | None:
        """The first of its tests that fails because of it."""
        return next((t for t in self.tests_of(exercise) if t.blame == exercise.id), None)

    @property
    def unfinished(self) -> list[Exercise]:
        return [e for e in self.step.exercises if not self.done(e)]

    @property
    def other_failures(self) -> list[TestOutcome]:
        """Failing tests that belong to no exercise: the step's earlier features."""
        return [t for t in self.tests if not t.exercises and t.outcome != "passed" and not t.needs]

    @property
    def missing(self) -> list[str]:
        """What this machine lacks for some of the step's tests, each said once."""
        return sorted({t.needs for t in self.tests if t.needs})

    @property
    def complete(self) -> bool:
        return not self.unfinished and not self.other_failures and not self.missing


def run_checks(step: Step, *, solution: bool = False, in_process: bool = False) -> StepReport:
    """Run `pytest steps/NN-name` (with --solution if asked) and collect every test's outcome."""
    return run_steps([step], solution=solution, in_process=in_process)[step]


def pytest_here(arguments: list[str], root: Path) -> tuple[int, str]:
    """pytest in this process, its output captured. Only for a process that does nothing
    else and ends after it, such as the child `workshop watch` forks for each check: it
    starts with the libraries already imported, which is most of a check's time."""
    import pytest

    printed = io.StringIO()
    previous = Path.cwd()
    os.chdir(root)
    # The toolkit is imported already (it is running this): pytest cannot rewrite the plugin's
    # asserts any more, and says so with a warning, which the test settings make an error.
    quiet = ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            code = pytest.main([*quiet, *arguments])
    finally:
        os.chdir(previous)
    return int(code), printed.getvalue()


def run_steps(
    steps: list[Step],
    *,
    solution: bool = False,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    in_process: bool = False,
) -> dict[Step, StepReport]:
    """Run several steps' checks in one pytest process (as `pytest steps/` does); `args`
    go to pytest too. `in_process`: in this very process (see `pytest_here`)."""
    root = steps[0].dir.parent.parent
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        arguments = [
            *(str(step.dir) for step in steps),
            "-q",
            "-p",
            "no:cacheprovider",
            # A failure in one line: the report says what failed and why, and pytest's full
            # traceback costs a parse of each test file per failure (a third of a second).
            "--tb=line",
            f"--workshop-report={report}",
            *(["--solution"] if solution else []),
            *args,
        ]
        if in_process:
            assert env is None, "in this process, the environment is this process's"
            returncode, output = pytest_here(arguments, root)
        else:
            done = subprocess.run(
                [sys.executable, "-m", "pytest", *arguments],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            returncode, output = done.returncode, done.stdout + done.stderr
        if returncode == 5:
            raise WorkshopError("There are no tests to run: the step's tests/ folder is empty.")
        if not report.exists():
            last = output.strip().splitlines()[-1:] or ["(no output)"]
            raise WorkshopError(f"pytest could not run the checks: {last[0]}")
        data = json.loads(report.read_text())
        if not data and returncode != 0:  # stopped before any test: say why
            last = output.strip().splitlines()[-1:] or ["(no output)"]
            raise WorkshopError(last[0].strip("! ").replace("_pytest.outcomes.Exit: ", ""))
    reports = {}
    for step in steps:
        prefix = f"{step.dir.relative_to(root).as_posix()}/"
        tests = [
            TestOutcome(
                nodeid,
                entry["outcome"],
                tuple(entry["exercises"]),
                entry["blame"],
                entry.get("reason"),
            )
            for nodeid, entry in data.items()
            if nodeid.startswith(prefix)
        ]
        reports[step] = StepReport(step=step, solution=solution, tests=tests, output=output)
    return reports
