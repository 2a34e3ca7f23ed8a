"""What the lessons say a library does, run against the versions this project installs: when
an upgrade changes the behaviour, the page that states it fails here first."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from workshop.database import Server


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
