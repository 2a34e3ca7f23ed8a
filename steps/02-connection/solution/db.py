"""The engine, its connection pool, and one session per request."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from .config import Settings


# --8<-- [start:engine]
def create_engine(settings: Settings) -> AsyncEngine:
    """The app's one engine: a pool of connections, sized and timed by the settings."""
    # EXERCISE 02.1: build the engine with the pool and the timeouts of the settings
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
    # END EXERCISE


# --8<-- [end:engine]


# --8<-- [start:session]
async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, closed as soon as the route is done, whatever happened."""
    # EXERCISE 02.3: open a session from the app's factory; close it on every path
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
    # END EXERCISE


# scope="function": the session closes when the route returns, before the response is sent,
# so its connection is free sooner and a failed close never breaks a response under way.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
# --8<-- [end:session]


def get_engine(request: Request) -> AsyncEngine:
    """The app's engine, for what needs the pool itself rather than a session."""
    return request.app.state.engine


EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
