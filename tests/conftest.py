"""Fixtures for the repository's own tests."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from workshop.checks import StepReport, run_steps
from workshop.course import Course, Step
from workshop.database import Server, resolve_server
from workshop.generate import expected_files

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
def starter_course(course: Course, tmp_path_factory: pytest.TempPathFactory) -> Course:
    """A copy of the course whose `app/` folders are freshly generated starters.

    The repository's tests check the starters there, so a learner's own work in `app/`
    cannot change their result.
    """
    copy = tmp_path_factory.mktemp("course")
    shutil.copy(course.root / "pyproject.toml", copy)
    for step in course.steps:
        ignore = shutil.ignore_patterns("app", "__pycache__")
        shutil.copytree(step.dir, copy / "steps" / step.name, ignore=ignore)
    for path, text in expected_files(course).items():
        target = copy / path.relative_to(course.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return Course(copy)


@pytest.fixture(scope="session")
def server_env(server: Server) -> dict[str, str]:
    """The environment of a subprocess that must use this session's server."""
    return {**os.environ, "DATABASE_URL": server.url.render_as_string(hide_password=False)}


Reports = dict[Step, StepReport]


@pytest.fixture(scope="session")
def reports(
    course: Course, starter_course: Course, server_env: dict[str, str]
) -> tuple[Reports, Reports]:
    """Every step's checks on its solution and on its generated starter: two pytest
    processes (all steps in each, as `pytest steps/` runs them), side by side."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        solutions = pool.submit(run_steps, course.steps, solution=True, env=server_env)
        starters = pool.submit(run_steps, starter_course.steps, solution=False, env=server_env)
        twins = zip(course.steps, starter_course.steps, strict=True)
        by_twin = starters.result()
        return solutions.result(), {step: by_twin[twin] for step, twin in twins}


@pytest.fixture(scope="session")
def solution_reports(reports: tuple[Reports, Reports]) -> Reports:
    return reports[0]


@pytest.fixture(scope="session")
def starter_reports(reports: tuple[Reports, Reports]) -> Reports:
    return reports[1]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Tests that take `a_step` run once per step of the course.
    if "a_step" in metafunc.fixturenames:
        steps = Course(ROOT).steps
        metafunc.parametrize("a_step", steps, ids=[s.name for s in steps])
