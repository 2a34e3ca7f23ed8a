"""The engine, its connection pool, and one session per request."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import exc, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from starlette.datastructures import State

from .config import Settings
from .errors import DATABASE_DOWN

logger = logging.getLogger(__name__)


# --8<-- [start:connect-args]
def connect_args(settings: Settings) -> dict[str, Any]:
    """What asyncpg.connect() gets for each new connection, straight to PostgreSQL or through
    PgBouncer in transaction mode, where each transaction may run on another server connection."""
    # EXERCISE 06.2: leave no prepared statement behind on PgBouncer's server connections
    return {
        "timeout": settings.connect_timeout,
        # PgBouncer passes application_name on, and refuses most other startup parameters
        # (statement_timeout is on the app's role now: migration 0006).
        "server_settings": {"application_name": settings.app_name},
        # Off, asyncpg prepares every statement unnamed and parses it again with each run:
        # nothing is left on a server connection for another client to collide with.
        "statement_cache_size": 0,
    }
    # END EXERCISE


# --8<-- [end:connect-args]


# --8<-- [start:engine]
def create_engine(settings: Settings) -> AsyncEngine:
    """The app's one engine: a pool of connections, sized and timed by the settings."""
    return create_async_engine(
        settings.database_url.get_secret_value(),
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_recycle=settings.pool_recycle,
        pool_pre_ping=settings.pool_pre_ping,
        connect_args=connect_args(settings),
    )


def create_readiness_engine(settings: Settings) -> AsyncEngine:
    """A pool apart for /readyz: READINESS_CONNECTIONS connections no request ever takes."""
    return create_async_engine(
        settings.database_url.get_secret_value(),
        pool_size=settings.readiness_connections,
        max_overflow=0,
        pool_timeout=settings.readiness_timeout,
        pool_recycle=settings.pool_recycle,
        # A probe is rare: a connection that died since the last one is replaced, not reported.
        pool_pre_ping=True,
        connect_args={
            **connect_args(settings),
            "timeout": settings.readiness_timeout,
            "server_settings": {"application_name": f"{settings.app_name}-readiness"},
        },
    )


# --8<-- [end:engine]


# --8<-- [start:budget]
def check_budget(settings: Settings, *, max_connections: int, reserved: int) -> None:
    """Refuse to start when the workers' pools together could ask PostgreSQL for more
    connections than it gives the app's role (`reserved`: those kept for superusers)."""
    # EXERCISE 06.1: raise RuntimeError, with the numbers, when the budget exceeds the allowed
    per_worker = settings.pool_size + settings.max_overflow + settings.readiness_connections
    budget = settings.web_concurrency * per_worker
    allowed = max_connections - reserved - settings.connection_headroom
    if budget > allowed:
        raise RuntimeError(
            f"The app could open {budget} connections: WEB_CONCURRENCY {settings.web_concurrency}"
            f" x (POOL_SIZE {settings.pool_size} + MAX_OVERFLOW {settings.max_overflow}"
            f" + READINESS_CONNECTIONS {settings.readiness_connections}). PostgreSQL allows"
            f" {allowed}: max_connections {max_connections} - {reserved} reserved"
            f" - CONNECTION_HEADROOM {settings.connection_headroom}. Lower WEB_CONCURRENCY,"
            " POOL_SIZE or MAX_OVERFLOW, or raise max_connections."
        )
    # END EXERCISE


# --8<-- [end:budget]


# --8<-- [start:limits]
LIMITS = text(
    "SELECT current_setting('max_connections')::int,"
    " current_setting('superuser_reserved_connections')::int"
    # PostgreSQL 16 and later also keep reserved_connections for pg_use_reserved_connections.
    " + coalesce(current_setting('reserved_connections', true)::int, 0)"
)


async def check_connection_budget(engine: AsyncEngine, settings: Settings) -> None:
    """Ask PostgreSQL what it allows, and check the budget against it. A server that does not
    answer is no reason not to start: /readyz says 503 until it does."""
    try:
        async with asyncio.timeout(settings.readiness_timeout), engine.connect() as connection:
            max_connections, reserved = (await connection.execute(LIMITS)).one()
    except (*DATABASE_DOWN, DBAPIError) as error:
        logger.warning("connection budget not checked: PostgreSQL did not answer (%r)", error)
        return
    check_budget(settings, max_connections=max_connections, reserved=reserved)


# --8<-- [end:limits]


# --8<-- [start:fair]
@asynccontextmanager
async def turn_for_a_connection(state: State) -> AsyncIterator[None]:
    """Wait for one of the pool's connections in a first-come, first-served line.

    The pool's own queue is not a line: a connection handed back goes to whoever asks next,
    often a request that just arrived rather than one that has waited. Under a crowd far
    beyond the pool, a few requests would wait for seconds while most wait for none. The
    semaphore (as many turns as the pool has connections) serves them in order; a wait past
    POOL_TIMEOUT raises the pool's own error, which errors.py answers with a 503.
    """
    try:
        async with asyncio.timeout(state.settings.pool_timeout):
            await state.connection_turns.acquire()
    except TimeoutError:
        raise exc.TimeoutError("No connection came free within POOL_TIMEOUT.") from None
    try:
        yield
    finally:
        state.connection_turns.release()


# --8<-- [end:fair]


# --8<-- [start:session]
async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, closed as soon as the route is done, whatever happened."""
    async with turn_for_a_connection(request.app.state):
        session = request.app.state.sessionmaker()
        try:
            yield session
        finally:
            # Closing rolls back what was not committed and gives the connection back to the
            # pool. A connection that broke mid-request cannot roll back: throw it away instead,
            # and let the route's own outcome (its commit, or its error) stand.
            try:
                await session.close()
            except DBAPIError:
                await session.invalidate()


# scope="function": the session closes when the route returns, before the response is sent,
# so its connection is free sooner and a failed close never breaks a response under way.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
# --8<-- [end:session]


def get_engine(request: Request) -> AsyncEngine:
    """The app's engine, for what needs the pool itself rather than a session."""
    return request.app.state.engine


EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
