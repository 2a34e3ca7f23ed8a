"""Step 03 checks: the API's types agree with the columns, so nothing is truncated or refused."""

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

JSON = {"Content-Type": "application/json"}


async def column(session: AsyncSession, name: str) -> Any:
    """What the migrated table says of one of its columns."""
    query = text(
        "SELECT character_maximum_length AS length, numeric_precision AS precision, "
        "numeric_scale AS scale FROM information_schema.columns "
        "WHERE table_name = 'items' AND column_name = :name"
    )
    return (await session.execute(query, {"name": name})).one()


# Names as people write them: quotes, SQL-looking text, accents, wildcards. Bound parameters
# make them harmless; refusing or "cleaning" them would be the wrong fix.
WRITTEN_NAMES = [
    "O'Brien",
    'Robert"); DROP TABLE items;--',
    "' OR '1'='1",
    "Zoë's café 🐍",
    "50% off_*",
    "back\\slash",
]


@pytest.mark.exercise("03.3")
async def test_name_fits_the_column_exactly(pkg: ModuleType, session: AsyncSession) -> None:
    length = (await column(session, "name")).length
    create = pkg.schemas.ItemCreate
    assert create(name="x" * length, price="1").name == "x" * length
    assert create(name=f"  {'x' * length}  ", price="1").name == "x" * length  # stripped first
    for refused in ("x" * (length + 1), "   ", "nul\x00"):
        with pytest.raises(ValidationError):
            create(name=refused, price="1")
    for name in WRITTEN_NAMES:
        assert create(name=name, price="1").name == name


@pytest.mark.exercise("03.3")
async def test_price_fits_the_column_exactly(pkg: ModuleType, session: AsyncSession) -> None:
    numeric = await column(session, "price")
    whole, places = numeric.precision - numeric.scale, numeric.scale
    largest = Decimal(f"{'9' * whole}.{'9' * places}")
    create = pkg.schemas.ItemCreate
    # As a client sends it, a string, and as Python code may, a Decimal: both exact.
    for accepted in (largest, str(largest), "0.1", "0", Decimal(0)):  # free: price >= 0
        assert create(name="a", price=accepted).price == Decimal(accepted)
    too_precise = f"0.{'0' * places}1"
    for refused in (largest + 1, Decimal(too_precise), Decimal("-0.01"), "NaN"):
        for price in (refused, str(refused)):
            with pytest.raises(ValidationError):
                create(name="a", price=price)


def price_errors(response: httpx.Response) -> list[dict[str, Any]]:
    """The errors of a 422 that are about the price."""
    assert response.status_code == 422, response.text
    return [e for e in response.json()["detail"] if e["loc"] == ["body", "price"]]


@pytest.mark.exercise("03.3")
async def test_a_price_is_sent_as_a_string_never_as_a_json_number(
    pkg: ModuleType, app: FastAPI, client: httpx.AsyncClient
) -> None:
    """The path a request takes: FastAPI reads the body with json.loads, then validates it.
    A JSON number is a float by then (0.10000000000000000001 is 0.1), so it is refused, with a
    422 that says what to send; the same digits in a string are refused too, never rounded."""

    @app.post("/test/price")
    async def echo(item: pkg.schemas.ItemCreate) -> dict[str, str]:
        return {"price": str(item.price)}

    async def send(price: str) -> httpx.Response:
        body = f'{{"name": "Lamp", "price": {price}}}'
        return await client.post("/test/price", content=body, headers=JSON)

    for number in ("0.10000000000000000001", "9.99", "0.1", "10", "1e2"):
        errors = price_errors(await send(number))
        assert errors and 'Send the price as a string, e.g. "9.99"' in errors[0]["msg"], number
    for written in ("9.99", "0.1", "10", "0"):
        assert (await send(f'"{written}"')).json() == {"price": written}
    refusals = {"0.10000000000000000001": "digits", "0.001": "places", "1e2": "price_format"}
    for written, rule in refusals.items():
        errors = price_errors(await send(f'"{written}"'))
        assert errors and rule in errors[0]["type"], written
    # What /docs shows, and what a client generates a price from: a string of digits.
    openapi = get_openapi(title="test", version="1", routes=app.routes)  # not app's cached one
    shown = openapi["components"]["schemas"]["ItemCreate"]["properties"]["price"]
    assert shown["type"] == "string" and "number" not in json.dumps(shown)
    assert re.search(shown["pattern"], "9.99") and not re.search(shown["pattern"], "9.99e0")


@pytest.mark.exercise("03.3")
async def test_a_bad_name_is_a_422_through_the_api(
    pkg: ModuleType, app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """What a client sends as a name, the way a request travels: too long for the column,
    blank, or not text at all (a number, null, a list) is a 422 that says where. A validator
    of one's own that assumes a str (`v.strip()`) raises AttributeError on a number instead:
    a 500, and a traceback in the log for each bad request."""
    length = (await column(session, "name")).length

    @app.post("/test/name")
    async def echo(item: pkg.schemas.ItemCreate) -> dict[str, str]:
        return {"name": item.name}

    for name in ("x" * (length + 1), "   ", 123, 9.5, True, None, ["Lamp"], {"en": "Lamp"}):
        response = await client.post("/test/name", json={"name": name, "price": "1"})
        assert response.status_code == 422, f"name {name!r}: {response.status_code}"
        assert [e["loc"] for e in response.json()["detail"]] == [["body", "name"]], name


@pytest.mark.exercise("03.4")
def test_item_public_needs_the_server_fields_with_their_time_zone(pkg: ModuleType) -> None:
    """id, created_at and updated_at are always shown; a time without its zone is refused."""
    aware = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    fields = {"id": 7, "name": "Lamp", "price": "1.00", "created_at": aware, "updated_at": aware}
    public = pkg.schemas.ItemPublic
    assert public(**fields).created_at == aware
    for key in ("id", "created_at", "updated_at"):
        with pytest.raises(ValidationError):
            public(**{k: v for k, v in fields.items() if k != key})  # required
    for key in ("created_at", "updated_at"):
        for wrong in (aware.replace(tzinfo=None), "yesterday", None):
            with pytest.raises(ValidationError):
                public(**{**fields, key: wrong})


def test_unknown_fields_are_refused(pkg: ModuleType) -> None:
    with pytest.raises(ValidationError, match="owner_id"):
        pkg.schemas.ItemCreate(name="a", price="1", owner_id=7)


def json_numbers(value: Any) -> Any:
    """A JSON value with its numbers as exact decimals: JSONB keeps a number as it was
    written (9.6e+16 comes back as 96000000000000000), not as a Python float or int."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return Decimal(repr(value))
    if isinstance(value, list):
        return [json_numbers(v) for v in value]
    return {k: json_numbers(v) for k, v in value.items()}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
candidates = st.fixed_dictionaries(
    {
        "name": st.text(max_size=110),
        "price": st.decimals(allow_nan=True, allow_infinity=False, places=3)
        | st.decimals(min_value=0, max_value=Decimal("99999999.99"), places=2)
        | st.decimals(min_value=0, max_value=Decimal("99999999.99"), places=2).map(str),
        "description": st.none() | st.text(),
        "attributes": st.dictionaries(st.text(), json_values, max_size=4),
    }
)


@pytest.mark.exercise("03.2")
@pytest.mark.exercise("03.3")
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=candidates)
async def test_what_the_schema_accepts_is_stored_and_read_back_equal(
    pkg: ModuleType, session: AsyncSession, data: dict[str, Any]
) -> None:
    try:
        accepted = pkg.schemas.ItemCreate(**data)
    except ValidationError:
        return  # refused here: it never reaches the database
    savepoint = await session.begin_nested()
    try:
        item = pkg.models.Item(**accepted.model_dump())
        session.add(item)
        await session.flush()  # the database refuses nothing the schema accepted
        await session.refresh(item)  # read back what the database stored
        assert item.name == accepted.name  # not truncated
        assert item.price == accepted.price and isinstance(item.price, Decimal)  # exact
        assert item.description == accepted.description
        assert json_numbers(item.attributes) == json_numbers(accepted.attributes)
        assert isinstance(item.created_at, datetime) and item.created_at.tzinfo is not None
    finally:
        await savepoint.rollback()
