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
# # Step 01: settings and the database, one cell at a time
#
# This notebook goes with the page "01 Setup" of the course. Run the cells from the top
# (Shift+Enter). It works on the same PostgreSQL as `workshop run 01`.
#
# You will:
#
# 1. find the workshop's database;
# 2. ask PostgreSQL about itself with asyncpg;
# 3. measure what opening a connection costs, the reason for step 02's pool;
# 4. watch step 01's `Settings` hide the password, fix the driver and reject a wrong URL;
# 5. call `/health` without starting a server.

# %%
import os
import statistics
import time

import asyncpg
import httpx
from pydantic import ValidationError

from workshop.course import Course
from workshop.course.loader import load_package
from workshop.postgres import describe, libpq_dsn, workshop_database_url

# %% [markdown]
# ## 1. Find the workshop's database
#
# `workshop_database_url()` is the database of steps 01 and 02. It takes `DATABASE_URL` from the
# environment or the repository's `.env`. Without one, it starts the embedded PostgreSQL (data
# in `.workshop/pgdata`) and makes sure the database `workshop` exists.
#
# It finds the repository from the current folder. Jupyter runs a notebook in the notebook's
# own folder, `notebooks/`, which is inside the repository, so that works.

# %%
url = workshop_database_url()
print(url)  # SQLAlchemy's URL prints the password as ***
print("where:", describe(url))

# %% [markdown]
# The URL says `postgresql+asyncpg://`: the form SQLAlchemy needs from step 02 on. asyncpg,
# called directly, wants a plain `postgresql://` URL: `libpq_dsn()` spells it that way. We do
# not print it, because it contains the password.

# %%
dsn = libpq_dsn(url)
dsn.split("://", 1)[0]

# %% [markdown]
# ## 2. Ask PostgreSQL about itself
#
# Notebooks accept `await` at the top level, so asyncpg works as it does in an `async def`.

# %%
connection = await asyncpg.connect(dsn)
print(await connection.fetchval("SELECT version()"))

# %% [markdown]
# `SHOW server_version` is the short form. It is what `/health` reports.

# %%
await connection.fetchval("SHOW server_version")

# %% [markdown]
# Who are we, and where? A URL that points at the wrong database is a common mistake, and this
# is how you check it.

# %%
row = await connection.fetchrow("SELECT current_database() AS database, current_user AS user")
dict(row)

# %% [markdown]
# PostgreSQL serves each connection with a process of its own, and accepts at most
# `max_connections` of them. Every app instance's pool counts against that limit.

# %%
await connection.fetchval("SHOW max_connections")

# %% [markdown]
# `pg_stat_activity` has one row per server process. The client connections are the rows whose
# `backend_type` is `client backend`; this notebook's connection is one of them.

# %%
rows = await connection.fetch(
    """
    SELECT datname AS database, state, count(*) AS connections
    FROM pg_stat_activity
    WHERE backend_type = 'client backend'
    GROUP BY datname, state
    ORDER BY connections DESC
    """
)
for activity in rows:
    print(dict(activity))

# %% [markdown]
# ## 3. What does a connection cost?
#
# Step 01's `/health` opens a new connection for each request. Let us time 20 of those, and
# compare them with 20 queries on the connection that is already open.

# %%
connect_ms = []
for _ in range(20):
    start = time.perf_counter()
    fresh = await asyncpg.connect(dsn)
    connect_ms.append((time.perf_counter() - start) * 1000)
    await fresh.close()

query_ms = []
for _ in range(20):
    start = time.perf_counter()
    await connection.fetchval("SELECT 1")
    query_ms.append((time.perf_counter() - start) * 1000)

print(f"open a connection:  {statistics.mean(connect_ms):6.2f} ms on average")
print(f"SELECT 1 when open: {statistics.mean(query_ms):6.2f} ms on average")
print(f"opening costs about {statistics.mean(connect_ms) / statistics.mean(query_ms):.0f} queries")

# %% [markdown]
# Opening a connection costs many times a small query. On a network, with password
# authentication and TLS, the gap grows further. An API that opened a connection per request
# would spend most of its time there. Step 02 opens connections once and reuses them: a pool
# of `POOL_SIZE` connections, with `MAX_OVERFLOW` more under load.

# %% [markdown]
# ## 4. Step 01's settings
#
# Every step has a package called `app` (and one called `solution`). Imported by that name,
# two steps would collide. `load_package` imports a step's folder under a name of its own
# (`step01_solution`), as the tests do.

# %%
step = Course().step("01")
solution = load_package(step, solution=True)
Settings = solution.config.Settings
print(solution.__name__)

# %% [markdown]
# A `SecretStr` hides the password wherever the settings are printed. `_env_file=None` keeps
# any `.env` out of this experiment. The plain `postgresql://` we pass in is stored with the
# asyncpg driver: that is the validator of exercise 01.2.

# %%
settings = Settings(database_url="postgresql://app:s3cret@db.example:5432/shop", _env_file=None)
print(repr(settings))
print(settings.database_url.get_secret_value())  # only where you really need it

# %% [markdown]
# Settings come from the environment. The variable's name is the field's name, in capitals.

# %%
os.environ["POOL_SIZE"] = "5"
try:
    print(Settings(_env_file=None).pool_size)
finally:
    del os.environ["POOL_SIZE"]

# %% [markdown]
# A URL for another database is rejected when the settings are built, so the app does not
# start with it. The error names the field and the problem, never the value: the password
# stays out of it.

# %%
try:
    Settings(database_url="mysql://app:s3cret@db.example/shop", _env_file=None)
except ValidationError as error:
    print(error)
    print("password in the error:", "s3cret" in str(error))

# %% [markdown]
# ## 5. Call `/health` without a server
#
# `create_app(settings)` builds an app with the settings you give it: this is how the tests
# work. httpx can call an app directly, with no server and no port.

# %%
live = Settings(database_url=url.render_as_string(hide_password=False), _env_file=None)
app = solution.main.create_app(live)
async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client:
    response = await client.get("/health")
print(response.status_code, response.json())

# %% [markdown]
# Now an app whose database does not answer: nothing listens on port 1. The client gets a 503
# and a generic body. The reason goes to the log, shown below the cell.

# %%
down = Settings(database_url="postgresql://app:s3cret@127.0.0.1:1/shop", _env_file=None)
app = solution.main.create_app(down)
async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client:
    response = await client.get("/health")
print(response.status_code, response.json())

# %% [markdown]
# ## 6. Close the connection
#
# A connection holds a server process until it is closed. Close what you open.

# %%
await connection.close()
connection.is_closed()
