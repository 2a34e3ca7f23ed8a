"""Step 05 checks: a page of a user's items is one range of an index (migration 0005)."""

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

Auth = Callable[[Any], dict[str, str]]


@pytest.fixture
def selects(engine: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    """Each SELECT of items run on the test's connection (the one `client` shares), with its
    parameters."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.startswith("SELECT") and "FROM items" in statement:
            seen.append((statement, parameters))

    event.listen(engine.sync_engine, "after_cursor_execute", record)
    yield seen
    event.remove(engine.sync_engine, "after_cursor_execute", record)


@pytest.mark.exercise("05.3")
@pytest.mark.exercise("05.4")
async def test_a_page_of_a_users_items_is_one_range_of_an_index(
    client: httpx.AsyncClient,
    session: AsyncSession,
    selects: list[tuple[str, Any]],
    add_user: Any,
    add_item: Any,
    auth: Auth,
) -> None:
    """Every list is `WHERE owner_id = $1 [AND id > $2] ORDER BY id LIMIT $3`. An index on
    (owner_id, id) hands PostgreSQL the page in order, whoever owns the rest of the table.
    Without it, each page reads every item of the owner and sorts them, or walks everybody's
    items by id and skips the others'. With both of those priced out, the plan shows which."""
    alice, bob = await add_user(), await add_user()
    for owner in (alice, bob, alice, bob, alice):
        await add_item(owner)
    first = await client.get("/items", params={"limit": 2}, headers=auth(alice))
    assert first.status_code == 200, first.text
    cursor = first.json()["next_cursor"]
    params = {"limit": 2, "after": cursor}
    assert (await client.get("/items", params=params, headers=auth(alice))).status_code == 200
    connection = await session.connection()
    await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    await connection.exec_driver_sql("SET LOCAL enable_sort = off")
    for page, (sql, parameters) in zip(("first", "second"), selects[-2:], strict=True):
        result = await connection.exec_driver_sql(f"EXPLAIN {sql}", parameters)
        plan = "\n".join(line for (line,) in result)
        conditions = [line for line in plan.splitlines() if "Index Cond" in line]
        if "Sort" in plan or not any("owner_id" in line for line in conditions):
            pytest.fail(
                f"the {page} page of a user's items is not one range of an index on "
                f"(owner_id, id): PostgreSQL plans\n{plan}"
            )
