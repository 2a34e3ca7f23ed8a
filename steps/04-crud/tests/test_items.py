"""Step 04 checks: every call of the /items API, its success and its failures."""

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from types import ModuleType
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

NewItem = Callable[..., dict[str, Any]]
JSON = {"Content-Type": "application/json"}


async def count(pkg: ModuleType, session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(pkg.models.Item))


async def stored(pkg: ModuleType, session: AsyncSession, **fields: Any) -> Any:
    """An item written straight through the session (no API, no exercise)."""
    item = pkg.models.Item(**{"name": "Stored", "price": Decimal("5.00"), **fields})
    session.add(item)
    await session.commit()
    return item


@pytest.mark.exercise("04.1")
async def test_create_answers_201_with_the_item_and_its_location(
    client: httpx.AsyncClient, session: AsyncSession, new_item: NewItem
) -> None:
    body = new_item(description="A lamp", attributes={"color": "red"}, price="12.5")
    response = await client.post("/items", json=body)
    assert response.status_code == 201
    item = response.json()
    assert response.headers["Location"] == f"/items/{item['id']}"
    # The price as stored, Numeric(10, 2): the same as a GET will show.
    assert (item["name"], item["price"], item["attributes"]) == (
        body["name"],
        "12.50",
        {"color": "red"},
    )
    assert item["created_at"] and item["updated_at"]


async def as_stored(pkg: ModuleType, session: AsyncSession, item: Any) -> None:
    """Fail unless each column of `item` holds what the table holds, of the same type."""
    items = pkg.models.Item.__table__
    columns = [c for c in items.c if c.name != "search"]
    row = (await session.execute(select(*columns).where(items.c.id == item.id))).one()
    for column in columns:
        made, stored_value = getattr(item, column.name), getattr(row, column.name)
        if (made, type(made)) != (stored_value, type(stored_value)):
            pytest.fail(
                f"the item's {column.name} is {made!r}, where the table holds {stored_value!r}: "
                "give the model the validated values themselves (model_dump(), not mode='json')"
            )


@pytest.mark.exercise("04.1")
async def test_create_item_returns_the_item_as_the_table_holds_it(
    pkg: ModuleType, session: AsyncSession, new_item: NewItem
) -> None:
    """The route is not the only caller: the Item returned must hold what a read would."""
    item_in = pkg.schemas.ItemCreate(**new_item(description="Desk", attributes={"size": 10}))
    item = await pkg.crud.create_item(session=session, item_in=item_in)
    await as_stored(pkg, session, item)


@pytest.mark.exercise("04.1")
async def test_create_stamps_the_database_time(
    client: httpx.AsyncClient, session: AsyncSession, new_item: NewItem
) -> None:
    """created_at and updated_at are the database's now(): the time of the transaction.

    The test's transaction began before the request, so an app's own clock reads later. In
    production that clock differs between app servers; the database's is one for all.
    """
    now = await session.scalar(select(func.now()))
    response = await client.post("/items", json=new_item())
    assert response.status_code == 201
    for stamp in ("created_at", "updated_at"):
        if datetime.fromisoformat(response.json()[stamp]) != now:
            pytest.fail(f"{stamp} is not the database's time: let PostgreSQL set it (now())")


@pytest.mark.exercise("04.1")
@pytest.mark.exercise("04.6")
async def test_a_duplicate_name_is_409_naming_the_field(
    client: httpx.AsyncClient, session: AsyncSession, new_item: NewItem
) -> None:
    body = new_item()
    assert (await client.post("/items", json=body)).status_code == 201
    response = await client.post("/items", json={**body, "price": "1.00"})
    assert response.status_code == 409
    assert response.json()["field"] == "name"
    assert "uq_items_name" not in response.text


@pytest.mark.parametrize(
    "body",
    [
        {"price": "1.00"},
        {"name": "Lamp", "price": "-1"},
        {"name": "Lamp", "price": "1.001"},
        {"name": "x" * 101, "price": "1"},
        {"name": "Lamp", "price": "1", "owner_id": 3},
        {"name": "Lamp", "price": "1", "attributes": [1, 2]},
    ],
)
async def test_an_invalid_body_is_422_and_writes_nothing(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession, body: dict[str, Any]
) -> None:
    before = await count(pkg, session)
    response = await client.post("/items", json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"][0] == "body"
    rows = await count(pkg, session)
    assert rows == before, f"{rows} items after, {before} before: it wrote what it should not"


async def test_a_price_sent_as_a_json_number_is_422_saying_to_send_a_string(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """json.loads makes 0.10000000000000000001 the float 0.1 before the schema sees it: a
    price is taken as a string only, and /docs says so (PATCH's too)."""
    before = await count(pkg, session)
    bodies = {
        "/items": '{"name": "Lamp", "price": %s}',
        "/items/bulk": '[{"name": "Lamp", "price": %s}]',
    }
    for path, body in bodies.items():
        for number in ("0.10000000000000000001", "12.5", "10"):
            response = await client.post(path, content=body % number, headers=JSON)
            assert response.status_code == 422, (path, number)
            error = response.json()["errors"][0]
            assert error["loc"][-1] == "price" and 'as a string, e.g. "9.99"' in error["msg"]
    rows = await count(pkg, session)
    assert rows == before, f"{rows} items after, {before} before: it wrote what it should not"
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    for schema in ("ItemCreate", "ItemUpdate"):
        assert '"number"' not in json.dumps(schemas[schema]["properties"]["price"]), schema


@pytest.mark.exercise("04.4")
async def test_bulk_create_writes_all_items(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession, new_item: NewItem
) -> None:
    before = await count(pkg, session)
    response = await client.post("/items/bulk", json=[new_item() for _ in range(5)])
    assert response.status_code == 201
    assert len(response.json()) == 5 and all(i["id"] for i in response.json())
    rows = await count(pkg, session)
    assert rows == before + 5, f"{rows} items after, {before} before: 5 more expected"


@pytest.mark.exercise("04.4")
@pytest.mark.exercise("04.6")
async def test_bulk_create_writes_nothing_when_one_item_conflicts(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession, new_item: NewItem
) -> None:
    taken = (await stored(pkg, session, name="Taken")).name
    before = await count(pkg, session)
    items = [new_item(), new_item(), new_item(name=taken), new_item()]
    response = await client.post("/items/bulk", json=items)
    assert response.status_code == 409
    rows = await count(pkg, session)
    assert rows == before, f"{rows} items after, {before} before: it wrote what it should not"
    # Twice the same name within one request: the same answer, nothing written.
    twice = new_item()
    assert (await client.post("/items/bulk", json=[twice, twice])).status_code == 409
    rows = await count(pkg, session)
    assert rows == before, f"{rows} items after, {before} before: it wrote what it should not"
    # The largest bulk, its last item taken: still one transaction, nothing written.
    items = [new_item() for _ in range(99)] + [new_item(name=taken)]
    assert (await client.post("/items/bulk", json=items)).status_code == 409
    if await count(pkg, session) != before:
        pytest.fail("a bulk that conflicts left some of its items written: commit once, at the end")


@pytest.mark.exercise("04.4")
async def test_create_items_returns_the_items_as_the_table_holds_them(
    pkg: ModuleType, session: AsyncSession, new_item: NewItem
) -> None:
    items_in = [pkg.schemas.ItemCreate(**new_item(price=price)) for price in ("1.5", "20")]
    items = await pkg.crud.create_items(session=session, items_in=items_in)
    assert [item.name for item in items] == [item_in.name for item_in in items_in]
    for item in items:
        await as_stored(pkg, session, item)


@pytest.mark.parametrize("size", [0, 101])
async def test_bulk_create_takes_1_to_100_items(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession, new_item: NewItem, size: int
) -> None:
    before = await count(pkg, session)
    response = await client.post("/items/bulk", json=[new_item() for _ in range(size)])
    assert response.status_code == 422
    rows = await count(pkg, session)
    assert rows == before, f"{rows} items after, {before} before: it wrote what it should not"


async def test_bulk_create_with_one_invalid_item_writes_nothing(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession, new_item: NewItem
) -> None:
    before = await count(pkg, session)
    response = await client.post("/items/bulk", json=[new_item(), new_item(price="-5")])
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"][:2] == ["body", 1]
    rows = await count(pkg, session)
    assert rows == before, f"{rows} items after, {before} before: it wrote what it should not"


@pytest.mark.exercise("04.2")
async def test_get_an_item(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    # Two items: each id answers its own item, not whichever comes first.
    items = [await stored(pkg, session, name=name) for name in ("First", "Second")]
    for item in reversed(items):
        response = await client.get(f"/items/{item.id}")
        assert response.status_code == 200
        assert (response.json()["id"], response.json()["name"]) == (item.id, item.name)


@pytest.mark.exercise("04.2")
async def test_get_a_missing_item_is_404(client: httpx.AsyncClient, session: AsyncSession) -> None:
    response = await client.get("/items/2147483647")
    assert response.status_code == 404
    assert response.json()["detail"] == "Item not found."


@pytest.mark.parametrize("item_id", ["0", "2147483648"])
async def test_an_id_no_item_can_have_is_422(client: httpx.AsyncClient, item_id: str) -> None:
    for method in ("GET", "DELETE"):
        assert (await client.request(method, f"/items/{item_id}")).status_code == 422


@pytest.mark.parametrize("item_id", ["-1", "abc"])
async def test_a_path_that_is_not_digits_is_404(client: httpx.AsyncClient, item_id: str) -> None:
    """Only digits reach the item routes (`{item_id:int}`), so /items/bulk is never an id."""
    for method in ("GET", "DELETE"):
        assert (await client.request(method, f"/items/{item_id}")).status_code == 404


@pytest.mark.exercise("04.2")
@pytest.mark.exercise("04.3")
async def test_patch_changes_only_the_fields_sent(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    item = await stored(pkg, session, description="Old", attributes={"a": 1})
    response = await client.patch(f"/items/{item.id}", json={"price": "7.25"})
    assert response.status_code == 200
    body = response.json()
    assert (body["price"], body["description"], body["attributes"]) == ("7.25", "Old", {"a": 1})
    # Sent as null, a nullable field is emptied.
    response = await client.patch(f"/items/{item.id}", json={"description": None})
    assert response.json()["description"] is None and response.json()["price"] == "7.25"


@pytest.mark.exercise("04.2")
@pytest.mark.parametrize("body", [{"name": None}, {"price": "-1"}, {"colour": "red"}])
async def test_patch_with_an_invalid_body_is_422(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession, body: dict[str, Any]
) -> None:
    item = await stored(pkg, session)
    assert (await client.patch(f"/items/{item.id}", json=body)).status_code == 422


@pytest.mark.exercise("04.2")
async def test_patch_a_missing_item_is_404(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    assert (await client.patch("/items/2147483647", json={"price": "1"})).status_code == 404


@pytest.mark.exercise("04.3")
@pytest.mark.exercise("04.6")
async def test_patch_to_a_taken_name_is_409(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await stored(pkg, session, name="First")
    second = await stored(pkg, session, name="Second")
    response = await client.patch(f"/items/{second.id}", json={"name": "First"})
    assert response.status_code == 409 and response.json()["field"] == "name"


async def test_delete_answers_204_then_404(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    item = await stored(pkg, session)
    response = await client.delete(f"/items/{item.id}")
    assert response.status_code == 204 and response.content == b""
    assert (await client.delete(f"/items/{item.id}")).status_code == 404
    assert await session.get(pkg.models.Item, item.id, populate_existing=True) is None


@pytest.mark.exercise("04.3")
async def test_patch_stamps_updated_at_with_the_database_time(
    pkg: ModuleType, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """updated_at is the database's now(), as created_at was: one clock for every app server.

    The test's transaction began before the request, so an app's own clock reads later.
    """
    then = datetime(2020, 1, 1, tzinfo=UTC)
    item = await stored(pkg, session, created_at=then, updated_at=then)
    now = await session.scalar(select(func.now()))
    response = await client.patch(f"/items/{item.id}", json={"price": "6.00"})
    assert response.status_code == 200
    assert datetime.fromisoformat(response.json()["created_at"]) == then
    if datetime.fromisoformat(response.json()["updated_at"]) != now:
        pytest.fail("updated_at is not the database's time: let PostgreSQL set it (onupdate)")


@pytest.mark.exercise("04.3")
async def test_update_item_changes_only_the_fields_set(
    pkg: ModuleType, session: AsyncSession
) -> None:
    item = await stored(pkg, session, description="Old", attributes={"a": 1})
    change = pkg.schemas.ItemUpdate(price="3.50")
    updated = await pkg.crud.update_item(session=session, item=item, item_in=change)
    assert (updated.price, updated.description, updated.attributes) == (
        Decimal("3.50"),
        "Old",
        {"a": 1},
    )
    cleared = pkg.schemas.ItemUpdate(description=None)
    assert (
        await pkg.crud.update_item(session=session, item=item, item_in=cleared)
    ).description is None
