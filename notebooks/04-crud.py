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
# # Step 04: CRUD, search and pages, one cell at a time
#
# This notebook goes with the page "04 CRUD" of the course. Run the cells from the top
# (Shift+Enter). It uses the same PostgreSQL server as `workshop run 04`, but a database of its
# own, `notebook_04`, made here and dropped at the end: your `workshop_04` database is left alone.
#
# You will:
#
# 1. migrate a database of the notebook's own to step 04's latest revision;
# 2. create, read, change, list and delete items with step 04's `crud` functions, and see
#    every statement and every commit they send;
# 3. break the unique constraint, alone and in a bulk create, and roll back;
# 4. meet the async pitfall of this step: an attribute that would need a query;
# 5. load 10,000 items in one statement, and ask PostgreSQL how it answers a full-text search
#    and a JSONB filter, with their GIN indexes and without them;
# 6. time a deep page with `OFFSET` and with a keyset, and chart the difference;
# 7. clean up.

# %%
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib.pyplot as plt
from pydantic import ValidationError
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import IntegrityError, MissingGreenlet, PendingRollbackError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from starlette.requests import Request

from workshop.course import Course
from workshop.course.loader import load_package
from workshop.postgres import create_database, drop_database, resolve_server
from workshop.postgres.migrations import Migrations

# %% [markdown]
# ## 1. A database of the notebook's own, at step 04's revision
#
# `load_package` imports step 04's reference solution under a name of its own
# (`step04_solution`), as the tests do. We use its `crud`, `schemas`, `models` and `errors`.

# %%
step = Course().step("04")
solution = load_package(step, solution=True)
crud, schemas, errors = solution.crud, solution.schemas, solution.errors
Item = solution.models.Item
SEARCH = solution.models.SEARCH
print(solution.__name__)

# %% [markdown]
# A scratch database on the workshop's server, dropped first so the notebook can run again.
# `Migrations` runs both of the step's revisions: `0001` creates `items`, `0002` adds the
# generated `search` column and the two GIN indexes.

# %%
server = resolve_server()
scratch = server.scratch_database("notebook_04")  # a name of its own when the tests run this
await drop_database(server.url, scratch)
await create_database(server.url, scratch)
scratch_url = server.database_url(scratch).render_as_string(hide_password=False)
await Migrations(step, solution=True).upgrade(scratch_url)

engine = create_async_engine(scratch_url)
async with engine.connect() as connection:
    indexes = await connection.execute(
        text("SELECT indexdef FROM pg_indexes WHERE tablename = 'items' ORDER BY indexname")
    )
    for (definition,) in indexes:
        print(definition)

# %% [markdown]
# ## 2. CRUD through `crud.py`, statement by statement
#
# The same wiring as the app: one engine, and a session factory with `expire_on_commit=False`.
# `sql_sent()` prints what the session sends inside a block: each statement, shortened, and
# where each transaction begins and ends. A transaction begins by itself, at the first
# statement; it ends only when the code says so.

# %%
Session = async_sessionmaker(engine, expire_on_commit=False)


@contextmanager
def sql_sent() -> Iterator[None]:
    """Print every statement, BEGIN, COMMIT and ROLLBACK sent inside the block."""

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        sql = " ".join(sql.split())
        print("   ", sql if len(sql) <= 200 else sql[:200] + " ...")

    def marker(word: str) -> Any:
        return lambda *args: print("   ", word)

    listeners = [
        ("before_cursor_execute", statement),
        ("begin", marker("BEGIN")),
        ("commit", marker("COMMIT")),
        ("rollback", marker("ROLLBACK")),
    ]
    for name, listener in listeners:
        event.listen(engine.sync_engine, name, listener)
    try:
        yield
    finally:
        for name, listener in listeners:
            event.remove(engine.sync_engine, name, listener)


# %% [markdown]
# **Create.** `crud.create_item` adds the item and commits. Read the `RETURNING` clause: what
# the server sets (the id, the times) comes back in the `INSERT` itself, because the model
# has `eager_defaults`. No `SELECT` follows, and `expire_on_commit=False` keeps the values
# after the commit, so the item is complete.

# %%
lamp_in = schemas.ItemCreate(
    name="Brass lamp",
    description="A desk lamp with a brass shade.",
    price="12.50",
    attributes={"color": "gold", "size": 30},
)
async with Session() as session:
    with sql_sent():
        lamp = await crud.create_item(session=session, item_in=lamp_in)
print(lamp.id, lamp.price, lamp.created_at)

# %% [markdown]
# **Read.** `session.get` sends one `SELECT` by primary key. Ask again in the same session and
# nothing is sent: the session's identity map already holds the object, and hands back the
# same one.

# %%
async with Session() as session:
    with sql_sent():
        found = await crud.get_item(session=session, item_id=lamp.id)
        again = await crud.get_item(session=session, item_id=lamp.id)
print(found is again, found.name)

# %% [markdown]
# **Change only what was sent.** A PATCH body holds some of the fields. `model_fields_set`
# remembers which ones the client sent; `exclude_unset=True` keeps only those. A plain
# `model_dump()` would also give the fields left out, as `None`, and writing those would empty
# the description.

# %%
change = schemas.ItemUpdate.model_validate({"price": "9.90"})
print("sent:       ", change.model_fields_set)
print("plain dump: ", change.model_dump())
print("exclude_unset:", change.model_dump(exclude_unset=True))

# %% [markdown]
# `crud.update_item` sets those fields and commits: one `UPDATE` of the changed column, plus
# `updated_at` (the model's `onupdate`), returning the new `updated_at`.

# %%
async with Session() as session:
    item = await crud.get_item(session=session, item_id=lamp.id)
    with sql_sent():
        item = await crud.update_item(session=session, item=item, item_in=change)
print(item.price, "|", item.description, "|", item.updated_at > item.created_at)

# %% [markdown]
# Sent as `null`, a field that may be NULL is emptied. A field that may not be NULL is refused
# by the schema before any SQL: left out means "unchanged", null would mean "empty a NOT NULL
# column".

# %%
print(schemas.ItemUpdate.model_validate({"description": None}).model_dump(exclude_unset=True))
try:
    schemas.ItemUpdate.model_validate({"name": None})
except ValidationError as error:
    print(error.errors()[0]["msg"])

# %% [markdown]
# **Create many.** `crud.create_items` adds them all and commits once: one transaction, and
# SQLAlchemy sends the rows in a single `INSERT ... VALUES (...), (...) RETURNING`.

# %%
more = [
    schemas.ItemCreate(name=name, description=description, price="20", attributes=attributes)
    for name, description, attributes in [
        ("Oak desk", "A solid oak desk with two drawers.", {"color": "brown", "size": 120}),
        ("Reading lamp", "A tall lamp for the reading corner.", {"color": "black", "size": 150}),
        ("Lamp shade", "Linen shade for a brass lamp.", {"color": "white", "size": 30}),
        ("Wall clock", "A quiet clock, no ticking.", {"color": "black", "size": 30}),
    ]
]
async with Session() as session:
    with sql_sent():
        created = await crud.create_items(session=session, items_in=more)
print([item.id for item in created])

# %% [markdown]
# **List a page.** `crud.list_items` asks for one row more than the page: if it comes, there
# is a next page, and `next_cursor` points after the page's last row. The cursor is opaque to
# clients, but not secret: it is the last id, as JSON, in base64.

# %%
async with Session() as session:
    page = await crud.list_items(session=session, limit=2)
    print([item.name for item in page.items], page.next_cursor)
    print("the cursor holds:", crud.decode_cursor(page.next_cursor, ranked=False))
    with sql_sent():
        page = await crud.list_items(session=session, limit=2, after=page.next_cursor)
    print([item.name for item in page.items], page.next_cursor)

# %% [markdown]
# **Search and filter.** `q` is full-text search, best matches first: a word in the name
# (weight A) ranks above the same word in the description (weight B). `attributes` keeps the
# items whose JSONB contains every pair asked for.

# %%
async with Session() as session:
    found = await crud.list_items(session=session, limit=10, q="lamps")
    print("q=lamps:          ", [item.name for item in found.items])
    found = await crud.list_items(session=session, limit=10, q="lamp -brass")
    print("q=lamp -brass:    ", [item.name for item in found.items])
    found = await crud.list_items(session=session, limit=10, attributes={"size": 30})
    print("attr=size:30:     ", [item.name for item in found.items])
    found = await crud.list_items(session=session, limit=10, attributes={"size": "30"})
    print('attr=size:"30":   ', [item.name for item in found.items], "(a string is not 30)")

# %% [markdown]
# **Delete.** One `DELETE ... RETURNING id`: the returned id says whether there was a row, so
# no `SELECT` is needed first. The second time there is none: the route answers 404.

# %%
async with Session() as session:
    with sql_sent():
        print(await crud.delete_item(session=session, item_id=lamp.id))
    print(await crud.delete_item(session=session, item_id=lamp.id))

# %% [markdown]
# ## 3. When a write breaks a rule: the constraint decides, the transaction rolls back
#
# A second "Oak desk" breaks `uq_items_name`. PostgreSQL refuses the `INSERT`, and SQLAlchemy
# raises `IntegrityError`, carrying PostgreSQL's code (`23505`, unique violation) and the
# constraint's name.
#
# SQLAlchemy rolls the database's transaction back at once (the `ROLLBACK` below). The session
# then refuses any other work, with `PendingRollbackError`, until the code acknowledges the
# failure with `await session.rollback()`. In the app nothing reuses the session: the request
# ends with the error, and closing its session is the rollback.

# %%
async with Session() as session:
    with sql_sent():
        try:
            await crud.create_item(
                session=session, item_in=schemas.ItemCreate(name="Oak desk", price="1")
            )
        except IntegrityError as error:
            duplicate = error
    try:
        await crud.get_item(session=session, item_id=created[0].id)
    except PendingRollbackError as error:
        print(type(error).__name__, "until the session is rolled back")
    await session.rollback()
    print("after rollback():", (await crud.get_item(session=session, item_id=created[0].id)).name)

cause = duplicate.orig.__cause__  # asyncpg's exception, as PostgreSQL reported it
print(duplicate.orig.sqlstate, type(cause).__name__, cause.constraint_name)

# %% [markdown]
# `errors.integrity_error` turns it into what the client sees: a 409 naming the field, not
# the constraint, and nothing of the driver's message.

# %%
request = Request({"type": "http", "method": "POST", "path": "/items", "headers": []})
response = await errors.integrity_error(request, duplicate)
print(response.status_code, response.body.decode())

# %% [markdown]
# A bulk create is all or nothing. Three new items and one duplicate: the `INSERT` fails, the
# transaction rolls back, and none of the four is written.


# %%
async def count_items() -> int:
    async with Session() as session:
        return await session.scalar(select(func.count()).select_from(Item))


before = await count_items()
batch = [schemas.ItemCreate(name=f"New {n}", price="1") for n in range(3)]
batch.append(schemas.ItemCreate(name="Wall clock", price="1"))
async with Session() as session:
    try:
        await crud.create_items(session=session, items_in=batch)
    except IntegrityError as error:
        print("refused:", error.orig.sqlstate)
print("items before:", before, "after:", await count_items())

# %% [markdown]
# ## 4. The async pitfall: an attribute that needs a query
#
# In async code, a query must be awaited. Reading an attribute is not an `await`, so when
# SQLAlchemy would need to load it, it raises `MissingGreenlet` instead. Two ways to get
# there:
#
# - a session made with the default `expire_on_commit=True` forgets every value at the commit;
#   the next read of `item.price` would reload it;
# - `session.expire(item)` does the same by hand. `await session.refresh(item)` is the
#   explicit, awaited way to load it again.

# %%
ForgetfulSession = async_sessionmaker(engine)  # expire_on_commit=True, the default
async with ForgetfulSession() as session:
    desk = await crud.get_item(session=session, item_id=created[0].id)
    await session.commit()
    try:
        print(desk.price)
    except MissingGreenlet as error:
        print("after commit:", type(error).__name__)

async with Session() as session:
    desk = await crud.get_item(session=session, item_id=created[0].id)
    session.expire(desk)
    try:
        print(desk.price)
    except MissingGreenlet as error:
        print("expired by hand:", type(error).__name__)
    await session.refresh(desk)  # the explicit, awaited load
    print(desk.price)
    # `search` belongs to the table, not to the object: a query reads it.
    words = await session.scalar(select(SEARCH).where(Item.id == desk.id))
    print(words)

# %% [markdown]
# The tsvector shows what search sees: each word reduced to its stem (`drawers` is `drawer`),
# with its positions and weight, `A` for the name and `B` for the description. "A" and "with"
# are stop words, left out.
#
# ## 5. 10,000 items, and how PostgreSQL finds them
#
# One `INSERT ... SELECT` from `generate_series` writes them all: one statement, one round
# trip, and PostgreSQL computes every `search` column on the way. Names, descriptions and
# attributes cycle through word lists of different lengths, so they mix. The names end with
# their number, so they stay unique.

# %%
SEED = """
INSERT INTO items (name, description, price, attributes)
SELECT
    initcap(adjective) || ' ' || noun || ' ' || n,
    'A ' || adjective || ' ' || noun || ' made of ' || material || ', ' || finish || '.',
    round((random() * 200)::numeric, 2),
    jsonb_build_object('color', color, 'size', n % 20, 'material', material)
FROM generate_series(1, 10000) AS n,
LATERAL (SELECT
    (ARRAY['small', 'large', 'vintage', 'modern', 'rustic', 'compact', 'heavy'])[n % 7 + 1]
        AS adjective,
    (ARRAY['lamp', 'chair', 'table', 'shelf', 'desk', 'sofa', 'mirror', 'rug', 'clock', 'vase',
           'bench'])[n % 11 + 1] AS noun,
    (ARRAY['oak', 'brass', 'steel', 'glass', 'linen', 'walnut', 'marble', 'cotton', 'pine',
           'copper', 'wool', 'clay', 'bamboo'])[n % 13 + 1] AS material,
    (ARRAY['polished', 'matte', 'painted', 'oiled', 'raw'])[n % 5 + 1] AS finish,
    (ARRAY['red', 'blue', 'green', 'black', 'white', 'grey', 'yellow', 'orange', 'purple',
           'brown', 'pink', 'navy', 'teal', 'olive', 'beige', 'gold', 'silver'])[n % 17 + 1]
        AS color
) AS words
"""
started = time.perf_counter()
async with engine.begin() as connection:
    await connection.execute(text(SEED))
print(f"10,000 items in {time.perf_counter() - started:.2f} s")

# %% [markdown]
# Before measuring, `VACUUM ANALYZE`. `ANALYZE` gathers the statistics the planner needs
# to choose a plan. `VACUUM` matters here too: rows inserted into a GIN index first go to its
# *pending list*, which every search must read in full, and `VACUUM` moves them into the index
# proper. Without it, right after a bulk load, the planner rightly finds the index too
# expensive and reads the whole table. In production, autovacuum does this for you.

# %%
async with engine.connect() as connection:
    autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
    await autocommit.execute(text("VACUUM ANALYZE items"))  # VACUUM cannot run in a transaction
    sizes = await connection.execute(
        text(
            "SELECT relname, pg_size_pretty(pg_relation_size(oid)) FROM pg_class "
            "WHERE relname IN ('items', 'ix_items_search', 'ix_items_attributes')"
        )
    )
    for name, size in sizes:
        print(f"{name:22} {size}")

# %% [markdown]
# What does `websearch_to_tsquery` make of what a user types in a search box? Plain words are
# all required (`&`), quotes make a phrase (`<->`: next to each other), `-` excludes a word,
# `or` gives a choice. Words are stemmed like the tsvector's, and stop words are dropped.

# %%
async with engine.connect() as connection:
    for typed in ("brass lamps", '"oak table"', "lamp -brass", "lamp or clock", "the"):
        query = await connection.scalar(
            text("SELECT websearch_to_tsquery('english', :q)::text"), {"q": typed}
        )
        print(f"{typed!r:18} -> {query!r}")

# %% [markdown]
# Now the two filters of `GET /items`, as `EXPLAIN ANALYZE` sees them: PostgreSQL runs the
# query and reports the plan it chose, the rows at each step and the time it took.
#
# To see them without their indexes, `explain()` drops both indexes inside a transaction, and
# rolls it back at the end: in PostgreSQL even `DROP INDEX` is transactional, so the indexes
# are back as if nothing happened. The time is the median of 7 runs.

# %%
INDEXES = ("ix_items_search", "ix_items_attributes")


async def explain(sql: str, *, indexed: bool, runs: int = 7) -> tuple[list[str], float]:
    """The plan of one run, and the median execution time in ms over `runs` runs."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        if not indexed:
            for index in INDEXES:
                await connection.execute(text(f"DROP INDEX {index}"))
        options = "ANALYZE, COSTS OFF, BUFFERS OFF"
        plan = list(await connection.scalars(text(f"EXPLAIN ({options}) {sql}")))
        times = []
        for _ in range(runs):
            result = await connection.scalar(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}"))
            times.append(result[0]["Execution Time"])
        await transaction.rollback()
    return plan, statistics.median(times)


FILTERS = {
    "search": "SELECT id FROM items WHERE search @@ websearch_to_tsquery('english', 'brass lamp')",
    "jsonb": """SELECT id FROM items WHERE attributes @> '{"color": "red"}'""",
}
measured = {}
for label, sql in FILTERS.items():
    for indexed in (True, False):
        plan, ms = await explain(sql, indexed=indexed)
        measured[label, indexed] = ms
        print(f"--- {label}, {'with' if indexed else 'without'} its GIN index: {ms:.3f} ms")
        print("\n".join(line for line in plan if not line.startswith("Planning")))

# %%
for label in FILTERS:
    with_index, without = measured[label, True], measured[label, False]
    print(
        f"{label:7} with index {with_index:6.3f} ms   without {without:6.3f} ms"
        f"   {without / with_index:4.1f}x"
    )

# %% [markdown]
# How to read the plans:
#
# - **With the index**, a *Bitmap Index Scan* asks the GIN index which rows match, then a
#   *Bitmap Heap Scan* reads only those rows. The search matches about 70 items, and it
#   reads only the table pages that hold them (`Heap Blocks`).
# - **Without it**, a *Seq Scan* reads every row and tests each one: `Rows Removed by Filter`
#   counts the work thrown away.
# - The JSONB filter gains less: "red" is one item in 17, so its rows are spread over every
#   page of the table, and the heap scan still visits them all. An index pays most when it
#   leaves few rows to read.
# - Both are fast at 10,000 rows, because the table fits in memory. The seq scan grows with
#   the table; the index scan grows with the matches.
#
# ## 6. A deep page: `OFFSET` against a keyset
#
# Step 03 paged with `OFFSET`: skip n rows, return the next 20. Step 04 pages with a keyset:
# the rows after the last id seen. Both use the primary key's index, in order. Each query is
# timed from here, round trip included, over 25 runs, at five depths of the table.

# %%
RUNS = 25
DEPTHS = [0, 2500, 5000, 7500, 9000]


async def ms_per_page(query: Any) -> float:
    """The median time, in ms, of RUNS runs of a query, fetched to the last row."""
    async with Session() as session:
        (await session.execute(query)).all()  # warm up
        times = []
        for _ in range(RUNS):
            started = time.perf_counter()
            (await session.execute(query)).all()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async with Session() as session:
    ids = list(await session.scalars(select(Item.id).order_by(Item.id)))

pages: dict[str, list[float]] = {"OFFSET": [], "keyset": []}
for depth in DEPTHS:
    by_offset = select(Item).order_by(Item.id).offset(depth).limit(20)
    last_seen = ids[depth - 1] if depth else 0
    by_keyset = select(Item).where(Item.id > last_seen).order_by(Item.id).limit(20)
    pages["OFFSET"].append(await ms_per_page(by_offset))
    pages["keyset"].append(await ms_per_page(by_keyset))

print(f"{'rows before the page':>22}" + "".join(f"{depth:>9,}" for depth in DEPTHS))
for kind, times in pages.items():
    print(f"{kind + ' (ms)':>22}" + "".join(f"{ms:9.3f}" for ms in times))

# %%
figure, axes = plt.subplots(figsize=(8, 3.5))
width = 0.38
for n, (kind, times) in enumerate(pages.items()):
    positions = [d + (n - 0.5) * width for d in range(len(DEPTHS))]
    bars = axes.bar(positions, times, width, label=kind)
    axes.bar_label(bars, fmt="%.2f", fontsize=8)
axes.set_xticks(range(len(DEPTHS)), [f"after {depth:,} rows" for depth in DEPTHS])
axes.set_ylabel(f"ms per page, median of {RUNS} (lower is better)")
axes.set_title("A page of 20 items, 10,000 in the table")
axes.legend()
plt.show()

# %% [markdown]
# Where the difference comes from, on the server's side: the deepest page, both ways.

# %%
async with engine.connect() as connection:
    last_seen = ids[9000 - 1]
    for sql in (
        "SELECT * FROM items ORDER BY id LIMIT 20 OFFSET 9000",
        f"SELECT * FROM items WHERE id > {last_seen} ORDER BY id LIMIT 20",
    ):
        plan = await connection.scalars(text(f"EXPLAIN (ANALYZE, COSTS OFF, BUFFERS OFF) {sql}"))
        print(sql)
        print("\n".join(f"    {line}" for line in plan if not line.startswith("Planning")))

# %% [markdown]
# ## What the figures say
#
# - **`OFFSET` reads what it skips.** To return rows 9,001 to 9,020, the index scan produces
#   9,020 rows and the `Limit` throws 9,000 away: the cost grows with the page's depth. The
#   keyset query starts in the index at the last id seen and reads 20 rows, whatever the depth.
#   From the client, the round trip is most of the time at this size, so the gap looks
#   smaller than on the server; it widens as the table grows.
# - **A keyset page is also stable.** If an item is created or deleted while a client walks
#   the pages, `OFFSET` shifts every later page by one row, repeating or skipping an item; "the
#   rows after id n" does not move.
# - **Indexes answer "which rows contain this?"** A GIN index maps each word, or each JSON
#   key and value, to the rows that hold it. It serves `@@` and `@>`; it cannot serve `ORDER BY
#   ts_rank(...)`, which must rank every match. So a search's page costs grow with the
#   number of matches, not with the table.
# - **Measure on your data.** At 10,000 rows in memory every query here takes about a
#   millisecond. The plans, not the milliseconds, tell you how each will grow.
#
# ## 7. Clean up
#
# Close the engine's connections, then drop the notebook's database.

# %%
await engine.dispose()
await drop_database(server.url, scratch)
print("dropped", scratch)
