"""Read-only item routes: enough to see the models at work (step 04 writes the rest)."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from sqlalchemy import select

from ..db import SessionDep
from ..models import Item
from ..schemas import ItemPage, ItemPublic

router = APIRouter(prefix="/items", tags=["items"])
# The ids an `integer` column can hold: a larger one is a 422, not a database error.
ItemId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("")
async def list_items(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    # OFFSET is a bigint in PostgreSQL: one past it is a 422, not a database error.
    offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> ItemPage:
    """List items by id, a page at a time."""
    rows = await session.scalars(select(Item).order_by(Item.id).limit(limit).offset(offset))
    items = [ItemPublic.model_validate(item) for item in rows]
    return ItemPage(items=items, limit=limit, offset=offset)


@router.get("/{item_id}", responses={404: {"description": "No such item"}})
async def get_item(item_id: ItemId, session: SessionDep) -> ItemPublic:
    """One item by its id."""
    item = await session.get(Item, item_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Item not found.")
    return ItemPublic.model_validate(item)
