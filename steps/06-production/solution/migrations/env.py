"""Alembic's environment: how migrations reach the database, async, with the app's settings.

`uv run alembic upgrade head` (in this step's folder) runs it with the app's own Settings.
The workshop's toolkit and tests run it with a connection and metadata of their own.
"""

import asyncio
from importlib import import_module
from logging.config import fileConfig
from pathlib import Path

from alembic import context
from sqlalchemy import Connection, MetaData
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)


def package(module: str):  # type: ignore[no-untyped-def]
    """A module of the package this folder belongs to (`app` or `solution`)."""
    return import_module(f"{Path(__file__).resolve().parent.parent.name}.{module}")


def target_metadata() -> MetaData:
    # What autogenerate compares the database with: the models.
    return config.attributes.get("target_metadata") or package("models").Base.metadata


def as_the_owner() -> None:
    """Tables are created and altered by their owner, never by the app's role.

    LOCAL, inside the migrations' transaction: a SET before it would open a transaction that
    Alembic takes for the caller's, and never commits (every migration then lost).
    """
    if owner := config.get_main_option("owner_role"):
        context.execute(f'SET LOCAL ROLE "{owner}"')


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL instead of running it (the same SQL)."""
    context.configure(
        url=package("config").Settings().database_url.get_secret_value(),
        target_metadata=target_metadata(),
        literal_binds=True,
    )
    with context.begin_transaction():
        as_the_owner()
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata())
    with context.begin_transaction():
        as_the_owner()
        context.run_migrations()


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
