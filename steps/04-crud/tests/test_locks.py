"""Step 04 checks: a read never waits for a writer, a database in trouble is no missing item,
and two changes of one item at once both stay.

These tests hold a lock on a connection of their own, as another request would, while the app
runs as a server does (its own pool, a session per request). They watch PostgreSQL's own view
of who waits for whom (pg_blocking_pids), so no test depends on how long anything takes.
"""

import asyncio
import uuid
from types import ModuleType

import httpx
import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from workshop.testing import eventually, waiting_for_a_lock

# Seconds to wait for a request to reach its statement: each wait ends as soon as it does,
# so this is only ever spent when a test is about to fail (a busy machine is no failure).
PATIENCE = 30.0
# The backends that wait for a lock this connection holds. pg_locks, not pg_stat_activity:
# a transaction sees pg_stat_activity as it was at its first look, and pg_locks as it is.
BLOCKED = text(
    "SELECT DISTINCT pid FROM pg_locks"
    " WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid))"
)


async def committed_item(pkg: ModuleType, engine: AsyncEngine) -> int:
    items = pkg.models.Item.__table__
    async with engine.begin() as connection:
        return await connection.scalar(
            insert(items).values(name=f"Locked {uuid.uuid4().hex}", price=1).returning(items.c.id)
        )


async def blocked_by(connection: AsyncConnection) -> list[int]:
    return list(await connection.scalars(BLOCKED))


@pytest.mark.exercise("04.2")
async def test_a_read_does_not_wait_for_a_writer(
    pkg: ModuleType, engine: AsyncEngine, live_client: httpx.AsyncClient
) -> None:
    """Another transaction holds the item's row lock (it is changing or deleting it): a GET
    reads the row as it was last committed, at once, and never queues behind the writer."""
    item_id = await committed_item(pkg, engine)
    async with engine.connect() as writer:
        await writer.execute(text("SELECT 1 FROM items WHERE id = :id FOR UPDATE"), {"id": item_id})
        get = asyncio.create_task(live_client.get(f"/items/{item_id}"))

        async def answered_or_waiting() -> tuple[bool, list[int]]:
            return get.done(), await blocked_by(writer)

        # Until the GET is answered, or until it is seen waiting for the writer's lock.
        _, waiting = await eventually(
            answered_or_waiting, lambda state: state[0] or state[1], within=PATIENCE
        )
        await writer.rollback()  # the writer lets go: a GET that waited can now end
        response = await get
    if waiting:
        pytest.fail("GET /items/{id} waited for another transaction's row lock: a read takes none")
    assert response.status_code == 200, "an item that another request holds is still there"
    assert response.json()["id"] == item_id


@pytest.mark.exercise("04.2")
@pytest.mark.parametrize(
    ("stop", "status"), [("pg_cancel_backend", 504), ("pg_terminate_backend", 503)]
)
async def test_a_failing_database_is_not_a_missing_item(
    pkg: ModuleType, engine: AsyncEngine, live_client: httpx.AsyncClient, stop: str, status: int
) -> None:
    """The GET's statement is cancelled, or its connection ended by the server, while it waits:
    the database failed, and nobody knows whether the item exists. Never a 404: errors.py
    answers, a 504 for a cancelled statement (as a timeout), a 503 for a lost connection."""
    item_id = await committed_item(pkg, engine)
    async with engine.connect() as locker:
        # A lock that even a read waits for (as a migration's ALTER TABLE takes).
        await locker.execute(text("LOCK TABLE items IN ACCESS EXCLUSIVE MODE"))
        get = asyncio.create_task(live_client.get(f"/items/{item_id}"))

        async def answered_or_waiting() -> tuple[bool, list[int]]:
            return get.done(), await blocked_by(locker)

        # Until the GET waits for the lock, or is answered without reaching it (a starter).
        _, waiting = await eventually(
            answered_or_waiting, lambda state: state[0] or bool(state[1]), within=PATIENCE
        )
        if not waiting:
            answered = (await get).status_code if get.done() else "nothing"
            pytest.fail(f"the GET never reached the database: it answered {answered}")
        await locker.execute(text(f"SELECT {stop}(:pid)"), {"pid": waiting[0]})
        response = await get
        await locker.rollback()
    if response.status_code == 404:
        pytest.fail(f"after {stop}, GET answered 404: a database error is not a missing item")
    if response.status_code != status:
        pytest.fail(
            f"after {stop}, GET answered {response.status_code}: let the database's errors "
            "reach errors.py, which knows a timeout from a lost connection"
        )
    assert response.json()["request_id"]


@pytest.mark.exercise("04.3")
async def test_two_patches_of_other_fields_both_stay(
    pkg: ModuleType, engine: AsyncEngine, live_client: httpx.AsyncClient
) -> None:
    """Two clients change one item at the same moment, one its price, the other its
    description: both changes stay. An UPDATE of every column would write back what its
    request had read, over the other's change: a lost update."""
    item_id = await committed_item(pkg, engine)
    changes = ({"price": "2.00"}, {"description": "New"})
    async with engine.connect() as writer:
        # Holding the row lets both requests read the item before either one writes.
        await writer.execute(text("SELECT 1 FROM items WHERE id = :id FOR UPDATE"), {"id": item_id})
        patches = [
            asyncio.create_task(live_client.patch(f"/items/{item_id}", json=change))
            for change in changes
        ]

        async def answered_or_waiting() -> tuple[bool, int]:
            return any(patch.done() for patch in patches), await waiting_for_a_lock(engine)

        # Until both wait for the row, or one is answered without waiting (a starter).
        _, waiting = await eventually(
            answered_or_waiting, lambda state: state[0] or state[1] == 2, within=PATIENCE
        )
        assert waiting == 2, "the two PATCHes did not both reach their UPDATE"
        await writer.rollback()
        responses = await asyncio.gather(*patches)
    assert [r.status_code for r in responses] == [200, 200]
    read = (await live_client.get(f"/items/{item_id}")).json()
    if (read["price"], read["description"]) != ("2.00", "New"):
        pytest.fail(
            "one PATCH wrote back what it had read over the other's change (a lost update): "
            "write only the fields that were sent"
        )
