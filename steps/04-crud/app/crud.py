"""Reading and writing items: one function per operation, each taking the request's session.

Routes stay thin: they call these, and errors.py turns what goes wrong into responses.
"""

import base64
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import SEARCH, Item
from .schemas import ItemCreate, ItemUpdate


async def create_item(*, session: AsyncSession, item_in: ItemCreate) -> Item:
    """INSERT one item and commit; a duplicate name raises IntegrityError (errors.py: 409)."""
    # EXERCISE 04.1: add the item to the session and commit
    raise NotImplementedError("exercise 04.1 is yours to do: `uv run workshop hint 04.1`")
    # END EXERCISE


async def create_items(*, session: AsyncSession, items_in: Sequence[ItemCreate]) -> list[Item]:
    """INSERT many items in one transaction: all of them are written, or none."""
    # EXERCISE 04.4: add every item, then commit once
    raise NotImplementedError("exercise 04.4 is yours to do: `uv run workshop hint 04.4`")
    # END EXERCISE


async def get_item(*, session: AsyncSession, item_id: int) -> Item | None:
    """One SELECT by primary key (or none, if the session already holds it)."""
    return await session.get(Item, item_id)


async def update_item(*, session: AsyncSession, item: Item, item_in: ItemUpdate) -> Item:
    """Change the fields the client sent, and only those."""
    # EXERCISE 04.3: set only the fields that were sent (exclude_unset), then commit
    raise NotImplementedError("exercise 04.3 is yours to do: `uv run workshop hint 04.3`")
    # END EXERCISE


async def delete_item(*, session: AsyncSession, item_id: int) -> bool:
    """DELETE by id in one statement; False when there was no such item."""
    deleted = await session.scalar(delete(Item).where(Item.id == item_id).returning(Item.id))
    await session.commit()
    return deleted is not None


def apply_filters(query: Select[Any], *, q: str | None, attributes: dict[str, Any]) -> Select[Any]:
    """Keep the items that match the search words and contain every attribute asked for."""
    # EXERCISE 04.5: filter with the search (@@ websearch_to_tsquery) and attributes (@>)
    return query
    # END EXERCISE


@dataclass(frozen=True)
class Page:
    items: list[Item]
    next_cursor: str | None


def encode_cursor(position: list[Any]) -> str:
    """An opaque token for "after this row": clients pass it back and never build one."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


class BadCursor(ValueError):
    """A cursor this listing did not make."""


def decode_cursor(cursor: str, *, ranked: bool) -> list[Any]:
    """The row a cursor points after; BadCursor when it is not one of ours."""
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise BadCursor("not a cursor") from None
    shape = [float, int] if ranked else [int]
    if not isinstance(position, list) or [type(v) for v in position] != shape:
        raise BadCursor("not a cursor for this query")
    if not (0 < position[-1] < 2**31 and math.isfinite(position[0])):
        raise BadCursor("not a cursor we made")
    return position


async def list_items(
    *,
    session: AsyncSession,
    limit: int,
    after: str | None = None,
    q: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> Page:
    """A page of items: by relevance when searching, else by id. One SELECT, any page.

    Keyset pagination: "rows after the last one seen" uses the index and costs the same on
    page 1 and page 1000, where OFFSET would read and throw away every row before the page.
    """
    query = apply_filters(select(Item), q=q, attributes=attributes or {})
    if q:
        rank = func.ts_rank(SEARCH, func.websearch_to_tsquery("english", q))
        query = query.add_columns(rank).order_by(rank.desc(), Item.id)
        if after is not None:
            last_rank, last_id = decode_cursor(after, ranked=True)
            query = query.where(or_(rank < last_rank, and_(rank == last_rank, Item.id > last_id)))
    else:
        query = query.order_by(Item.id)
        if after is not None:
            (last_id,) = decode_cursor(after, ranked=False)
            query = query.where(Item.id > last_id)
    # One row more than asked tells whether there is a next page, without a COUNT.
    rows = (await session.execute(query.limit(limit + 1))).all()
    page, more = rows[:limit], len(rows) > limit
    next_cursor = None
    if more:
        last = page[-1]
        next_cursor = encode_cursor([float(last[1]), last[0].id] if q else [last[0].id])
    return Page(items=[row[0] for row in page], next_cursor=next_cursor)
