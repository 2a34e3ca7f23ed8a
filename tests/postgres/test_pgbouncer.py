"""The workshop's PgBouncer, a real one in front of a real PostgreSQL: it starts, answers in
transaction mode, stops without a trace; `workshop db` and `doctor` speak of it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from workshop.checks.pgbouncer import missing
from workshop.commands import app
from workshop.course import Course
from workshop.postgres import Server, asyncpg_url, libpq_dsn, run_sync
from workshop.postgres.pgbouncer import REQUIRE, PgBouncer, PgBouncerMissing
from workshop.postgres.pgbouncer_config import find_pgbouncer, install_command, workshop_users

# Where CI requires it (WORKSHOP_REQUIRE_PGBOUNCER), a machine without one fails these.
needs_pgbouncer = pytest.mark.skipif(
    find_pgbouncer() is None and not os.environ.get(REQUIRE), reason=missing()
)
# The machine's own PostgreSQL over TCP, as CI's DATABASE_URL run has it.
SYSTEM_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def bouncer(tmp_path: Path) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(tmp_path / "pgbouncer")
    yield bouncer
    bouncer.stop()


async def fetch(url: str, *queries: str) -> list[object]:
    """Each query's first value, on one connection (asyncpg's statement cache off, as a
    client of a transaction pooler must have it)."""
    connection = await asyncpg.connect(libpq_dsn(make_url(url)), statement_cache_size=0)
    try:
        return [await connection.fetchval(query) for query in queries]
    finally:
        await connection.close()


@needs_pgbouncer
def test_it_answers_through_transaction_mode_and_stops_without_a_trace(
    course: Course, server: Server, bouncer: PgBouncer
) -> None:
    status = bouncer.start(server.url, workshop_users(course, server.url), pool_size=1)
    assert status.pool_mode == "transaction"
    assert "listen_addr = 127.0.0.1" in bouncer.ini.read_text()
    url = bouncer.through(server.url)
    assert make_url(url).port == status.port and make_url(url).host == "127.0.0.1"
    assert run_sync(fetch(url, "SELECT current_user")) == [server.url.username or "postgres"]
    # Transaction mode: the next client gets the server connection the last one left, and
    # with it what that one SET outside a transaction (its pool has one connection here).
    run_sync(fetch(url, "SET work_mem = '7777kB'"))
    assert run_sync(fetch(url, "SHOW work_mem")) == ["7777kB"]
    # Its admin console says so too, and counts those transactions.
    pools = [p for p in bouncer.show("POOLS") if p["database"] == server.url.database]
    assert [p["pool_mode"] for p in pools] == ["transaction"]
    assert bouncer.show("CONFIG")  # rows of text: the console answers
    # Started again in front of the same server: the same process.
    assert bouncer.start(server.url, {}, pool_size=1).pid == status.pid
    assert bouncer.stop()
    assert not psutil.pid_exists(status.pid) or "pgbouncer" not in psutil.Process(status.pid).name()
    assert bouncer.status() is None and not bouncer.stop()


@needs_pgbouncer
def test_the_app_role_goes_through_with_the_toolkits_password(
    course: Course, server: Server, bouncer: PgBouncer
) -> None:
    users = workshop_users(course, server.url)
    assert users.get("workshop_app")  # step 05's, from alembic.ini
    bouncer.start(server.url, users)
    # The role exists once a step 05 database is migrated: make sure of it here.
    run_sync(_provision(server))
    as_app = server.url.set(username="workshop_app", password=users["workshop_app"])
    assert run_sync(fetch(bouncer.through(as_app), "SELECT current_user")) == ["workshop_app"]
    wrong = make_url(bouncer.through(as_app)).set(password="not-its-password")
    with pytest.raises(asyncpg.PostgresError, match="authentication failed"):
        run_sync(fetch(wrong.render_as_string(hide_password=False), "SELECT 1"))


async def _provision(server: Server) -> None:
    from workshop.postgres.roles import provision_roles

    await provision_roles(server.url, owner="workshop_owner", app="workshop_app")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="only root is refused")
@needs_pgbouncer
def test_under_root_it_runs_as_the_servers_own_user(server: Server, bouncer: PgBouncer) -> None:
    status = bouncer.start(server.url, {})
    user = psutil.Process(status.pid).username()
    assert user != "root"
    if server.url.query.get("host"):  # the embedded server's socket: its owner may open it
        owner = Path(str(server.url.query["host"])).stat().st_uid
        assert psutil.Process(status.pid).uids().real == owner


@needs_pgbouncer
def test_it_fronts_a_server_over_tcp(bouncer: PgBouncer) -> None:
    url = asyncpg_url(SYSTEM_URL)
    try:
        run_sync(fetch(SYSTEM_URL, "SELECT 1"))
    except (OSError, asyncpg.PostgresError):
        pytest.skip("no PostgreSQL answers on 127.0.0.1:5432 (CI's DATABASE_URL run has one)")
    status = bouncer.start(url, {"postgres": None})
    assert status.upstream == "host=127.0.0.1 port=5432"
    assert run_sync(fetch(bouncer.through(url), "SELECT 1")) == [1]


def test_without_pgbouncer_starting_one_says_how_to_install_it(
    server: Server, bouncer: PgBouncer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide_pgbouncer(monkeypatch)
    with pytest.raises(PgBouncerMissing, match=f"not installed: {install_command()}"):
        bouncer.start(server.url, {})


def hide_pgbouncer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH without pgbouncer (/sbin is /usr/sbin on Debian), and none where packages put it."""
    monkeypatch.setattr("workshop.postgres.pgbouncer_config.KNOWN_PLACES", ())
    path = os.environ["PATH"].split(os.pathsep)
    kept = [p for p in path if not (Path(p) / "pgbouncer").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(kept))
    assert find_pgbouncer() is None


def test_doctor_says_how_to_install_it_on_each_system(
    course: Course, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide_pgbouncer(monkeypatch)
    monkeypatch.chdir(course.root)
    result = CliRunner().invoke(app, ["doctor"], env={"COLUMNS": "400"})
    row = next(line for line in result.output.splitlines() if "PgBouncer (step 06)" in line)
    assert "missing" in row
    assert "Debian/Ubuntu: `sudo apt-get install pgbouncer`" in row
    assert "macOS: `brew install pgbouncer`" in row
    assert "Windows: PgBouncer has no Windows package: `docker compose up -d pgbouncer`" in row
    assert "WSL" in row


@needs_pgbouncer
def test_db_start_status_and_stop_report_it(
    course: Course, server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a DATABASE_URL server (the session's), with the toolkit's folder in tmp_path."""
    monkeypatch.chdir(course.root)
    env = {
        "DATABASE_URL": server.url.render_as_string(hide_password=False),
        "WORKSHOP_PGDATA": str(tmp_path / "pgdata"),
        "COLUMNS": "400",
    }
    bouncer = PgBouncer(tmp_path / "pgbouncer")
    try:
        started = CliRunner().invoke(app, ["db", "start"], env=env)
        assert started.exit_code == 0, started.output
        status = bouncer.status()
        assert status is not None
        assert f"127.0.0.1:{status.port}, pool mode transaction, in front of it" in started.output
        said = CliRunner().invoke(app, ["db", "status"], env=env).output
        assert f"running on 127.0.0.1:{status.port}, pool mode transaction" in said
        # `db url --pgbouncer`: the database through it; `db pgbouncer`: its admin console.
        through = CliRunner().invoke(app, ["db", "url", "--pgbouncer"], env=env).stdout.strip()
        assert make_url(through).port == status.port
        assert run_sync(fetch(through, "SELECT current_database()")) == [server.url.database]
        console = CliRunner().invoke(app, ["db", "pgbouncer", "-c", "SHOW POOLS"], env=env)
        assert console.exit_code == 0, console.output
        stopped = CliRunner().invoke(app, ["db", "stop"], env=env)
        assert "PgBouncer is stopped." in stopped.output
        assert "leaves it alone" in stopped.output  # DATABASE_URL's server runs on
        assert bouncer.status() is None and not psutil.pid_exists(status.pid)
        said = CliRunner().invoke(app, ["db", "status"], env=env).output
        assert "PgBouncer is stopped: `uv run workshop db start` starts it." in said
    finally:
        bouncer.stop()
