"""Alembic's environment: how migrations reach the database, async, with the app's settings.

`uv run alembic upgrade head` (in this step's folder) runs it with the app's own Settings.
The workshop's toolkit and tests run it with a connection and metadata of their own.

Step 06 migrates a database the app is using. Each migration is a transaction of its own, so
a lock is held for one migration, never for the whole run; each lock is waited for at most
`lock_timeout` (alembic.ini), so the requests that queue behind a migration's lock wait no
longer; and a migration that did not get its lock in time is rolled back and tried again, a
bounded number of times, before the run gives up.
"""

import asyncio
import logging
import time
from importlib import import_module
from logging.config import fileConfig
from pathlib import Path

from alembic import context
from alembic.util import CommandError
from sqlalchemy import Connection, MetaData
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)
log = logging.getLogger("alembic.env")

# PostgreSQL's SQLSTATE for "lock_timeout expired before the lock was granted".
LOCK_NOT_AVAILABLE = "55P03"


def package(module: str):  # type: ignore[no-untyped-def]
    """A module of the package this folder belongs to (`app` or `solution`)."""
    return import_module(f"{Path(__file__).resolve().parent.parent.name}.{module}")


def target_metadata() -> MetaData:
    # What autogenerate compares the database with: the models.
    return config.attributes.get("target_metadata") or package("models").Base.metadata


def option(name: str, default: str) -> str:
    return config.get_main_option(name) or default


def session_settings() -> list[str]:
    """What every migration of the run works under, set once for the whole session.

    Not LOCAL, as step 05 had it: each migration is a transaction of its own now, and
    CREATE INDEX CONCURRENTLY runs in none, so a LOCAL setting would end with the first.
    """
    statements = [f"SET lock_timeout = '{option('lock_timeout', '2s')}'"]
    # Tables are created and altered by their owner, never by the app's role.
    if owner := config.get_main_option("owner_role"):
        statements.append(f'SET ROLE "{owner}"')
    return statements


def settle(connection: Connection) -> None:
    """The session's settings, committed: Alembic must find no transaction of ours, or it
    takes it for the caller's, and neither begins nor commits any of its own."""
    for statement in session_settings():
        connection.exec_driver_sql(statement)
    connection.commit()


def run_with_retries(connection: Connection) -> None:
    """Run the migrations; one whose lock was not had within lock_timeout is rolled back (the
    ones before it stay committed) and run again after a pause, lock_attempts times at most."""
    attempts = int(option("lock_attempts", "5"))
    pause = float(option("lock_retry_pause", "1"))
    for attempt in range(1, attempts + 1):
        # Each attempt under the run's settings: one that failed may have left others (0007).
        settle(connection)
        try:
            context.run_migrations()
            return
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            if attempt == attempts:
                raise CommandError(
                    f"Gave up after {attempts} attempts: each time, a lock the migration needs "
                    f"was not had within lock_timeout ({option('lock_timeout', '2s')}). A "
                    "transaction holds it (pg_stat_activity, pg_locks); run again once it ends."
                ) from error
            # The requests that queued behind the lock go through during the pause.
            log.warning(
                "A lock was not had within lock_timeout (attempt %d of %d): trying again in %g s",
                attempt,
                attempts,
                pause * attempt,
            )
            time.sleep(pause * attempt)


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL instead of running it (the same SQL), for
    psql to run statement by statement (CREATE INDEX CONCURRENTLY is one of them)."""
    context.configure(
        url=package("config").Settings().database_url.get_secret_value(),
        target_metadata=target_metadata(),
        literal_binds=True,
        transaction_per_migration=True,
    )
    for statement in session_settings():
        context.execute(statement)
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    settle(connection)  # before Alembic first sees the connection
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        transaction_per_migration=True,
    )
    run_with_retries(connection)
    connection.exec_driver_sql("RESET ROLE")
    connection.exec_driver_sql("RESET lock_timeout")
    connection.commit()


async def run_async_migrations() -> None:
    url = package("config").Settings().database_url.get_secret_value()
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


def run_migrations_online() -> None:
    # A connection handed over by the caller (the toolkit, the tests), or our own.
    if (connection := config.attributes.get("connection")) is not None:
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
