"""FastAPI on a raw asyncpg pool: FastAPI's routing, dependency injection and Pydantic
validation, and no SQLAlchemy. The rung above the limit: what FastAPI itself costs.

It answers the benchmark's requests as the step 04 reference does, on the same tables:
GET /items/{id}, GET /items (the first page, or a search with ?q=) and POST /items.

    DATABASE_URL=postgresql://user:password@localhost:5432/workshop_bench_04 \
        uv run uvicorn fastapi_asyncpg:app --app-dir bench/variants --no-access-log
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from raw_asyncpg import COLUMNS, DSN, POOL_SIZE, page_rows, use_json  # the same pool and SQL
from schemas import ItemCreate, ItemPage, ItemPublic, cursor


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with asyncpg.create_pool(DSN, min_size=1, max_size=POOL_SIZE, init=use_json) as pool:
        app.state.pool = pool
        yield


async def get_connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    async with request.app.state.pool.acquire() as connection:
        yield connection


Connection = Annotated[asyncpg.Connection, Depends(get_connection)]
app = FastAPI(title="FastAPI + raw asyncpg", lifespan=lifespan)


@app.get("/items/{item_id}")
async def read_item(
    connection: Connection, item_id: Annotated[int, Path(ge=1, le=2**31 - 1)]
) -> ItemPublic:
    row = await connection.fetchrow(f"SELECT {COLUMNS} FROM items WHERE id = $1", item_id)
    if row is None:
        raise HTTPException(404, "Item not found.")
    return ItemPublic.model_validate(dict(row))


@app.get("/items")
async def read_items(
    connection: Connection,
    q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ItemPage:
    rows = await page_rows(connection, q, limit)
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:  # one row more than asked: there is a next page
        next_cursor = cursor([page[-1]["rank"], page[-1]["id"]] if q else [page[-1]["id"]])
    items = [ItemPublic.model_validate(dict(row)) for row in page]
    return ItemPage(items=items, next_cursor=next_cursor)


@app.post("/items", status_code=201)
async def create_item(
    connection: Connection, item_in: ItemCreate, response: Response
) -> ItemPublic:
    try:
        row = await connection.fetchrow(
            f"INSERT INTO items (name, description, price, attributes) "
            f"VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}",
            item_in.name,
            item_in.description,
            item_in.price,
            item_in.attributes,
        )
    except asyncpg.UniqueViolationError:
        raise HTTPException(409, "An item with this name already exists.") from None
    response.headers["Location"] = f"/items/{row['id']}"
    return ItemPublic.model_validate(dict(row))
