"""Step 05 checks: a request never waits for a lock it does not need.

PostgreSQL's readers do not wait for writers (each statement reads a snapshot): a SELECT that
locks what it reads (FOR UPDATE) gives that up, and requests that could run side by side queue
instead. Each test holds a transaction open, sends a request, and asks PostgreSQL whether the
request waits for it (pg_blocking_pids): watched, not timed.
"""

import asyncio
from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

Auth = Callable[[Any], dict[str, str]]
PID = text("SELECT pg_backend_pid()")
BLOCKED = text("SELECT count(*) > 0 FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))")


async def waits_for(holder: int, task: asyncio.Task[Any], engine: AsyncEngine) -> bool:
    """Whether the task's request, before it is answered, waits for a lock held by the
    holder's backend."""
    while not task.done():
        async with engine.connect() as connection:
            if await connection.scalar(BLOCKED, {"pid": holder}):
                return True
        await asyncio.sleep(0.01)  # polled: PostgreSQL has no event to wait for
    return False


@pytest.mark.exercise("05.3")
async def test_a_users_requests_do_not_wait_for_each_other(
    pkg: ModuleType,
    app: FastAPI,
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    committed_user: Any,
    token: Callable[..., str],
    auth: Auth,
) -> None:
    """A first request has loaded its user and goes on working, its transaction open; a second
    request of the same user is answered meanwhile. With the user's row locked (FOR UPDATE),
    it would wait its turn: one slow request, or a client's calls in parallel, and every other
    request of that user queues behind it."""
    user = await committed_user()
    first = app.state.sessionmaker()  # the first request's session, as get_session makes it
    try:
        await pkg.security.current_user(SimpleNamespace(app=app), first, token(user.id))
        holder = await first.scalar(PID)
        second = asyncio.create_task(client.get("/users/me", headers=auth(user)))
        waited = await waits_for(holder, second, engine)
    finally:
        await first.close()  # its transaction ends, and any lock with it
    response = await second
    if waited:
        pytest.fail(
            "a request waited for another request of the same user: looking the user up "
            "needs no lock (no with_for_update)"
        )
    assert response.status_code == 200


@pytest.mark.exercise("05.4")
async def test_reading_items_does_not_wait_for_a_writer(
    client: httpx.AsyncClient, engine: AsyncEngine, committed_user: Any, auth: Auth
) -> None:
    """While another transaction changes an item, GET answers with the item as it was, and
    so does the list. Locking what is read would queue every GET behind each PATCH of its
    item, and each page of the list behind a write to any of its rows."""
    user = await committed_user(items=2)
    item = user.items[0]
    async with engine.connect() as writer:
        await writer.execute(text("UPDATE items SET price = 2 WHERE id = :id"), {"id": item})
        holder = await writer.scalar(PID)
        for path in (f"/items/{item}", "/items"):
            reading = asyncio.create_task(client.get(path, headers=auth(user)))
            if await waits_for(holder, reading, engine):
                await writer.rollback()  # let it go, then fail
                await reading
                pytest.fail(
                    f"GET {path} waited for a transaction writing an item: a read "
                    "needs no lock (no with_for_update)"
                )
            assert (await reading).status_code == 200, path
        await writer.rollback()
