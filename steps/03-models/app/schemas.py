"""The API's side: what clients send and receive, validated before it reaches the database."""

import math
import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

# Lists and objects nested deeper are refused: no real attribute comes close, and a few hundred
# levels reach the limits of Pydantic's serializer and of Python's recursion (a 500).
MAX_DEPTH = 32


def storable(value: Any, *, depth: int = 0) -> Any:
    """Refuse what PostgreSQL would refuse, so it never gets that far.

    Its text cannot hold the NUL character, nor half a UTF-16 surrogate pair; JSONB has no
    NaN or infinity. Checked through nested lists and objects, at most MAX_DEPTH deep.
    """
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain the NUL character")
        value.encode()  # a lone surrogate raises UnicodeEncodeError, a ValueError
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    elif isinstance(value, dict | list) and depth == MAX_DEPTH:
        raise ValueError(f"must not nest lists and objects more than {MAX_DEPTH} deep")
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key)
            storable(item, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            storable(item, depth=depth + 1)
    return value


Text = Annotated[str, AfterValidator(storable)]
JSONObject = Annotated[dict[str, Any], AfterValidator(storable)]

# FastAPI parses a body with json.loads: a JSON number is a float before any validator sees it,
# and 0.10000000000000000001 is already 0.1. So a price travels as a string, read digit by digit.
PRICE_TEXT = r"^[0-9]+(\.[0-9]+)?$"


def sent_as_text(price: Any) -> Any:
    """Let a price through as plain digits ("9.99"); refuse a JSON number, whole or not."""
    if isinstance(price, Decimal):
        return price  # from Python code, not from JSON: exact already
    if not isinstance(price, str):
        raise PydanticCustomError("price_type", 'Send the price as a string, e.g. "9.99"')
    # Decimal() would also read "1e2", "1_000", " 9.99" and digits of other scripts.
    if not re.fullmatch(PRICE_TEXT, price):
        raise PydanticCustomError("price_format", 'Write the price in plain digits, e.g. "9.99"')
    return price


# What /docs shows of a price, and what clients and fuzzers generate from: never a number.
PriceText = Annotated[str, Field(pattern=PRICE_TEXT, examples=["9.99"])]

# EXERCISE 03.3: constrain Name and Price exactly as their columns are
Name = str
Price = Decimal
# END EXERCISE


class ItemBase(BaseModel):
    """The fields a client may set, shared by creating and reading an item."""

    # Unknown fields are refused with a 422, not silently dropped.
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Text | None = None
    price: Price
    attributes: JSONObject = Field(default_factory=dict)


class ItemCreate(ItemBase):
    """POST /items: every field of the base, name and price required."""


class ItemUpdate(BaseModel):
    """PATCH /items/{id}: any subset of the fields; only the ones sent change."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Text | None = None
    price: Price | None = None
    attributes: JSONObject | None = None


class ItemPublic(BaseModel):
    """What the API shows of an item: the fields declared here, never more.

    Plain types, not ItemBase's rules: those judge what a client sends. A row the table holds
    is shown as it is, even one written outside the API (a blank name, typed in psql), rather
    than failing with a 500 every page that holds it.
    """

    name: str
    description: str | None = None
    price: Decimal
    attributes: dict[str, Any] = Field(default_factory=dict)

    # EXERCISE 03.4: read from the ORM object, and add the fields the server sets
    # END EXERCISE


class ItemPage(BaseModel):
    items: list[ItemPublic]
    limit: int
    offset: int
