"""Step 04's test helpers (the SQL statement recorder, `statements`, is the plugin's)."""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from workshop.testing import serve


@pytest.fixture
def new_item() -> Callable[..., dict[str, Any]]:
    """A valid POST /items body with a name no other test uses."""

    def make(**fields: Any) -> dict[str, Any]:
        return {"name": f"Item {uuid.uuid4().hex[:12]}", "price": "9.99", **fields}

    return make


@dataclass(frozen=True)
class Query:
    sql: str
    parameters: Any
    rows: int  # how many rows PostgreSQL sent back to the app (-1: not known)


@pytest.fixture
def selects(engine: AsyncEngine) -> Iterator[list[Query]]:
    """Each SELECT run on the test's connection: its SQL, its parameters, and its cost in rows.

    Counting statements is not enough: one SELECT of the whole table is one statement too.
    """
    seen: list[Query] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.startswith("SELECT"):
            seen.append(Query(statement, parameters, cursor.rowcount))

    event.listen(engine.sync_engine, "after_cursor_execute", record)
    yield seen
    event.remove(engine.sync_engine, "after_cursor_execute", record)


@pytest.fixture
def explain(session: AsyncSession) -> Callable[[Query], Awaitable[str]]:
    """PostgreSQL's plan for a query the app sent, with full scans priced out.

    On a table of a few rows a full scan is the cheapest plan, whatever the query, and a walk
    of the primary key in id order is the next. With both off, only an index that answers the
    filter itself can serve the query: the plan names it, or shows that there is none.
    """

    async def plan(query: Query) -> str:
        connection = await session.connection()
        await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        await connection.exec_driver_sql("SET LOCAL enable_indexscan = off")
        result = await connection.exec_driver_sql(f"EXPLAIN {query.sql}", query.parameters)
        return "\n".join(line for (line,) in result)

    return plan


@pytest.fixture
def live_app(pkg: ModuleType, settings: Any) -> FastAPI:
    """The app as a server runs it: built from the settings, with its own engine and pool."""
    return pkg.main.create_app(settings)


@pytest.fixture
async def live_client(
    pkg: ModuleType, live_app: FastAPI, engine: AsyncEngine
) -> AsyncIterator[httpx.AsyncClient]:
    """A client over the app as it really runs: its own pool, a new session per request.

    What a request does not commit is gone when its session closes, so the next request, or
    the test on a connection of its own, shows what was really written. The test's writes
    are committed: they are deleted at the end.
    """
    items = pkg.models.Item.__table__
    async with engine.connect() as connection:
        last_id = await connection.scalar(select(func.coalesce(func.max(items.c.id), 0)))
    try:
        async with serve(live_app, raise_app_exceptions=False) as client:
            yield client
    finally:
        async with engine.begin() as connection:
            await connection.execute(delete(items).where(items.c.id > last_id))


@pytest.fixture
async def live_statements(
    live_app: FastAPI, live_client: httpx.AsyncClient
) -> AsyncIterator[list[str]]:
    """The kind of every statement the live app sends, savepoints included (BEGIN and COMMIT
    are asyncpg's own, and not among them).

    The `statements` of the test's session cannot tell a SAVEPOINT of the app's from the
    ones that stand in for its commits; the live app has no such stand-ins to hide.
    """
    engine: AsyncEngine = live_app.state.engine
    # The pool's first connection asks the server its version and settings: not a request's.
    async with engine.connect():
        pass
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.split(None, 1)[0].upper())

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine.sync_engine, "before_cursor_execute", record)
