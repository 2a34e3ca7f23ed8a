"""The PostgreSQL the workshop runs on: the embedded server (or `DATABASE_URL`'s) and the
PgBouncer the toolkit runs in front of it (step 06), each step's database, the tests' ready
databases, the roles of least privilege, and migrations.

It may use `workshop.course` (the course on disk) and nothing above it: no checks, no
commands. The names below are the ones the notebooks and the tests use.
"""

from .databases import (
    Server,
    create_database,
    drop_database,
    resolve_server,
    run_sync,
    server_version,
    test_database_name,
    workshop_database_url,
)
from .server import (
    DatabaseUnavailable,
    EmbeddedServer,
    ToolkitSettings,
    asyncpg_url,
    describe,
    libpq_dsn,
)

__all__ = [
    "DatabaseUnavailable",
    "EmbeddedServer",
    "Server",
    "ToolkitSettings",
    "asyncpg_url",
    "create_database",
    "describe",
    "drop_database",
    "libpq_dsn",
    "resolve_server",
    "run_sync",
    "server_version",
    "test_database_name",
    "workshop_database_url",
]
