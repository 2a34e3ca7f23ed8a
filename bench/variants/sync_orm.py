"""The sync baseline: `def` routes and the SQLAlchemy ORM on psycopg 3, in the style of the
popular full-stack FastAPI template: a session per request, commit then refresh, and the
route's `response_model` turning the ORM object into JSON.

FastAPI runs each `def` route in a thread of its pool (40 threads), so one worker still
serves requests side by side, one thread and one connection each.

It answers the benchmark's requests as the step 04 reference does, on the same tables:
GET /items/{id}, GET /items (the first page, or a search with ?q=) and POST /items.

    DATABASE_URL=postgresql://user:password@localhost:5432/workshop_bench_04 \
        uv run uvicorn sync_orm:app --app-dir bench/variants --no-access-log
"""

import os
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Response
from schemas import ItemCreate, ItemPage, ItemPublic, cursor
from sqlalchemy import (
    DateTime,
    Identity,
    Numeric,
    String,
    Text,
    create_engine,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

url = make_url(os.environ["DATABASE_URL"]).set(drivername="postgresql+psycopg")
engine = create_engine(
    url,
    # The references' pool: 20 connections, 10 more under load.
    pool_size=20,
    max_overflow=10,
    # psycopg answers in the session's time zone, asyncpg in UTC: UTC here too, so the
    # JSON is the same as step 04's.
    connect_args={"options": "-c timezone=UTC"},
)


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# The generated tsvector column (migration 0002): the template would not map it either.
SEARCH = literal_column("items.search")


def get_session() -> Iterator[Session]:
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
app = FastAPI(title="Sync baseline")


@app.get("/items/{item_id}", response_model=ItemPublic)
def read_item(session: SessionDep, item_id: int) -> Any:
    item = session.get(Item, item_id)
    if item is None:
        raise HTTPException(404, "Item not found.")
    return item


@app.get("/items", response_model=ItemPage)
def read_items(
    session: SessionDep,
    q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Any:
    query = select(Item)
    if q:
        words = func.websearch_to_tsquery("english", q)
        rank = func.ts_rank(SEARCH, words)
        query = query.add_columns(rank).where(SEARCH.bool_op("@@")(words))
        query = query.order_by(rank.desc(), Item.id)
    else:
        query = query.order_by(Item.id)
    # One row more than asked tells whether there is a next page (step 04's keyset paging).
    rows = session.execute(query.limit(limit + 1)).all()
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        position = [float(page[-1][1]), page[-1][0].id] if q else [page[-1][0].id]
        next_cursor = cursor(position)
    return {"items": [row[0] for row in page], "next_cursor": next_cursor}


@app.post("/items", response_model=ItemPublic, status_code=201)
def create_item(session: SessionDep, item_in: ItemCreate, response: Response) -> Any:
    item = Item(**item_in.model_dump())
    session.add(item)
    session.commit()
    # The template's way: read the row back for the server's defaults (id, timestamps).
    session.refresh(item)
    response.headers["Location"] = f"/items/{item.id}"
    return item
