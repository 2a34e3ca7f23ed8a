"""Step 04 checks: what a write answers is committed, so another connection sees it.

These tests run the app as a server does, with its own pool and a session per request (not
the test's rolled-back session), and read the table back on a connection of their own: a
write that was flushed but never committed answers 200 or 201, then vanishes.
"""

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from types import ModuleType
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

NewItem = Callable[..., dict[str, Any]]


async def in_the_table(pkg: ModuleType, engine: AsyncEngine, ids: list[int]) -> dict[int, Any]:
    """The rows of these ids, as a new connection sees them: only what was committed."""
    items = pkg.models.Item.__table__
    async with engine.connect() as connection:
        rows = await connection.execute(select(items).where(items.c.id.in_(ids)))
        return {row.id: row for row in rows}


@pytest.mark.exercise("04.1")
async def test_a_created_item_is_committed(
    pkg: ModuleType, live_client: httpx.AsyncClient, engine: AsyncEngine, new_item: NewItem
) -> None:
    response = await live_client.post("/items", json=new_item(description="Kept"))
    assert response.status_code == 201
    created = response.json()
    rows = await in_the_table(pkg, engine, [created["id"]])
    assert created["id"] in rows, "the item was answered 201, but never committed"
    assert rows[created["id"]].description == "Kept"


@pytest.mark.exercise("04.3")
async def test_a_patch_is_committed(
    pkg: ModuleType, live_client: httpx.AsyncClient, engine: AsyncEngine, new_item: NewItem
) -> None:
    # An item committed by the test itself, so only the PATCH is on trial.
    async with engine.begin() as connection:
        item_id = await connection.scalar(
            insert(pkg.models.Item.__table__)
            .values(**new_item(price=Decimal("1.00"), description="Old"))
            .returning(pkg.models.Item.__table__.c.id)
        )
    response = await live_client.patch(f"/items/{item_id}", json={"price": "2.50"})
    assert response.status_code == 200
    row = (await in_the_table(pkg, engine, [item_id]))[item_id]
    assert row.price == Decimal("2.50"), "the change was answered 200, but never committed"
    assert row.description == "Old"


@pytest.mark.exercise("04.3")
async def test_each_patch_reads_back_as_it_answered(
    live_client: httpx.AsyncClient, new_item: NewItem
) -> None:
    """What a PATCH answers is what the next request, on a session of its own, reads.

    The test's own session could not show it: it holds the very object the PATCH changed.
    """
    attributes = {"color": "red", "size": 10, "tags": ["desk"]}
    response = await live_client.post("/items", json=new_item(attributes=attributes))
    assert response.status_code == 201
    expected = response.json()
    name = expected["name"]
    changes: list[tuple[dict[str, Any], dict[str, Any]]] = [
        # The object sent replaces the old one: a key left out is removed.
        ({"attributes": {"color": "blue"}}, {"attributes": {"color": "blue"}}),
        (
            {"attributes": {"color": "blue", "size": 12}},
            {"attributes": {"color": "blue", "size": 12}},
        ),
        ({"attributes": {}}, {"attributes": {}}),
        ({"description": "New", "price": "2.5"}, {"description": "New", "price": "2.50"}),
        ({"description": None, "price": "0"}, {"description": None, "price": "0.00"}),
        ({"name": f"  {name} 2  "}, {"name": f"{name} 2"}),
    ]
    for change, effect in changes:
        response = await live_client.patch(f"/items/{expected['id']}", json=change)
        assert response.status_code == 200, change
        answered = response.json()
        read = (await live_client.get(f"/items/{expected['id']}")).json()
        for field in answered:
            if read[field] != answered[field]:
                pytest.fail(
                    f"PATCH {change} answered {field} = {answered[field]!r}, and the next "
                    f"request reads {read[field]!r}: the change was never written"
                )
        if datetime.fromisoformat(read["updated_at"]) <= datetime.fromisoformat(
            expected["updated_at"]
        ):
            pytest.fail(f"PATCH {change} changed the item, and its updated_at did not move on")
        expected.update(effect, updated_at=read["updated_at"])
        assert read == expected, f"PATCH {change} must set what it sends, and nothing else"


@pytest.mark.exercise("04.4")
async def test_a_bulk_create_is_committed(
    pkg: ModuleType, live_client: httpx.AsyncClient, engine: AsyncEngine, new_item: NewItem
) -> None:
    response = await live_client.post("/items/bulk", json=[new_item() for _ in range(3)])
    assert response.status_code == 201
    ids = [item["id"] for item in response.json()]
    assert len(ids) == 3
    rows = await in_the_table(pkg, engine, ids)
    assert sorted(rows) == sorted(ids), "the items were answered 201, but never committed"
