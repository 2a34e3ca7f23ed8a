"""The engine, its connection pool, and one session per request."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import exc
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from starlette.datastructures import State

from .config import Settings


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
        # Passed to asyncpg.connect() for every new connection.
        connect_args={
            "timeout": settings.connect_timeout,
            # Set on the server for the whole session: PostgreSQL itself enforces them.
            "server_settings": {
                "application_name": settings.app_name,
                "statement_timeout": str(round(settings.statement_timeout * 1000)),  # in ms
            },
        },
    )


# --8<-- [end:engine]


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
