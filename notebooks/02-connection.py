# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Step 02: the connection pool, one cell at a time
#
# This notebook goes with the page "02 Connection" of the course. Run the cells from the top
# (Shift+Enter). It works on the same PostgreSQL as `workshop run 02`.
#
# You will:
#
# 1. build step 02's engine, with a pool small enough to watch;
# 2. watch its connections appear and disappear on the server;
# 3. fill the pool, and see the next request wait, then fail;
# 4. see what the app answers when that happens: a 503;
# 5. break a connection during a request, and see which session dependency survives it;
# 6. time queries on a pool against a new connection per query.

# %%
import asyncio
import time
from contextlib import AsyncExitStack

import matplotlib.pyplot as plt
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from workshop.course import Course
from workshop.database import describe, workshop_database_url
from workshop.loader import load_package
from workshop.testing import serve

# %% [markdown]
# ## 1. Step 02's engine, with a small pool
#
# `workshop_database_url()` finds the workshop's database, as in notebook 01. `load_package`
# imports step 02's reference package under a name of its own (`step02_solution`).

# %%
url = workshop_database_url()
print("where:", describe(url))

solution = load_package(Course().step("02"), solution=True)
Settings = solution.config.Settings

# %% [markdown]
# The app's defaults are a pool of 20 and an overflow of 10: too many to watch. We build the
# same engine with 3 and 2, and wait at most 1 second for a free connection. Every connection
# of this engine is named `notebook-02` on the server, so we can find it in `pg_stat_activity`.
#
# `create_engine` is exercise 02.1's function. Building the engine opens no connection yet.

# %%
settings = Settings(
    database_url=url.render_as_string(hide_password=False),
    pool_size=3,
    max_overflow=2,
    pool_timeout=1,
    app_name="notebook-02",
    _env_file=None,
)
engine = solution.db.create_engine(settings)
print(engine.pool.status())

# %% [markdown]
# To look at the server we need a connection too. This second engine, the observer, has a
# pool of one and a name of its own, so it does not count itself.
#
# `show()` prints one line per stage: the pool's side, with exercise 02.4's `pool_figures()`,
# then the server's side: the process ids of the connections named `notebook-02`.

# %%
observer = solution.db.create_engine(
    settings.model_copy(update={"app_name": "notebook-02-observer", "pool_size": 1})
)
pool_figures = solution.routes.health.pool_figures


async def server_pids(name: str = "notebook-02") -> list[int]:
    """The server processes of the connections named `name` (a LIKE pattern), but ours."""
    async with observer.connect() as connection:
        query = text(
            "SELECT pid FROM pg_stat_activity"
            " WHERE application_name LIKE :name AND pid <> pg_backend_pid() ORDER BY pid"
        )
        return list(await connection.scalars(query, {"name": name}))


async def show(stage: str) -> None:
    # PostgreSQL ends a closed connection's process a moment after the client has gone.
    await asyncio.sleep(0.05)
    pids = await server_pids()
    figures = pool_figures(engine)
    print(
        f"{stage:<16} pool: {figures.checked_out} out, {figures.checked_in} idle, "
        f"overflow {figures.overflow} | server: {len(pids)} {pids}"
    )


await show("engine created")

# %% [markdown]
# ## 2. Watch the connections come and go
#
# `engine.connect()` borrows a connection from the pool; leaving the `async with` gives it
# back. `AsyncExitStack` lets us hold several at once, and give them all back at the end.

# %%
async with AsyncExitStack() as held:
    for n in range(1, 6):
        await held.enter_async_context(engine.connect())
        await show(f"{n} checked out")
await show("all given back")

# %% [markdown]
# Read the lines from the top:
#
# - the pool opens a connection only when one is asked for, and nothing was free;
# - the 4th and 5th are the overflow: opened beyond `pool_size` because the pool was empty;
# - given back, the pool keeps 3 connections open and idle, and closes the 2 of the overflow.
#
# Those 3 idle connections are the point of the pool: the next requests reuse them. The server's
# process ids say so: no new process, the pool's three connections take turns.

# %%
for _ in range(6):
    async with engine.connect() as connection:
        print("served by process", await connection.scalar(text("SELECT pg_backend_pid()")))

# %% [markdown]
# Each connection also carries the step's settings, set on the server when it was opened: its
# name, and the time after which PostgreSQL cancels a statement (15 s by default).

# %%
async with engine.connect() as connection:
    for setting in ("application_name", "statement_timeout"):
        print(f"{setting}: {await connection.scalar(text(f'SHOW {setting}'))}")

# %% [markdown]
# `dispose()` closes every connection of the pool. The app's lifespan calls it at shut-down
# (exercise 02.2): without it, the connections would stay on the server after the app.

# %%
await engine.dispose()
await show("disposed")

# %% [markdown]
# ## 3. A full pool
#
# The pool lends at most `pool_size + max_overflow` = 5 connections. Hold all 5, and ask for a
# 6th: it waits `pool_timeout` (1 second) for one to come back, then gives up with SQLAlchemy's
# `TimeoutError`. It does not wait for ever, and it does not open a 6th connection.

# %%
async with AsyncExitStack() as held:
    for _ in range(5):
        await held.enter_async_context(engine.connect())
    await show("5 checked out")
    started = time.perf_counter()
    try:
        async with engine.connect():
            pass
    except PoolTimeoutError as error:
        print(f"6th checkout failed after {time.perf_counter() - started:.2f} s: {error}")
await show("all given back")

# %% [markdown]
# ## 4. What a client sees
#
# In the app, that `TimeoutError` reaches the error handler of `errors.py`: the client gets a
# 503 with `Retry-After`, and a body that says nothing about the database.
#
# Here is an app with one connection in its pool and half a second of patience, and a route
# that needs the database, as step 04's routes will. `serve()` runs the app's lifespan, as the
# tests do. We hold the app's only connection, and call the route.

# %%
busy = settings.model_copy(
    update={"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.5, "app_name": "notebook-02-app"}
)
app = solution.main.create_app(busy)


@app.get("/answer")
async def answer(session: solution.db.SessionDep) -> int:
    """A route that queries the database through its session."""
    return await session.scalar(text("SELECT 42"))


async with serve(app, raise_app_exceptions=False) as client:
    async with app.state.engine.connect():
        started = time.perf_counter()
        response = await client.get("/answer")
        waited = time.perf_counter() - started
        print(f"{response.status_code} after {waited:.2f} s, headers: {dict(response.headers)}")
        print(response.json())
    # The connection is back in the pool: the same request is served at once.
    response = await client.get("/answer")
    print(response.status_code, response.json())
    response = await client.get("/health/db")
    print(response.status_code, response.json())

# %% [markdown]
# The reason, `TimeoutError`, is in the app's log: the warning printed with the cell's output.
# The client never sees it. Once the connection is back, `/health/db` answers 200, with the
# pool's figures: one connection, idle.

# %% [markdown]
# ## 5. When the connection breaks during a request
#
# Closing a session talks to PostgreSQL: it sends a ROLLBACK for whatever was not committed. If
# the connection broke during the request (the server restarted, the network dropped it), that
# ROLLBACK cannot be sent, and the close itself fails. Here the network between the app and
# PostgreSQL is a `TcpProxy` that we can cut: a route runs its query, we cut the network and
# bring it back, then the route returns.
#
# First with the textbook dependency, `async with sessionmaker() as session: yield session`,
# then with step 02's `get_session`, which invalidates a connection it cannot close.

# %%
from fastapi import Request  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from workshop.testing import TcpProxy  # noqa: E402


async def textbook_session(request: Request):  # the pattern most tutorials show
    async with request.app.state.sessionmaker() as session:
        yield session


async def break_during_a_request(dependency=None) -> tuple[int, int]:
    """The route's status when the network drops after its query, then the next request's."""
    async with TcpProxy(make_url(settings.database_url.get_secret_value())) as proxy:
        app = solution.main.create_app(
            settings.model_copy(
                update={
                    "database_url": SecretStr(proxy.url),
                    "pool_size": 1,
                    "max_overflow": 0,
                    "pool_pre_ping": False,
                    "app_name": "notebook-02-break",
                }
            )
        )
        queried, go_on = asyncio.Event(), asyncio.Event()

        @app.get("/slow")
        async def slow(session: solution.db.SessionDep) -> str:
            await session.execute(text("SELECT 1"))  # a transaction is now open
            queried.set()
            await go_on.wait()
            return "done"

        if dependency is not None:
            app.dependency_overrides[solution.db.get_session] = dependency
        async with serve(app, raise_app_exceptions=False) as client:
            request = asyncio.create_task(client.get("/slow"))
            await queried.wait()
            await proxy.stop()  # the network drops every connection...
            await proxy.start()  # ...and comes back
            go_on.set()
            route, after = await request, await client.get("/health")
        return route.status_code, after.status_code


print(
    "textbook `async with`: route %s, next request %s"
    % await break_during_a_request(textbook_session)
)
print("step 02's get_session: route %s, next request %s" % await break_during_a_request())

# %% [markdown]
# With the textbook dependency, the route had done its work, yet the client gets an error: the
# failed close became the answer. (With FastAPI's default scope, the close runs *after* the
# response is sent, and the same failure makes the server drop the client's connection.)
# Step 02's `get_session` catches the failed close, invalidates the session so the broken
# connection is thrown away rather than lent again, and lets the route's own answer stand. Both
# versions serve the next request on a new connection.

# %% [markdown]
# ## 6. A pool against a connection per query
#
# Step 01's `/health` opened a new connection for each request, and notebook 01 measured what
# that costs. Here is the same comparison through SQLAlchemy: 200 `SELECT 1`, each in its own
# `async with engine.connect()`, as each request would do.
#
# - **pool**: step 02's engine, as the app builds it (with `pool_pre_ping`);
# - **pool, no pre-ping**: the same, without the check before each checkout;
# - **NullPool**: a pool that keeps nothing: every checkout opens a new connection, and every
#   return closes it.
#
# Each runs the 200 queries one after the other, then 10 at a time.

# %%
QUERIES = 200


async def one_query(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def ms_per_query(engine: AsyncEngine, *, concurrency: int = 1) -> float:
    await one_query(engine)  # warm up: the first connection also reads the server's version
    limit = asyncio.Semaphore(concurrency)

    async def limited() -> None:
        async with limit:
            await one_query(engine)

    started = time.perf_counter()
    await asyncio.gather(*(limited() for _ in range(QUERIES)))
    return (time.perf_counter() - started) * 1000 / QUERIES


engines = {
    "pool": solution.db.create_engine(settings),
    "pool, no pre-ping": solution.db.create_engine(
        settings.model_copy(update={"pool_pre_ping": False})
    ),
    "NullPool": create_async_engine(
        settings.database_url.get_secret_value(),
        poolclass=NullPool,
        connect_args={"server_settings": {"application_name": "notebook-02-nullpool"}},
    ),
}
results = {}
for name, measured in engines.items():
    results[name] = {
        "one at a time": await ms_per_query(measured),
        "10 at a time": await ms_per_query(measured, concurrency=10),
    }

print(f"{'':<20}{'one at a time':>16}{'10 at a time':>16}")
for name, row in results.items():
    print(f"{name:<20}" + "".join(f"{row[mode]:>13.3f} ms" for mode in row))
for mode in ("one at a time", "10 at a time"):
    ratio = results["NullPool"][mode] / results["pool"][mode]
    print(f"{mode}: a new connection per query is {ratio:.1f}x slower than the pool")

# %%
modes = ["one at a time", "10 at a time"]
figure, axes = plt.subplots(figsize=(8, 3.5))
width = 0.27
for n, (name, row) in enumerate(results.items()):
    positions = [m + (n - 1) * width for m in range(len(modes))]
    bars = axes.bar(positions, [row[mode] for mode in modes], width, label=name)
    axes.bar_label(bars, fmt="%.2f", fontsize=8)
axes.set_xticks(range(len(modes)), [f"{QUERIES} queries, {mode}" for mode in modes])
axes.set_ylabel("ms per query (lower is better)")
axes.set_title("SELECT 1, each in its own engine.connect()")
axes.legend()
plt.show()

# %% [markdown]
# ## What the figures say
#
# - **The pool wins by a wide margin.** With `NullPool`, each query pays for a new connection:
#   a server process started, authentication, and SQLAlchemy's set-up of the new connection.
#   Here the database is on the same machine; over a network, with TLS and a password
#   exchange, a new connection costs more still, while a query on an open one barely changes.
# - **Concurrency does not save `NullPool`.** Ten at a time hides some of the waiting, but
#   every query still starts and ends a server process. Under real load, that is also ten
#   processes starting at once on the database server, with no limit: the pool caps them at
#   `pool_size + max_overflow`.
# - **`pool_pre_ping` has a price.** It checks each connection before lending it, with a few
#   round trips. On a query this small it shows; on a real request it is a small share, and it
#   spares your users the error of a connection that the server or a firewall has closed.
#   Without it, `pool_recycle` alone limits the damage.
#
# Your figures depend on your machine; the order of the bars should not.

# %% [markdown]
# ## 7. Close everything
#
# An engine's pool keeps connections open on the server until it is disposed. Dispose of every
# engine you built, then check that none of this notebook's connections is left (the app's
# engine was disposed by its lifespan, when `serve()` ended).

# %%
for disposable in (engine, *engines.values()):
    await disposable.dispose()
await asyncio.sleep(0.05)  # the server ends the processes a moment after the clients go
print("left on the server:", await server_pids("notebook-02%"))
await observer.dispose()
