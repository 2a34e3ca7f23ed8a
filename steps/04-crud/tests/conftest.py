"""Step 04's test helpers: item payloads, and the SQL statements a request runs."""

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.fixture
def new_item() -> Callable[..., dict[str, Any]]:
    """A valid POST /items body with a name no other test uses."""

    def make(**fields: Any) -> dict[str, Any]:
        return {"name": f"Item {uuid.uuid4().hex[:12]}", "price": "9.99", **fields}

    return make


@pytest.fixture
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every SQL statement run on the test's connection (the one `client` shares with
    `session`), but the savepoints that stand in for the requests' commits."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO")):
            seen.append(statement.split(None, 1)[0])

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine.sync_engine, "before_cursor_execute", record)
