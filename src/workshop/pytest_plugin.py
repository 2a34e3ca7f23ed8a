"""The workshop's pytest plugin: the same fixtures for every step.

Loaded through the `pytest11` entry point wherever the workshop is installed. A test that lives
in `steps/NN-name/tests/` gets that step's package (`app/`, or `solution/` with `--solution`),
a throwaway database of its own on the resolved server, and the fixtures below.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import sysconfig
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
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
    drop_ready_databases,
    fingerprint,
    hand_back_database,
    resolve_server,
    run_sync,
    take_ready_database,
    test_database_name,
)
from .loader import load_package
from .starter import STUB_MESSAGE, exercise_at, exercise_in_class
from .testing import serve

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from .migrations import Migrations

# Seconds a step's test may take before it fails as hung; the slowest take a few.
STEP_TEST_TIMEOUT = 60
REPORT_KEY = pytest.StashKey[dict[str, dict[str, Any]]]()
FAILED_STEPS_KEY = pytest.StashKey[set[Path]]()
DATABASES_KEY = pytest.StashKey["TestDatabases"]()
APPS_KEY = pytest.StashKey[dict[Any, FastAPI]]()


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
        help="skip the rest of a step's tests once one fails (one failure proves a wrong answer)",
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
    config.stash[APPS_KEY] = {}
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


def exercise_ids(item: pytest.Item) -> list[str]:
    return [mark.args[0] for mark in item.iter_markers("exercise")]


# Where the installed libraries and Python's own modules live.
LIBRARIES = tuple({Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib", "stdlib")})


def in_a_library(entry: pytest.TracebackEntry) -> bool:
    return library_file(str(entry.path))


@functools.lru_cache(maxsize=1024)
def library_file(path: str) -> bool:
    return any(Path(path).is_relative_to(library) for library in LIBRARIES)


def without_library_frames(item: pytest.Item) -> None:
    """A failure's frames inside FastAPI, Starlette, httpx or SQLAlchemy tell a learner
    nothing, and showing them cost pytest most of a check's time (it parses each file to show
    its lines): the item's failures show the step's own frames and the tests' only."""
    shown = getattr(item, "_traceback_filter", None)  # pytest's, for a test function
    if shown is None:
        return

    def ours(excinfo: pytest.ExceptionInfo[BaseException]) -> Any:
        traceback = shown(excinfo)
        return traceback.filter(lambda entry: not in_a_library(entry)) or traceback

    item._traceback_filter = ours  # type: ignore[attr-defined]


class StubReports:
    """A failure that reached a starter's stub is reported as where the stub is, in one line
    (see the wrapper below). Its report is made here, so that pytest does not first format a
    traceback no one will see: a parse of the test file per frame, most of a starter's run."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> pytest.TestReport | None:
        if (
            item.config.getoption("solution")
            or step_of(item.path) is None
            or stub_reached(call.excinfo) is None
        ):
            return None  # pytest makes the report
        sections = [
            (f"Captured {key} {when}", content) for when, key, content in item._report_sections
        ]
        return pytest.TestReport(
            item.nodeid,
            item.location,
            dict.fromkeys(item.keywords, 1),
            "failed",
            str(call.excinfo.value) if call.excinfo else "",
            call.when,
            sections,
            call.duration,
            call.start,
            call.stop,
            item.user_properties,
        )


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
    if not report.failed:
        return report
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
        if step is not None and step.dir in item.config.stash[FAILED_STEPS_KEY]:
            pytest.skip("a test of this step failed already")


def settle_blame(entries: dict[str, dict[str, Any]]) -> None:
    """Blame each failure on one exercise: the one whose stub it reached; else the one whose
    code raised it (whatever exercise the test checks: a crash in 05.4's code is 05.4's to
    fix); else, for a test of several exercises, the first of them that fails a test of its
    own alone (it is surely unfinished); else the last of them (a test of several checks the
    last, which needs the earlier ones). Settled again after each failure, as later tests
    tell more."""
    alone = {
        e["exercises"][0]
        for e in entries.values()
        if e["outcome"] == "failed" and len(e["exercises"]) == 1 and not e["stub"]
    }
    for entry in entries.values():
        if entry["outcome"] != "failed":
            continue
        exercises = entry["exercises"]
        entry["blame"] = (
            entry["stub"]
            or entry.get("raised_in")
            or next((x for x in exercises if x in alone), max(exercises, default=None))
        )


def one_line(excinfo: pytest.ExceptionInfo[BaseException] | None) -> str | None:
    """A failure's reason in one line: the first line of its exception's message."""
    if excinfo is None:
        return None
    message = str(excinfo.value).strip().splitlines()
    return f"{excinfo.typename}: {message[0]}" if message else excinfo.typename


def raised_in(excinfo: pytest.ExceptionInfo[BaseException] | None, package: Path) -> str | None:
    """The exercise whose code raised this failure: the innermost frame in the step's package
    that lies in an exercise block; for a pydantic ValidationError, which names a model and
    not a line, the exercise block inside that model's class."""
    if excinfo is None:
        return None
    for frame in reversed(excinfo.traceback):
        path = Path(frame.path)
        inside = path.suffix == ".py" and path.is_relative_to(package)
        if inside and (found := exercise_at(path, frame.lineno + 1)):
            return found
    title = getattr(excinfo.value, "title", None)
    if excinfo.typename == "ValidationError" and isinstance(title, str):
        return exercise_in_class(package, title)
    return None


def stub_reached(excinfo: pytest.ExceptionInfo[BaseException] | None) -> str | None:
    """The exercise whose starter stub raised this failure, if it was one."""
    if excinfo is None or not excinfo.errisinstance(NotImplementedError):
        return None
    found = STUB_MESSAGE.match(str(excinfo.value))
    return found["id"] if found else None


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


# -- databases ------------------------------------------------------------------------------


# How many ready databases of a kind the embedded server keeps between runs: step 03's run
# uses five (one migrated, four empty), and the repository's tests run a step twice at once.
KEEP_READY = 6


def migrations_digest(step: Step, solution: bool) -> str:
    """What the package's migrations are, in a few letters: a change makes a new kind."""
    digest = hashlib.sha256((step.dir / "alembic.ini").read_bytes())
    folder = step.package_dir(solution=solution) / "migrations"
    for path in sorted(folder.rglob("*.py")):
        digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:10]


class TestDatabases:
    """The throwaway databases of a test session: one per step, migrated, and the empty ones
    that tests ask for.

    On the embedded server a run takes databases another run made ready and hands its own
    back at the end (see `hand_back_database`): CREATE DATABASE is most of a check's set-up.
    Elsewhere (DATABASE_URL: a server that may be shared) it makes them and drops them.
    """

    __test__ = False  # not a test class, whatever its name says

    def __init__(self, root: Path, settings: ToolkitSettings, *, solution: bool) -> None:
        self.root = root
        self.settings = settings
        self.solution = solution
        self.server: Server | None = None
        self.names: dict[Path, str] = {}
        self.broken: dict[Path, str] = {}
        self.ready: dict[str, tuple[str, str]] = {}  # name: (kind, fingerprint when made)

    def connect(self) -> Server:
        if self.server is None:
            try:
                self.server = resolve_server(self.root, settings=self.settings)
            except WorkshopError as exc:
                pytest.exit(str(exc), returncode=1)
            if self.server.source == "embedded":
                run_sync(drop_orphaned_test_databases(self.server.url))
        return self.server

    @property
    def keeps_ready(self) -> bool:
        return self.server is not None and self.server.source == "embedded"

    def database(
        self, key: Path, label: str, kind: str, prepare: Callable[[str], None] | None = None
    ) -> str:
        """A database of this kind for `key`: one taken ready, else a new one that `prepare`
        (given its URL) makes what its kind is, its fingerprint then remembered."""
        assert self.server is not None
        name = test_database_name(label)
        self.names[key] = name  # dropped at the end, even if making it fails half-way
        taken = (
            run_sync(take_ready_database(self.server.url, kind, name)) if self.keeps_ready else None
        )
        if taken is not None:
            self.ready[name] = (kind, taken)
            return name
        run_sync(create_database(self.server.url, name))
        if prepare is not None:
            prepare(self.url(name))
        if self.keeps_ready:
            self.ready[name] = (kind, run_sync(fingerprint(self.server.database_url(name))))
        return name

    def url_for(self, step: Step) -> str:
        self.connect()
        if step.dir in self.broken:
            pytest.fail(f"The step's migrations failed: {self.broken[step.dir]}", pytrace=False)
        if step.dir in self.names:
            return self.url(self.names[step.dir])
        if not step.has_migrations:
            return self.url(self.database(step.dir, step.number, "empty"))
        kind = f"{step.number}_{migrations_digest(step, self.solution)}"
        return self.url(
            self.database(step.dir, step.number, kind, lambda url: self.migrate(step, url))
        )

    def migrate(self, step: Step, url: str) -> None:
        """Run the step's migrations on a new database of it."""
        # Imported here: Alembic costs a third of a second, and steps 01-02 have none.
        from .migrations import Migrations

        assert self.server is not None
        try:
            run_sync(Migrations(step, self.solution).upgrade(url))
        except Exception as exc:
            # Every test of the step gets the same clear failure, not a missing table.
            self.broken[step.dir] = f"{type(exc).__name__}: {exc}"
            raise
        if self.keeps_ready:
            # The ready databases of migrations the step's packages no longer have: gone.
            kinds = {f"{step.number}_{migrations_digest(step, s)}" for s in (False, True)}
            run_sync(drop_ready_databases(self.server.url, f"{step.number}_", kinds))

    def new_database(self, label: str) -> str:
        """Another throwaway database, empty; handed back or dropped at the end like the others."""
        return self.url(self.database(self.root / f"{label}_{len(self.names)}", label, "empty"))

    def url(self, name: str) -> str:
        assert self.server is not None
        return self.server.database_url(name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        if self.server is None:
            return
        for name in self.names.values():
            if name in self.ready:
                kind, then = self.ready[name]
                migrated = kind != "empty"
                back = hand_back_database(
                    self.server.url, name, kind, then, keep=KEEP_READY, migrated=migrated
                )
                run_sync(back)
            else:
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
def empty_database_url(step: Step, database_url: str, workshop_databases: TestDatabases) -> str:
    """A database of this test's own, empty: for what must start from nothing (migrations)."""
    return workshop_databases.new_database(f"{step.number}_empty")


@pytest.fixture
def migrations(step: Step, request: pytest.FixtureRequest) -> Migrations:
    """The migrations of the package under test (`app/`, or `solution/` with --solution)."""
    from .migrations import Migrations

    return Migrations(step, request.config.getoption("solution"))


@pytest.fixture
def app_database_url(step: Step, database_url: str, request: pytest.FixtureRequest) -> str:
    """The throwaway database as the app sees it: as the app's own role, when the step has
    one (step 05's least privilege), else the same as `database_url`."""
    if not step.has_migrations:
        return database_url
    migrations: Migrations = request.getfixturevalue("migrations")
    return migrations.app_url(database_url)


@pytest.fixture
def settings(pkg: ModuleType, app_database_url: str) -> Any:
    """The step's Settings on the throwaway database, with no `.env` involved."""
    return pkg.config.Settings(_env_file=None, database_url=app_database_url)


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
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The kind (SELECT, INSERT, ...) of each SQL statement run on the test's connection,
    the one `client` shares with `session`; the savepoints that stand in for commits aside."""
    from sqlalchemy import event

    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO")):
            seen.append(statement.split(None, 1)[0])

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine.sync_engine, "before_cursor_execute", record)


def settings_key(settings: Any) -> tuple[tuple[str, str], ...]:
    """Settings as a key: every field's value, secrets included (their repr hides them)."""
    values = settings.model_dump()
    for name, value in values.items():
        if hasattr(value, "get_secret_value"):
            values[name] = value.get_secret_value()
    return tuple((name, repr(value)) for name, value in sorted(values.items()))


@pytest.fixture
def app(pkg: ModuleType, settings: Any, request: pytest.FixtureRequest) -> Iterator[FastAPI]:
    """The step's app, built by its `create_app(settings)`.

    A test that also asks for `session` has the app's requests run in that session (the
    step's `db.get_session` is overridden), so what they write is rolled back too. Other
    tests get the app as it is, with its own engine and pool.

    One app serves every test of the run with the same package and settings: FastAPI builds
    each route's validators on an app's first request, a tenth of a second per test. Each
    test still runs the app's lifespan afresh (`client`); a test that changes the app (a route
    of its own, its state's settings) gets an app no other test will see.
    """
    apps = request.config.stash[APPS_KEY]
    key = (pkg.__name__, id(pkg), settings_key(settings))
    app: FastAPI = apps.get(key) or pkg.main.create_app(settings)
    routes, built_with = list(app.router.routes), getattr(app.state, "settings", None)
    get_session = getattr(getattr(pkg, "db", None), "get_session", None)
    if get_session is not None and "session" in request.fixturenames:
        from sqlalchemy.exc import DBAPIError

        test_session: AsyncSession = request.getfixturevalue("session")

        async def use_test_session() -> AsyncIterator[AsyncSession]:
            try:
                yield test_session
            except Exception as error:
                # A failed flush, or any statement PostgreSQL refused, leaves the transaction
                # unusable until it rolls back, as closing the request's own session would
                # (other errors, such as a 404, leave the test's objects be).
                if not test_session.is_active or isinstance(error, DBAPIError):
                    await test_session.rollback()
                raise

        app.dependency_overrides[get_session] = use_test_session
    yield app
    app.dependency_overrides.clear()
    if app.router.routes == routes and getattr(app.state, "settings", None) is built_with:
        apps[key] = app
    else:
        apps.pop(key, None)


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
