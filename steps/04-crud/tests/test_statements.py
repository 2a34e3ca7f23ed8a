"""Step 04 checks: each request runs only the statements it needs (no N+1, no re-read)."""

from collections.abc import Callable
from decimal import Decimal
from types import ModuleType
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession


async def stored(pkg: ModuleType, session: AsyncSession, n: int = 1) -> list[Any]:
    items = [pkg.models.Item(name=f"S{n}-{i}", price=Decimal(1)) for i in range(n)]
    session.add_all(items)
    await session.commit()
    session.expunge_all()  # a request starts with nothing loaded
    return items


@pytest.mark.exercise("04.1")
async def test_create_is_one_insert(
    client: httpx.AsyncClient,
    session: AsyncSession,
    statements: list[str],
    new_item: Callable[..., dict[str, Any]],
) -> None:
    assert (await client.post("/items", json=new_item())).status_code == 201
    assert statements == ["INSERT"]  # INSERT ... RETURNING: no SELECT after it


@pytest.mark.exercise("04.2")
async def test_get_is_one_select_of_one_row(
    pkg: ModuleType,
    client: httpx.AsyncClient,
    session: AsyncSession,
    statements: list[str],
    selects: list[Any],
) -> None:
    items = await stored(pkg, session, n=5)
    statements.clear()
    selects.clear()
    assert (await client.get(f"/items/{items[2].id}")).status_code == 200
    assert statements == ["SELECT"]
    # One statement can still read the whole table: the lookup by id returns one row.
    if [query.rows for query in selects] != [1]:
        pytest.fail("GET /items/{id} read more rows than the one it answers: look it up by id")


@pytest.mark.exercise("04.2")
@pytest.mark.exercise("04.3")
async def test_patch_is_one_select_and_one_update(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession, statements: list[str]
) -> None:
    [item] = await stored(pkg, session)
    statements.clear()
    change = {"price": "2", "description": "New"}
    assert (await client.patch(f"/items/{item.id}", json=change)).status_code == 200
    # Two fields, one UPDATE ... RETURNING updated_at, one commit.
    assert statements == ["SELECT", "UPDATE"]


@pytest.mark.exercise("04.4")
async def test_bulk_create_is_one_insert(
    client: httpx.AsyncClient,
    session: AsyncSession,
    statements: list[str],
    new_item: Callable[..., dict[str, Any]],
) -> None:
    response = await client.post("/items/bulk", json=[new_item() for _ in range(25)])
    assert response.status_code == 201
    assert statements == ["INSERT"]


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
