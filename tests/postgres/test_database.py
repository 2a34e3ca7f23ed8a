"""Provisioning: DATABASE_URL first, else the embedded server, one sentence on failure."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import URL
from typer.testing import CliRunner

from workshop.commands import app
from workshop.course import Course
from workshop.postgres import (
    DatabaseUnavailable,
    EmbeddedServer,
    Server,
    ToolkitSettings,
    asyncpg_url,
    create_database,
    drop_database,
    libpq_dsn,
    resolve_server,
    roles,
    run_sync,
    test_database_name,
)
from workshop.postgres.databases import drop_orphaned_test_databases
from workshop.postgres.ready import fingerprint, hand_back_database, take_ready_database
from workshop.postgres.roles import PASSWORDS_TABLE, role_password

from ..faults import first_column

CLOSED_PORT = "postgresql://postgres:s3cret-pw@127.0.0.1:1/workshop"


def test_a_closed_port_gets_one_sentence_and_exit_code_1(
    course: Course, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(course.root)
    for command in (["db", "url"], ["db", "start"], ["db", "status"]):
        result = CliRunner().invoke(app, command, env={"DATABASE_URL": CLOSED_PORT})
        assert result.exit_code == 1, result.output
        message = result.output.strip()
        assert message.startswith("PostgreSQL at 127.0.0.1:1/workshop (from DATABASE_URL)")
        assert "docker compose up -d" in message and "remove DATABASE_URL" in message
        assert "\n" not in message and "Traceback" not in message
        assert "s3cret-pw" not in message


def test_database_url_is_read_from_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    (tmp_path / ".env").write_text(f"DATABASE_URL={CLOSED_PORT}\n")
    assert ToolkitSettings.load(tmp_path).database_url == CLOSED_PORT
    with pytest.raises(DatabaseUnavailable, match="does not answer"):
        resolve_server(tmp_path)


def test_urls_are_spelled_for_asyncpg() -> None:
    assert str(asyncpg_url("postgres://u@h/db")) == "postgresql+asyncpg://u@h/db"
    with pytest.raises(DatabaseUnavailable, match="must be a PostgreSQL URL"):
        asyncpg_url("mysql://u@h/db")


def test_the_system_server_works_through_database_url(
    course: Course, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever server this session runs on, DATABASE_URL pointing at it is used as given."""
    url = resolve_server(course.root).url.render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", url)
    server = resolve_server(course.root)
    assert server.source == "DATABASE_URL"
    assert server.url.render_as_string(hide_password=False) == url


def test_two_processes_starting_a_new_embedded_server_share_it(
    course: Course, tmp_path: Path
) -> None:
    pgdata = tmp_path / "pgdata"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["WORKSHOP_PGDATA"] = str(pgdata)
    command = [sys.executable, "-m", "workshop", "db", "url"]
    starts = [
        subprocess.Popen(command, cwd=course.root, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        urls = [process.communicate(timeout=120)[0].strip() for process in starts]
        assert [process.returncode for process in starts] == [0, 0]
        assert urls[0] == urls[1]
        assert urls[0].startswith("postgresql+asyncpg://") and "/workshop" in urls[0]
        assert (pgdata / "PG_VERSION").read_text().strip() == "18"
    finally:
        # Whatever happened above, leave no server behind (and hide no failure of the above).
        EmbeddedServer(pgdata).stop()
    assert not EmbeddedServer(pgdata).is_running()


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0,
    reason="only root's server runs as another user, whom a folder's permissions can lock out",
)
def test_a_server_that_pg_ctl_cannot_reach_is_still_stopped(tmp_path: Path) -> None:
    """Under root the server runs as a user of its own: when its folder is made private under
    it (as pytest does to its temporary root), pg_ctl cannot stop it; it must stop anyway."""
    folder = tmp_path / "locked"
    server = EmbeddedServer(folder / "pgdata")
    server.start()
    try:
        folder.chmod(0o700)
        assert server.stop()
    finally:
        folder.chmod(0o755)
        server.stop()
    assert not server.is_running()


def test_psql_passes_its_own_options_through(course: Course, server_env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "workshop", "db", "psql", "-At", "-c", "SELECT 6 * 7"],
        cwd=course.root,
        env=server_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42"


def test_psql_opens_on_the_workshops_database(course: Course, server: Server) -> None:
    env = {**os.environ, "DATABASE_URL": server.url.render_as_string(hide_password=False)}
    done = subprocess.run(
        [sys.executable, "-m", "workshop", "db", "psql"],
        cwd=course.root,
        env=env,
        input="SELECT 40 + 2 AS answer;\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "answer" in done.stdout and "42" in done.stdout


def test_a_dead_runs_test_databases_are_dropped(server: Server) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = finished.stdout.strip()
    orphan = f"workshop_test_01_{dead_pid}_abcdef"
    ours = test_database_name("01")
    for name in (orphan, ours):
        run_sync(create_database(server.url, name))
    try:
        assert orphan in run_sync(drop_orphaned_test_databases(server.url))
        assert not run_sync(database_names(server.url)) & {orphan}
        assert ours in run_sync(database_names(server.url))
    finally:
        run_sync(drop_database(server.url, ours))
        run_sync(drop_database(server.url, orphan))


def test_a_notebook_under_the_tests_never_takes_the_learners_scratch_database(
    server: Server,
) -> None:
    """A notebook drops its scratch database WITH (FORCE) before it makes it: run by the tests
    on the server a learner's open notebook uses, a fixed name would end that notebook's
    sessions. Under a test run (DATABASE_URL names a throwaway database) the name is the run's
    own, and carries the kernel's pid, so a dead run's leftover is dropped like any other."""
    learner = Server(url=server.url.set(database="workshop"), source="embedded")
    assert learner.scratch_database("notebook_03") == "notebook_03"
    under_tests = Server(
        url=server.database_url(test_database_name("notebook")), source="DATABASE_URL"
    )
    names = {under_tests.scratch_database("notebook_03") for _ in range(2)}
    assert len(names) == 2 and "notebook_03" not in names
    for name in names:
        assert name.startswith("workshop_test_notebook_03_")
        assert name.split("_")[-2] == str(os.getpid())  # what the sweep of orphans reads


async def database_names(url: URL) -> set[str]:
    return await first_column(url, "SELECT datname FROM pg_database")


def test_a_malformed_database_url_is_one_sentence(
    course: Course, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(course.root)
    result = CliRunner().invoke(app, ["db", "url"], env={"DATABASE_URL": "not a url at all"})
    assert result.exit_code == 1
    assert result.output.strip().startswith("DATABASE_URL is not a URL")
    assert "Traceback" not in result.output


def test_the_app_roles_password_is_the_servers_own(server: Server) -> None:
    """Step 05's app role gets a password made at random for this server, which only an
    administrator can read: none is published in the repository."""
    password = run_sync(role_password(server.url, "workshop_app"))
    assert len(password) >= 24 and password != "workshop_app"
    assert run_sync(role_password(server.url, "workshop_app")) == password  # made once

    async def granted_to_everyone() -> int:
        """Privileges on the table granted to PUBLIC, every role (grantee 0)."""
        admin = server.url.set(database="postgres")
        connection = await asyncpg.connect(libpq_dsn(admin))
        try:
            return await connection.fetchval(
                "SELECT count(*) FROM pg_class c, aclexplode(coalesce(c.relacl, "
                "acldefault('r', c.relowner))) a WHERE c.relname = $1 AND a.grantee = 0",
                PASSWORDS_TABLE,
            )
        finally:
            await connection.close()

    assert run_sync(granted_to_everyone()) == 0


async def execute(url: URL, sql: str) -> None:
    connection = await asyncpg.connect(libpq_dsn(url))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def test_a_run_hands_a_database_back_ready_only_as_it_was_made(server: Server) -> None:
    """Test runs on the embedded server keep their databases for the next run (CREATE DATABASE
    is most of a check's set-up): emptied of the run's work, and only if the catalogue is
    again exactly as it was made; else dropped."""
    kind = f"test{uuid.uuid4().hex[:8]}"  # no real run takes this kind
    made, taken, again = (test_database_name("99") for _ in range(3))
    run_sync(create_database(server.url, made))
    expected = run_sync(fingerprint(server.database_url(made)))
    # An empty database a test migrated: handed back with `public` anew, as it was made.
    run_sync(execute(server.database_url(made), "CREATE TABLE t (id int PRIMARY KEY)"))
    run_sync(hand_back_database(server.url, made, kind, expected, keep=2, migrated=False))
    assert run_sync(take_ready_database(server.url, kind, taken)) == expected
    assert run_sync(fingerprint(server.database_url(taken))) == expected
    # A schema beyond `public` is not undone: the database is dropped, not kept.
    run_sync(execute(server.database_url(taken), "CREATE SCHEMA elsewhere"))
    run_sync(hand_back_database(server.url, taken, kind, expected, keep=2, migrated=False))
    assert run_sync(take_ready_database(server.url, kind, again)) is None
    assert not run_sync(database_names(server.url)) & {made, taken, again}


def test_a_migrated_database_goes_back_without_its_rows(server: Server) -> None:
    kind = f"test{uuid.uuid4().hex[:8]}"
    made, taken = test_database_name("99"), test_database_name("99")
    run_sync(create_database(server.url, made))
    url = server.database_url(made)
    run_sync(execute(url, "CREATE TABLE items (id serial PRIMARY KEY, name text)"))
    expected = run_sync(fingerprint(url))
    run_sync(execute(url, "INSERT INTO items (name) VALUES ('a'), ('b')"))
    run_sync(hand_back_database(server.url, made, kind, expected, keep=1, migrated=True))
    try:
        assert run_sync(take_ready_database(server.url, kind, taken)) == expected
        taken_url = server.database_url(taken)
        assert run_sync(first_column(taken_url, "SELECT count(*) FROM items")) == {0}
        # The ids start again at 1, as in a database just migrated.
        run_sync(execute(taken_url, "INSERT INTO items (name) VALUES ('c')"))
        assert run_sync(first_column(taken_url, "SELECT id FROM items")) == {1}
    finally:
        run_sync(drop_database(server.url, taken))


def test_processes_that_ask_for_the_app_password_at_once_all_get_it(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test processes that migrate step 05 at once each ask for the app role's password (each
    asks once, then remembers it): eight at once, as eight processes would. Without the lock
    they REVOKE on one table together, and all but one fail with "tuple concurrently updated"
    (30 rounds in 30, measured)."""
    monkeypatch.setattr(roles, "_passwords", {})

    async def eight_at_once() -> list[str | BaseException]:
        asks = (role_password(server.url, "workshop_app") for _ in range(8))
        return await asyncio.gather(*asks, return_exceptions=True)

    answers = run_sync(eight_at_once())
    assert len(set(map(str, answers))) == 1, answers
    assert isinstance(answers[0], str)
