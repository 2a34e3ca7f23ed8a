"""PgBouncer for the tests that need one (step 06): a PgBouncer of the test session's own, in
transaction mode, in front of the server the test databases are on, and their URLs through it.

Without pgbouncer on the machine, those tests skip with the command that installs it, and
`workshop check` reports their exercises as needing it rather than done. Where
WORKSHOP_REQUIRE_PGBOUNCER is set (CI), they fail instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..course import Course
from ..postgres.pgbouncer import REQUIRE, PgBouncer, PgBouncerFailed
from ..postgres.pgbouncer_config import find_pgbouncer, install_command, workshop_users
from .databases import TestDatabases
from .run import NEEDS

# Server connections per database and user of the tests' PgBouncer: few, so that a test that
# holds one in a transaction knows which one the next transaction gets.
POOL_SIZE = 2


def missing() -> str:
    """The reason a test that needs PgBouncer skips on a machine without one."""
    return f"{NEEDS}PgBouncer: {install_command()}"


@pytest.fixture(scope="session")
def pgbouncer(workshop_databases: TestDatabases) -> Iterator[PgBouncer]:
    """A PgBouncer of this test session's own (transaction mode, its own port on 127.0.0.1,
    POOL_SIZE server connections per database and user), in front of the server of the
    session's test databases: every database name goes through. `pgbouncer.through(url)` is
    any of the session's URLs through it (same user, password and database). Stopped at the
    end of the session, before the databases are dropped."""
    if find_pgbouncer() is None:
        if os.environ.get(REQUIRE):
            pytest.fail(
                f"This machine has no PgBouncer, and {REQUIRE} is set: {install_command()}.",
                pytrace=False,
            )
        pytest.skip(missing())
    server = workshop_databases.connect()
    users = workshop_users(Course(workshop_databases.root), server.url)
    folder = Path(tempfile.mkdtemp(prefix="workshop-pgbouncer-"))
    bouncer = PgBouncer(folder)
    try:
        try:
            bouncer.start(server.url, users, port=None, pool_size=POOL_SIZE)
        except PgBouncerFailed:  # the free port it chose was taken meanwhile
            bouncer.start(server.url, users, port=None, pool_size=POOL_SIZE)
    except PgBouncerFailed as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(str(exc), pytrace=False)
    yield bouncer
    bouncer.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pgbouncer_url(pgbouncer: PgBouncer, app_database_url: str) -> str:
    """The step's test database as the app connects to it (`app_database_url`: the app role,
    from step 05 on), through the session's PgBouncer: a SQLAlchemy URL for asyncpg."""
    return pgbouncer.through(app_database_url)


@pytest.fixture
def pgbouncer_admin_url(pgbouncer: PgBouncer, database_url: str) -> str:
    """The step's test database as the server's administrator (`database_url`), through the
    session's PgBouncer."""
    return pgbouncer.through(database_url)
