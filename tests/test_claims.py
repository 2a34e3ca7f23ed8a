"""What the lessons say a library does, run against the versions this project installs: when
an upgrade changes the behaviour, the page that states it fails here first."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from workshop.course import Course
from workshop.course.loader import load_package
from workshop.postgres import Server, libpq_dsn
from workshop.postgres.migrations import Migrations

from .faults import migrated_database


def test_plain_postgresql_url_names_no_async_driver() -> None:
    """01-setup: plain `postgresql://` leaves SQLAlchemy its default driver, psycopg (3) in
    SQLAlchemy 2.1, not the asyncpg the app needs."""
    assert make_url("postgresql://user@host/db").get_dialect().driver == "psycopg"
    assert make_url("postgresql+asyncpg://user@host/db").get_dialect().driver == "asyncpg"


@pytest.mark.parametrize(("pre_ping", "expected"), [(False, 3), (True, 6)])
async def test_a_read_costs_three_round_trips_and_pre_ping_three_more(
    server: Server, pre_ping: bool, expected: int
) -> None:
    """02-connection, "Pre-ping, or not": a request's read is `BEGIN`, the query and
    `ROLLBACK`; asyncpg's pre-ping adds `BEGIN`, an empty statement and `ROLLBACK`."""
    engine = create_async_engine(
        server.url.render_as_string(hide_password=False), pool_pre_ping=pre_ping
    )
    sent: list[str] = []

    @event.listens_for(engine.sync_engine, "connect")
    def log_queries(dbapi_connection: Any, record: Any) -> None:
        # asyncpg logs its plain queries (BEGIN, ROLLBACK, the ping) but not the prepared
        # statements that SQLAlchemy sends: those are counted below.
        dbapi_connection.driver_connection.add_query_logger(lambda q: sent.append(q.query))

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def log_statements(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    try:
        async with AsyncSession(engine) as session:  # opens the connection: not counted
            await session.scalar(text("SELECT 1"))
        sent.clear()
        async with AsyncSession(engine) as session:  # a request on a pooled connection
            await session.scalar(text("SELECT 1"))
    finally:
        await engine.dispose()
    assert len(sent) == expected, sent


async def test_a_fetchrow_through_asyncpgs_pool_is_two_round_trips(server: Server) -> None:
    """performance, "Round trips": on a bare connection, a fetchrow whose statement is cached
    is one round trip; through asyncpg's pool, giving the connection back is a second, the
    reset query (advisory locks, cursors, LISTEN, settings)."""
    sent: list[str] = []

    async def log_queries(connection: asyncpg.Connection) -> None:
        connection.add_query_logger(lambda query: sent.append(query.query))

    dsn = libpq_dsn(server.url)
    async with asyncpg.create_pool(dsn, min_size=1, max_size=1, init=log_queries) as pool:
        await pool.fetchrow("SELECT 1 AS one")  # prepares the statement: not counted
        sent.clear()
        await pool.fetchrow("SELECT 1 AS one")
    assert sent == [
        "SELECT 1 AS one",
        "SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;",
    ]


async def test_a_bulk_create_is_one_insert_from_numbered_values(
    course: Course, server: Server
) -> None:
    """04-crud, "When to commit": SQLAlchemy 2.1 sends a bulk of items as one statement, not as
    `INSERT ... VALUES (...), (...) RETURNING`: the rows numbered (sen_counter), inserted in
    that order, and the id returned a second time, to sort what comes back onto the objects."""
    package = load_package(course.step("04"), solution=True)
    sent: list[str] = []
    async with migrated_database(course.step("04"), server, "claims") as url:
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
        try:
            async with AsyncSession(engine, expire_on_commit=False) as session:
                items_in = [
                    package.schemas.ItemCreate(name=f"lamp {n}", price="1") for n in range(3)
                ]
                items = await package.crud.create_items(session=session, items_in=items_in)
        finally:
            await engine.dispose()
    (insert,) = [statement for statement in sent if statement.startswith("INSERT")]
    assert insert.startswith(
        "INSERT INTO items (name, description, price, attributes) SELECT p0::VARCHAR, "
        "p1::VARCHAR, p2::NUMERIC(10, 2), p3::JSONB FROM (VALUES ($1::VARCHAR, $2::VARCHAR, "
        "$3::NUMERIC(10, 2), $4::JSONB, 0), ($5::VARCHAR"
    ), insert
    assert insert.endswith(
        ") AS imp_sen(p0, p1, p2, p3, sen_counter) ORDER BY sen_counter "
        "RETURNING items.id, items.created_at, items.updated_at, items.id AS id__1"
    ), insert
    assert [item.name for item in items] == ["lamp 0", "lamp 1", "lamp 2"]
    assert [item.id for item in items] == sorted(item.id for item in items)


@pytest.mark.parametrize("eager_defaults", [True, "auto"])
async def test_the_insert_returns_server_defaults_anyway_the_update_only_when_eager(
    course: Course, server: Server, eager_defaults: bool | str
) -> None:
    """04-crud, "No second SELECT": SQLAlchemy's default ("auto") already brings the INSERT's
    server values back; `eager_defaults=True` adds the UPDATE's `updated_at`; the generated
    `search` column is in neither."""
    item_class = load_package(course.step("04"), solution=True).models.Item
    mapper = item_class.__mapper__
    saved, mapper.eager_defaults = mapper.eager_defaults, eager_defaults
    sent: list[str] = []
    try:
        async with migrated_database(course.step("04"), server, "claims") as url:
            engine = create_async_engine(url)
            event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
            try:
                async with AsyncSession(engine, expire_on_commit=False) as session:
                    item = item_class(name="lamp", price=Decimal("1.00"))
                    session.add(item)
                    await session.commit()
                    item.price = Decimal("2.00")
                    await session.commit()
            finally:
                await engine.dispose()
    finally:
        mapper.eager_defaults = saved
    insert, update = (next(s for s in sent if s.startswith(verb)) for verb in ("INSERT", "UPDATE"))
    assert "RETURNING items.id, items.created_at, items.updated_at" in insert
    assert ("RETURNING items.updated_at" in update) is (eager_defaults is True)
    assert "search" not in insert.partition("RETURNING")[2]


async def test_under_row_level_security_a_search_cannot_start_from_its_index(
    course: Course, server: Server
) -> None:
    """05-security, "What RLS does not do": `@@` is not LEAKPROOF, so for the app's role the
    policy comes first and the GIN index of `search` is not used; the owner's role uses it."""
    async with migrated_database(course.step("05"), server, "claims") as url:
        app_url = make_url(Migrations(course.step("05"), solution=True).app_url(url))
        owner = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            user = await owner.fetchval(
                "INSERT INTO users (email, hashed_password) VALUES ('a@b.c', 'x') RETURNING id"
            )
            await owner.execute(
                "INSERT INTO items (owner_id, name, price) SELECT $1, 'item ' || n || "
                "CASE WHEN n % 50 = 0 THEN ' lamp' ELSE '' END, 1 "
                "FROM generate_series(1, 5000) n",
                user,
            )
            await owner.execute("ANALYZE items")
            # Price full scans out: on a small table they win whatever the indexes.
            await owner.execute("SET enable_seqscan = off")
            search = (
                "EXPLAIN SELECT id FROM items WHERE owner_id = $1 AND "
                "search @@ websearch_to_tsquery('english', 'lamp')"
            )
            as_owner = "\n".join(r[0] for r in await owner.fetch(search, user))
            async with owner.transaction():
                await owner.execute(f'SET LOCAL ROLE "{app_url.username}"')
                await owner.execute("SELECT set_config('app.user_id', $1, true)", str(user))
                as_app = "\n".join(r[0] for r in await owner.fetch(search, user))
        finally:
            await owner.close()
    assert "ix_items_search" in as_owner, as_owner
    assert "ix_items_search" not in as_app, as_app
