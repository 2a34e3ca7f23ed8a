"""The JSON of step 04's items, for the benchmark's FastAPI variants (FastAPI on asyncpg, on
Core, and the sync baseline): the same fields and rules as step 04's schemas, so that every
rung validates and writes the same JSON."""

import base64
import json
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints


class ItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    description: str | None = None
    price: Decimal = Field(ge=0, max_digits=10, decimal_places=2)
    attributes: dict[str, Any] = Field(default_factory=dict)


class ItemPublic(BaseModel):
    # Rows (asyncpg's Record, SQLAlchemy's Row) are read by attribute or by key.
    model_config = ConfigDict(from_attributes=True)

    name: str
    description: str | None = None
    price: Decimal
    attributes: dict[str, Any] = Field(default_factory=dict)
    id: int
    created_at: AwareDatetime
    updated_at: AwareDatetime


class ItemPage(BaseModel):
    items: list[ItemPublic]
    next_cursor: str | None


def cursor(position: list[Any]) -> str:
    """Step 04's opaque "after this row" token."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")
