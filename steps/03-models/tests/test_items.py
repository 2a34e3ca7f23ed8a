"""Step 03 checks: the read routes show items through ItemPublic, and only its fields."""

from decimal import Decimal
from types import ModuleType

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

PUBLIC_FIELDS = {"id", "name", "description", "price", "attributes", "created_at", "updated_at"}


async def add_item(pkg: ModuleType, session: AsyncSession, **fields: object) -> object:
    item = pkg.models.Item(**{"name": "Lamp", "price": Decimal("12.50"), **fields})
    session.add(item)
    await session.commit()  # a savepoint: the test's transaction still rolls it back
    await session.refresh(item)
    return item


@pytest.mark.exercise("03.2")
@pytest.mark.exercise("03.4")
async def test_get_item_shows_it_in_json(
    pkg: ModuleType, session: AsyncSession, client: httpx.AsyncClient
) -> None:
    item = await add_item(pkg, session, attributes={"color": "red"})
    response = await client.get(f"/items/{item.id}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == PUBLIC_FIELDS
    # Decimal travels as a string: JSON numbers are floats to most clients.
    assert (body["name"], body["price"], body["attributes"]) == ("Lamp", "12.50", {"color": "red"})
    assert body["created_at"].endswith(("Z", "+00:00"))  # with its time zone


@pytest.mark.exercise("03.2")
@pytest.mark.exercise("03.4")
async def test_item_public_shows_nothing_the_model_adds(
    pkg: ModuleType, session: AsyncSession
) -> None:
    item = await add_item(pkg, session)
    # Something the model knows and the API must not show, such as an internal note.
    item.internal_note = "supplier pays 3.10"
    shown = pkg.schemas.ItemPublic.model_validate(item)
    assert set(shown.model_dump()) == PUBLIC_FIELDS
    assert "supplier" not in shown.model_dump_json()


@pytest.mark.exercise("03.2")
@pytest.mark.exercise("03.4")
async def test_a_row_written_outside_the_api_is_shown_as_it_is(
    pkg: ModuleType, session: AsyncSession, client: httpx.AsyncClient
) -> None:
    """A blank name and a price of three decimals break the API's input rules, not the
    table's: written by hand in psql, such an item is still shown, and so is its page."""
    written = text(
        "INSERT INTO items (name, description, price) VALUES (' ', repeat('x', 20000), 1.5)"
        " RETURNING id"
    )
    item_id = (await session.execute(written)).scalar_one()
    response = await client.get(f"/items/{item_id}")
    assert response.status_code == 200, response.text
    assert (response.json()["name"], response.json()["price"]) == (" ", "1.50")
    page = await client.get("/items", params={"limit": 100})
    assert page.status_code == 200 and item_id in [i["id"] for i in page.json()["items"]]


@pytest.mark.exercise("03.2")
@pytest.mark.exercise("03.4")
async def test_list_items_in_id_order(
    pkg: ModuleType, session: AsyncSession, client: httpx.AsyncClient
) -> None:
    ids = [(await add_item(pkg, session, name=f"Item {n}")).id for n in range(3)]
    page = (await client.get("/items", params={"limit": 2})).json()
    assert [i["id"] for i in page["items"]] == ids[:2]
    page = (await client.get("/items", params={"limit": 2, "offset": 2})).json()
    assert [i["id"] for i in page["items"]] == ids[2:]


@pytest.mark.exercise("03.2")
@pytest.mark.exercise("03.3")
@pytest.mark.exercise("03.4")
async def test_text_that_looks_like_sql_comes_back_as_written(
    pkg: ModuleType, session: AsyncSession, client: httpx.AsyncClient
) -> None:
    """Quotes, SQL and JSON-looking text are data: stored and shown byte for byte."""
    sent = {
        "name": "O'Brien's \"best\"; DROP TABLE items;--",
        "description": "' OR '1'='1 \\ %_ -- /* */",
        "price": "0.00",
        "attributes": {"it's": "'; DELETE FROM items; --", "nested": {'"q"': ["'", '"']}},
    }
    accepted = pkg.schemas.ItemCreate(**sent)
    item = await add_item(pkg, session, **accepted.model_dump())
    body = (await client.get(f"/items/{item.id}")).json()
    assert {key: body[key] for key in sent} == sent
    assert (await client.get("/items")).status_code == 200  # and the table is still there


@pytest.mark.parametrize("item_id", ["1 OR 1=1", "1; DROP TABLE items", "1'--", "%00"])
async def test_an_id_that_is_not_a_number_is_422(client: httpx.AsyncClient, item_id: str) -> None:
    assert (await client.get(f"/items/{item_id}")).status_code == 422


async def test_a_missing_item_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/987654")
    assert response.status_code == 404
    assert response.json() == {"detail": "Item not found."}


@pytest.mark.parametrize("limit", [0, 101, "many", "1; DROP TABLE items", "1\x00"])
async def test_limit_outside_1_to_100_is_422(client: httpx.AsyncClient, limit: object) -> None:
    assert (await client.get("/items", params={"limit": limit})).status_code == 422
