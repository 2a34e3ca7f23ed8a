"""The plugin's PgBouncer fixtures, on a small course made up for the test (run in a
subprocess): through a real PgBouncer where the machine has one; a skip that says how to
install it where it has none, and a failure instead where WORKSHOP_REQUIRE_PGBOUNCER is set."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from workshop.checks.pgbouncer import missing
from workshop.checks.run import StepReport, TestOutcome
from workshop.course import Course
from workshop.postgres import Server
from workshop.postgres.pgbouncer_config import find_pgbouncer, install_command

from .test_plugin import CONFIG, DB, EXERCISES, MAIN, PYPROJECT

THROUGH_PGBOUNCER = """
import asyncpg
import pytest
from sqlalchemy.engine import make_url


def dsn(url):
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.mark.exercise("06.1")
async def test_through_pgbouncer(pgbouncer, pgbouncer_url, pgbouncer_admin_url, database_url):
    assert make_url(pgbouncer_url).port == pgbouncer.status().port
    assert "default_pool_size = 2" in pgbouncer.ini.read_text()
    # Transaction mode: what one client SETs outside a transaction, the next client finds
    # on the same server connection.
    first = await asyncpg.connect(dsn(pgbouncer_admin_url), statement_cache_size=0)
    second = await asyncpg.connect(dsn(pgbouncer_admin_url), statement_cache_size=0)
    try:
        assert await first.fetchval("SELECT current_database()") == make_url(database_url).database
        await first.execute("SET work_mem = '7777kB'")
        assert await second.fetchval("SHOW work_mem") == "7777kB"
    finally:
        await first.close()
        await second.close()


async def test_a_restarted_pgbouncer_listens_where_it_did(pgbouncer, pgbouncer_url):
    before = pgbouncer.status()
    after = pgbouncer.restart()
    assert (after.port, after.pool_mode) == (before.port, "transaction")
    assert after.pid != before.pid
    connection = await asyncpg.connect(dsn(pgbouncer_url), statement_cache_size=0)
    try:
        assert await connection.fetchval("SELECT 1") == 1
    finally:
        await connection.close()


def test_without_pgbouncer():
    pass
"""

# Run first in the subprocess: hides the places where the packages put pgbouncer.
HIDE_PGBOUNCER = """
import workshop.postgres.pgbouncer_config as config

config.KNOWN_PLACES = ()
"""


def make_step(pytester: pytest.Pytester, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makefile(".toml", pyproject=PYPROJECT)
    step = pytester.path / "steps" / "06-six"
    (step / "app").mkdir(parents=True)
    (step / "tests").mkdir()
    (step / "exercises.toml").write_text(EXERCISES.format(n="06"))
    for name, text in (("__init__", ""), ("config", CONFIG), ("main", MAIN), ("db", DB)):
        (step / "app" / f"{name}.py").write_text(text)
    (step / "tests" / "test_six.py").write_text(THROUGH_PGBOUNCER)
    monkeypatch.setenv("DATABASE_URL", server.url.render_as_string(hide_password=False))
    monkeypatch.delenv("WORKSHOP_REQUIRE_PGBOUNCER", raising=False)


def hide_pgbouncer(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest(HIDE_PGBOUNCER)
    path = os.environ["PATH"].split(os.pathsep)
    # Every folder that has one (/sbin is /usr/sbin on Debian).
    monkeypatch.setenv(
        "PATH", os.pathsep.join(p for p in path if not (Path(p) / "pgbouncer").exists())
    )


@pytest.mark.skipif(find_pgbouncer() is None, reason=missing())
def test_the_tests_reach_their_database_through_a_pgbouncer_in_transaction_mode(
    pytester: pytest.Pytester, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_step(pytester, server, monkeypatch)
    result = pytester.runpytest_subprocess("steps")
    result.assert_outcomes(passed=3)


def test_without_pgbouncer_its_tests_skip_saying_how_to_install_it(
    pytester: pytest.Pytester, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_step(pytester, server, monkeypatch)
    hide_pgbouncer(pytester, monkeypatch)
    result = pytester.runpytest_subprocess("steps", "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines([f"SKIPPED*needs PgBouncer: {install_command()}"])


def test_where_pgbouncer_is_required_its_absence_fails_them(
    pytester: pytest.Pytester, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_step(pytester, server, monkeypatch)
    hide_pgbouncer(pytester, monkeypatch)
    monkeypatch.setenv("WORKSHOP_REQUIRE_PGBOUNCER", "1")
    result = pytester.runpytest_subprocess("steps")
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(["*This machine has no PgBouncer, and WORKSHOP_REQUIRE_PGBOUNCER*"])


def test_the_install_command_fits_the_machine() -> None:
    assert install_command("linux") == "sudo apt-get install pgbouncer"
    assert install_command("darwin") == "brew install pgbouncer"
    windows = install_command("win32")
    assert "no Windows package" in windows and "docker compose up -d pgbouncer" in windows
    assert "WSL" in windows


def test_check_reports_an_exercise_this_machine_cannot_check_as_needing_pgbouncer(
    pytester: pytest.Pytester, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not done, and not the learner's to do: `workshop check` says what to install."""
    make_step(pytester, server, monkeypatch)
    hide_pgbouncer(pytester, monkeypatch)
    monkeypatch.setenv("WORKSHOP_WARM", "0")  # no warm process left behind in the copy
    monkeypatch.setenv("COLUMNS", "200")
    result = pytester.run(sys.executable, "-m", "workshop", "check", "06")
    assert result.ret == 1
    needs = f"needs PgBouncer: {install_command()}"
    result.stdout.fnmatch_lines([f"*06.1*Say who you are*{needs}*", f"Checking 06.1 {needs}"])
    assert "complete" not in result.stdout.str() and "Next: exercise" not in result.stdout.str()


def test_a_test_skipped_for_want_of_pgbouncer_leaves_its_exercise_undone(course: Course) -> None:
    step = course.step("05")
    first, second = step.exercises[:2]
    needs = missing()
    report = StepReport(
        step,
        solution=False,
        tests=[
            TestOutcome("a", "passed", (first.id,), None),
            TestOutcome("b", "skipped", (first.id,), None, needs),
            TestOutcome("c", "skipped", (second.id,), None, needs),
            TestOutcome("d", "failed", (second.id,), second.id, "AssertionError"),
            TestOutcome("e", "skipped", (), None, needs),
        ],
        output="",
    )
    assert report.state(first) == needs and not report.done(first)
    assert report.state(second) == "to do (0/2 pass)"  # the learner's work comes first
    assert report.missing == [needs] and not report.other_failures and not report.complete
    # Skipped for another reason, a test does not stand in the way.
    assert (
        TestOutcome("f", "skipped", (first.id,), None, "a test of this step failed").needs is None
    )
