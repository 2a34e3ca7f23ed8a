"""The workshop's pytest plugin: the same fixtures for every step.

Loaded through the `pytest11` entry point wherever the workshop is installed. A test that lives
in `steps/NN-name/tests/` gets that step's package (`app/`, or `solution/` with `--solution`),
a throwaway database of its own on the resolved server (databases.py), and the fixtures of
fixtures.py (and pgbouncer.py's, for the tests that go through PgBouncer); a failure is blamed
on one exercise (blame.py).
"""

from __future__ import annotations

import functools
import gc
import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest

from ..course import COMMAND, step_of
from ..postgres import ToolkitSettings
from .blame import (
    StubReports,
    exercise_ids,
    one_line,
    raised_in,
    settle_blame,
    stub_reached,
    without_library_frames,
)
from .databases import DATABASES_KEY, TestDatabases

# The fixtures every step's tests use.
pytest_plugins = ("workshop.checks.fixtures", "workshop.checks.pgbouncer")
# Seconds a step's test may take before it fails as hung; the slowest take a few.
STEP_TEST_TIMEOUT = 60
REPORT_KEY = pytest.StashKey[dict[str, dict[str, Any]]]()
FAILED_STEPS_KEY = pytest.StashKey[set[Path]]()
LAST_STEP_KEY = pytest.StashKey[Path | None]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("workshop")
    group.addoption(
        "--solution", action="store_true", help="test each step's solution/ instead of its app/"
    )
    group.addoption(
        "--workshop-report", metavar="PATH", help="write each test's outcome as JSON to PATH"
    )
    group.addoption(
        "--first-failure-per-step",
        action="store_true",
        help="skip the rest of a step's tests once one fails (one failure proves a wrong "
        "answer), and collect one step's garbage quietly before the next step's tests",
    )


@pytest.hookimpl(tryfirst=True)  # before pytest's own, which reads --basetemp
def pytest_configure(config: pytest.Config) -> None:
    if config.option.basetemp is None:
        # A base temporary folder of this run's own, not one under pytest-of-<user>: every
        # pytest run of the user makes that one private again (mode 0700), which locks a
        # test's embedded server, running as a user of its own under root, out of its data.
        config.option.basetemp = tempfile.mkdtemp(prefix="pytest-workshop-")
        config.add_cleanup(functools.partial(shutil.rmtree, config.option.basetemp, True))
    config.addinivalue_line("markers", "exercise(id): the test checks that exercise, e.g. '01.2'")
    config.stash[REPORT_KEY] = {}
    config.stash[FAILED_STEPS_KEY] = set()
    config.stash[LAST_STEP_KEY] = None
    config.pluginmanager.register(StubReports(), "workshop-stub-reports")
    # Read DATABASE_URL now: each test's clean environment no longer has it.
    config.stash[DATABASES_KEY] = TestDatabases(
        config.rootpath,
        ToolkitSettings.load(config.rootpath),
        solution=config.getoption("solution"),
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The step's other checks first, then the exercises in order: the first failure a
    # learner reads is the exercise `workshop check` names.
    items.sort(key=lambda item: min(exercise_ids(item), default=""))
    timeouts = config.pluginmanager.hasplugin("timeout")
    for item in items:
        step = step_of(item.path)
        if step is not None:
            without_library_frames(item)
        if timeouts and step is not None and item.get_closest_marker("timeout") is None:
            # A step test that hangs (a wrong answer can make one wait forever) fails instead.
            item.add_marker(pytest.mark.timeout(STEP_TEST_TIMEOUT))
        for exercise_id in exercise_ids(item):
            # `pytest -k ex02_1` selects exercise 02.1's tests.
            item.extra_keyword_matches.add(f"ex{exercise_id.replace('.', '_')}")
            if step is None or exercise_id not in {e.id for e in step.exercises}:
                raise pytest.UsageError(
                    f"{item.nodeid} is marked with exercise {exercise_id}, "
                    "which its step's exercises.toml does not list."
                )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Find the database before the first test, so that when there is none the run ends with
    its one sentence, cleanly, instead of failing every test."""
    if any(step_of(item.path) for item in session.items):
        session.config.stash[DATABASES_KEY].connect()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report: pytest.TestReport = yield
    entries = item.config.stash[REPORT_KEY]
    entry = entries.setdefault(
        report.nodeid,
        {
            "outcome": "passed",
            "exercises": sorted(exercise_ids(item)),
            "blame": None,
            "stub": None,
            "raised_in": None,
            "reason": None,
        },
    )
    if report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "skipped"
        if isinstance(report.longrepr, tuple):  # (file, line, "Skipped: why")
            entry["reason"] = str(report.longrepr[2]).removeprefix("Skipped: ")
    if not report.failed:
        return report
    if entry["outcome"] == "skipped":
        entry["reason"] = None  # its skip's reason: the failure's own replaces it
    entry["outcome"] = "failed"
    if (failed_step := step_of(item.path)) is not None:
        item.config.stash[FAILED_STEPS_KEY].add(failed_step.dir)
    entry["stub"] = entry["stub"] or stub_reached(call.excinfo)
    entry["reason"] = entry["reason"] or one_line(call.excinfo)
    step = step_of(item.path)
    if step is not None and entry["raised_in"] is None:
        package = step.package_dir(solution=item.config.getoption("solution"))
        entry["raised_in"] = raised_in(call.excinfo, package)
    settle_blame(entries)
    if item.config.getoption("solution") or step is None:
        return report
    if entry["stub"] is not None and call.excinfo is not None:
        # The stub was reached: say where it is in one line, not in fifty frames.
        where = call.excinfo.traceback[-1]
        path, root = Path(where.path), item.config.rootpath
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        report.longrepr = f"{shown}:{where.lineno + 1}: {call.excinfo.value}"
    if entry["blame"] is not None:
        exercise = step.exercise(entry["blame"])
        report.sections.append(
            (
                "workshop",
                f"Exercise {exercise.id} ({exercise.title}) is not finished yet: "
                f"run `{COMMAND} hint {exercise.id}`.",
            )
        )
    return report


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.config.getoption("first_failure_per_step"):
        step = step_of(item.path)
        if step is not None and step.dir != item.config.stash[LAST_STEP_KEY]:
            item.config.stash[LAST_STEP_KEY] = step.dir
            collect_quietly()
        if step is not None and step.dir in item.config.stash[FAILED_STEPS_KEY]:
            pytest.skip("a test of this step failed already")


def collect_quietly() -> None:
    """Collect the garbage the tests so far left, without its warnings. In the catalogue's
    runs each step folder is one wrong answer's copy, and some leak on purpose (a session
    never closed): their "unclosed connection" warnings, raised when the garbage collector
    gets to them, would fail whichever copy's test runs then, for a reason not its own."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if config.getoption("solution"):
        return
    unfinished = sorted(
        {entry["blame"] for entry in config.stash[REPORT_KEY].values() if entry["blame"]}
    )
    if unfinished:
        terminalreporter.section("workshop")
        for exercise_id in unfinished:
            terminalreporter.write_line(
                f"exercise {exercise_id} is not finished: `{COMMAND} hint {exercise_id}`"
            )


def pytest_sessionfinish(session: pytest.Session) -> None:
    if path := session.config.getoption("workshop_report"):
        Path(path).write_text(json.dumps(session.config.stash[REPORT_KEY], indent=1))
