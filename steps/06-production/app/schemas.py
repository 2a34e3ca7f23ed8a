"""The API's side: what clients send and receive, validated before it reaches the database."""

import math
import re
from decimal import Decimal
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType  # typing's own from Python 3.12

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


# What storable() refuses in a text, as /docs shows it (and clients generated from it): the NUL
# character. storable() is still what checks it, with a clearer message. (Half a surrogate pair
# no pattern can name: JSON Schema validators read text as Unicode, which has no such thing.)
NUL = r"\u0000"
STORABLE_TEXT = rf"^[^{NUL}]*$"
Text = Annotated[str, AfterValidator(storable), Field(json_schema_extra={"pattern": STORABLE_TEXT})]
# JSON whose every text, keys too, PostgreSQL can hold: what /docs shows of attributes. (Its
# depth it cannot show: JSON Schema has no word for it.) A name of its own makes a key's schema
# `propertyNames`, which binds every key, where a pattern would bind only the keys it matches.
JSONText = TypeAliasType("JSONText", Text)
JSONValue = TypeAliasType(
    "JSONValue",
    "JSONText | int | float | bool | list[JSONValue] | dict[JSONText, JSONValue] | None",
)
JSONObject = Annotated[
    dict[str, Any], BeforeValidator(storable, json_schema_input_type=dict[JSONText, JSONValue])
]

# The search column's tsvector holds at most 1 MB (PostgreSQL refuses a larger one: a 500);
# 10,000 characters keep any description far below it.
Description = Annotated[Text, StringConstraints(max_length=10_000)]

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


# What /docs shows of a price, and what clients and fuzzers generate from: never a number, and
# only the digits Numeric(10, 2) holds, 8 before the point and 2 after (more zeros around: 007.50).
PRICE_DIGITS = r"^0*[0-9]{1,8}(\.[0-9]{1,2}0*)?$"
PriceText = Annotated[str, Field(pattern=PRICE_DIGITS, examples=["9.99"])]

# What /docs shows of a name: 1 to 100 characters, and any whitespace around them (the characters
# Pydantic strips, Unicode's White_Space), with no NUL anywhere.
SPACE = r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NAME_TEXT = rf"^[{SPACE}]*[^{SPACE}{NUL}]([^{NUL}]{{0,98}}[^{SPACE}{NUL}])?[{SPACE}]*$"
NAME_RULE = "1 to 100 characters once the whitespace around them is stripped"
# String(100), and never blank: surrounding spaces are stripped before the length is checked.
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(storable),
    # /docs: maxLength would count the spaces that are stripped; NAME_TEXT says it as a pattern.
    WithJsonSchema({"type": "string", "pattern": NAME_TEXT, "description": NAME_RULE}),
]
# Numeric(10, 2) and price >= 0: at most 10 digits, 2 of them after the point. Never a float,
# so sent_as_text runs before Pydantic turns a JSON number into a Decimal.
# 12.5 becomes 12.50 here, as in the column: a write answers what a read will show.
Price = Annotated[
    Decimal,
    Field(ge=0, max_digits=10, decimal_places=2),
    BeforeValidator(sent_as_text, json_schema_input_type=PriceText),
    AfterValidator(lambda price: price.quantize(Decimal("0.01"))),
]


class ItemBase(BaseModel):
    """The fields a client may set, shared by creating and reading an item."""

    # Unknown fields are refused with a 422, not silently dropped.
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Description | None = None
    price: Price
    attributes: JSONObject = Field(default_factory=dict)


class ItemCreate(ItemBase):
    """POST /items: every field of the base, name and price required."""


class ItemUpdate(BaseModel):
    """PATCH /items/{id}: any subset of the fields; only the ones sent change."""

    model_config = ConfigDict(extra="forbid")

    # None stands for "not sent" (exclude_unset); a null sent is refused below, so /docs
    # shows no null for these three (SkipJsonSchema), while description may be null.
    name: Name | SkipJsonSchema[None] = None
    description: Description | None = None
    price: Price | SkipJsonSchema[None] = None
    attributes: JSONObject | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def required_fields_are_not_null(self) -> Self:
        # Left out means "unchanged"; null would empty a NOT NULL column: a 422, here.
        for field in ("name", "price", "attributes"):
            if field in self.model_fields_set and getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self


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

    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: AwareDatetime
    updated_at: AwareDatetime


class UserCreate(BaseModel):
    """POST /users: an email and a password."""

    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    # 12 or more (OWASP); at most 128 (OWASP ASVS), so no request carries a huge one.
    password: Annotated[str, StringConstraints(min_length=12, max_length=128)]

    @field_validator("email")
    @classmethod
    def lowercase(cls, email: str) -> str:
        # One account per address, whatever its case.
        return email.lower()


class UserPublic(BaseModel):
    """What the API shows of a user: never the hash."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    created_at: AwareDatetime


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"


class ItemPage(BaseModel):
    items: list[ItemPublic]
    # Pass it back as `after` for the next page; null on the last page.
    next_cursor: str | None


# 1 to 100 items in one request, written all or nothing.
ItemsCreate = Annotated[list[ItemCreate], Field(min_length=1, max_length=100)]
