"""The practical limit: Starlette and a raw asyncpg pool, with no ORM and no Pydantic.

It answers the benchmark's requests exactly as the step 04 reference does, on the same
tables: GET /items/{id}, GET /items (the first page, or a search with ?q=) and POST /items.
The rest of the API (PATCH, DELETE, paging with ?after=, attribute filters) is left out.

    DATABASE_URL=postgresql://user:password@localhost:5432/workshop_bench_04 \
        uv run uvicorn raw_asyncpg:app --app-dir bench/variants --no-access-log
"""

import base64
import json
import os
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

# asyncpg takes plain postgresql://, without SQLAlchemy's "+driver".
DSN = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", os.environ["DATABASE_URL"])
# 30 connections at most, as the references' pool (POOL_SIZE 20 + MAX_OVERFLOW 10).
POOL_SIZE = 30
COLUMNS = "id, name, description, price, attributes, created_at, updated_at"
WORDS = "websearch_to_tsquery('english', $1)"
CENT = Decimal("0.01")


def iso(moment: datetime) -> str:
    # asyncpg answers in UTC; Pydantic writes UTC as "Z".
    return moment.isoformat().replace("+00:00", "Z")


def public(row: asyncpg.Record) -> dict[str, Any]:
    """A row as step 04's ItemPublic shows it."""
    return {
        "name": row["name"],
        "description": row["description"],
        "price": str(row["price"]),  # Numeric(10, 2): "12.50", as Pydantic writes a Decimal
        "attributes": row["attributes"],
        "id": row["id"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def cursor(position: list[Any]) -> str:
    """Step 04's opaque "after this row" token."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def problem(status: int, detail: str, **extra: Any) -> JSONResponse:
    """Step 04's error shape."""
    body = {"status": status, "detail": detail, "request_id": uuid.uuid4().hex, **extra}
    return JSONResponse(body, status)


async def get_item(request: Request) -> JSONResponse:
    item_id = request.path_params["item_id"]
    if not 1 <= item_id < 2**31:  # the ids an integer column holds
        return problem(422, "The request is not valid.")
    async with request.app.state.pool.acquire() as connection:
        row = await connection.fetchrow(f"SELECT {COLUMNS} FROM items WHERE id = $1", item_id)
    if row is None:
        return problem(404, "Item not found.")
    return JSONResponse(public(row))


async def page_rows(connection: asyncpg.Connection, q: str | None, limit: int) -> list[Any]:
    """One row more than a page: by relevance (with its rank) when searching, else by id."""
    if q:
        return await connection.fetch(
            f"SELECT {COLUMNS}, ts_rank(search, {WORDS}) AS rank FROM items "
            f"WHERE search @@ {WORDS} ORDER BY rank DESC, id LIMIT $2",
            q,
            limit + 1,
        )
    return await connection.fetch(f"SELECT {COLUMNS} FROM items ORDER BY id LIMIT $1", limit + 1)


async def list_items(request: Request) -> JSONResponse:
    q = request.query_params.get("q")
    try:
        limit = int(request.query_params.get("limit", 20))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100 or (q is not None and not 1 <= len(q) <= 200):
        return problem(422, "The request is not valid.")
    async with request.app.state.pool.acquire() as connection:
        rows = await page_rows(connection, q, limit)
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = cursor([last["rank"], last["id"]] if q else [last["id"]])
    return JSONResponse({"items": [public(row) for row in page], "next_cursor": next_cursor})


async def create_item(request: Request) -> JSONResponse:
    # The least validation that keeps bad input out of the table; step 04 checks far more.
    try:
        body = await request.json()
        name = body["name"].strip()
        price = Decimal(str(body["price"])).quantize(CENT)
        description = body.get("description")
        attributes = body.get("attributes", {})
        valid = (
            1 <= len(name) <= 100
            and 0 <= price < 10**8
            and (description is None or isinstance(description, str))
            and isinstance(attributes, dict)
        )
    except (ValueError, KeyError, TypeError, AttributeError, InvalidOperation):
        valid = False
    if not valid:
        return problem(422, "The request is not valid.")
    try:
        async with request.app.state.pool.acquire() as connection:
            row = await connection.fetchrow(
                "INSERT INTO items (name, description, price, attributes) "
                f"VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}",
                name,
                description,
                price,
                attributes,
            )
    except asyncpg.UniqueViolationError:
        return problem(409, "An item with this name already exists.", field="name")
    return JSONResponse(public(row), 201, headers={"Location": f"/items/{row['id']}"})


async def use_json(connection: asyncpg.Connection) -> None:
    # JSONB in and out as Python objects (asyncpg's default is text).
    await connection.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
    )


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with asyncpg.create_pool(DSN, min_size=1, max_size=POOL_SIZE, init=use_json) as pool:
        app.state.pool = pool
        yield


app = Starlette(
    routes=[
        Route("/items", list_items, methods=["GET"]),
        Route("/items", create_item, methods=["POST"]),
        Route("/items/{item_id:int}", get_item, methods=["GET"]),
    ],
    lifespan=lifespan,
)
