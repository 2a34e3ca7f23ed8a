"""Step 05 checks: PostgreSQL's error classes get the status they deserve (errors.py)."""

import asyncio
import logging
from types import ModuleType
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from workshop.testing import eventually, raising, serve, waiting_for_a_lock


@pytest.fixture
def app(pkg: ModuleType, settings: Any) -> FastAPI:
    """The step's app, with two routes that make PostgreSQL fail on purpose."""
    app: FastAPI = pkg.main.create_app(settings)
    session_dep = pkg.db.SessionDep

    @app.get("/test/lock-in-order")
    async def lock_in_order(session: session_dep) -> None:
        """Lock 1, then 2, in one transaction."""
        await session.execute(text("SELECT pg_advisory_xact_lock(1)"))
        await session.execute(text("SELECT pg_advisory_xact_lock(2)"))

    @app.get("/test/raise/{code}")
    async def raise_sqlstate(session: session_dep, code: str) -> None:
        """Make PostgreSQL itself answer with the error `code`."""
        await session.execute(text(raising(code)))

    return app


async def test_a_deadlock_is_a_503_the_client_may_retry(
    app: FastAPI, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """Two transactions take two locks in opposite orders (advisory locks: the app's role
    sees only its user's rows, and a lock is a lock): PostgreSQL ends one of them
    (SQLSTATE 40P01) and rolls it back whole. Nothing of it was written, and the same request
    again may well succeed: a 503 with Retry-After, not a 500 that reports a bug."""
    async with serve(app, raise_app_exceptions=False) as client, engine.connect() as other:
        # This side waits a minute before it looks for a deadlock; the app's side, the
        # server's default second: the app's transaction is the one PostgreSQL ends.
        await other.execute(text("SET deadlock_timeout = '1min'"))
        await other.execute(text("SELECT pg_advisory_xact_lock(2)"))
        request = asyncio.create_task(client.get("/test/lock-in-order"))
        # Until the app's side waits for lock 2.
        waiting = await eventually(lambda: waiting_for_a_lock(engine), lambda n: n == 1, within=5)
        assert waiting == 1, "the app's request never came to wait for the lock the test holds"
        await other.execute(text("SELECT pg_advisory_xact_lock(1)"))  # the other order
        response = await asyncio.wait_for(request, timeout=10)
        await other.rollback()
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert response.json()["status"] == 503 and "collided" in response.json()["detail"]
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
    app: FastAPI, caplog: pytest.LogCaptureFixture, code: str, status: int
) -> None:
    """The status follows PostgreSQL's code. Class XX (internal error, corrupted data) is a
    500 with the traceback in the log, for someone to look at now: not a 503 that tells the
    client to try again and leaves the log a one-line warning."""
    async with serve(app, raise_app_exceptions=False) as client:
        response = await client.get(f"/test/raise/{code}")
    assert response.status_code == status, f"SQLSTATE {code}: {response.text}"
    assert response.json()["status"] == status
    assert ("Retry-After" in response.headers) == (status == 503)
    assert "raised by the test" not in response.text
    logged_whole = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert bool(logged_whole) == (status == 500), caplog.text
