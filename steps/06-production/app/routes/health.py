"""Probes: GET /livez (is the process up?) and GET /readyz (can it serve?), for orchestrators
and load balancers; GET /health and GET /health/db for people: the version, the pool."""

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..db import EngineDep, SessionDep, turn_for_a_connection
from ..errors import DATABASE_DOWN

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


class Probe(BaseModel):
    status: Literal["ok", "unavailable"]


NOT_READY = {503: {"model": Probe, "description": "PostgreSQL does not answer"}}


@router.get("/livez")
async def livez(request: Request) -> Probe:
    """Say the process is up and its event loop answers: restart it when this fails."""
    # EXERCISE 06.3: answer without the database
    raise NotImplementedError("exercise 06.3 is yours to do: `uv run workshop hint 06.3`")
    # END EXERCISE


@router.get("/readyz", responses=NOT_READY)
async def readyz(request: Request, response: Response) -> Probe:
    """Say whether PostgreSQL answers this worker: send it traffic only when it does."""
    # EXERCISE 06.3: ask PostgreSQL through the probe's own pool, READINESS_TIMEOUT at most
    raise NotImplementedError("exercise 06.3 is yours to do: `uv run workshop hint 06.3`")
    # END EXERCISE


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    postgres: str | None = None  # the server's version, when it answers


@router.get("/health", responses={503: {"model": Health, "description": "PostgreSQL is down"}})
async def health(session: SessionDep, response: Response) -> Health:
    """Say whether PostgreSQL answers, and which version it runs."""
    try:
        # A pooled connection: no new connection per request any more.
        version = await session.scalar(text("SHOW server_version"))
    except DATABASE_DOWN as exc:
        logger.warning("health check: PostgreSQL does not answer (%s)", type(exc).__name__)
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(status="unavailable")
    return Health(status="ok", postgres=version)


class PoolFigures(BaseModel):
    size: int  # connections the pool keeps (POOL_SIZE)
    checked_out: int  # lent to requests right now
    overflow: int  # opened beyond `size` under load (at most MAX_OVERFLOW)
    checked_in: int  # open and idle, waiting in the pool


class DatabaseHealth(Health):
    pool: PoolFigures


def pool_figures(engine: AsyncEngine) -> PoolFigures:
    """What the engine's pool holds right now."""
    pool = engine.pool
    return PoolFigures(
        size=pool.size(),
        checked_out=pool.checkedout(),
        # Below zero until the pool has opened `size` connections: count that as no overflow.
        overflow=max(pool.overflow(), 0),
        checked_in=pool.checkedin(),
    )


@router.get("/health/db", responses={503: {"model": DatabaseHealth}})
async def database_health(
    request: Request, engine: EngineDep, response: Response
) -> DatabaseHealth:
    """Say whether PostgreSQL answers, with the connection pool's figures."""
    try:
        # In the line, as every request: a connection taken beside it would be one that a
        # request holding a turn then waits for, POOL_TIMEOUT more after its wait for the turn.
        async with turn_for_a_connection(request.app.state), engine.connect() as connection:
            version = await connection.scalar(text("SHOW server_version"))
    except DATABASE_DOWN as exc:
        logger.warning("health check: PostgreSQL does not answer (%s)", type(exc).__name__)
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return DatabaseHealth(status="unavailable", pool=pool_figures(engine))
    return DatabaseHealth(status="ok", postgres=version, pool=pool_figures(engine))
