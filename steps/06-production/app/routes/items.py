"""The /items API: a user's own items only; thin routes over crud.py."""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import Field

from .. import crud
from ..db import SessionDep
from ..errors import Problem
from ..models import Item
from ..schemas import (
    NUL,
    ItemCreate,
    ItemPage,
    ItemPublic,
    ItemsCreate,
    ItemUpdate,
    Text,
    storable,
)
from ..security import CurrentUser

router = APIRouter(prefix="/items", tags=["items"])
CONFLICT = {409: {"model": Problem, "description": "An item with this name exists"}}
# The ids an `integer` column can hold: a larger one is a 422, not a database error.
# The routes say `{item_id:int}`: only digits reach them, so /items/bulk is never read as an id
# (PATCH /items/bulk is a 405, and /items/abc a 404: no route has that path).
ItemId = Annotated[int, Path(ge=1, le=2**31 - 1)]
NOT_FOUND = {404: {"model": Problem, "description": "No such item"}}


async def item_or_404(item_id: ItemId, session: SessionDep, user: CurrentUser) -> Item:
    """The user's item of the path's id, or a 404 (also for another user's item)."""
    item = await crud.get_item(session=session, item_id=item_id, owner=user)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Item not found.")
    return item


ItemDep = Annotated[Item, Depends(item_or_404)]


@router.post("", status_code=status.HTTP_201_CREATED, responses=CONFLICT)
async def create_item(
    item_in: ItemCreate, session: SessionDep, user: CurrentUser, response: Response
) -> ItemPublic:
    """Create an item of yours; its address is in the Location header."""
    item = await crud.create_item(session=session, item_in=item_in, owner=user)
    response.headers["Location"] = f"/items/{item.id}"
    return ItemPublic.model_validate(item)


@router.post("/bulk", status_code=status.HTTP_201_CREATED, responses=CONFLICT)
async def create_items(
    items_in: ItemsCreate, session: SessionDep, user: CurrentUser
) -> list[ItemPublic]:
    """Create 1 to 100 items in one transaction: all of them, or none."""
    items = await crud.create_items(session=session, items_in=items_in, owner=user)
    return [ItemPublic.model_validate(item) for item in items]


def invalid(parameter: str, message: str) -> RequestValidationError:
    """A 422 like FastAPI's own for a query parameter: the same shape as every other."""
    error = {"loc": ("query", parameter), "msg": message, "type": "value_error"}
    return RequestValidationError([error])


# What /docs shows of an attr: a key (no colon in it), a colon, a value; PostgreSQL's text
# throughout. parse_attributes() is what checks it, with a message that says what to send.
ATTR_PAIR = rf"^[^:{NUL}]+:[^{NUL}]*$"
AttrPair = Annotated[str, Field(json_schema_extra={"pattern": ATTR_PAIR})]


def parse_attributes(pairs: list[str]) -> dict[str, Any]:
    """`color:red` and `size:10` -> {"color": "red", "size": 10}: a value is JSON where it is
    JSON that PostgreSQL can hold, else the text as written (`x:NaN` is the text "NaN")."""
    attributes: dict[str, Any] = {}
    for pair in pairs:
        key, colon, text = pair.partition(":")
        if not key or not colon:
            raise invalid("attr", "must look like key:value, e.g. color:red")
        try:
            attributes[key] = storable(json.loads(text))
        except (ValueError, RecursionError):  # [[[[... a thousand deep is a RecursionError
            attributes[key] = text
    try:
        return storable(attributes)
    except ValueError as error:
        raise invalid("attr", str(error)) from None


@router.get("")
async def list_items(
    session: SessionDep,
    user: CurrentUser,
    q: Annotated[Text | None, Query(min_length=1, max_length=200, description="Words")] = None,
    attr: Annotated[list[AttrPair], Query(description="key:value, repeatable")] = [],  # noqa: B006
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    # Opaque: a cursor this API did not make is a 422 (JSON Schema cannot say which it made).
    after: Annotated[str | None, Query(description="next_cursor of the last page")] = None,
) -> ItemPage:
    """A page of your items: the best matches first when searching, else in id order."""
    try:
        page = await crud.list_items(
            session=session,
            owner=user,
            limit=limit,
            after=after,
            q=q,
            attributes=parse_attributes(attr),
        )
    except crud.BadCursor:
        raise invalid("after", "is not a cursor of this listing") from None
    items = [ItemPublic.model_validate(item) for item in page.items]
    return ItemPage(items=items, next_cursor=page.next_cursor)


@router.get("/{item_id:int}", responses=NOT_FOUND)
async def get_item(item: ItemDep) -> ItemPublic:
    """One item."""
    return ItemPublic.model_validate(item)


@router.patch("/{item_id:int}", responses={**NOT_FOUND, **CONFLICT})
async def update_item(item: ItemDep, item_in: ItemUpdate, session: SessionDep) -> ItemPublic:
    """Change the fields sent, and only those."""
    item = await crud.update_item(session=session, item=item, item_in=item_in)
    return ItemPublic.model_validate(item)


@router.delete("/{item_id:int}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_item(item_id: ItemId, session: SessionDep, user: CurrentUser) -> None:
    """Delete an item of yours."""
    if not await crud.delete_item(session=session, item_id=item_id, owner=user):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Item not found.")
