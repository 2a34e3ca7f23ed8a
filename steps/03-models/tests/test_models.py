"""Step 03 checks: the models match the migrated table, names and all."""

from decimal import Decimal
from types import ModuleType, UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest
from pydantic import SecretStr
from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    inspect,
    text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from workshop.postgres.migrations import Migrations
from workshop.testing import serve


# The names PostgreSQL must show for a table made with the convention: every kind of key.
def convention_names(table: str) -> set[str]:
    return {
        f"pk_{table}",
        f"uq_{table}_code",
        f"ck_{table}_positive",
        f"fk_{table}_owner_id_owners",  # step 05's migration expects fk_items_owner_id_users
        f"ix_{table}_owner_id",
    }


@pytest.mark.exercise("03.1")
async def test_constraints_get_stable_names(pkg: ModuleType, session: AsyncSession) -> None:
    """Every kind of constraint and index gets its name from the convention, in PostgreSQL.

    Two tables, so names written out for one table cannot pass for the other.
    """
    metadata = MetaData(naming_convention=pkg.models.Base.metadata.naming_convention)
    Table("owners", metadata, Column("id", Integer, primary_key=True))
    for table in ("shelves", "crates"):
        Table(
            table,
            metadata,
            Column("id", Integer, primary_key=True),
            Column("code", String(5), unique=True),
            Column("owner_id", ForeignKey("owners.id"), index=True),
            Column("n", Integer, CheckConstraint("n > 0", name="positive")),
        )
    connection = await session.connection()
    try:  # in the test's transaction: rolled back at the end
        await connection.run_sync(metadata.create_all)
    except Exception as exc:  # whatever the error: a kind the convention cannot name
        pytest.fail(
            f"Tables could not be created with this convention ({type(exc).__name__}: {exc}). "
            "Does it name every kind: pk, uq, ck, fk and ix?"
        )
    for table in ("shelves", "crates"):
        query = text(
            "SELECT conname FROM pg_constraint WHERE conrelid = CAST(:table AS regclass) "
            "AND contype IN ('p', 'u', 'c', 'f') "
            "UNION SELECT indexname FROM pg_indexes WHERE tablename = :name"
        )
        names = set(await session.scalars(query, {"table": table, "name": table}))
        if missing := convention_names(table) - names:
            pytest.fail(f"PostgreSQL has {sorted(names)}, without {sorted(missing)}.")


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


async def catalog(session: AsyncSession, schema: str) -> dict[str, Any]:
    """What PostgreSQL knows of `schema`.items: columns (type, NOT NULL, identity, default),
    constraints (check rules included) and indexes, as PostgreSQL itself spells them."""
    table = {"t": f"{schema}.items"}
    columns = await session.execute(
        text(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "CAST(a.attidentity AS text), pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = CAST(:t AS regclass) AND a.attnum > 0 AND NOT a.attisdropped"
        ),
        table,
    )
    constraints = await session.execute(
        text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = CAST(:t AS regclass)"
        ),
        table,
    )
    indexes = await session.execute(
        text(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = :s AND tablename = 'items'"
        ),
        {"s": schema},
    )
    return {
        **{f"column {name}": tuple(rest) for name, *rest in columns},
        **{f"constraint {name}": rule for name, rule in constraints},
        **{f"index {name}": rule.replace(f"{schema}.", "") for name, rule in indexes},
    }


@pytest.mark.exercise("03.2")
async def test_the_model_makes_the_same_table_as_the_migration(
    pkg: ModuleType, session: AsyncSession
) -> None:
    """The model, created beside the migrated table, gives PostgreSQL the very same table:
    types, NOT NULL, server defaults, check rules, unique keys and indexes.

    Autogenerate (the test above) does not compare check constraints nor server defaults: a
    model that forgets them would make the next autogenerated migration drop them.
    """
    connection = await session.connection()
    await connection.execute(text("CREATE SCHEMA from_model"))  # rolled back with the test
    # The model's tables, put in the schema from_model instead of public.
    in_schema = await connection.execution_options(schema_translate_map={None: "from_model"})
    await in_schema.run_sync(pkg.models.Base.metadata.create_all, checkfirst=False)
    migrated, modelled = await catalog(session, "public"), await catalog(session, "from_model")
    differences = sorted(
        f"{key}: the migration has {migrated.get(key)}, the model {modelled.get(key)}"
        for key in migrated.keys() | modelled.keys()
        if migrated.get(key) != modelled.get(key)
    )
    assert differences == []


@pytest.mark.exercise("03.2")
def test_each_annotation_tells_what_its_column_gives(pkg: ModuleType) -> None:
    """`Mapped[X]` is what Python gets from the column: X is the type's Python type, and
    `X | None` exactly when the column is nullable. Money is Decimal, times are aware."""
    hints = get_type_hints(pkg.models.Item)
    for column in pkg.models.Item.__table__.columns:
        (annotated,) = get_args(hints[column.key])  # Mapped[annotated]
        union = get_origin(annotated) in (Union, UnionType)
        types = set(get_args(annotated)) if union else {annotated}
        nullable = type(None) in types
        (python,) = types - {type(None)}
        # A JSON column can hold any JSON value; the model says which: an object, a dict.
        given = dict if isinstance(column.type, JSON) else column.type.python_type
        assert (get_origin(python) or python, nullable) == (given, column.nullable), column.key
        if isinstance(column.type, DateTime):
            assert column.type.timezone, f"{column.key} loses its time zone"
    assert pkg.models.Item.__table__.c.price.type.python_type is Decimal


@pytest.mark.exercise("03.2")
async def test_what_the_server_fills_in_is_known_after_the_insert(
    pkg: ModuleType, session: AsyncSession
) -> None:
    """An item inserted without attributes reads `{}` back from the INSERT itself: the model
    knows the column's default, so no hidden query (an error, in async code) is needed."""
    item = pkg.models.Item(name="Plain", price=Decimal("0"))
    session.add(item)
    await session.flush()
    unloaded = inspect(item).unloaded & {"id", "attributes", "created_at", "updated_at"}
    assert not unloaded, f"not known after the INSERT: {sorted(unloaded)}"
    assert item.attributes == {}
    assert item.created_at.tzinfo is not None


@pytest.mark.exercise("03.2")
async def test_new_items_do_not_share_their_attributes(
    pkg: ModuleType, session: AsyncSession
) -> None:
    """Each new item gets a dict of its own for `attributes`. With `default={}`, one dict is
    the default of every item: a change made in place to one new item's attributes (which the
    ORM does not see) becomes the next new item's, and is INSERTed into another row."""
    first = pkg.models.Item(name="First", price=Decimal("1"))
    session.add(first)
    await session.flush()
    first.attributes["supplier"] = "ACME, net 30 days"  # in place: no UPDATE follows
    second = pkg.models.Item(name="Second", price=Decimal("1"))
    session.add(second)
    await session.flush()
    query = text("SELECT attributes FROM items WHERE id = :id")
    stored = await session.scalar(query, {"id": second.id})
    if stored != {}:
        pytest.fail(
            f"A new item was stored with another item's attributes, {stored}: each item needs "
            "a dict of its own (a default that makes one, not one dict shared by all)."
        )


async def run(url: str, *statements: str) -> None:
    engine: AsyncEngine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def relations(url: str) -> set[str]:
    """The tables and views of the schema public."""
    engine: AsyncEngine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            query = text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
            return set(await connection.scalars(query))
    finally:
        await engine.dispose()


@pytest.mark.exercise("03.5")
async def test_the_downgrade_drops_only_what_its_revision_made(
    migrations: Migrations, empty_database_url: str
) -> None:
    """A downgrade undoes its own revision and nothing else. A table made beside it (by a later
    revision, another app, a colleague) stays. A view built on `items` makes the downgrade
    fail, as it should: DROP TABLE ... CASCADE would drop that view silently, and with it a
    report someone relies on."""
    await migrations.upgrade(empty_database_url)
    await run(
        empty_database_url,
        "CREATE TABLE suppliers (id int PRIMARY KEY)",
        "CREATE VIEW cheap_items AS SELECT name FROM items WHERE price < 10",
    )
    try:
        await migrations.downgrade(empty_database_url)
    except DBAPIError as refused:  # as it should be: the view depends on items
        assert "depend" in str(refused), refused
    left = await relations(empty_database_url)
    if "cheap_items" not in left:
        pytest.fail("The downgrade dropped the view cheap_items, which its revision never made.")
    assert {"items", "suppliers"} <= left, f"the downgrade dropped what it did not make: {left}"
    await run(empty_database_url, "DROP VIEW cheap_items")
    await migrations.downgrade(empty_database_url)
    assert await relations(empty_database_url) == {"alembic_version", "suppliers"}


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
