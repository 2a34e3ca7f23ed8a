"""Step 04 checks: PostgreSQL's error classes get the status they deserve (errors.py)."""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from workshop.testing import eventually, raising, serve, waiting_for_a_lock


@pytest.fixture
async def client(pkg: ModuleType, settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The step's app as it runs (its own pool), with two routes that make PostgreSQL fail."""
    app: FastAPI = pkg.main.create_app(settings)
    session_dep, items = pkg.db.SessionDep, pkg.models.Item.__table__

    @app.post("/test/raise-prices")
    async def raise_prices(session: session_dep, ids: list[int]) -> None:
        """Raise the price of each item, in this order, in one transaction."""
        for item_id in ids:
            await session.execute(
                update(items).where(items.c.id == item_id).values(price=items.c.price + 1)
            )
        await session.commit()

    @app.get("/test/raise/{code}")
    async def raise_sqlstate(session: session_dep, code: str) -> None:
        """Make PostgreSQL itself answer with the error `code`."""
        await session.execute(text(raising(code)))

    async with serve(app, raise_app_exceptions=False) as client:
        yield client


async def test_a_deadlock_is_a_503_the_client_may_retry(
    pkg: ModuleType,
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two transactions update two rows in opposite orders: PostgreSQL ends one of them
    (SQLSTATE 40P01) and rolls it back whole. Nothing of it was written, and the same request
    again may well succeed: a 503 with Retry-After, not a 500 that reports a bug."""
    items = pkg.models.Item.__table__
    rows = [{"name": f"Deadlock {uuid.uuid4().hex}", "price": Decimal("1.00")} for _ in "ab"]
    async with engine.begin() as connection:
        a, b = (await connection.scalars(insert(items).returning(items.c.id), rows)).all()
    try:
        async with engine.connect() as other:
            # This side waits a minute before it looks for a deadlock; the app's side, the
            # server's default second: the app's transaction is the one PostgreSQL ends.
            await other.execute(text("SET deadlock_timeout = '1min'"))
            raise_price = update(items).values(price=items.c.price + 10)
            await other.execute(raise_price.where(items.c.id == b))
            request = asyncio.create_task(client.post("/test/raise-prices", json=[a, b]))
            # Until the app's side waits for row b.
            waiting = await eventually(
                lambda: waiting_for_a_lock(engine), lambda n: n == 1, within=5
            )
            assert waiting == 1, "the app's request never came to wait for the row the test holds"
            await other.execute(raise_price.where(items.c.id == a))  # the other order
            response = await asyncio.wait_for(request, timeout=10)
            await other.rollback()
        async with engine.connect() as connection:
            prices = (
                await connection.scalars(select(items.c.price).where(items.c.id.in_([a, b])))
            ).all()
    finally:
        async with engine.begin() as connection:
            await connection.execute(delete(items).where(items.c.id.in_([a, b])))
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert response.json()["status"] == 503 and "collided" in response.json()["detail"]
    assert prices == [Decimal("1.00")] * 2, "the app's first update was not rolled back"
    assert "40P01" in caplog.text  # the operator learns why
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("40001", 503),  # serialization_failure: rolled back, retry
        ("40P01", 503),  # deadlock_detected: rolled back, retry
        ("57P03", 503),  # cannot_connect_now: the server is starting
        ("57014", 504),  # query_canceled: as slow the next time
        ("XX000", 500),  # internal_error: no retry mends it
        ("XX001", 500),  # data_corrupted
        ("XX002", 500),  # index_corrupted
        ("22012", 500),  # division_by_zero: a bug of ours
    ],
)
async def test_each_sqlstate_class_gets_its_status(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, code: str, status: int
) -> None:
    """The status follows PostgreSQL's code. Class XX (internal error, corrupted data) is a
    500 with the traceback in the log, for someone to look at now: not a 503 that tells the
    client to try again and leaves the log a one-line warning."""
    response = await client.get(f"/test/raise/{code}")
    assert response.status_code == status, f"SQLSTATE {code}: {response.text}"
    assert response.json()["status"] == status
    assert ("Retry-After" in response.headers) == (status == 503)
    assert "raised by the test" not in response.text
    logged_whole = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert bool(logged_whole) == (status == 500), caplog.text
