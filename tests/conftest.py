"""Fixtures for the repository's own tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from workshop.checks import verify, wrong_answers
from workshop.course import Course
from workshop.postgres import Server, resolve_server

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def course() -> Course:
    return Course(ROOT)


@pytest.fixture(scope="session")
def site(course: Course, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The course site, built once by `mkdocs build --strict` for the docs and browser tests."""
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # Material's banner about MkDocs 2
        cwd=course.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return out


@pytest.fixture(scope="session")
def server(course: Course) -> Server:
    """The server this test session runs on (DATABASE_URL or the embedded one)."""
    return resolve_server(course.root)


@pytest.fixture(scope="session")
def starter_course(course: Course, tmp_path_factory: pytest.TempPathFactory) -> Course:
    """A copy of the course whose `app/` folders are freshly generated starters."""
    return verify.starter_copy(course, tmp_path_factory.mktemp("course"))


@pytest.fixture(scope="session")
def server_env(server: Server) -> dict[str, str]:
    """The environment of a subprocess that must use this session's server."""
    return {**os.environ, "DATABASE_URL": server.url.render_as_string(hide_password=False)}


@contextmanager
def phase(config: pytest.Config, what: str) -> Iterator[None]:
    """Say on the terminal what a long set-up is doing, and how long it took: a run that
    prints nothing for minutes looks hung."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")

    def say(line: str) -> None:
        if reporter is None:
            return
        # A fixture's output is captured (and shown only if its test fails): not this.
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(line)

    started = time.monotonic()
    say(f"\n[{what}...]")
    yield
    say(f"[{what}: {time.monotonic() - started:.0f} s]")


@pytest.fixture(scope="session")
def reports(
    course: Course,
    starter_course: Course,
    server_env: dict[str, str],
    pytestconfig: pytest.Config,
) -> tuple[verify.Reports, verify.Reports]:
    with phase(pytestconfig, "every step's checks, on the solutions and on the starters"):
        return verify.run_all(course, starter_course, server_env)


@pytest.fixture(scope="session")
def verdicts(
    course: Course,
    server_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> list[wrong_answers.Verdict]:
    """Every wrong answer of every step's catalogue, tried on its exercise's tests."""
    scratch = tmp_path_factory.mktemp("wrong")
    count = sum(len(wrong_answers.catalogue(step)) for step in course.steps)
    with phase(pytestconfig, f"the {count} wrong answers of the catalogues, each in a copy"):
        return wrong_answers.run_catalogue(course, course.steps, scratch, server_env)


@pytest.fixture(scope="session")
def solution_reports(reports: tuple[verify.Reports, verify.Reports]) -> verify.Reports:
    return reports[0]


@pytest.fixture(scope="session")
def starter_reports(reports: tuple[verify.Reports, verify.Reports]) -> verify.Reports:
    return reports[1]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Tests that take `a_step` run once per step of the course.
    if "a_step" in metafunc.fixturenames:
        steps = Course(ROOT).steps
        metafunc.parametrize("a_step", steps, ids=[s.name for s in steps])
