"""Step 06 checks (06.1): every worker's pools together against what PostgreSQL allows, checked
at start-up, with the numbers in the refusal."""

from types import ModuleType
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from workshop.testing import serve

# Pools of several shapes: each number counts, so a sum that leaves one out is found.
SHAPES = [
    {"web_concurrency": 3, "pool_size": 5, "max_overflow": 4, "readiness_connections": 2},
    {"web_concurrency": 4, "pool_size": 3, "max_overflow": 6, "readiness_connections": 1},
]


async def server_limits(engine: AsyncEngine) -> tuple[int, int]:
    """max_connections, and the connections an ordinary role cannot have, of the test server."""
    query = text(
        "SELECT current_setting('max_connections')::int, "
        "current_setting('superuser_reserved_connections')::int "
        "+ coalesce(current_setting('reserved_connections', true)::int, 0)"
    )
    async with engine.connect() as connection:
        max_connections, reserved = (await connection.execute(query)).one()
    return max_connections, reserved


def budget_of(shape: dict[str, int]) -> int:
    per_worker = shape["pool_size"] + shape["max_overflow"] + shape["readiness_connections"]
    return shape["web_concurrency"] * per_worker


@pytest.mark.exercise("06.1")
@pytest.mark.parametrize("shape", SHAPES, ids=["3-workers", "4-workers"])
async def test_one_connection_over_the_budget_refuses_to_start_and_says_why(
    pkg: ModuleType, settings: Any, engine: AsyncEngine, shape: dict[str, int]
) -> None:
    """A headroom that leaves one connection less than the workers could open: the app must
    not start, and its message names the budget and what is allowed, so whoever reads the log
    knows what to change. One connection more of room, and it fits exactly: the app starts."""
    max_connections, reserved = await server_limits(engine)
    budget = budget_of(shape)
    fits = max_connections - reserved - budget  # the headroom that leaves exactly the budget
    for headroom in (fits + 1, fits):
        app = pkg.main.create_app(
            settings.model_copy(update={**shape, "connection_headroom": headroom})
        )
        allowed = max_connections - reserved - headroom
        try:
            async with serve(app) as client:
                assert (await client.get("/health")).status_code == 200
        except RuntimeError as error:
            if allowed >= budget:
                pytest.fail(
                    f"the app refused to start with a budget of {budget} connections and "
                    f"{allowed} allowed: a budget equal to what is allowed fits ({error})"
                )
            for number, what in ((budget, "the budget"), (allowed, "what is allowed")):
                if str(number) not in str(error):
                    pytest.fail(f"the refusal does not name {what} ({number}): {error}")
        else:
            if allowed < budget:
                pytest.fail(
                    f"the app started though {shape['web_concurrency']} workers could open "
                    f"{budget} connections and PostgreSQL allows {allowed} (max_connections "
                    f"{max_connections} - {reserved} reserved - headroom {headroom}): raise "
                    "RuntimeError in check_budget"
                )


@pytest.mark.exercise("06.1")
def test_the_budget_is_checked_against_the_servers_own_numbers(
    pkg: ModuleType, settings: Any
) -> None:
    """Another server, other numbers: max_connections and the reserved connections are the
    server's, asked at start-up, not this machine's defaults (100 and 3)."""
    shape = {**SHAPES[0], "connection_headroom": 7}  # 33 connections
    tight = settings.model_copy(update=shape)
    pkg.db.check_budget(tight, max_connections=45, reserved=5)  # 45 - 5 - 7 = 33: fits
    with pytest.raises(RuntimeError):
        pkg.db.check_budget(tight, max_connections=45, reserved=6)  # 32
    with pytest.raises(RuntimeError):
        pkg.db.check_budget(tight, max_connections=44, reserved=5)  # 32


async def test_a_server_that_does_not_answer_does_not_stop_the_start(
    pkg: ModuleType, settings: Any
) -> None:
    """Nothing to check the budget against: the app starts, and answers 503 until it can."""
    nowhere = "postgresql+asyncpg://workshop:workshop@127.0.0.1:9/workshop"  # discard port
    app = pkg.main.create_app(settings.model_copy(update={"database_url": SecretStr(nowhere)}))
    async with serve(app, raise_app_exceptions=False) as client:
        assert (await client.get("/health")).status_code == 503
