"""The fixtures every step's tests get: the package under test, its settings, databases,
an engine, a session, the app with its lifespan and a client over it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI

from ..course import Step, WorkshopError, step_of
from ..course.loader import load_package
from ..postgres import (
    DatabaseUnavailable,
)
from ..testing import serve

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from ..postgres.migrations import Migrations

from .databases import DATABASES_KEY, TestDatabases

APPS_KEY = pytest.StashKey[dict[Any, FastAPI]]()


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
    from ..postgres.migrations import Migrations

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
    apps = request.config.stash.setdefault(APPS_KEY, {})
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
