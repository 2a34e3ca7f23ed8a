"""Step 06 checks: what the migrations leave behind. The app role's settings, on the role;
the index of the limit per address, valid even after a build that failed half-way; and a
column renamed by expand and contract, with step 05's app and step 06's both working on the
database in between."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from workshop.course import Course, Step
from workshop.course.loader import load_package
from workshop.postgres import libpq_dsn
from workshop.postgres.migrations import Migrations
from workshop.testing import serve

INDEX = "ix_login_attempts_address_at"
# What 0006 gives the app role, as PostgreSQL shows it.
ROLE_SETTINGS = {
    "statement_timeout": "15s",
    "lock_timeout": "5s",
    "idle_in_transaction_session_timeout": "15s",
}
SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789-abcdef"
PASSWORD = "correct horse battery staple"
# PASSWORD's Argon2id hash (pwdlib's defaults), made once: a user made in SQL can log in.
HASHED = (
    "$argon2id$v=19$m=65536,t=3,p=4$K9EoiXTf/4Ncd2UasjntMQ$"
    "E4phewtShyKJ43durSZNcxYoonLAoVR96Af8DOLb598"
)


async def fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(libpq_dsn(make_url(url)))
    try:
        return await connection.fetch(sql, *args)
    finally:
        await connection.close()


async def settings_seen(url: str) -> dict[str, str]:
    """The three settings, as a new session on `url` starts with them."""
    shown = ", ".join(f"current_setting('{name}')" for name in ROLE_SETTINGS)
    rows = await fetch(url, f"SELECT {shown}")
    return dict(zip(ROLE_SETTINGS, rows[0], strict=True))


# -- 0006: the app role's settings ---------------------------------------------------------


async def test_the_app_role_starts_each_session_with_its_settings(
    migrations: Migrations, database_url: str, app_database_url: str, empty_database_url: str
) -> None:
    """A new session of the app role has the three settings, set by PostgreSQL (startup
    parameters do not pass PgBouncer in transaction mode). Only the app role's, and only in
    this database: the migrations' own sessions keep no statement_timeout, and the app role
    in another database of the server keeps the server's defaults."""
    assert await settings_seen(app_database_url) == ROLE_SETTINGS
    admin = await settings_seen(database_url)
    assert admin["statement_timeout"] == "0", "the migrations' sessions got a statement_timeout"
    elsewhere = migrations.app_url(empty_database_url)  # the app role, another database
    assert await settings_seen(elsewhere) != ROLE_SETTINGS


async def test_through_pgbouncer_the_app_role_has_its_settings(
    app_database_url: str, pgbouncer: Any
) -> None:
    """Through PgBouncer in transaction mode, where no startup parameter but a few passes."""
    assert await settings_seen(pgbouncer.through(app_database_url)) == ROLE_SETTINGS


# -- 0007: the index of the limit per address (exercise 06.5) --------------------------------


async def index_of(url: str) -> tuple[bool, str] | None:
    rows = await fetch(
        url,
        "SELECT indisvalid, pg_get_indexdef(indexrelid) FROM pg_index "
        "WHERE indexrelid = to_regclass($1)",
        INDEX,
    )
    return (rows[0][0], rows[0][1]) if rows else None


@pytest.mark.exercise("06.5")
async def test_the_limit_per_address_has_its_index(
    migrations: Migrations, database_url: str
) -> None:
    """login_attempts (address, attempted_at): the address's attempts, newest last, found
    without reading the others. And nothing else differs between the models and the
    migrated database."""
    index = await index_of(database_url)
    assert index is not None, f"the migrations build no index {INDEX} (migration 0007)"
    valid, definition = index
    assert valid, f"{INDEX} is INVALID: queries do not use it"
    columns = definition.partition(" USING btree ")[2]
    assert columns == "(address, attempted_at)", (
        f"{INDEX} is on {columns}: the limit asks for one address, then a time range in it"
    )
    assert await migrations.differences(database_url) == []


@pytest.mark.exercise("06.5")
async def test_a_build_that_failed_half_way_is_built_again(
    migrations: Migrations, empty_database_url: str
) -> None:
    """A CREATE INDEX CONCURRENTLY whose lock_timeout ran out (here, waiting for a write
    under way) leaves an INVALID index of its name. Run again, 0007 must end with a valid
    index: not fail on the name, nor keep the invalid one (IF NOT EXISTS would)."""
    url = empty_database_url
    await migrations.upgrade(url, "0006")
    writer = await asyncpg.connect(libpq_dsn(make_url(url)))
    builder = await asyncpg.connect(libpq_dsn(make_url(url)))
    try:
        async with writer.transaction():
            await writer.execute("INSERT INTO login_attempts (email, address) VALUES ('a@b.c', '')")
            await builder.execute("SET lock_timeout = '100ms'")
            with pytest.raises(asyncpg.LockNotAvailableError):
                await builder.execute(
                    f"CREATE INDEX CONCURRENTLY {INDEX} ON login_attempts (address, attempted_at)"
                )
    finally:
        await writer.close()
        await builder.close()
    assert await index_of(url) is not None, "the failed build left no INVALID index"
    await migrations.upgrade(url, "0007")
    index = await index_of(url)
    assert index is not None and index[0], (
        f"after a build that failed half-way, 0007 left {INDEX} INVALID: drop a leftover first"
    )


# -- 0008-0010: users.hashed_password renamed password_hash, by expand and contract --------


@asynccontextmanager
async def serving(package: ModuleType, url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A step's app, as its role, on the database at `url`."""
    settings = package.config.Settings(_env_file=None, database_url=url, secret_key=SECRET)
    async with serve(package.main.create_app(settings)) as client:
        yield client


async def sign_up(client: httpx.AsyncClient) -> str:
    email = f"deploy-{uuid.uuid4().hex[:8]}@example.com"
    response = await client.post("/users", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return email


async def log_in(client: httpx.AsyncClient, email: str) -> int:
    form = {"username": email, "password": PASSWORD}
    return (await client.post("/auth/token", data=form)).status_code


async def test_step_05_and_step_06_both_work_between_expand_and_contract(
    step: Step, migrations: Migrations, empty_database_url: str
) -> None:
    """A rolling deploy: at 0009 step 05's app (hashed_password) and step 06's (password_hash)
    serve the same database. A user made by either, or before the expand, logs in with both.
    After the contract (0010) step 06's app still does; step 05's no longer can, which is why
    0010 waits until its last process is gone. (The reference apps, on the migrations under
    test: the other exercises of the step do not bear on this one.)"""
    url = empty_database_url
    await migrations.upgrade(url, "0007")
    before = f"before-{uuid.uuid4().hex[:8]}@example.com"
    await fetch(url, "INSERT INTO users (email, hashed_password) VALUES ($1, $2)", before, HASHED)
    await migrations.upgrade(url, "0009")
    app_url = migrations.app_url(url)
    step05 = load_package(Course(step.dir.parent.parent).step("05"), solution=True)
    step06 = load_package(step, solution=True)
    async with serving(step05, app_url) as old, serving(step06, app_url) as new:
        by_old, by_new = await sign_up(old), await sign_up(new)
        for email in (before, by_old, by_new):
            assert await log_in(old, email) == 200, f"step 05's app cannot log {email} in"
            assert await log_in(new, email) == 200, f"step 06's app cannot log {email} in"
    rows = await fetch(url, "SELECT count(*) FROM users WHERE hashed_password = password_hash")
    assert rows[0][0] == 3

    await migrations.upgrade(url)
    async with serving(step05, app_url) as old, serving(step06, app_url) as new:
        for email in (before, by_old, by_new):
            assert await log_in(new, email) == 200
        assert await log_in(old, before) >= 500  # its column is gone


async def test_the_not_null_rule_is_added_not_valid_then_validated(
    migrations: Migrations, empty_database_url: str
) -> None:
    """0008 adds password_hash's rule NOT VALID (no scan under its ACCESS EXCLUSIVE lock),
    0009 validates it (a scan that lets writes go on), and 0010 makes the column NOT NULL
    through it, then drops it."""
    url = empty_database_url
    rule = (
        "SELECT convalidated FROM pg_constraint WHERE conname = 'ck_users_password_hash_not_null'"
    )
    not_null = (
        "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass "
        "AND attname = 'password_hash'"
    )
    await migrations.upgrade(url, "0008")
    assert [tuple(r) for r in await fetch(url, rule)] == [(False,)], "0008: not NOT VALID"
    await migrations.upgrade(url, "0009")
    assert [tuple(r) for r in await fetch(url, rule)] == [(True,)], "0009: not validated"
    assert [tuple(r) for r in await fetch(url, not_null)] == [(False,)]
    await migrations.upgrade(url, "0010")
    assert await fetch(url, rule) == [], "0010 keeps the CHECK beside the NOT NULL"
    assert [tuple(r) for r in await fetch(url, not_null)] == [(True,)]


async def test_the_migrations_go_down_and_up_again_with_the_users(
    migrations: Migrations, empty_database_url: str
) -> None:
    """downgrade to 0005 gives step 05's schema back with each user's hash, and upgrade head
    takes it to step 06's again."""
    url = empty_database_url
    await migrations.upgrade(url)
    email = f"round-{uuid.uuid4().hex[:8]}@example.com"
    await fetch(url, "INSERT INTO users (email, password_hash) VALUES ($1, $2)", email, HASHED)
    await migrations.downgrade(url, "0005")
    rows = await fetch(url, "SELECT hashed_password FROM users WHERE email = $1", email)
    assert rows[0][0] == HASHED
    assert await index_of(url) is None
    assert await settings_seen(migrations.app_url(url)) != ROLE_SETTINGS
    await migrations.upgrade(url)
    rows = await fetch(url, "SELECT password_hash FROM users WHERE email = $1", email)
    assert rows[0][0] == HASHED
