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
# # Step 06: migrations a live database survives
#
# This notebook goes with the page "06 Production" of the course. Run the cells from the top
# (Shift+Enter). It uses the same PostgreSQL server as `workshop run 06`, but a database of its
# own, `notebook_06`, made here and dropped at the end: your `workshop_06` database is left
# alone.
#
# You will:
#
# 1. migrate a database of the notebook's own to step 05's schema, with step 06's migrations;
# 2. give the app's role its settings (`0006`), and see them arrive, through PgBouncer too;
# 3. watch a plain `CREATE INDEX` make the writes wait, then build the index `CONCURRENTLY`;
# 4. run a migration behind a long read, under `lock_timeout`: the writes wait a bounded time;
# 5. serve step 05's app and step 06's side by side between expand and contract;
# 6. clean up.

# %%
import asyncio
import logging
import shutil
import tempfile
import uuid
from pathlib import Path

import asyncpg
from alembic import command
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from workshop.course import Course
from workshop.course.loader import load_package
from workshop.postgres import create_database, drop_database, libpq_dsn, resolve_server
from workshop.postgres.migrations import Migrations
from workshop.postgres.pgbouncer import PgBouncer
from workshop.postgres.pgbouncer_config import find_pgbouncer, install_command, workshop_users
from workshop.testing import serve

# %% [markdown]
# ## 1. A database of the notebook's own, at step 05's schema
#
# Step 06's migrations are step 05's five, and five more. `upgrade(url, "0005")` stops after
# step 05's: the database is as a step 05 deploy left it, and the notebook runs the new ones
# one at a time. `Migrations.upgrade` first provisions the two roles, as `workshop run` does.

# %%
course = Course()
step = course.step("06")
migrations = Migrations(step, solution=True)
server = resolve_server()
scratch = server.scratch_database("notebook_06")  # a name of its own when the tests run this
await drop_database(server.url, scratch)
await create_database(server.url, scratch)
scratch_url = server.database_url(scratch).render_as_string(hide_password=False)
await migrations.upgrade(scratch_url, "0005")
app_url = migrations.app_url(scratch_url)  # the same database, as the app's role


def dsn(url: str) -> str:
    return libpq_dsn(make_url(url))


admin = await asyncpg.connect(dsn(scratch_url))
print("at revision", await admin.fetchval("SELECT version_num FROM alembic_version"))

# %% [markdown]
# A few users, as step 05's app made them (the hash is not a real one: nobody logs in as
# them), and login attempts from a few addresses.

# %%
await admin.execute(
    "INSERT INTO users (email, hashed_password) "
    "SELECT 'user' || n || '@example.com', 'not a hash' FROM generate_series(1, 2000) n"
)
await admin.execute(
    "INSERT INTO login_attempts (email, address) "
    "SELECT 'user' || n % 100 || '@example.com', '192.0.2.' || n % 50 "
    "FROM generate_series(1, 5000) n"
)
print(await admin.fetchval("SELECT count(*) FROM users"), "users")

# %% [markdown]
# ## 2. Settings on the role
#
# What a new session of the app's role starts with, before `0006`: the server's defaults, `0`
# for each (no limit). Step 05's app sent `statement_timeout` itself, as a startup parameter.

# %%
SETTINGS = ["statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"]


async def settings_of(url: str, **connect: object) -> dict[str, str]:
    """The three settings, as a new session on `url` starts with them."""
    connection = await asyncpg.connect(dsn(url), **connect)
    try:
        return {name: await connection.fetchval(f"SHOW {name}") for name in SETTINGS}
    finally:
        await connection.close()


print("the app role:           ", await settings_of(app_url))
startup = {"server_settings": {"statement_timeout": "15000"}}
print("with a startup parameter:", await settings_of(app_url, **startup))

# %% [markdown]
# `0006` puts them on the role, in this database. A new session of the app's role gets them
# from PostgreSQL; the administrator's sessions (the migrations') do not.

# %%
await migrations.upgrade(scratch_url, "0006")
print("the app role:     ", await settings_of(app_url))
print("the administrator:", await settings_of(scratch_url))
rows = await admin.fetch(
    "SELECT setrole::regrole AS role, setconfig FROM pg_db_role_setting "
    "WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
for row in rows:
    print(dict(row))

# %% [markdown]
# Through PgBouncer in transaction mode (when this machine has it: the cell says how to
# install it otherwise). A PgBouncer of the notebook's own, on a free port: step 05's startup
# parameter is refused, and the role's settings arrive all the same.

# %%
bouncer = None
if find_pgbouncer() is None:
    print(f"No PgBouncer on this machine: {install_command()}")
else:
    bouncer = PgBouncer(Path(tempfile.mkdtemp(prefix="notebook-pgbouncer-")))
    bouncer.start(server.url, workshop_users(course, server.url), port=None, pool_size=2)
    through = bouncer.through(app_url)
    try:
        await settings_of(through, **startup)
    except asyncpg.PostgresError as error:
        print("step 05's way:", type(error).__name__, error)
    print("the role's settings, through PgBouncer:", await settings_of(through))

# %% [markdown]
# ## 3. A plain `CREATE INDEX`, then `CONCURRENTLY`
#
# A login's write is under way (a transaction that has inserted a row and not committed yet).
# Then an index is built on the table, and another write comes. Who waits for whom, PostgreSQL
# says: `pg_blocking_pids(pid)` is the list of sessions a session waits for.

# %%
WAITS = """
SELECT a.application_name AS waits, ARRAY(
         SELECT b.application_name FROM pg_stat_activity b
         WHERE b.pid = ANY(pg_blocking_pids(a.pid))) AS "for",
       l.locktype, l.mode,
       round(extract(epoch FROM clock_timestamp() - l.waitstart)::numeric, 3)::float AS seconds
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE NOT l.granted AND a.datname = current_database()
ORDER BY a.application_name
"""


async def connect(url: str, name: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn(url), server_settings={"application_name": name})


async def until_waiting(name: str, task: asyncio.Future) -> None:
    """Until the session of that name waits for a lock, or its task is done."""
    while not task.done():
        if any(row["waits"] == name for row in await admin.fetch(WAITS)):
            return
        await asyncio.sleep(0.01)  # polled: PostgreSQL has no event to wait for


async def index_beside_a_write(statement: str) -> None:
    """Build an index while a write is under way, then try another write."""
    under_way = await connect(app_url, "write under way")
    builder = await connect(scratch_url, "the index")
    writer = await connect(app_url, "next write")
    transaction = under_way.transaction()
    await transaction.start()
    await under_way.execute("INSERT INTO login_attempts (email, address) VALUES ('a@b.c', '')")
    building = asyncio.ensure_future(builder.execute(statement))
    await until_waiting("the index", building)
    insert = "INSERT INTO login_attempts (email, address) VALUES ('next@b.c', '')"
    writing = asyncio.ensure_future(writer.execute(insert))
    await until_waiting("next write", writing)
    for row in await admin.fetch(WAITS):
        print(dict(row))
    print("the next write is done:", writing.done())
    await transaction.commit()  # the write under way ends
    await asyncio.gather(building, writing)
    for connection in (under_way, builder, writer):
        await connection.close()


await index_beside_a_write("CREATE INDEX ix_plain ON login_attempts (address, attempted_at)")

# %% [markdown]
# The plain `CREATE INDEX` waits for the write under way (`ShareLock`, which a write's
# `RowExclusiveLock` holds up), and the next write waits for the index: it queued behind it,
# and would have waited until the index was built. With `CONCURRENTLY`, the index waits for
# the write under way too, but for its transaction (`virtualxid`), not for a lock on the
# table: the next write goes through.

# %%
await admin.execute("DROP INDEX ix_plain")
await index_beside_a_write(
    "CREATE INDEX CONCURRENTLY ix_concurrent ON login_attempts (address, attempted_at)"
)
await admin.execute("DROP INDEX ix_concurrent")

# %% [markdown]
# Revision `0007` builds the step's index that way, inside `autocommit_block()`:

# %%
await migrations.upgrade(scratch_url, "0007")
rows = await admin.fetch(
    "SELECT indexrelid::regclass AS index, indisvalid AS valid FROM pg_index "
    "WHERE indrelid = 'login_attempts'::regclass"
)
for row in rows:
    print(dict(row))

# %% [markdown]
# ## 4. A migration behind a long read, under `lock_timeout`
#
# A transaction has read `users` and stays open: a report, a slow request. `0008` adds a column
# to `users`: it needs `ACCESS EXCLUSIVE`, which waits for that read, and the app's writes
# queue behind it. Here the migrations' `lock_timeout` is 0.5 s (`alembic.ini` says 2 s), and
# the pause before the next attempt 0.5 s, then 1 s (`alembic.ini`: 1 s, then 2 s). The
# migration runs in a thread, as a deploy beside the app; the notebook writes in a loop and
# looks at `pg_locks` every 10 ms.


# %%
def migrate(revision: str, **options: str) -> None:
    """`alembic upgrade <revision>` with these alembic.ini options, on its own connection."""
    config = migrations.config()
    for name, value in options.items():
        config.set_main_option(name, value)

    async def run() -> None:
        named = {"server_settings": {"application_name": "migration"}}
        engine = create_async_engine(scratch_url, poolclass=NullPool, connect_args=named)
        async with engine.connect() as connection:

            def upgrade(sync_connection: object) -> None:
                config.attributes["connection"] = sync_connection
                command.upgrade(config, revision)

            await connection.run_sync(upgrade)
        await engine.dispose()

    asyncio.run(run())


class Said(logging.Handler):
    """What env.py logs: a line each time the migration gives way."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


said = Said()
logging.getLogger("alembic.env").addHandler(said)

reader = await connect(scratch_url, "long read")
read = reader.transaction()
await read.start()
await reader.fetchval("SELECT count(*) FROM users")

writer = await connect(app_url, "the app's writes")
waited: list[float] = []
written = 0
shorter = {"lock_timeout": "500ms", "lock_retry_pause": "0.5"}
running = asyncio.ensure_future(asyncio.to_thread(migrate, "0008", **shorter))
while not running.done():
    writing = asyncio.ensure_future(
        writer.execute("UPDATE users SET is_active = true WHERE id = 1")
    )
    while not writing.done():
        for row in await admin.fetch(WAITS):
            if row["waits"] == "the app's writes" and "migration" in row["for"]:
                waited.append(float(row["seconds"] or 0))
        await asyncio.sleep(0.01)
    written += 1
    if len(said.lines) == 2 and not reader.is_closed():
        await read.rollback()  # the read ends, after the migration gave way twice
        await reader.close()
await running
logging.getLogger("alembic.env").removeHandler(said)
print("\n".join(said.lines))
print(f"{written} writes; the longest seen waiting for the migration: {max(waited):.3f} s")
await writer.close()

# %% [markdown]
# Twice the migration gave way: each time, the writes that had queued behind it went through,
# after at most `lock_timeout`. Without it, they would have waited as long as the read lasted.
# Once the read ended, the migration's next attempt went through.

# %% [markdown]
# ## 5. Step 05's app and step 06's, between expand and contract
#
# `0009` fills `password_hash` for the users already there and validates its `NOT NULL`
# check. From here until `0010`, both versions of the app work on the same rows: step 05's
# writes `hashed_password`, step 06's `password_hash`, and `0008`'s trigger copies each to the
# other. The two apps run in the notebook's process, each with its own settings and pool.

# %%
await migrations.upgrade(scratch_url, "0009")
SECRET = "notebook-secret-" + uuid.uuid4().hex * 2
step05 = load_package(course.step("05"), solution=True)
step06 = load_package(step, solution=True)


def app_of(package: object) -> object:
    settings = package.config.Settings(_env_file=None, database_url=app_url, secret_key=SECRET)
    return package.main.create_app(settings)


async def log_in(client: object, email: str) -> int:
    form = {"username": email, "password": "correct horse battery staple"}
    return (await client.post("/auth/token", data=form)).status_code


async with serve(app_of(step05)) as old, serve(app_of(step06)) as new:
    account = {"password": "correct horse battery staple"}
    alice = {**account, "email": "alice@example.com"}
    bob = {**account, "email": "bob@example.com"}
    print("step 05 signs Alice up:", (await old.post("/users", json=alice)).status_code)
    print("step 06 signs Bob up:  ", (await new.post("/users", json=bob)).status_code)
    for email in ("alice@example.com", "bob@example.com"):
        print(f"{email}: step 05 {await log_in(old, email)}, step 06 {await log_in(new, email)}")

rows = await admin.fetch(
    "SELECT email, left(hashed_password, 20) AS hashed_password, "
    "left(password_hash, 20) AS password_hash FROM users WHERE email LIKE '%@example.com' "
    "AND email NOT LIKE 'user%'"
)
for row in rows:
    print(dict(row))

# %% [markdown]
# `0010` contracts: `hashed_password` and the trigger go. Step 06's app still logs both in;
# step 05's no longer can (its `SELECT` names a column that is gone), which is why the contract
# waits until the old version's last process is gone.

# %%
await migrations.upgrade(scratch_url)
logging.getLogger("step05_solution").setLevel(logging.CRITICAL)  # its 500 is expected here
async with serve(app_of(step05), raise_app_exceptions=False) as old, serve(app_of(step06)) as new:
    for email in ("alice@example.com", "bob@example.com"):
        print(f"{email}: step 05 {await log_in(old, email)}, step 06 {await log_in(new, email)}")

# %% [markdown]
# ## 6. Clean up
#
# The PgBouncer (if one was started) is stopped, and the notebook's database dropped.

# %%
await admin.close()
if bouncer is not None:
    bouncer.stop()
    shutil.rmtree(bouncer.folder, ignore_errors=True)
await drop_database(server.url, scratch)
print("dropped", scratch)
