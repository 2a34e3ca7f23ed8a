"""`alembic upgrade head` from the command line, as a learner or a deploy runs it, leaves the
step's schema behind: the toolkit's own path (a connection handed in) is not the only one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import URL

from workshop.course import Course, Step
from workshop.postgres import (
    Server,
    create_database,
    drop_database,
    libpq_dsn,
    run_sync,
    test_database_name,
)
from workshop.postgres.migrations import Migrations
from workshop.postgres.roles import provision_roles
from workshop.postgres.server import psql_command


def steps_with_migrations() -> list[Step]:
    return [step for step in Course().steps if step.has_migrations]


@pytest.mark.parametrize("step", steps_with_migrations(), ids=lambda step: step.name)
def test_alembic_upgrade_head_from_the_command_line(
    step: Step, server: Server, tmp_path: Path
) -> None:
    name = test_database_name(f"{step.number}_cli")
    run_sync(create_database(server.url, name))
    url = server.database_url(name)
    try:
        if (roles := Migrations(step, solution=True).roles()) is not None:
            run_sync(provision_roles(url, owner=roles[0], app=roles[1]))  # as `workshop run`
        done = alembic(step, name, url, "upgrade", "head")
        assert done.returncode == 0, done.stderr
        assert "Running upgrade" in done.stderr
        version, tables = run_sync(schema_of(url))
        assert version is not None, "alembic said it ran, but no revision was recorded"
        assert "items" in tables
    finally:
        run_sync(drop_database(server.url, name))


def alembic(step: Step, name: str, url: URL, *arguments: str) -> subprocess.CompletedProcess[str]:
    """The `alembic` command, in the step's folder, on the reference's migrations."""
    # The step's alembic.ini, pointed at the reference's migrations instead of app/'s.
    ini = (step.dir / "alembic.ini").read_text(encoding="utf-8")
    ini = ini.replace("%(here)s/app/migrations", "%(here)s/solution/migrations")
    config = step.dir / f".alembic-{name}.ini"
    config.write_text(ini, encoding="utf-8")
    try:
        return subprocess.run(
            [sys.executable, "-m", "alembic", "-c", str(config), *arguments],
            cwd=step.dir,
            env={**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        config.unlink()


@pytest.mark.parametrize(
    "step",
    [step for step in steps_with_migrations() if Migrations(step, solution=True).roles()],
    ids=lambda step: step.name,
)
def test_alembic_upgrade_sql_prints_what_the_online_run_does(step: Step, server: Server) -> None:
    """`alembic upgrade head --sql` prints the migrations for someone to run by hand (with
    psql: statement by statement, as CREATE INDEX CONCURRENTLY needs). Like the online run,
    the script must become the owner role first (SET LOCAL ROLE in step 05's one transaction,
    SET ROLE for step 06's one per migration), or its tables would belong to whoever runs it:
    run as the administrator, it leaves every table the owner's."""
    migrations = Migrations(step, solution=True)
    roles = migrations.roles()
    assert roles is not None
    owner, app = roles
    name = test_database_name(f"{step.number}_sql")
    run_sync(create_database(server.url, name))
    url = server.database_url(name)
    try:
        run_sync(provision_roles(url, owner=owner, app=app))
        done = alembic(step, name, url, "upgrade", "head", "--sql")
        assert done.returncode == 0, done.stderr
        before_any_table = done.stdout.partition("CREATE TABLE")[0]
        assert re.search(f'SET (LOCAL )?ROLE "{owner}";', before_any_table), before_any_table
        script = subprocess.run(
            [psql_command(), libpq_dsn(url), "--no-psqlrc", "-q", "-v", "ON_ERROR_STOP=1"],
            input=done.stdout,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert script.returncode == 0, script.stderr
        version, tables = run_sync(schema_of(url))
        assert version == max(migrations.revisions())
        assert run_sync(table_owners(url)) == {owner}, tables
    finally:
        run_sync(drop_database(server.url, name))


async def table_owners(url: URL) -> set[str]:
    connection = await asyncpg.connect(libpq_dsn(url))
    try:
        rows = await connection.fetch(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'public'"
        )
    finally:
        await connection.close()
    return {row["tableowner"] for row in rows}


async def schema_of(url: URL) -> tuple[str | None, set[str]]:
    """The revision recorded in the database (None if none), and its tables."""
    connection = await asyncpg.connect(libpq_dsn(url))
    try:
        tables = {
            row["tablename"]
            for row in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
        version = None
        if "alembic_version" in tables:
            version = await connection.fetchval("SELECT version_num FROM alembic_version")
    finally:
        await connection.close()
    return version, tables
