"""Step 04 checks: each request runs only the statements it needs (no N+1, no re-read).

The writes are counted on the app as a server runs it (`live_statements`): every statement it
sends, SAVEPOINTs included. On the test's own session, whose commits are savepoints that the
test rolls back, a SAVEPOINT of the app's could not be told from those.
"""

import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from types import ModuleType
from typing import Any

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

ONLY_WHAT_IT_NEEDS = "the request sent statements its work does not need (a SELECT, a SAVEPOINT)"


async def stored(pkg: ModuleType, session: AsyncSession, n: int = 1) -> list[Any]:
    items = [pkg.models.Item(name=f"S{n}-{i}", price=Decimal(1)) for i in range(n)]
    session.add_all(items)
    await session.commit()
    session.expunge_all()  # a request starts with nothing loaded
    return items


@pytest.mark.exercise("04.1")
async def test_create_is_one_insert(
    live_client: httpx.AsyncClient,
    live_statements: list[str],
    new_item: Callable[..., dict[str, Any]],
) -> None:
    assert (await live_client.post("/items", json=new_item())).status_code == 201
    # INSERT ... RETURNING: no SELECT after it, no SAVEPOINT around it.
    assert live_statements == ["INSERT"], ONLY_WHAT_IT_NEEDS


@pytest.mark.exercise("04.2")
async def test_get_is_one_select_of_one_row(
    pkg: ModuleType,
    client: httpx.AsyncClient,
    session: AsyncSession,
    statements: list[str],
    selects: list[Any],
    explain: Callable[[Any], Awaitable[str]],
) -> None:
    items = await stored(pkg, session, n=5)
    statements.clear()
    selects.clear()
    assert (await client.get(f"/items/{items[2].id}")).status_code == 200
    assert statements == ["SELECT"]
    [query] = selects
    # One statement can still read the whole table: the lookup by id returns one row.
    if query.rows != 1:
        pytest.fail("GET /items/{id} read more rows than the one it answers: look it up by id")
    # The id travels beside the SQL, as a parameter: one statement text for every id.
    if items[2].id not in query.parameters:
        pytest.fail("GET /items/{id} pasted the id into its SQL: pass it as a bound parameter")
    # And the primary key's index finds it: an id compared as text would read every row.
    if "pk_items" not in await explain(query):
        pytest.fail("GET /items/{id} sends a lookup the primary key's index cannot serve")


@pytest.mark.exercise("04.2")
@pytest.mark.exercise("04.3")
async def test_patch_is_one_select_and_one_update(
    pkg: ModuleType,
    engine: AsyncEngine,
    live_client: httpx.AsyncClient,
    live_statements: list[str],
) -> None:
    items = pkg.models.Item.__table__
    async with engine.begin() as connection:
        item_id = await connection.scalar(
            insert(items).values(name=f"S {uuid.uuid4().hex}", price=1).returning(items.c.id)
        )
    change = {"price": "2", "description": "New"}
    assert (await live_client.patch(f"/items/{item_id}", json=change)).status_code == 200
    # Two fields, one UPDATE ... RETURNING updated_at, one commit.
    assert live_statements == ["SELECT", "UPDATE"], ONLY_WHAT_IT_NEEDS
    # A body that changes nothing writes nothing: no UPDATE, the row and its updated_at stay.
    live_statements.clear()
    assert (await live_client.patch(f"/items/{item_id}", json={})).status_code == 200
    assert live_statements == ["SELECT"], "an empty PATCH wrote the row: it changes nothing"


@pytest.mark.exercise("04.4")
async def test_bulk_create_is_one_insert(
    live_client: httpx.AsyncClient,
    live_statements: list[str],
    new_item: Callable[..., dict[str, Any]],
) -> None:
    response = await live_client.post("/items/bulk", json=[new_item() for _ in range(25)])
    assert response.status_code == 201
    assert live_statements == ["INSERT"], ONLY_WHAT_IT_NEEDS


@pytest.mark.parametrize("size", [1, 50])
async def test_a_page_is_one_select_whatever_its_size(
    pkg: ModuleType,
    client: httpx.AsyncClient,
    session: AsyncSession,
    statements: list[str],
    size: int,
) -> None:
    await stored(pkg, session, n=size)
    statements.clear()
    response = await client.get("/items", params={"limit": size})
    assert response.status_code == 200 and len(response.json()["items"]) == size
    assert statements == ["SELECT"]


async def test_delete_is_one_delete(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession, statements: list[str]
) -> None:
    [item] = await stored(pkg, session)
    statements.clear()
    assert (await client.delete(f"/items/{item.id}")).status_code == 204
    assert statements == ["DELETE"]
