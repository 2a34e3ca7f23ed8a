"""Step 03 checks: the API's types agree with the columns, so nothing is truncated or refused."""

from datetime import UTC, datetime
from decimal import Decimal
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


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
    assert create(name="x" * length, price=1).name == "x" * length
    assert create(name=f"  {'x' * length}  ", price=1).name == "x" * length  # stripped first
    for refused in ("x" * (length + 1), "   ", "nul\x00"):
        with pytest.raises(ValidationError):
            create(name=refused, price=1)
    for name in WRITTEN_NAMES:
        assert create(name=name, price=1).name == name


@pytest.mark.exercise("03.3")
async def test_price_fits_the_column_exactly(pkg: ModuleType, session: AsyncSession) -> None:
    numeric = await column(session, "price")
    whole, places = numeric.precision - numeric.scale, numeric.scale
    largest = Decimal(f"{'9' * whole}.{'9' * places}")
    create = pkg.schemas.ItemCreate
    assert create(name="a", price=largest).price == largest
    assert create(name="a", price="0.1").price == Decimal("0.1")
    assert create(name="a", price=0).price == 0  # free is allowed: the check is price >= 0
    for refused in (largest + 1, Decimal(f"0.{'0' * places}1"), Decimal("-0.01"), "NaN"):
        with pytest.raises(ValidationError):
            create(name="a", price=refused)


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


def test_money_is_never_a_float(pkg: ModuleType) -> None:
    item = pkg.schemas.ItemCreate.model_validate_json('{"name": "a", "price": 0.1}')
    assert type(item.price) is Decimal and item.price == Decimal("0.1")


def test_unknown_fields_are_refused(pkg: ModuleType) -> None:
    with pytest.raises(ValidationError, match="owner_id"):
        pkg.schemas.ItemCreate(name="a", price=1, owner_id=7)


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
        | st.decimals(min_value=0, max_value=Decimal("99999999.99"), places=2),
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
