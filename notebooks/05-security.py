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
# # Step 05: security, one attack at a time
#
# This notebook goes with the page "05 Security" of the course. Run the cells from the top
# (Shift+Enter). It uses the same PostgreSQL server as `workshop run 05`, but a database of its
# own, `notebook_05`, made here and dropped at the end: your `workshop_05` database is left alone.
#
# You will:
#
# 1. migrate a database of the notebook's own to step 05, with its two roles;
# 2. break a query built with an f-string, then fix it with a bound parameter;
# 3. measure what an Argon2id hash costs, read one, and see why it runs in a thread;
# 4. make a token, read it without the key, tamper with it, and watch it refused;
# 5. connect as the app's role: no `DROP TABLE`, and only one user's rows;
# 6. clean up.

# %%
import asyncio
import base64
import hashlib
import json
import secrets
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import jwt
from sqlalchemy import String, cast, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from workshop.course import Course
from workshop.course.loader import load_package
from workshop.postgres import create_database, drop_database, libpq_dsn, resolve_server
from workshop.postgres.migrations import Migrations

# %% [markdown]
# ## 1. A database of the notebook's own, at step 05's revision
#
# `load_package` imports step 05's reference solution under a name of its own
# (`step05_solution`), as the tests do. We use its `security` module, its `Settings` and its
# `User` model.

# %%
step = Course().step("05")
solution = load_package(step, solution=True)
security = solution.security
Settings = solution.config.Settings
User = solution.models.User
print(solution.__name__)

# %% [markdown]
# A scratch database on the workshop's server, dropped first so the notebook can run again.
# `Migrations.upgrade` does what `workshop run 05` does: it first provisions the two roles of
# `alembic.ini` (`workshop_owner`, which owns the tables, and `workshop_app`, which the app
# logs in as), then runs the migrations as the owner.

# %%
server = resolve_server()
scratch = server.scratch_database("notebook_05")  # a name of its own when the tests run this
await drop_database(server.url, scratch)
await create_database(server.url, scratch)
scratch_url = server.database_url(scratch).render_as_string(hide_password=False)
migrations = Migrations(step, solution=True)
await migrations.upgrade(scratch_url)
app_url = migrations.app_url(scratch_url)  # the same database, as the app's role
print("the app logs in as:", make_url(app_url).username)

# %% [markdown]
# `admin` is a connection as the server's administrator, a superuser: it sets up the data.
# Who owns what, now?

# %%
admin = await asyncpg.connect(libpq_dsn(make_url(scratch_url)))
rows = await admin.fetch(
    "SELECT tablename, tableowner, rowsecurity FROM pg_tables "
    "WHERE schemaname = 'public' ORDER BY tablename"
)
for row in rows:
    name, owner, rls = row
    print(f"{name:16} owner: {owner:16} row-level security: {rls}")
roles = await admin.fetch(
    "SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
    "WHERE rolname IN ('workshop_owner', 'workshop_app') ORDER BY rolname"
)
for role in roles:
    print(dict(role))

# %% [markdown]
# Two users, Alice with 2 items and Bob with 3, their passwords hashed with the app's hasher
# (section 3 looks at it closely).

# %%
users = {}
for email, count in (("alice@example.com", 2), ("bob@example.com", 3)):
    users[email] = await admin.fetchval(
        "INSERT INTO users (email, hashed_password) VALUES ($1, $2) RETURNING id",
        email,
        security.password_hash.hash(f"the password of {email}"),
    )
    for n in range(count):
        await admin.execute(
            "INSERT INTO items (name, price, owner_id) VALUES ($1, 1, $2)",
            f"{email.split('@')[0]}'s item {n}",
            users[email],
        )
alice, bob = users["alice@example.com"], users["bob@example.com"]
print(users)

# %% [markdown]
# ## 2. SQL injection: an f-string, then a bound parameter
#
# Here is the mistake. The query is built by pasting the email into the SQL text. **Never do
# this**: it is here to be broken.


# %%
async def find_user_unsafe(email: str) -> list[asyncpg.Record]:
    query = f"SELECT id, email FROM users WHERE email = '{email}'"  # the bug: input in the SQL
    print(query)
    return await admin.fetch(query)


await find_user_unsafe("alice@example.com")

# %% [markdown]
# With an honest email, it works. Now the email is `' OR '1'='1`. The quote closes the string,
# and the rest becomes SQL: the condition is true for every row.

# %%
await find_user_unsafe("' OR '1'='1")

# %% [markdown]
# Every user. Reading another column, or another table, is as easy: `UNION` appends the
# password hashes to the answer, and `--` turns the closing quote into a comment.

# %%
await find_user_unsafe("' UNION SELECT id, hashed_password FROM users --")

# %% [markdown]
# The fix is not to escape quotes: it is to keep the value out of the SQL. A **bound
# parameter** (`$1` in asyncpg) sends the SQL text and the value separately. PostgreSQL parses
# the text first, then uses the value as a value, whatever characters it holds.

# %%
payload = "' OR '1'='1"
print(await admin.fetch("SELECT id, email FROM users WHERE email = $1", "alice@example.com"))
print(await admin.fetch("SELECT id, email FROM users WHERE email = $1", payload))

# %% [markdown]
# The payload is just an odd email that nobody has. SQLAlchemy's `text()` does the same with
# named parameters, `:email`; it sends them to asyncpg as `$1`. And the ORM's queries, which
# the app uses everywhere, are always built that way.

# %%
engine = create_async_engine(scratch_url)
by_email = text("SELECT id, email FROM users WHERE email = :email")
print(by_email.compile(dialect=engine.dialect))
async with engine.connect() as connection:
    print((await connection.execute(by_email, {"email": payload})).all())
print(select(User.id).where(User.email == payload).compile(dialect=engine.dialect))

# %% [markdown]
# ## 3. Argon2id: slow on purpose
#
# `security.password_hash` is the app's hasher: pwdlib with Argon2id. Time 5 hashes and 5
# verifications on your machine.

# %%
password = "correct horse battery staple"
started = time.perf_counter()
hashes = [security.password_hash.hash(password) for _ in range(5)]
hash_ms = (time.perf_counter() - started) / 5 * 1000
started = time.perf_counter()
assert all(security.password_hash.verify(password, hashed) for hashed in hashes)
verify_ms = (time.perf_counter() - started) / 5 * 1000
print(f"hash: {hash_ms:.0f} ms each, verify: {verify_ms:.0f} ms each")

# %% [markdown]
# Verifying costs as much as hashing: it hashes the password again, with the stored salt and
# cost, and compares. That is the point. Someone who steals the `users` table must pay this
# price for every guess of every password. Compare with a fast hash, SHA-256:

# %%
started = time.perf_counter()
for n in range(100_000):
    hashlib.sha256(f"guess {n}".encode()).digest()
sha_us = (time.perf_counter() - started) / 100_000 * 1_000_000
print(
    f"SHA-256: {sha_us:.2f} µs a guess, {hash_ms * 1000 / sha_us:,.0f} times faster than Argon2id"
)

# %% [markdown]
# A hash carries everything needed to check a password against it, in the PHC string format:
# the algorithm, its version, its cost, the salt, and the hash itself.

# %%
print(hashes[0])
_, variant, version, cost, salt, digest = hashes[0].split("$")
print("variant:", variant)
print("version:", version)
print("cost:   ", cost, "(m: memory in KiB, t: passes over it, p: lanes)")
print("salt:   ", salt)
print("hash:   ", digest)

# %% [markdown]
# The salt is random, so the same password never gives the same hash twice: two users with
# the same password cannot be spotted, and no precomputed table of hashes helps.

# %%
print(len(set(hashes)), "different hashes of one password")

# %% [markdown]
# ### Why `asyncio.to_thread`
#
# The app serves every request on one event loop. A hash computed on it stops the loop for its
# whole duration: no other request moves. Measure the longest pause of a task that wakes up
# every millisecond, while 3 hashes run on the loop, then in a thread.


# %%
async def longest_pause(work) -> float:
    done = asyncio.Event()
    pauses = []

    async def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            pauses.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    await work()
    done.set()
    await ticker
    return max(pauses) * 1000


async def on_the_loop() -> None:
    for _ in range(3):
        security.password_hash.hash(password)
        await asyncio.sleep(0)


async def in_a_thread() -> None:
    for _ in range(3):
        await asyncio.to_thread(security.password_hash.hash, password)


print(f"hashing on the loop: the loop stopped for up to {await longest_pause(on_the_loop):.0f} ms")
print(f"hashing in a thread: the loop stopped for up to {await longest_pause(in_a_thread):.0f} ms")

# %% [markdown]
# ## 4. Tokens: signed, not secret
#
# Settings with a real key: 32 random characters or more, or the app refuses to start.

# %%
settings = Settings(_env_file=None, secret_key=secrets.token_urlsafe(32))
key = security.signing_key(settings)
token = security.create_access_token(user_id=alice, settings=settings, key=key)
print(token)

# %% [markdown]
# Three parts, separated by dots: a header, the claims, a signature. The first two are only
# base64url: anyone can read them, without the key. Never put a secret in a token.


# %%
def unb64(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def b64(claims: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")


header, payload, signature = token.split(".")
claims = unb64(payload)
print("header:", unb64(header))
print("claims:", claims)
print("expires:", datetime.fromtimestamp(claims["exp"], UTC))

# %% [markdown]
# What makes a token worth anything is the signature: an HMAC-SHA256 of the first two parts,
# with the key. `decode_token` checks it, and the claims.

# %%
print(security.decode_token(token, settings=settings, key=key), "is Alice's id:", alice)

# %% [markdown]
# Mallory has Alice's token and wants Bob's items. She changes `sub` to Bob's id: easy, it is
# base64. But she cannot sign the new claims without the key, so the old signature no longer
# matches them.

# %%
forged = f"{header}.{b64({**claims, 'sub': str(bob)})}.{signature}"
try:
    security.decode_token(forged, settings=settings, key=key)
except jwt.InvalidTokenError as error:
    print(f"{type(error).__name__}: {error}")

# %% [markdown]
# An old trick: a token that says `"alg": "none"` carries no signature at all. A library that
# trusts the token's own header would accept it. `decode_token` allows HS256 only.

# %%
unsigned = jwt.encode({**claims, "sub": str(bob)}, None, algorithm="none")
print(unsigned)
try:
    security.decode_token(unsigned, settings=settings, key=key)
except jwt.InvalidTokenError as error:
    print(f"{type(error).__name__}: {error}")

# %% [markdown]
# Correctly signed, but expired, or made for another API: refused too.

# %%
now = datetime.now(UTC)
bad = {
    "expired": {**claims, "exp": now - timedelta(seconds=10)},
    "another audience": {**claims, "aud": "another-api"},
}
for what, changed in bad.items():
    try:
        security.decode_token(jwt.encode(changed, key, "HS256"), settings=settings, key=key)
    except jwt.InvalidTokenError as error:
        print(f"{what}: {type(error).__name__}: {error}")

# %% [markdown]
# ## 5. The app's role: rows, and nothing more
#
# Connect as `workshop_app`, as the app does. It may read and write rows; it owns nothing, so
# it cannot change the schema.

# %%
as_app = await asyncpg.connect(libpq_dsn(make_url(app_url)))
print("connected as", await as_app.fetchval("SELECT current_user"))
for ddl in ("DROP TABLE items", "CREATE TABLE stolen (id int)"):
    try:
        await as_app.execute(ddl)
    except asyncpg.InsufficientPrivilegeError as error:
        print(f"{ddl}: {type(error).__name__}: {error}")

# %% [markdown]
# Row-level security. With no user set, the app's role sees no items at all. With
# `set_config('app.user_id', ..., true)`, it sees that user's items, and only theirs, even
# with a query that has no `WHERE owner_id = ...`. `true` makes the setting last until the end
# of the transaction, so it cannot leak to the next request that borrows the connection. The
# administrator, a superuser, is not bound by the policy; nor is the tables' owner.

# %%
async with as_app.transaction():
    print("nobody:", await as_app.fetchval("SELECT count(*) FROM items"))
    await as_app.execute("SELECT set_config('app.user_id', $1, true)", str(alice))
    print("as Alice:", await as_app.fetchval("SELECT count(*) FROM items"))
    await as_app.execute("SELECT set_config('app.user_id', $1, true)", str(bob))
    print("as Bob:", await as_app.fetchval("SELECT count(*) FROM items"))
print("after the transaction:", await as_app.fetchval("SELECT count(*) FROM items"))
superuser = await admin.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
print(
    f"the administrator (superuser: {superuser}):",
    await admin.fetchval("SELECT count(*) FROM items"),
)

# %% [markdown]
# The app does it without an extra query: `current_user` loads the user and calls `set_config`
# in the same `SELECT`, with the id from the row, so the setting exists only when the user
# does. Here is that query, then a plain count in the same transaction.

# %%
app_engine = create_async_engine(app_url)
as_user = func.set_config("app.user_id", cast(User.id, String), True)
async with app_engine.connect() as connection:  # a transaction begins with the first query
    query = select(User.email, as_user).where(User.id == bob, User.is_active)
    print(query.compile(dialect=app_engine.dialect))
    print((await connection.execute(query)).one())
    print("items Bob's session sees:", await connection.scalar(text("SELECT count(*) FROM items")))
    await connection.rollback()

# %% [markdown]
# Writing is checked too (`WITH CHECK`): as Alice, an item for Bob is refused.

# %%
try:
    async with as_app.transaction():
        await as_app.execute("SELECT set_config('app.user_id', $1, true)", str(alice))
        await as_app.execute(
            "INSERT INTO items (name, price, owner_id) VALUES ('gift', 1, $1)", bob
        )
except asyncpg.InsufficientPrivilegeError as error:
    print(f"{type(error).__name__}: {error}")

# %% [markdown]
# ## 6. Clean up
#
# Close the connections, then drop the notebook's database. The two roles stay: they belong
# to the server, and `workshop run 05` uses them.

# %%
await as_app.close()
await admin.close()
await app_engine.dispose()
await engine.dispose()
await drop_database(server.url, scratch)
print("dropped", scratch)
