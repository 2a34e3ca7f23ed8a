# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Step 03: models, schemas and migrations, one cell at a time
#
# This notebook goes with the page "03 Models" of the course. Run the cells from the top
# (Shift+Enter). It uses the same PostgreSQL server as `workshop run 03`, but a database of its
# own, `notebook_03`, made here and dropped at the end: your `workshop_03` database is left alone.
#
# You will:
#
# 1. read the SQL that step 03's models describe;
# 2. migrate a database of the notebook's own with Alembic, and check that it matches the models;
# 3. store an item with the ORM, read it back, and show it through `ItemPublic`;
# 4. see why money is a `Decimal` and never a `float`, and why a price is sent as a string;
# 5. watch `ItemCreate` refuse what the table could not store;
# 6. clean up.

# %%
import json
from decimal import Decimal

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.schema import CreateTable

from workshop.course import Course
from workshop.course.loader import load_package
from workshop.postgres import (
    create_database,
    describe,
    drop_database,
    resolve_server,
    workshop_database_url,
)
from workshop.postgres.migrations import Migrations

# %% [markdown]
# ## 1. The table the models describe
#
# `load_package` imports step 03's reference solution under a name of its own
# (`step03_solution`), as the tests do, so it cannot collide with another step's `app`.

# %%
step = Course().step("03")
solution = load_package(step, solution=True)
Item = solution.models.Item
ItemCreate = solution.schemas.ItemCreate
ItemPublic = solution.schemas.ItemPublic
print(solution.__name__)

# %% [markdown]
# An ORM class is a table. SQLAlchemy can write the `CREATE TABLE` it stands for, in
# PostgreSQL's dialect. Look for `VARCHAR(100)`, `NUMERIC(10, 2)`, `TIMESTAMP WITH TIME ZONE`,
# `JSONB`, the identity column, and the constraints' names: `pk_items`, `uq_items_name`,
# `ck_items_price_not_negative`. The naming convention on `Base.metadata` made those names.

# %%
print(CreateTable(Item.__table__).compile(dialect=postgresql.dialect()))

# %% [markdown]
# ## 2. A database of the notebook's own, migrated
#
# `workshop_database_url()` finds the workshop's server, as `workshop run` does:
# `DATABASE_URL` if you set one, otherwise the embedded PostgreSQL.

# %%
url = workshop_database_url()
print("where:", describe(url))

# %% [markdown]
# We migrate a database of our own on the same server, `notebook_03`, so nothing here touches
# your data. Dropping it first makes the notebook safe to run again.

# %%
server = resolve_server()
scratch = server.scratch_database("notebook_03")  # a name of its own when the tests run this
await drop_database(server.url, scratch)
await create_database(server.url, scratch)
scratch_url = server.database_url(scratch).render_as_string(hide_password=False)

# %% [markdown]
# `Migrations` runs the step's Alembic migrations, `solution/migrations/versions/`, as
# `workshop run 03` and the tests do. `uv run alembic upgrade head` in the step's folder does
# the same from a terminal.

# %%
migrations = Migrations(step, solution=True)
await migrations.upgrade(scratch_url)

engine = create_async_engine(scratch_url)
async with engine.connect() as connection:
    tables = await connection.scalars(
        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
    )
    print("tables:", list(tables))
    print("revision:", await connection.scalar(text("SELECT version_num FROM alembic_version")))

# %% [markdown]
# The constraints carry the names of the naming convention. PostgreSQL would otherwise have
# picked its own (`items_pkey`, `items_name_key`, `items_price_check`). Step 04 turns a
# violation of `uq_items_name` into a 409, by that name.

# %%
async with engine.connect() as connection:
    rows = await connection.execute(
        text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'items'::regclass AND contype IN ('p', 'u', 'c') ORDER BY conname"
        )
    )
    for name, definition in rows:
        print(f"{name:30} {definition}")

# %% [markdown]
# Does the migrated table match the models? Alembic's autogenerate compares the two and lists
# what it would change. An empty list: no drift between the models and the migration.

# %%
await migrations.differences(scratch_url)

# %% [markdown]
# ## 3. Store an item, read it back, show it
#
# The same wiring as the app: one engine, a session factory with `expire_on_commit=False`.

# %%
Session = async_sessionmaker(engine, expire_on_commit=False)

async with Session() as session:
    lamp = Item(name="Lamp", price=Decimal("12.50"), attributes={"color": "red"})
    session.add(lamp)
    await session.commit()
    await session.refresh(lamp)  # read back what the server set: id, created_at, updated_at

print(repr(lamp.id), repr(lamp.price))
print(repr(lamp.created_at))

# %% [markdown]
# `lamp` is an ORM object: it is the row. `ItemPublic` is what the API shows of it.
# `from_attributes=True` lets it read the object's attributes. In JSON, the price travels as a
# string, so no client parses it into a float, and the times carry their offset.

# %%
shown = ItemPublic.model_validate(lamp)
print(shown.model_dump_json(indent=2))

# %% [markdown]
# `ItemPublic` shows the fields it declares, and nothing more. Give the object an attribute the
# API must not show: it stays out.

# %%
lamp.internal_note = "supplier pays 3.10"
sorted(ItemPublic.model_validate(lamp).model_dump())

# %% [markdown]
# JSONB stores numbers as numbers, in PostgreSQL's own notation. A float written `9.6e16` comes
# back as the integer `96000000000000000`: the same value, not the same Python type.

# %%
async with Session() as session:
    big = Item(name="Big", price=Decimal("1"), attributes={"n": 9.6e16})
    session.add(big)
    await session.commit()
    await session.refresh(big)
print(big.attributes, type(big.attributes["n"]).__name__)

# %% [markdown]
# ## 4. Money is a `Decimal`, never a `float`
#
# A float is a binary fraction. Most decimal prices have no exact binary form, so a float holds
# the nearest value it can, and the error shows up in sums.

# %%
print(0.1 + 0.2)
print(Decimal("0.1") + Decimal("0.2"))

# %% [markdown]
# The float `2.675` is not 2.675. `Decimal(2.675)` shows the value it really holds:

# %%
price = 2.675  # a float
print(Decimal(price))  # the exact value the float holds
print(round(price, 2), round(0.125, 2))  # Python rounds half to even: 0.125 gives 0.12

# %% [markdown]
# What does a `numeric(10, 2)` column store for those? PostgreSQL rounds the extra places away
# without an error, half away from zero. The float `2.675` is a little below 2.675, so it
# becomes 2.67; the text `2.675` becomes 2.68. And `0.125` becomes 0.13, where Python said 0.12.

# %%
async with engine.connect() as connection:
    for value in (2.675, Decimal("2.675"), 0.125, 0.1 + 0.2):
        stored = await connection.scalar(text("SELECT CAST(:v AS numeric(10, 2))"), {"v": value})
        print(f"{value!r:>30} is stored as {stored}")

# %% [markdown]
# A client sends its price in JSON. FastAPI reads a request's body with `json.loads`, which
# makes a JSON number with a point a float, before any schema sees it: the digits beyond the
# float's precision are already gone.

# %%
print(json.loads('{"price": 0.10000000000000000001}'))

# %% [markdown]
# So `Price` in `ItemCreate` (exercise 03.3) takes a price only as a string, which `Decimal`
# reads digit for digit, and refuses a JSON number, whole or not, with a message that says what
# to send. It refuses a third decimal place instead of letting PostgreSQL round it away. Each
# line validates what `json.loads` makes of a body, as FastAPI does with a request:

# %%
for price in ('"0.1"', "0.1", "10", '"0.10000000000000000001"', '"1.005"', '"1e2"'):
    body = json.loads(f'{{"name": "a", "price": {price}}}')
    try:
        print(f"{price:>24} -> {ItemCreate.model_validate(body).price!r}")
    except ValidationError as error:
        print(f"{price:>24} -> {error.errors()[0]['msg']}")

# %% [markdown]
# ## 5. What `ItemCreate` refuses, and why
#
# Each error names the field and the problem. FastAPI turns them into a 422 response.

# %%
candidates = {
    "a 101-character name": {"name": "x" * 101, "price": "1"},
    "a NUL character": {"name": "nul\x00", "price": "1"},
    "an unknown field": {"name": "a", "price": "1", "owner_id": 7},
}
for what, fields in candidates.items():
    try:
        ItemCreate(**fields)
    except ValidationError as error:
        for problem in error.errors():
            print(f"{what}: {problem['loc']} {problem['msg']}")

# %% [markdown]
# Without the schema, the database refuses them instead, as errors the app did not expect: a
# 500 for the client. PostgreSQL does not truncate the long name, it refuses it; and its text
# cannot hold the NUL character at all.

# %%
for name in ("x" * 101, "nul\x00"):
    async with Session() as session:
        session.add(Item(name=name, price=Decimal("1")))
        try:
            await session.commit()
        except DBAPIError as error:
            refused = error.orig.__cause__  # asyncpg's exception, as PostgreSQL reported it
            print(f"{type(refused).__name__}: {refused}")

# %% [markdown]
# ## 6. Clean up
#
# Close the engine's connections, then drop the notebook's database.

# %%
await engine.dispose()
await drop_database(server.url, scratch)
print("dropped", scratch)
