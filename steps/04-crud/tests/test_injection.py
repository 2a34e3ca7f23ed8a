"""Step 04 checks: quotes and SQL in the data are only data (bound parameters, never SQL text).

Real names have quotes (O'Brien); a search box receives whatever is typed into it. Code that
pastes values into SQL breaks on the first, and runs the second.
"""

import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

PAYLOADS = [
    "O'Brien",
    "zzz') OR ('1'='1",
    "' OR '1'='1' --",
    "'; DROP TABLE items; --",
    "1); DELETE FROM items; --",
    "\\' UNION SELECT version() --",
    "$1 %s %(x)s {0} :name",  # what drivers and text() read as placeholders
    "\"}' OR '{\"a\": 1}' @> '{}",
]


async def count(pkg: ModuleType, session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(pkg.models.Item))


@pytest.mark.exercise("04.1")
async def test_quotes_and_sql_in_a_new_item_are_stored_as_sent(
    pkg: ModuleType,
    client: httpx.AsyncClient,
    session: AsyncSession,
    new_item: Callable[..., dict[str, Any]],
) -> None:
    for payload in PAYLOADS:
        body = new_item(
            name=f"{payload} {uuid.uuid4().hex[:8]}",
            description=payload,
            attributes={payload: payload, "nested": [payload]},
        )
        response = await client.post("/items", json=body)
        assert response.status_code == 201, payload
        item = await session.get(pkg.models.Item, response.json()["id"], populate_existing=True)
        assert item is not None, payload
        assert (item.name, item.description, item.attributes) == (
            body["name"],
            body["description"],
            body["attributes"],
        )
    # PostgreSQL's text cannot hold NUL: refused before it reaches the database.
    before = await count(pkg, session)
    for fields in ({"name": "nul\x00"}, {"description": "\x00"}, {"attributes": {"k": "\x00"}}):
        assert (await client.post("/items", json=new_item(**fields))).status_code == 422
    rows = await count(pkg, session)
    assert rows == before, f"{rows} items after, {before} before: it wrote what it should not"


@pytest.mark.exercise("04.5")
async def test_quotes_and_sql_in_search_and_filters_are_just_words(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    # A letter first: `attr=tag:12345678` would be read as the JSON number 12345678.
    tag = f"t{uuid.uuid4().hex[:8]}"
    maker = pkg.models.Item(
        name=f"O'Brien lamp {tag}", price=1, attributes={"maker": "O'Brien", "tag": tag}
    )
    session.add_all([maker, pkg.models.Item(name=f"Chair {tag}", price=1)])
    await session.commit()
    before = await count(pkg, session)

    async def ids(**params: Any) -> list[int]:
        response = await client.get("/items", params=params)
        assert response.status_code == 200, params
        return [item["id"] for item in response.json()["items"]]

    # A quote is a character like any other.
    assert await ids(q=f"O'Brien {tag}") == [maker.id]
    assert await ids(attr=["maker:O'Brien", f"tag:{tag}"]) == [maker.id]
    # SQL is a few words that no item has: nothing matches, nothing runs.
    for payload in PAYLOADS[1:]:
        assert await ids(q=payload) == [], payload
        assert await ids(attr=f"tag:{payload}") == [], payload
        assert await ids(attr=f"{payload}:1") == [], payload
    rows = await count(pkg, session)
    assert rows == before, f"{rows} items after, {before} before: it wrote what it should not"
