"""The workshop's pytest plugin: the same fixtures for every step.

Loaded through the `pytest11` entry point wherever the workshop is installed. A test that lives
in `steps/NN-name/tests/` gets that step's package (`app/`, or `solution/` with `--solution`),
a throwaway database of its own on the resolved server, and the fixtures below.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI

from .course import COMMAND, Step, WorkshopError, step_of
from .database import (
    DatabaseUnavailable,
    Server,
    ToolkitSettings,
    create_database,
    drop_database,
    drop_orphaned_test_databases,
    resolve_server,
    run_sync,
    test_database_name,
)
from .loader import load_package
from .testing import serve

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

STUB_MESSAGE = re.compile(r"exercise \d\d\.\d+ is yours to do")
REPORT_KEY = pytest.StashKey[dict[str, dict[str, Any]]]()
DATABASES_KEY = pytest.StashKey["TestDatabases"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("workshop")
    group.addoption(
        "--solution", action="store_true", help="test each step's solution/ instead of its app/"
    )
    group.addoption(
        "--workshop-report", metavar="PATH", help="write each test's outcome as JSON to PATH"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "exercise(id): the test checks that exercise, e.g. '01.2'")
    config.stash[REPORT_KEY] = {}
    # Read DATABASE_URL now: each test's clean environment no longer has it.
    config.stash[DATABASES_KEY] = TestDatabases(
        config.rootpath, ToolkitSettings.load(config.rootpath)
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The step's other checks first, then the exercises in order: the first failure a
    # learner reads is the exercise `workshop check` names.
    items.sort(key=lambda item: min(exercise_ids(item), default=""))
    for item in items:
        for exercise_id in exercise_ids(item):
            step = step_of(item.path)
            if step is None or exercise_id not in {e.id for e in step.exercises}:
                raise pytest.UsageError(
                    f"{item.nodeid} is marked with exercise {exercise_id}, "
                    "which its step's exercises.toml does not list."
                )


def exercise_ids(item: pytest.Item) -> list[str]:
    return [mark.args[0] for mark in item.iter_markers("exercise")]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report: pytest.TestReport = yield
    entry = item.config.stash[REPORT_KEY].setdefault(
        report.nodeid, {"outcome": "passed", "exercises": exercise_ids(item)}
    )
    if report.failed:
        entry["outcome"] = "failed"
    elif report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "skipped"
    step = step_of(item.path)
    if report.failed and call.excinfo is not None and not item.config.getoption("solution"):
        shorten_stub_failure(report, call.excinfo, item.config.rootpath)
    if report.failed and step and entry["exercises"] and not item.config.getoption("solution"):
        for exercise_id in entry["exercises"]:
            title = step.exercise(exercise_id).title
            report.sections.append(
                (
                    "workshop",
                    f"Exercise {exercise_id} ({title}) is not finished yet: "
                    f"run `{COMMAND} hint {exercise_id}`.",
                )
            )
    return report


def shorten_stub_failure(
    report: pytest.TestReport, excinfo: pytest.ExceptionInfo[Any], root: Path
) -> None:
    """An exercise's stub was reached: say where it is in one line, not in fifty frames."""
    if not excinfo.errisinstance(NotImplementedError) or not STUB_MESSAGE.match(str(excinfo.value)):
        return
    where = excinfo.traceback[-1]
    path = Path(where.path)
    shown = path.relative_to(root) if path.is_relative_to(root) else path
    report.longrepr = f"{shown}:{where.lineno + 1}: {excinfo.value}"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if config.getoption("solution"):
        return
    unfinished = sorted(
        {
            exercise_id
            for entry in config.stash[REPORT_KEY].values()
            if entry["outcome"] == "failed"
            for exercise_id in entry["exercises"]
        }
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


# -- databases ------------------------------------------------------------------------------


class TestDatabases:
    """One throwaway database per step per test session, dropped at the end."""

    __test__ = False  # not a test class, whatever its name says

    def __init__(self, root: Path, settings: ToolkitSettings) -> None:
        self.root = root
        self.settings = settings
        self.server: Server | None = None
        self.names: dict[Path, str] = {}

    def url_for(self, step: Step) -> str:
        if self.server is None:
            try:
                self.server = resolve_server(self.root, settings=self.settings)
            except WorkshopError as exc:
                pytest.exit(str(exc), returncode=1)
            if self.server.source == "embedded":
                run_sync(drop_orphaned_test_databases(self.server.url))
        if step.dir not in self.names:
            name = test_database_name(step.number)
            run_sync(create_database(self.server.url, name))
            self.names[step.dir] = name
        return self.server.database_url(self.names[step.dir]).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        if self.server is not None:
            for name in self.names.values():
                run_sync(drop_database(self.server.url, name))


@pytest.fixture(scope="session")
def workshop_databases(pytestconfig: pytest.Config) -> Iterator[TestDatabases]:
    databases = pytestconfig.stash[DATABASES_KEY]
    yield databases
    databases.drop_all()


# -- the step under test --------------------------------------------------------------------


@pytest.fixture
def step(request: pytest.FixtureRequest) -> Step:
    """The step this test belongs to."""
    found = step_of(request.path)
    if found is None:
        raise WorkshopError(f"{request.path} is not inside a step (no exercises.toml above it).")
    return found


@pytest.fixture
def pkg(step: Step, request: pytest.FixtureRequest) -> ModuleType:
    """The step's package: `app/` (the learner's code), or `solution/` with --solution."""
    return load_package(step, solution=request.config.getoption("solution"))


@pytest.fixture(autouse=True)
def clean_environ(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The learner's environment and `.env` cannot change a step test's result."""
    if step_of(request.path) is None:
        return
    pkg: ModuleType = request.getfixturevalue("pkg")
    config = getattr(pkg, "config", None)
    for name in getattr(getattr(config, "Settings", None), "model_fields", {}):
        monkeypatch.delenv(name.upper(), raising=False)
    # Settings read `.env` from the working directory: make it an empty one.
    monkeypatch.chdir(request.getfixturevalue("tmp_path"))


@pytest.fixture
def database_url(step: Step, workshop_databases: TestDatabases) -> str:
    """A SQLAlchemy URL (asyncpg) of this test session's throwaway database for the step."""
    try:
        return workshop_databases.url_for(step)
    except DatabaseUnavailable as exc:  # pragma: no cover - the server went away mid-session
        pytest.exit(str(exc), returncode=1)


@pytest.fixture
def settings(pkg: ModuleType, database_url: str) -> Any:
    """The step's Settings on the throwaway database, with no `.env` involved."""
    return pkg.config.Settings(_env_file=None, database_url=database_url)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    # Imported here: step 01 has no SQLAlchemy engine, and importing it costs 0.2 s.
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session whose work is rolled back after the test, even what the test commits.

    SQLAlchemy's "joining a session into an external transaction" recipe: the session's
    commits become savepoints inside a transaction that the fixture rolls back.
    """
    from sqlalchemy.ext.asyncio import AsyncSession

    async with engine.connect() as connection:
        transaction = await connection.begin()
        session = AsyncSession(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield session
        finally:
            await session.close()
            await transaction.rollback()


@pytest.fixture
def app(pkg: ModuleType, settings: Any, request: pytest.FixtureRequest) -> FastAPI:
    """The step's app, built by its `create_app(settings)`.

    A test that also asks for `session` has the app's requests run in that session (the
    step's `db.get_session` is overridden), so what they write is rolled back too. Other
    tests get the app as it is, with its own engine and pool.
    """
    app: FastAPI = pkg.main.create_app(settings)
    get_session = getattr(getattr(pkg, "db", None), "get_session", None)
    if get_session is not None and "session" in request.fixturenames:
        test_session: AsyncSession = request.getfixturevalue("session")

        async def use_test_session() -> AsyncIterator[AsyncSession]:
            yield test_session

        app.dependency_overrides[get_session] = use_test_session
    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client over the app, with its lifespan (start-up and shut-down) running."""
    try:
        async with serve(app) as client:
            yield client
    finally:
        # An unfinished lifespan may leave its engine open: close it here, so its connections
        # cannot leak into the tests that follow (the exercise's own test still sees the leak).
        if (engine := getattr(app.state, "engine", None)) is not None:
            await engine.dispose()
