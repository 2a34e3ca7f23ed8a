"""Step 03 checks: the models match the migrated table, names and all."""

from types import ModuleType
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import CheckConstraint, Column, Integer, MetaData, String, Table, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.schema import CreateTable

from workshop.migrations import Migrations
from workshop.testing import serve


@pytest.mark.exercise("03.1")
def test_constraints_get_stable_names(pkg: ModuleType) -> None:
    convention = pkg.models.Base.metadata.naming_convention
    probe = Table(
        "probe",
        MetaData(naming_convention=convention),
        Column("id", Integer, primary_key=True),
        Column("code", String(5), unique=True),
        Column("n", Integer, CheckConstraint("n > 0", name="positive")),
    )
    ddl = str(CreateTable(probe).compile(dialect=postgresql.dialect()))
    for name in ("pk_probe", "uq_probe_code", "ck_probe_positive"):
        assert f"CONSTRAINT {name} " in ddl


async def tables(url: str) -> set[str]:
    engine: AsyncEngine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            query = text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return set(await connection.scalars(query))
    finally:
        await engine.dispose()


@pytest.mark.exercise("03.2")
async def test_the_migration_makes_exactly_the_models_schema(
    migrations: Migrations, empty_database_url: str
) -> None:
    await migrations.upgrade(empty_database_url)
    assert await tables(empty_database_url) == {"items", "alembic_version"}
    # Autogenerate compares the models with the database: nothing left to change.
    assert await migrations.differences(empty_database_url) == []


async def test_the_database_has_the_constraint_names_of_the_convention(
    migrations: Migrations, empty_database_url: str
) -> None:
    await migrations.upgrade(empty_database_url)
    engine = create_async_engine(empty_database_url)
    try:
        async with engine.connect() as connection:
            # Keys and checks (PostgreSQL 18 also lists each NOT NULL, with names of its own).
            query = text(
                "SELECT conname FROM pg_constraint "
                "WHERE conrelid = 'items'::regclass AND contype IN ('p', 'u', 'c')"
            )
            names = set(await connection.scalars(query))
    finally:
        await engine.dispose()
    assert names == {"pk_items", "uq_items_name", "ck_items_price_not_negative"}


@pytest.mark.exercise("03.5")
async def test_the_migration_downgrades_cleanly(
    migrations: Migrations, empty_database_url: str
) -> None:
    await migrations.upgrade(empty_database_url)
    await migrations.downgrade(empty_database_url)
    assert await tables(empty_database_url) == {"alembic_version"}
    await migrations.upgrade(empty_database_url)  # and up again, from nothing
    assert "items" in await tables(empty_database_url)


async def test_starting_the_app_creates_no_table(
    pkg: ModuleType, settings: Any, empty_database_url: str
) -> None:
    """Tables come from the migrations, never from the app's start-up (no create_all)."""
    empty = settings.model_copy(update={"database_url": SecretStr(empty_database_url)})
    async with serve(pkg.main.create_app(empty)) as client:
        assert (await client.get("/health")).status_code == 200
    assert await tables(empty_database_url) == set()
