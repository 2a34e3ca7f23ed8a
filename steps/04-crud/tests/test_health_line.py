"""Step 04 checks: /health/db waits in the line in front of the pool, as every request does."""

import asyncio
import time
from types import ModuleType
from typing import Any

from workshop.testing import serve

POOL_TIMEOUT = 0.5


async def test_health_db_takes_no_connection_from_a_request_in_line(
    pkg: ModuleType, settings: Any
) -> None:
    """A request that has its turn (db.py's line) is sure of a connection: there are as many
    turns as connections. /health/db takes its connection through the line too. Beside it, it
    would take the connection a request holding a turn then waits for, up to POOL_TIMEOUT more
    on top of its wait for the turn. Here the one turn is taken (a login checking a password
    holds its turn, and no connection): /health/db waits for it, POOL_TIMEOUT at most, and
    answers 503, while the pool keeps its connection for the request that has the turn."""
    small = {"pool_size": 1, "max_overflow": 0, "pool_timeout": POOL_TIMEOUT}
    app = pkg.main.create_app(settings.model_copy(update=small))
    async with (
        serve(app, raise_app_exceptions=False) as client,
        pkg.db.turn_for_a_connection(app.state),  # a request has the one turn
    ):
        started = time.monotonic()
        health = asyncio.create_task(client.get("/health/db"))
        await asyncio.sleep(POOL_TIMEOUT / 2)
        taken = app.state.engine.pool.checkedout()
        response = await asyncio.wait_for(health, timeout=5 * POOL_TIMEOUT)
        waited = time.monotonic() - started
        # The request with the turn gets its connection at once.
        async with asyncio.timeout(POOL_TIMEOUT / 2), app.state.engine.connect():
            pass
    assert taken == 0, "/health/db took a connection beside the line"
    assert response.status_code == 503, response.text
    assert response.json()["status"] == "unavailable"
    assert 0.8 * POOL_TIMEOUT < waited < 2 * POOL_TIMEOUT  # about POOL_TIMEOUT: no more
