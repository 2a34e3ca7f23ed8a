"""The pytest plugin, proven on a small course made up for the test (run in a subprocess)."""

from __future__ import annotations

import asyncio
import importlib.util
import textwrap
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from workshop.checks.blame import one_line, raised_in, settle_blame
from workshop.postgres import Server, libpq_dsn

PYPROJECT = """
[tool.pytest.ini_options]
addopts = ["--strict-markers", "--import-mode=importlib", "-p", "no:cacheprovider"]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
"""

EXERCISES = """
[[exercise]]
id = "{n}.1"
title = "Say who you are"
hints = ["Look at __init__.py."]
"""

CONFIG = """
from pydantic_settings import BaseSettings


class Settings(BaseSettings):
    database_url: str = "postgresql+asyncpg://nobody@localhost/none"
"""

MAIN = """
from typing import Annotated

from fastapi import Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from .config import Settings
from .db import get_session

SessionDep = Annotated[AsyncSession, Depends(get_session)]


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI()

    @app.post("/notes", status_code=201)
    async def add_note(session: SessionDep) -> dict[str, int]:
        await session.execute(text("INSERT INTO notes DEFAULT VALUES"))
        await session.commit()
        return {"count": await session.scalar(text("SELECT count(*) FROM notes"))}

    return app
"""

DB = """
async def get_session():
    raise RuntimeError("the tests replace this")
    yield
"""

STEP_ONE_TESTS = """
import sys
from pathlib import Path

import pytest
from sqlalchemy import text


def test_gets_its_own_package(pkg):
    assert pkg.WHO == "01"
    assert "app" not in sys.modules


async def test_a_commit_is_rolled_back_after_the_test(session, client, database_url):
    Path("{out}/database.txt").write_text(await session.scalar(text("SELECT current_database()")))
    await session.execute(text("CREATE TABLE notes (id serial PRIMARY KEY)"))
    await session.commit()
    assert (await client.post("/notes")).json() == {{"count": 1}}
    assert (await client.post("/notes")).json() == {{"count": 2}}


async def test_the_next_test_starts_clean(session):
    assert await session.scalar(text("SELECT to_regclass('notes')")) is None


@pytest.mark.exercise("01.1")
def test_unfinished_exercise(pkg):
    assert pkg.who() == "finished"
"""

STUB = """

def who():
    raise NotImplementedError("exercise 01.1 is yours to do: `uv run workshop hint 01.1`")
"""

STEP_TWO_TESTS = """
def test_gets_its_own_package(pkg):
    assert pkg.WHO == "02"
"""


def make_course(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", pyproject=PYPROJECT)
    for number, name in (("01", "01-one"), ("02", "02-two")):
        step = pytester.path / "steps" / name
        (step / "app").mkdir(parents=True)
        (step / "tests").mkdir()
        (step / "exercises.toml").write_text(EXERCISES.format(n=number))
        (step / "app" / "__init__.py").write_text(f'WHO = "{number}"\n' + STUB)
        (step / "app" / "config.py").write_text(CONFIG)
        (step / "app" / "main.py").write_text(MAIN)
        (step / "app" / "db.py").write_text(DB)
    tests_one = textwrap.dedent(STEP_ONE_TESTS.format(out=pytester.path))
    (pytester.path / "steps/01-one/tests/test_one.py").write_text(tests_one)
    (pytester.path / "steps/02-two/tests/test_two.py").write_text(STEP_TWO_TESTS)


async def database_exists(server: Server, name: str) -> bool:
    connection = await asyncpg.connect(libpq_dsn(server.url))
    try:
        return bool(await connection.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", name))
    finally:
        await connection.close()


def test_one_process_tests_each_steps_own_package_on_a_throwaway_database(
    pytester: pytest.Pytester, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_course(pytester)
    monkeypatch.setenv("DATABASE_URL", server.url.render_as_string(hide_password=False))
    result = pytester.runpytest_subprocess("steps")
    result.assert_outcomes(passed=4, failed=1)
    # The unfinished exercise's failure says where its stub is, in one line, which exercise
    # it is, and what to run next.
    result.stdout.fnmatch_lines(
        [
            "steps/01-one/app/__init__.py:5: exercise 01.1 is yours to do: *",
            "*Exercise 01.1 (Say who you are) is not finished yet: *`uv run workshop hint 01.1`*",
        ]
    )
    # The test session's database is gone once the session is over.
    name = (pytester.path / "database.txt").read_text()
    assert name.startswith("workshop_test_01_")
    assert not asyncio.run(database_exists(server, name))


def test_an_unknown_exercise_id_is_refused(
    pytester: pytest.Pytester, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_course(pytester)
    # The session's server: without it, the run would start an embedded one in the copy.
    monkeypatch.setenv("DATABASE_URL", server.url.render_as_string(hide_password=False))
    (pytester.path / "steps/02-two/tests/test_two.py").write_text(
        "import pytest\n\n\n@pytest.mark.exercise('02.9')\ndef test_x():\n    pass\n"
    )
    result = pytester.runpytest_subprocess("steps/02-two")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*marked with exercise 02.9*exercises.toml does not list*"])


def test_a_failure_is_blamed_on_what_is_really_missing() -> None:
    """A test of 05.3 and 05.4 that fails while 05.4 alone fails too waits on 05.4: 05.3 is
    not sent back to the learner. A stub reached names its own exercise, whatever the marks."""

    def entry(outcome: str, *exercises: str, stub: str | None = None) -> dict[str, Any]:
        return {"outcome": outcome, "exercises": list(exercises), "stub": stub, "blame": None}

    entries = {
        "both": entry("failed", "05.3", "05.4"),
        "05.4 alone": entry("failed", "05.4"),
        "05.3 alone": entry("passed", "05.3"),
        "stub": entry("failed", "05.3", stub="05.5"),
    }
    settle_blame(entries)
    assert {name: e["blame"] for name, e in entries.items()} == {
        "both": "05.4",
        "05.4 alone": "05.4",
        "05.3 alone": None,
        "stub": "05.5",
    }
    entries["05.3 alone"]["outcome"] = "failed"
    settle_blame(entries)
    assert entries["both"]["blame"] == "05.3"  # the first that is surely unfinished


CRASHING = """
from pydantic import BaseModel, ConfigDict


def owned_by(owner):
    # EXERCISE 05.4: keep only the owner's items
    return owner.items
    # END EXERCISE


def listing(owner):
    # EXERCISE 05.3: the current user
    user = owner
    # END EXERCISE
    return owned_by(user)


class ItemPublic(BaseModel):
    id: int
    # EXERCISE 03.4: read from the ORM object
    model_config = ConfigDict(from_attributes=False)
    # END EXERCISE
"""


def test_a_crash_is_blamed_on_the_exercise_whose_code_raised_it(tmp_path: Path) -> None:
    """Whatever exercise the failing test checks: the innermost exercise block of the step's
    package in the traceback, or the block inside the model a ValidationError names."""
    package = tmp_path / "app"
    package.mkdir()
    (package / "crud.py").write_text(CRASHING)
    module = load_module(package / "crud.py")
    with pytest.raises(AttributeError) as crash:
        module.listing(None)  # raised by 05.4's line, called from 05.3's block
    assert raised_in(crash, package) == "05.4"
    with pytest.raises(ValidationError) as invalid:
        module.ItemPublic.model_validate(object())
    assert raised_in(invalid, package) == "03.4"
    with pytest.raises(ZeroDivisionError) as elsewhere:
        _ = 1 / 0  # not the step's code: the other rules decide
    assert raised_in(elsewhere, package) is None
    entries = {
        "05.3's test": {
            "outcome": "failed",
            "exercises": ["05.3"],
            "stub": None,
            "raised_in": "05.4",
            "blame": None,
        }
    }
    settle_blame(entries)
    assert entries["05.3's test"]["blame"] == "05.4"


def load_module(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"crashing_{id(path)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LazyLoad:
    """An ORM object whose attribute would load lazily: in async code, MissingGreenlet."""

    @property
    def id(self) -> int:
        raise RuntimeError("greenlet_spawn has not been called; can't call await_only() here.")


def test_a_failures_line_shows_its_cause() -> None:
    """`workshop check` shows one line per failure: it must name the cause, not only the
    symptom (a lazy load's error hides inside the response's validation error)."""

    class ItemPublic(BaseModel):
        model_config = ConfigDict(from_attributes=True)
        id: int

    with pytest.raises(ValidationError) as hidden:
        ItemPublic.model_validate(LazyLoad())
    line = one_line(hidden)
    assert line is not None and line.startswith("ValidationError: 1 validation error")
    assert "id: Error extracting attribute: RuntimeError: greenlet_spawn" in line

    with pytest.raises(KeyError) as chained:
        try:
            _ = 1 / 0
        except ZeroDivisionError as exc:
            raise KeyError("item") from exc
    assert one_line(chained) == "KeyError: 'item' (from ZeroDivisionError: division by zero)"


def test_a_bare_comparisons_line_says_what_the_numbers_are() -> None:
    """`assert 3 == 1` alone tells nothing: the line keeps what pytest says the 3 is (this
    module's asserts are rewritten by pytest, as a step's tests are)."""
    statements = ["INSERT", "INSERT", "INSERT"]
    with pytest.raises(AssertionError) as bare:
        assert len(statements) == 1
    assert one_line(bare) == (
        "AssertionError: assert 3 == 1 (where 3 = len(['INSERT', 'INSERT', 'INSERT']))"
    )


LEAKING_TESTS = """
import gc
import warnings


class Leaky:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the garbage collector frees it

    def __del__(self) -> None:
        warnings.warn("unclosed connection (made up)", ResourceWarning)


def test_leaves_garbage_behind(pkg):
    gc.disable()  # so that nothing collects it before the next step's test does
    Leaky()
"""

COLLECTING_TESTS = """
import gc


def test_collects_garbage(pkg):
    gc.enable()
    gc.collect()
"""


@pytest.mark.parametrize("catalogue", [True, False])
def test_one_copys_garbage_never_fails_the_next_copys_test(
    pytester: pytest.Pytester, server: Server, monkeypatch: pytest.MonkeyPatch, catalogue: bool
) -> None:
    """The catalogue runs many copies of a step in one process, and a wrong answer may leak on
    purpose: its garbage is collected quietly before the next copy's tests, whose verdict is
    then their own. Without the catalogue's option, the leak's warning fails the next test."""
    make_course(pytester)
    monkeypatch.setenv("DATABASE_URL", server.url.render_as_string(hide_password=False))
    (pytester.path / "steps/01-one/tests/test_one.py").write_text(LEAKING_TESTS)
    (pytester.path / "steps/02-two/tests/test_two.py").write_text(COLLECTING_TESTS)
    options = ["--first-failure-per-step"] if catalogue else []
    result = pytester.runpytest_subprocess("-W", "error", *options, "steps")
    if catalogue:
        result.assert_outcomes(passed=2)
    else:
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(["*unclosed connection (made up)*"])
