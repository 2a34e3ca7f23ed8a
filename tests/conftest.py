"""Fixtures for the repository's own tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from workshop.checks import StepReport, run_steps
from workshop.course import Course, Step
from workshop.database import Server, resolve_server

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def course() -> Course:
    return Course(ROOT)


@pytest.fixture(scope="session")
def server(course: Course) -> Server:
    """The server this test session runs on (DATABASE_URL or the embedded one)."""
    return resolve_server(course.root)


@pytest.fixture(scope="session")
def solution_reports(course: Course) -> dict[Step, StepReport]:
    """Every step's checks on its solution, all steps in one pytest process."""
    return run_steps(course.steps, solution=True)


@pytest.fixture(scope="session")
def starter_reports(course: Course) -> dict[Step, StepReport]:
    """Every step's checks on its untouched starter, all steps in one pytest process."""
    return run_steps(course.steps, solution=False)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Tests that take `a_step` run once per step of the course.
    if "a_step" in metafunc.fixturenames:
        steps = Course(ROOT).steps
        metafunc.parametrize("a_step", steps, ids=[s.name for s in steps])
