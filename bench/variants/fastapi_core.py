"""FastAPI on SQLAlchemy Core, async: the engine, its pool and `select()`, as the references
use them, but rows instead of mapped objects (no unit of work, no identity map). The rung
between FastAPI on raw asyncpg and the references' ORM: what the ORM costs.

It answers the benchmark's requests as the step 04 reference does, on the same tables:
GET /items/{id}, GET /items (the first page, or a search with ?q=) and POST /items.

    DATABASE_URL=postgresql+asyncpg://user:password@localhost:5432/workshop_bench_04 \
        uv run uvicorn fastapi_core:app --app-dir bench/variants --no-access-log
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from schemas import ItemCreate, ItemPage, ItemPublic, cursor
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    func,
    insert,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

items = Table(
    "items",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("name", String(100)),
    Column("description", Text),
    Column("price", Numeric(10, 2)),
    Column("attributes", JSONB),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
)
SEARCH = literal_column("items.search")  # the generated tsvector column (migration 0002)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    url = make_url(os.environ["DATABASE_URL"]).set(drivername="postgresql+asyncpg")
    # The references' pool: 20 connections, 10 more under load.
    app.state.engine = create_async_engine(url, pool_size=20, max_overflow=10)
    yield
    await app.state.engine.dispose()


async def get_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    async with request.app.state.engine.connect() as connection:
        yield connection


Connection = Annotated[AsyncConnection, Depends(get_connection)]
app = FastAPI(title="FastAPI + SQLAlchemy Core", lifespan=lifespan)


@app.get("/items/{item_id}")
async def read_item(
    connection: Connection, item_id: Annotated[int, Path(ge=1, le=2**31 - 1)]
) -> ItemPublic:
    row = (await connection.execute(select(items).where(items.c.id == item_id))).first()
    if row is None:
        raise HTTPException(404, "Item not found.")
    return ItemPublic.model_validate(row)


@app.get("/items")
async def read_items(
    connection: Connection,
    q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ItemPage:
    query = select(items)
    if q:
        words = func.websearch_to_tsquery("english", q)
        rank = func.ts_rank(SEARCH, words).label("rank")
        query = query.add_columns(rank).where(SEARCH.bool_op("@@")(words))
        query = query.order_by(rank.desc(), items.c.id)
    else:
        query = query.order_by(items.c.id)
    rows = (await connection.execute(query.limit(limit + 1))).all()
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:  # one row more than asked: there is a next page
        next_cursor = cursor([page[-1].rank, page[-1].id] if q else [page[-1].id])
    return ItemPage(items=[ItemPublic.model_validate(row) for row in page], next_cursor=next_cursor)


@app.post("/items", status_code=201)
async def create_item(
    connection: Connection, item_in: ItemCreate, response: Response
) -> ItemPublic:
    try:
        row = (
            await connection.execute(insert(items).values(item_in.model_dump()).returning(items))
        ).one()
        await connection.commit()
    except IntegrityError:
        raise HTTPException(409, "An item with this name already exists.") from None
    response.headers["Location"] = f"/items/{row.id}"
    return ItemPublic.model_validate(row)
