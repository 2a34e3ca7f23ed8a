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
#
# Then, for the page *Async Python and SQLAlchemy sessions, for web developers*, you will:
#
# - watch a blocking call stop the event loop, and `asyncio.to_thread` free it (section 7);
# - see a plain `def` route run in FastAPI's thread pool, and that pool fill up (8);
# - see why one process needs a connection for each request in a transaction (9);
# - watch a session send nothing at `add()`, an `INSERT` at the flush, and make it visible at
#   the commit, and see what `expire_on_commit=False` is for (10);
# - meet `MissingGreenlet` on a lazy load, and load the relationship with `selectinload` (11).

# %%
import asyncio
import threading
import time
from contextlib import AsyncExitStack

import anyio.to_thread
import matplotlib.pyplot as plt
from sqlalchemy import ForeignKey, MetaData, event, select, text
from sqlalchemy.exc import MissingGreenlet
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload
from sqlalchemy.pool import NullPool

from workshop.course import Course
from workshop.course.loader import load_package
from workshop.postgres import describe, workshop_database_url
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
    """The server processes of the connections named `name` (a LIKE pattern), but ours: on
    this database only, so another notebook's on the same server never shows up here."""
    async with observer.connect() as connection:
        query = text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE :name AND pid <> pg_backend_pid() ORDER BY pid"
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
# ## 7. One event loop: what waits, and what blocks it
#
# Sections 7 to 11 are the demonstrations of the page *Async Python and SQLAlchemy sessions,
# for web developers*, which comes before step 02 in the course.
#
# Under gunicorn's sync workers, a Django or Flask process serves one request at a time: a call
# that blocks holds up that one request. Here one process, on one thread, runs an **event loop**
# that serves every request at once: each `await` hands the loop to another request until what
# it waits for is ready. A call that blocks without an `await` holds up every request.
#
# An app of step 02, with four routes that each wait 0.2 s, in four ways. The routes answer
# with the name of the thread their own code ran on.

# %%
WAIT = 0.2  # seconds: a slow query, or a call to another service
loop_app = solution.main.create_app(
    settings.model_copy(update={"pool_size": 5, "max_overflow": 0, "app_name": "notebook-02-loop"})
)


# --8<-- [start:four-routes]
@loop_app.get("/awaited")
async def awaited(session: solution.db.SessionDep) -> str:
    # PostgreSQL waits; the route awaits it, and the loop serves other requests meanwhile.
    await session.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": WAIT})
    return threading.current_thread().name


@loop_app.get("/blocking")
async def blocking() -> str:
    # Any call that waits without an await: requests.get, boto3, psycopg2, a sync SDK.
    time.sleep(WAIT)  # noqa: ASYNC251 (ruff's ASYNC rules catch this one: here it is on purpose)
    return threading.current_thread().name


@loop_app.get("/to-thread")
async def to_thread() -> str:
    # The same blocking call, run in a thread; the route awaits its end.
    await asyncio.to_thread(time.sleep, WAIT)
    return threading.current_thread().name


@loop_app.get("/plain-def")
def plain_def() -> str:
    # A plain def: FastAPI runs the whole route in its thread pool.
    time.sleep(WAIT)
    return threading.current_thread().name


# --8<-- [end:four-routes]

# %% [markdown]
# `at_once()` sends requests to a route all at once, and measures two things: how long they all
# took, and the longest the event loop stopped meanwhile. A task that asks to wake up every
# millisecond measures the second: while the loop is held, it cannot wake up.


# %%
async def at_once(client, path: str, requests: int) -> tuple[float, float, set[str]]:
    """Seconds for `requests` requests sent at once, the event loop's longest stop meanwhile
    (in ms), and the threads that the route's code ran on."""
    stops, done = [], asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            stops.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    responses = await asyncio.gather(*(client.get(path) for _ in range(requests)))
    took = time.perf_counter() - started
    done.set()
    await ticker
    for response in responses:
        response.raise_for_status()
    return took, max(stops) * 1000, {response.json() for response in responses}


async with serve(loop_app) as client:
    await at_once(client, "/awaited", 5)  # warm up: the pool opens its 5 connections
    print(f"{'5 requests at once':<20}{'took':>8}{'the loop stopped':>20}   the route ran on")
    for path in ("/awaited", "/blocking", "/to-thread", "/plain-def"):
        took, stopped, threads = await at_once(client, path, 5)
        print(f"{path:<20}{took:>6.2f} s{stopped:>15.0f} ms   {', '.join(sorted(threads))}")

# %% [markdown]
# Read the rows:
#
# - **`/awaited`**: five requests take about as long as one. The five waits happen at the same
#   time, in PostgreSQL, and the loop never stops for long.
# - **`/blocking`**: five requests take five times as long. The loop stops while each
#   `time.sleep` runs, and here the five ran one after the other: for that long no other request
#   of the process moved, not even a `/health` from a load balancer. Nothing fails: the app is
#   only slow, and slower the more requests it serves.
# - **`/to-thread`**: `asyncio.to_thread` runs the blocking call in another thread, and the
#   route awaits its end. The route's own code still runs on the loop (`MainThread`).
# - **`/plain-def`**: FastAPI runs a route declared with a plain `def` in a thread of its own
#   pool (`AnyIO worker thread`). Blocking there holds up one thread, not the loop.

# %% [markdown]
# ## 8. A plain `def` route: FastAPI's thread pool
#
# A plain `def` route is how a sync library stays usable in an async app. The threads are
# limited: FastAPI lends at most 40 at once, by default. Send more requests than that at once,
# and the rest wait for a thread.

# %%
limiter = anyio.to_thread.current_default_thread_limiter()
print("threads for plain def routes:", limiter.total_tokens)
async with serve(loop_app) as client:
    for requests in (40, 80):
        took, _, _ = await at_once(client, "/plain-def", requests)
        print(f"{requests} requests at once to /plain-def: {took:.2f} s")

# %% [markdown]
# Forty requests take about one wait, eighty about two: the first forty hold every thread.
# `asyncio.to_thread` has a pool of its own, smaller still: `min(32, CPUs + 4)` threads.
#
# A plain `def` route cannot `await`, so it cannot use the app's `AsyncSession`. In this course
# every route that reaches the database is `async def`, and awaits every query.

# %% [markdown]
# ## 9. One process, many requests: a connection each
#
# A gunicorn sync worker serves one request at a time, so one database connection is enough for
# it: Django keeps it open between requests with `CONN_MAX_AGE`. One async process serves many
# requests at once, and a request holds a connection for as long as its session has a
# transaction open: from its first query to its commit, or to the end of the request. Even while
# it awaits something else.
#
# The route below queries, then waits 0.1 s for something that is not the database (another
# service, say). Ten requests at once, on pools of 1, 5 and 10 connections; then ten one after
# the other, as a sync worker serves them.


# %%
# --8<-- [start:hold]
async def hold(session: solution.db.SessionDep) -> int:
    """A request in a transaction: a query, then a wait for something else."""
    # The first query begins the transaction: from now on the connection is this session's.
    pid = await session.scalar(text("SELECT pg_backend_pid()"))
    await asyncio.sleep(0.1)  # the transaction is still open: the connection stays taken
    return pid


# --8<-- [end:hold]


async def ten_requests(pool_size: int, *, together: bool = True) -> tuple[float, int]:
    """Seconds for 10 requests to `hold`, and how many connections served them."""
    pooled = settings.model_copy(
        update={
            "pool_size": pool_size,
            "max_overflow": 0,
            "pool_timeout": 30,  # wait for a connection rather than fail: we count the wait
            "app_name": "notebook-02-pool",
        }
    )
    app = solution.main.create_app(pooled)
    app.get("/hold")(hold)
    async with serve(app) as client:
        await asyncio.gather(*(client.get("/hold") for _ in range(pool_size)))  # open the pool
        started = time.perf_counter()
        if together:
            responses = await asyncio.gather(*(client.get("/hold") for _ in range(10)))
        else:
            responses = [await client.get("/hold") for _ in range(10)]
        took = time.perf_counter() - started
    return took, len({response.json() for response in responses})


for pool_size in (1, 5, 10):
    took, connections = await ten_requests(pool_size)
    print(f"10 at once, a pool of {pool_size:>2}: {took:.2f} s, on {connections} connection(s)")
took, connections = await ten_requests(1, together=False)
print(f"10 one after the other, a pool of 1: {took:.2f} s, on {connections} connection(s)")

# %% [markdown]
# With one connection, the ten requests at once take as long as ten one after the other: each
# waits in the pool for the one before it to finish its transaction, though PostgreSQL has no
# work to do. With a connection each, they take about as long as one. That is why one process
# of this app has a pool of `POOL_SIZE + MAX_OVERFLOW` connections (20 + 10): it is how many of
# its requests can be in a transaction at once. The next one waits in the pool, for at most
# `POOL_TIMEOUT`, then gets a 503 (section 3). And it is why a request should not keep its
# transaction open while it awaits something slow that is not the database.

# %% [markdown]
# ## 10. A session is not `save()`
#
# In Django, `author.save()` sends its `INSERT` at once, and, outside `atomic()`, commits it at
# once. A SQLAlchemy session is a **unit of work**: `session.add()` only puts the object in the
# session. The session sends what changed at a **flush**, inside its transaction, and makes it
# visible to everyone else at the **commit**. A session closed without a commit rolls back:
# nothing it sent is kept.
#
# Two tables of the notebook's own, in a schema that section 12 drops: authors and their books.


# %%
class Base(DeclarativeBase):
    metadata = MetaData(schema="notebook_02")


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    books: Mapped[list["Book"]] = relationship(back_populates="author")


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    author_id: Mapped[int] = mapped_column(ForeignKey(Author.id))
    author: Mapped[Author] = relationship(back_populates="books")


store = solution.db.create_engine(settings.model_copy(update={"app_name": "notebook-02-store"}))
async with store.begin() as connection:
    await connection.execute(text("DROP SCHEMA IF EXISTS notebook_02 CASCADE"))
    await connection.execute(text("CREATE SCHEMA notebook_02"))
    await connection.run_sync(Base.metadata.create_all)

# As step 02's lifespan makes it: objects keep their values after a commit.
Session = async_sessionmaker(store, expire_on_commit=False)

# %% [markdown]
# `after(step)` prints what the session sent since the step before (each statement's first
# words, and where its transactions begin and end), and how many authors *another* connection,
# the observer's, can see: only what is committed.

# %%
sent: list[str] = []


def first_words(conn, cursor, statement: str, *args) -> None:
    words = statement.split()
    if words[0] == "SELECT":
        sent.append("SELECT ... FROM " + words[words.index("FROM") + 1])
    else:
        sent.append(" ".join(words[:3]))


for name, listener in [
    ("before_cursor_execute", first_words),
    ("begin", lambda *args: sent.append("BEGIN")),
    ("commit", lambda *args: sent.append("COMMIT")),
    ("rollback", lambda *args: sent.append("ROLLBACK")),
]:
    event.listen(store.sync_engine, name, listener)


async def after(step: str) -> None:
    async with observer.connect() as connection:
        seen = await connection.scalar(text("SELECT count(*) FROM notebook_02.authors"))
    print(f"{step:<18} others see {seen} author(s); sent: {'; '.join(sent) or 'nothing'}")
    sent.clear()


# %%
# --8<-- [start:flush-commit]
async with Session() as session:
    ursula = Author(name="Ursula K. Le Guin")
    session.add(ursula)  # Django's save() would send the INSERT here; add() sends nothing
    await after("add()")
    await session.flush()  # the INSERT, in the session's transaction: not committed yet
    await after("flush()")
    await session.commit()  # now it is written, and everyone sees it
    await after("commit()")
# --8<-- [end:flush-commit]

# %% [markdown]
# After `flush()` the row exists in the session's transaction (the author already has an id:
# `RETURNING` brought it back), but the other connection does not see it. Only the commit
# makes it visible. A commit flushes first, so most code never calls `flush()` itself; it is for
# when you need what the database assigns (an id) before the commit.
#
# The session collects changes until the flush: here an author renamed and two books added,
# sent together at the commit, in the order the foreign key needs. And an author flushed but
# never committed: the session closes, rolls back, and the row is gone.

# %%
# --8<-- [start:unit-of-work]
async with Session() as session:
    ursula = await session.get(Author, ursula.id)
    ursula.name = "Ursula Le Guin"  # an attribute changed: nothing is sent
    session.add_all(
        [Book(title="The Dispossessed", author=ursula), Book(title="Lavinia", author=ursula)]
    )
    await after("changes made")
    await session.commit()  # the flush sends every change, then the transaction commits
    await after("commit()")

async with Session() as session:
    session.add(Author(name="Never committed"))
    await session.flush()
    await after("flush()")
await after("closed, no commit")  # the session rolled back as it closed
# --8<-- [end:unit-of-work]

# %% [markdown]
# **`expire_on_commit=False`, and why.** By default a commit *expires* every object of the
# session: it forgets their values, and the next read of an attribute loads them again with a
# `SELECT`. In async code that read is not an `await`, so SQLAlchemy cannot send the query, and
# raises `MissingGreenlet` instead. Step 02's session factory keeps the values.

# %%
# --8<-- [start:expire-on-commit]
Forgetful = async_sessionmaker(store)  # expire_on_commit=True, SQLAlchemy's default
async with Forgetful() as session:
    octavia = Author(name="Octavia E. Butler")
    session.add(octavia)
    await session.commit()
    try:
        print("the default, after the commit:", octavia.name)
    except MissingGreenlet as error:
        print("the default, after the commit:", type(error).__name__)

async with Session() as session:  # expire_on_commit=False
    jemisin = Author(name="N. K. Jemisin", books=[Book(title="The Fifth Season")])
    session.add(jemisin)
    await session.commit()
    print("step 02's session, after the commit:", jemisin.name, [b.title for b in jemisin.books])
# --8<-- [end:expire-on-commit]
sent.clear()

# %% [markdown]
# ## 11. Lazy loads: `MissingGreenlet`
#
# In Django, `author.book_set.all()` or `book.author` runs a query on the spot, when you read
# it. Do it from an `async def` view, and Django refuses: `SynchronousOnlyOperation`. SQLAlchemy's
# async session refuses the same way. A relationship that was not loaded, an attribute that
# a commit expired: reading it would need a query that nobody awaits, and it raises
# `MissingGreenlet` instead.

# %%
# --8<-- [start:lazy-load]
async with Session() as session:
    ursula = await session.scalar(select(Author).where(Author.name == "Ursula Le Guin"))
    try:
        print(len(ursula.books))  # not loaded: reading it would need a SELECT
    except MissingGreenlet as error:
        print(f"{type(error).__name__}: {error}")
    await session.refresh(ursula, ["books"])  # the awaited way to load it, when you must
    print(len(ursula.books), "books, after the refresh")
# --8<-- [end:lazy-load]
sent.clear()

# %% [markdown]
# Load what you need in the query itself. `selectinload(Author.books)` sends a second `SELECT`
# for the books of every author the first one found: two statements, however many authors,
# rather than one more per author (the N+1 of a loop of lazy loads). What is loaded stays
# readable after the session has ended.

# %%
# --8<-- [start:selectinload]
async with Session() as session:
    query = select(Author).options(selectinload(Author.books)).order_by(Author.name)
    authors = (await session.scalars(query)).all()
    await after("selectinload()")
for author in authors:  # the session has ended: the books were loaded with the authors
    print(f"{author.name}: {[book.title for book in author.books]}")
# --8<-- [end:selectinload]

# %% [markdown]
# ## 12. Close everything
#
# An engine's pool keeps connections open on the server until it is disposed. Drop the schema
# of sections 10 and 11, dispose of every engine you built, then check that none of this
# notebook's connections is left (the apps' engines were disposed by their lifespans, when
# `serve()` ended).

# %%
async with observer.begin() as connection:
    await connection.execute(text("DROP SCHEMA notebook_02 CASCADE"))
for disposable in (engine, store, *engines.values()):
    await disposable.dispose()
await asyncio.sleep(0.05)  # the server ends the processes a moment after the clients go
print("left on the server:", await server_pids("notebook-02%"))
await observer.dispose()
