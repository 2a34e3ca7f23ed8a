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
# # Performance: what each layer costs, measured on your machine
#
# This notebook goes with the page "Measure it" of the course. Run the cells from the top
# (Shift+Enter). It uses the same PostgreSQL server as `workshop run 04`, but a database of its
# own, `notebook_performance`, made here and dropped at the end: the steps' databases are left
# alone. It runs in well under a minute: every measurement is short, so expect some noise, and
# run a cell again to see how much.
#
# You will:
#
# 1. see the ladder: the benchmark's figures, and how to reproduce them on your machine;
# 2. measure what each layer costs per request: asyncpg, SQLAlchemy Core, the ORM, Pydantic;
# 3. sweep the pool's size against 20 concurrent requests, and plot throughput and waits;
# 4. time a new connection per request against a pooled one;
# 5. do the same concurrent work with asyncio, and with threads as FastAPI runs `def` routes;
# 6. decide when a hot path should leave the ORM for Core;
# 7. work out how many workers your server's `max_connections` allows.

# %%
import asyncio
import json
import os
import platform
import statistics
import time
import timeit
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import anyio.to_thread
import asyncpg
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from sqlalchemy import TextClause, create_engine, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from workshop.course import Course
from workshop.course.loader import load_package
from workshop.postgres import create_database, drop_database, libpq_dsn, resolve_server
from workshop.postgres.migrations import Migrations

# %% [markdown]
# ## 0. The machine, and a database of the notebook's own
#
# Figures mean little without the machine they come from: compare yours with a neighbour's
# only if you have the same number of CPUs, and the same load.

# %%
# The load average says how busy the machine was (Windows has none).
load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
print(
    f"this machine: {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
    f"Python {platform.python_version()}{load}"
)

# %% [markdown]
# `load_package` imports step 04's reference solution under a name of its own
# (`step04_solution`), as the tests do: its models, its schemas, its settings and its engine.
# The scratch database is migrated with the step's own migrations, then seeded with 500 items.

# %%
course = Course()
step = course.step("04")
solution = load_package(step, solution=True)
Item = solution.models.Item
ItemPublic, ItemPage = solution.schemas.ItemPublic, solution.schemas.ItemPage
Settings = solution.config.Settings

server = resolve_server()
# A name of its own when the tests run this notebook.
scratch = server.scratch_database("notebook_performance")
await drop_database(server.url, scratch)
await create_database(server.url, scratch)
scratch_url = server.database_url(scratch).render_as_string(hide_password=False)
await Migrations(step, solution=True).upgrade(scratch_url)

# The app's own engine and session factory, as step 04's lifespan builds them.
settings = Settings(database_url=scratch_url, app_name="notebook-performance", _env_file=None)
engine = solution.db.create_engine(settings)
Session = async_sessionmaker(engine, expire_on_commit=False)

ROWS = 500
async with engine.begin() as connection:
    await connection.execute(
        insert(Item),
        [
            {
                "name": f"item {n}",
                "description": f"Item number {n} of the performance lab.",
                "price": Decimal(n % 100) + Decimal("0.99"),
                "attributes": {"color": ["red", "green", "blue"][n % 3], "size": n % 10},
            }
            for n in range(ROWS)
        ],
    )
    ids = list(await connection.scalars(select(Item.id).order_by(Item.id)))
    version = await connection.scalar(text("SHOW server_version"))
print(f"PostgreSQL {version}: {len(ids)} items in {scratch}")

# %% [markdown]
# ## 1. The ladder
#
# The benchmark serves the step 04, 05 and 06 references beside baselines that answer the
# same requests with the same JSON: from the limit (Starlette on a raw asyncpg pool) down to
# the sync baseline (`def` routes and the ORM on psycopg). It loads each with wrk, a load
# generator written in C, so the client never competes with the app for Python. Run it in a
# terminal, at the repository's root, on a machine that is otherwise quiet:
#
# ```console
# uv run workshop bench --quick    # one short round: does everything run? (about a minute)
# uv run workshop bench            # the full run: 2 rounds of 8 s per request and variant
# ```
#
# It writes `build/bench/results.md` and `results.png`. The next cell shows your last run if
# there is one, otherwise the maintainers' run committed with the docs.

# %%
last_run = course.root / "build" / "bench" / "results.md"
committed = course.root / "docs" / "performance" / "results.md"
shown = last_run if last_run.exists() else committed
origin = "your last run" if shown == last_run else "the maintainers' run, committed with the docs"
print(f"{shown.relative_to(course.root)}: {origin}")
display(Markdown(shown.read_text()))

# %% [markdown]
# Each rung down the ladder adds a layer: FastAPI's routing and dependency injection, then
# SQLAlchemy, then the ORM's objects. The next section measures the database layers one by
# one, in this process, without HTTP.

# %% [markdown]
# ## 2. What each layer costs, per request
#
# The same "request" four ways: read one item by its id, each time with a connection from a
# pool, as a route would:
#
# - **asyncpg `fetchrow`**: the driver alone, one statement: one round trip, and a second when
#   the connection goes back to asyncpg's pool (its reset query, `RESET ALL` and the like);
# - **Core `select`** on an `AsyncConnection`: SQLAlchemy adds a transaction (`BEGIN` and the
#   `ROLLBACK` when the connection goes back: three round trips), its cached compiled statement
#   and its result rows;
# - **ORM `session.get`** with a fresh `AsyncSession` per request, as step 04's `get_session`
#   gives each request: the session, the identity map, and a mapped `Item` built from the row;
# - **ORM + Pydantic + JSON**: what step 04's `GET /items/{id}` does with it,
#   `ItemPublic.model_validate(item)`, then the JSON.
#
# Timing is `timeit`'s way: run the request many times in a loop, repeat the loop, keep the
# best loop (the one least disturbed by the rest of the machine), divide. The four ways take
# turns, loop after loop, so a moment when the machine is busier hits them all alike. Two
# clocks:
#
# - **wall time**: what one request takes from start to end, waits on PostgreSQL included;
# - **CPU time** of this process: what the request costs the worker's core. One worker runs on
#   one core, so `1 s / CPU time` is the most requests per second it could ever serve with
#   these layers alone. CPU time also barely moves when other programs keep the machine busy.


# %%
Request = Callable[[int], Awaitable[Any]]


async def us_per_request(
    requests: dict[str, Request], *, number: int = 20, repeat: int = 10
) -> dict[str, tuple[float, float]]:
    """For each way, the best of `repeat` loops of `number` requests: (wall, CPU) µs each."""
    for request in requests.values():
        await request(ids[0])  # warm up: a connection opened, the statement compiled and cached
    wall = dict.fromkeys(requests, float("inf"))
    cpu = dict.fromkeys(requests, float("inf"))
    for _ in range(repeat):
        for name, request in requests.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            for n in range(number):
                await request(ids[n % len(ids)])
            wall[name] = min(wall[name], time.perf_counter() - started)
            cpu[name] = min(cpu[name], time.process_time() - cpu_started)
    return {name: (wall[name] / number * 1e6, cpu[name] / number * 1e6) for name in requests}


def show_us(figures: dict[str, tuple[float, float]]) -> None:
    print(f"{'':<24}{'wall µs':>9}{'CPU µs':>9}{'one core serves at most':>26}")
    for name, (wall_us, cpu_us) in figures.items():
        print(f"{name:<24}{wall_us:>9,.0f}{cpu_us:>9,.0f}{1e6 / cpu_us:>15,.0f} requests/s")


items = Item.__table__
# The columns the API shows (not the search column): the same row every way.
public_columns = [items.c[name] for name in ItemPublic.model_fields]


async def decode_jsonb(connection: asyncpg.Connection) -> None:
    # Without a codec asyncpg returns JSONB as text; the ladder's limit decodes it like this.
    await connection.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
    )


raw_pool = await asyncpg.create_pool(
    libpq_dsn(make_url(scratch_url)), min_size=1, max_size=1, init=decode_jsonb
)
RAW_QUERY = f"SELECT {', '.join(ItemPublic.model_fields)} FROM items WHERE id = $1"


async def asyncpg_fetchrow(item_id: int) -> Any:
    async with raw_pool.acquire() as connection:
        return await connection.fetchrow(RAW_QUERY, item_id)


async def core_select(item_id: int) -> Any:
    async with engine.connect() as connection:
        result = await connection.execute(select(*public_columns).where(items.c.id == item_id))
        return result.one()


async def orm_get(item_id: int) -> Any:
    async with Session() as session:
        return await session.get(Item, item_id)


async def orm_and_pydantic(item_id: int) -> bytes:
    async with Session() as session:
        item = await session.get(Item, item_id)
        return ItemPublic.model_validate(item).model_dump_json().encode()


layers = {
    "asyncpg fetchrow": asyncpg_fetchrow,
    "Core select": core_select,
    "ORM session.get": orm_get,
    "ORM + Pydantic + JSON": orm_and_pydantic,
}
layer_us = await us_per_request(layers)

# Pydantic alone, on an item already loaded: no I/O, so timeit itself times it.
item = await orm_get(ids[0])
timer = timeit.Timer(lambda: ItemPublic.model_validate(item).model_dump_json())
pydantic_us = min(timer.repeat(repeat=5, number=1000)) / 1000 * 1e6
layer_us["Pydantic + JSON alone"] = (pydantic_us, pydantic_us)
show_us(layer_us)

# %%
figure, axes = plt.subplots(figsize=(8, 3.4))
positions = range(len(layer_us))
for offset, (clock, index) in zip((-0.2, 0.2), (("wall time", 0), ("CPU time", 1)), strict=True):
    values = [figures[index] for figures in layer_us.values()]
    bars = axes.barh([p + offset for p in positions], values, 0.4, label=clock)
    axes.bar_label(bars, fmt="%.0f", fontsize=8, padding=3)
axes.set_yticks(positions, list(layer_us))
axes.invert_yaxis()
axes.set_xlabel("µs per request, one item by id (lower is better)")
axes.set_title(f"What each layer costs ({os.cpu_count()} CPUs)")
axes.legend(fontsize=8)
axes.margins(x=0.12)
plt.show()

# %% [markdown]
# Read the bars from the top:
#
# - **asyncpg** is one round trip and little Python. Its `Record` is not JSON yet: the limit on
#   the ladder writes its JSON by hand, with no model in between.
# - **Core** adds the transaction's two extra round trips and SQLAlchemy's statement and result
#   machinery. Round trips cost on both sides: each one is a message written, a wait on the
#   event loop, a wake-up, a message parsed. That is CPU time, not only waiting.
# - **The ORM** adds the session, the identity map, and an `Item` built from the row.
# - **Pydantic** is a few microseconds: its validation and its JSON are compiled (Rust).
#   Validating the same data twice costs little here, but it is still work for nothing.
#
# Not on this chart: FastAPI's own share (routing, dependency injection, the response) and
# uvicorn's HTTP. Compare the last column with the ladder's requests/s on one worker: what is
# left between them is theirs.

# %% [markdown]
# ## 3. Pool size against concurrency
#
# 20 "requests" are always in flight (asyncio tasks); each checks a connection out of the
# pool and runs `SELECT pg_sleep(0.005)`: a query that takes a known 5 ms on the server. We
# sweep the pool's size (no overflow, so the size is the cap) and record throughput and how
# long each request waited for a connection.

# %%
POOL_SIZES = [1, 2, 5, 10, 20, 40]
CONCURRENCY, REQUESTS, QUERY_SECONDS = 20, 80, 0.005
SLEEP = text(f"SELECT pg_sleep({QUERY_SECONDS})")


async def pool_point(pool_size: int) -> dict[str, float]:
    """Throughput and p99 wait for a connection, with CONCURRENCY requests in flight."""
    swept = solution.db.create_engine(
        settings.model_copy(update={"pool_size": pool_size, "max_overflow": 0, "pool_timeout": 30})
    )
    waits: list[float] = []
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one_request() -> None:
        async with limit:
            started = time.perf_counter()
            async with swept.connect() as connection:
                waits.append(time.perf_counter() - started)
                await connection.execute(SLEEP)

    await asyncio.gather(*(one_request() for _ in range(CONCURRENCY)))  # opens the connections
    waits.clear()
    started = time.perf_counter()
    await asyncio.gather(*(one_request() for _ in range(REQUESTS)))
    elapsed = time.perf_counter() - started
    kept_open = swept.pool.checkedin()
    await swept.dispose()
    return {
        "requests/s": REQUESTS / elapsed,
        "p99 wait (ms)": statistics.quantiles(waits, n=100)[98] * 1000,
        "connections": kept_open,
    }


sweep = {size: await pool_point(size) for size in POOL_SIZES}
print(f"{'pool_size':>9}{'requests/s':>12}{'p99 wait':>12}{'connections kept':>18}")
for size, point in sweep.items():
    print(
        f"{size:>9}{point['requests/s']:>12,.0f}{point['p99 wait (ms)']:>9.1f} ms"
        f"{point['connections']:>18.0f}"
    )

# %%
figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
ideal = [min(size, CONCURRENCY) / QUERY_SECONDS for size in POOL_SIZES]
left.plot(POOL_SIZES, [p["requests/s"] for p in sweep.values()], "o-", label="measured")
left.plot(POOL_SIZES, ideal, "--", color="grey", label="pool_size / 5 ms")
left.set_xscale("log")
left.set_xticks(POOL_SIZES, [str(size) for size in POOL_SIZES])
left.set_xlabel("pool_size")
left.set_ylabel("requests/s")
left.set_title(f"Throughput, {CONCURRENCY} in flight")
left.legend()
right.plot(POOL_SIZES, [p["p99 wait (ms)"] for p in sweep.values()], "o-", color="tab:red")
right.set_xscale("log")
right.set_xticks(POOL_SIZES, [str(size) for size in POOL_SIZES])
right.set_xlabel("pool_size")
right.set_ylabel("ms")
right.set_title("p99 wait for a connection")
figure.tight_layout()
plt.show()

# %% [markdown]
# - **Up to the concurrency, each connection adds throughput**: a pool of `n` serves at most
#   `n` queries per 5 ms (the dashed line), and the other requests queue for a connection (the
#   wait on the right).
# - **Past the concurrency, nothing changes**: 20 requests never use more than 20 connections.
#   The measured line also falls below the ideal early: the Python side (this one process, one
#   core) has its own cost per request, as section 2 measured.
# - **On a real server, throughput stops rising sooner.** `pg_sleep` only waits. Real queries
#   use the database's CPU, and once every core of the server is busy, more connections only
#   queue inside PostgreSQL; beyond that, `max_connections` caps them all (section 7).
# - **A pool bigger than the work costs the server memory.** Every connection is a server
#   process, with its own memory. The pool opens connections when requests need them, then
#   keeps up to `pool_size` of them open and idle for as long as the app runs: one burst of
#   slow requests, and they stay. The next cell asks PostgreSQL what one idle connection holds.

# %%
async with engine.connect() as connection:
    version_num = int(await connection.scalar(text("SHOW server_version_num")))
    work_mem = await connection.scalar(text("SHOW work_mem"))
    if version_num >= 140000:  # pg_backend_memory_contexts came with PostgreSQL 14
        contexts = await connection.scalar(
            text("SELECT sum(total_bytes) FROM pg_backend_memory_contexts")
        )
        print(f"this connection's server process: {contexts / 1024:,.0f} kB in memory contexts")
print(f"and each sort or hash in a query may take up to work_mem = {work_mem} more")

# %% [markdown]
# That is before the process's own code and stack, and before the caches a connection
# builds as it meets tables. Multiply it by the pool and by the workers (section 7).

# %% [markdown]
# ## 4. A new connection per request against a pooled one
#
# `NullPool` keeps nothing: every checkout opens a connection and every return closes it. The
# same one-item read as section 2's Core `select`, 50 times one after the other, each way.

# %%
QUERIES = 50
ONE_ITEM = select(*public_columns).where(items.c.id == ids[0])
null_engine = create_async_engine(
    scratch_url,
    poolclass=NullPool,
    connect_args={"server_settings": {"application_name": "notebook-performance-nullpool"}},
)


async def ms_per_query(measured: AsyncEngine) -> float:
    async def one_query() -> None:
        async with measured.connect() as connection:
            (await connection.execute(ONE_ITEM)).one()

    await one_query()  # warm up: the engine's first connection reads the server's version
    started = time.perf_counter()
    for _ in range(QUERIES):
        await one_query()
    return (time.perf_counter() - started) * 1000 / QUERIES


pooled_ms, null_ms = await ms_per_query(engine), await ms_per_query(null_engine)
await null_engine.dispose()
print(f"pooled:   {pooled_ms:7.3f} ms per request")
print(f"NullPool: {null_ms:7.3f} ms per request, {null_ms / pooled_ms:.1f}x the pooled one")

# %% [markdown]
# A new connection means a server process started, authentication, and SQLAlchemy's set-up of
# the connection (asyncpg's type codecs): milliseconds, against a fraction of one for the
# query. Over a network, with TLS and a password exchange, it costs more still. Use `NullPool`
# only where something else pools (PgBouncer), or for a one-off script; step 02 has the rest.

# %% [markdown]
# ## 5. Async against sync
#
# FastAPI runs an `async def` route on the event loop, and a `def` route in a worker thread
# through AnyIO, at most this many at once per worker:

# %%
print("AnyIO's thread limit:", anyio.to_thread.current_default_thread_limiter().total_tokens)

# %% [markdown]
# The same 40 concurrent requests three ways, on two kinds of work: **waiting** (each request
# waits 5 ms on the server, `pg_sleep`: I/O-bound) and **quick** (each reads one item):
#
# - **asyncio, one thread**: 40 tasks on the event loop, SQLAlchemy on asyncpg (an `async def`
#   route);
# - **40 threads, sync psycopg**: `anyio.to_thread.run_sync`, exactly what FastAPI does with a
#   `def` route, SQLAlchemy on psycopg 3;
# - **blocking call in `async def`**: the sync code called straight from a coroutine, the
#   mistake of a blocking library inside an `async def` route.
#
# Both engines get step 04's `pool_size` of 20 connections, without overflow: the same cap for
# both. Besides requests per second, we measure the CPU time the process spent per request,
# all threads included.

# %%
CONCURRENT, POOL = 40, 20
QUICK = text("SELECT id, name, price FROM items WHERE id = :id")
WORKLOADS: dict[str, tuple[TextClause, int]] = {"waiting": (SLEEP, 120), "quick": (QUICK, 200)}
async_engine = solution.db.create_engine(
    settings.model_copy(update={"pool_size": POOL, "max_overflow": 0})
)
sync_engine = create_engine(
    make_url(scratch_url).set(drivername="postgresql+psycopg"), pool_size=POOL, max_overflow=0
)


def sync_request(statement: TextClause, item_id: int) -> None:
    with sync_engine.connect() as connection:
        connection.execute(statement, {"id": item_id}).all()


async def async_request(statement: TextClause, item_id: int) -> None:
    async with async_engine.connect() as connection:
        (await connection.execute(statement, {"id": item_id})).all()


async def in_a_thread(statement: TextClause, item_id: int) -> None:
    await anyio.to_thread.run_sync(sync_request, statement, item_id)  # a `def` route


async def blocking(statement: TextClause, item_id: int) -> None:
    sync_request(statement, item_id)  # no await: the event loop stops until it returns


WAYS = {
    "asyncio, one thread": async_request,
    "40 threads, sync psycopg": in_a_thread,
    "blocking call in async def": blocking,
}


async def concurrent_run(way: Callable[..., Awaitable[None]], statement: TextClause, n: int):
    """n requests, CONCURRENT at a time: requests/s, and CPU ms per request."""
    limit = asyncio.Semaphore(CONCURRENT)

    async def one(item_id: int) -> None:
        async with limit:
            await way(statement, item_id)

    await asyncio.gather(*(one(ids[k]) for k in range(CONCURRENT)))  # warm up: open the pool
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(ids[k % len(ids)]) for k in range(n)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return n / elapsed, cpu * 1000 / n


concurrency = {}
for way_name, way in WAYS.items():
    for work, (statement, n) in WORKLOADS.items():
        # The blocking way does one request at a time: fewer of them keep this cell short.
        count = n // 5 if way is blocking else n
        concurrency[work, way_name] = await concurrent_run(way, statement, count)
    # Close each way's connections before the next: the server's connections are shared.
    await async_engine.dispose()
    sync_engine.dispose()

print(f"{'':<38}{'requests/s':>11}{'CPU per request':>17}")
for (work, way_name), (per_second, cpu_ms) in sorted(concurrency.items()):
    print(f"{work + ': ' + way_name:<38}{per_second:>11,.0f}{cpu_ms:>14.3f} ms")

# %%
figure, panels = plt.subplots(1, 2, figsize=(10, 3.6))
width = 0.27
for panel, index, label, fmt in (
    (panels[0], 0, "requests/s (higher is better)", "%.0f"),
    (panels[1], 1, "CPU ms per request (lower is better)", "%.2f"),
):
    for n, way_name in enumerate(WAYS):
        positions = [w + (n - 1) * width for w in range(len(WORKLOADS))]
        values = [concurrency[work, way_name][index] for work in WORKLOADS]
        bars = panel.bar(positions, values, width, label=way_name)
        panel.bar_label(bars, fmt=fmt, fontsize=7)
    panel.set_xticks(
        range(len(WORKLOADS)), [f"{work}, {CONCURRENT} at a time" for work in WORKLOADS]
    )
    panel.set_ylabel(label)
panels[0].legend(fontsize=7)
figure.suptitle(f"The same work, async and sync ({os.cpu_count()} CPUs)")
figure.tight_layout()
plt.show()

# %% [markdown]
# - **While requests wait**, one event loop keeps them all waiting at once on one thread, as
#   many as the pool lends connections to. 40 threads do too, up to 40: beyond it a `def` route
#   waits for a thread, whatever the pool holds; each thread costs memory, and they take turns
#   on Python's one interpreter lock, which shows as more CPU per request.
# - **The blocking call in `async def`** serves one request at a time: while it waits on
#   PostgreSQL, the event loop, and every other request of the worker, waits with it. On quick
#   work it can even look fine, as one request at a time is fast when each takes a fraction of
#   a millisecond; the cost shows as soon as requests wait: a slow query, a lock, a network.
# - **Quick work** is mostly Python either way: the difference is the drivers' and the
#   scheduling's overhead, not waiting.
# - **On a busy machine**, 40 threads get a bigger share of the CPUs than one, and may come out
#   ahead in requests/s. The CPU time per request is the figure the neighbours do not change.
#
# So: write `async def` routes with an async driver (asyncpg, SQLAlchemy's asyncio), and never
# call a blocking library in them. If a library only blocks, make the route a plain `def`, and
# FastAPI runs it in a thread: fine, as long as 40 at a time per worker is enough.

# %% [markdown]
# ## 6. When to drop from the ORM to Core
#
# Section 2 showed the ORM's cost for one row. It grows with the rows: each one becomes an
# object in the identity map. Here is a page of 100 items, validated into step 04's `ItemPage`
# and dumped to JSON, three ways:
#
# - **ORM objects**: `select(Item)`, loaded as `Item` objects, as step 04's `crud.list_items`;
# - **ORM session, columns**: `session.execute(select(*columns))`: the same session and
#   transaction, rows instead of objects (no identity map);
# - **Core connection**: the same statement on an `AsyncConnection`.
#
# `ItemPublic` has `from_attributes=True`: it reads a row's columns as well as an object's.

# %%
PAGE = 100


def page_json(rows: Any) -> bytes:
    page = ItemPage(items=[ItemPublic.model_validate(row) for row in rows], next_cursor=None)
    return page.model_dump_json().encode()


# Each takes the id that us_per_request passes, and reads the first page whatever it is.
async def orm_objects(_: int = 0) -> bytes:
    async with Session() as session:
        query = select(Item).order_by(Item.id).limit(PAGE)
        return page_json((await session.scalars(query)).all())


async def orm_columns(_: int = 0) -> bytes:
    async with Session() as session:
        query = select(*public_columns).order_by(items.c.id).limit(PAGE)
        return page_json((await session.execute(query)).all())


async def core_rows(_: int = 0) -> bytes:
    async with engine.connect() as connection:
        query = select(*public_columns).order_by(items.c.id).limit(PAGE)
        return page_json((await connection.execute(query)).all())


pages = {
    "ORM objects": orm_objects,
    "ORM session, columns": orm_columns,
    "Core connection": core_rows,
}
assert len({await page() for page in pages.values()}) == 1  # the same JSON every way
page_us = await us_per_request(pages, number=5)
print(f"a page of {PAGE} items, validated and dumped to JSON:")
show_us(page_us)
one_item = layer_us["ORM session.get"][1] - layer_us["Core select"][1]
many = page_us["ORM objects"][1] - page_us["Core connection"][1]
print(f"\nthe ORM's objects against Core, in CPU µs per request: {one_item:+,.0f} for one item,")
print(f"{many:+,.0f} for {PAGE} items ({many / PAGE:+,.1f} a row)")

# %% [markdown]
# The rule:
#
# - **Measure first.** Profile the app under load (`py-spy record -- python -m uvicorn
#   solution.main:app`, with the benchmark running) and change what is at the top. A route
#   that is called rarely, or that waits on a slow query, gains nothing from this.
# - **A hot read that returns many rows as they are** (a list, a search, an export) is where
#   Core pays: the ORM's cost per row adds up, and nothing in the request needs the objects.
#   `session.execute(select(*columns))` keeps the session, its transaction and the
#   dependency; only the objects go. Pydantic validates the rows just the same.
# - **Keep the ORM for writes**: the unit of work, relationships, defaults read back after an
#   `INSERT`, an object read then changed in one request. That is what it is for, and what the
#   course teaches; for one row its cost is small against a request's whole.

# %% [markdown]
# ## 7. Several workers, and the pool budget
#
# One uvicorn worker is one process, with one event loop, on one core. To use more cores, run
# more workers, from the step's folder:
#
# ```console
# cd steps/04-crud
# uv run uvicorn solution.main:app --workers 4
# ```
#
# (`fastapi run --workers 4` does the same, with `fastapi[standard]` installed.) Each worker
# runs the lifespan, so each has **its own engine and its own pool**: the connections a machine
# may open are `workers x (pool_size + max_overflow)`. PostgreSQL accepts `max_connections`,
# minus the ones it keeps for superusers (`superuser_reserved_connections`, and from
# PostgreSQL 16 `reserved_connections`). Here is the budget of this server, with step 04's
# defaults (`POOL_SIZE` and `MAX_OVERFLOW` change them).

# %%
pool_size = Settings.model_fields["pool_size"].default
max_overflow = Settings.model_fields["max_overflow"].default
per_worker = pool_size + max_overflow
# current_setting(name, true) is NULL where the setting does not exist (before PostgreSQL 16).
SETTING = text("SELECT coalesce(current_setting(:name, true), '0')::int")
async with engine.connect() as connection:
    server_settings = {
        name: await connection.scalar(SETTING, {"name": name})
        for name in ("max_connections", "superuser_reserved_connections", "reserved_connections")
    }
    in_use = await connection.scalar(
        text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
    )
max_connections = server_settings["max_connections"]
reserved = (
    server_settings["superuser_reserved_connections"] + server_settings["reserved_connections"]
)
available = max_connections - reserved
print(f"step 04's pool: pool_size {pool_size} + max_overflow {max_overflow} = {per_worker}")
print(f"this server: max_connections {max_connections} - {reserved} reserved = {available}")
print(f"connected right now: {in_use} (this notebook, your other apps, psql, the tests...)")
for workers in sorted({1, 2, os.cpu_count() or 1, 4, 8}):
    needed = workers * per_worker
    verdict = "fits" if needed <= available - in_use else "too many"
    print(f"{workers:>2} workers x {per_worker} = {needed:>3} connections: {verdict}")
print(f"at most {available // per_worker} workers with these pools, on an otherwise idle server")

# %% [markdown]
# - **Workers: start with one per core.** The ladder shows the Python layers, not the
#   database, are the limit: a worker keeps its core busy, and more workers than cores only
#   take turns.
# - **Size the pools for the budget, not the other way round.** Section 3 showed that a pool
#   needs about as many connections as requests wait on the database at once: with several
#   workers, a smaller `POOL_SIZE` each is usually enough. Every client counts: migrations,
#   `psql`, a second app, the workshop's own tests.
# - **Past the budget**, a connection beyond `max_connections` is refused (`too many clients
#   already`): the app answers 503 where it could have waited for its pool.

# %% [markdown]
# ## 8. Clean up

# %%
await raw_pool.close()
await engine.dispose()
await drop_database(server.url, scratch)
print("dropped", scratch)
