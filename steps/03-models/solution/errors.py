"""When the database cannot serve a request, the client gets a 503 or 504 and a generic body."""

import logging
import traceback

import asyncpg
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import exc

logger = logging.getLogger(__name__)

# PostgreSQL names each error with a SQLSTATE code; its first two characters are its class.
# "Not now": a connection lost (class 08), a server shutting down or starting up, too many
# connections.
UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")
# A transaction that lost a race with another: a serialization failure, a deadlock.
# PostgreSQL rolled it back whole, so nothing of that transaction was written and the same
# request again is likely to succeed.
RETRY_SQLSTATES = ("40001", "40P01")
# A statement cancelled by statement_timeout: the database is up, the query too slow.
QUERY_CANCELED = "57014"

# What "the database does not answer" looks like from the app when PostgreSQL sent no code:
# a refused or timed-out connection (OSError, TimeoutError), no free connection in the pool
# (exc.TimeoutError), a connection that broke (exc.InterfaceError, exc.OperationalError), or
# that a break left half-way through a message (asyncpg's InternalClientError, "another
# operation is in progress", which SQLAlchemy calls an exc.InternalError). SQLAlchemy wraps
# the driver's errors in its own, except while it sets up a new connection (the asyncpg
# dialect registers its JSON codecs): a server that closes the connection then raises
# asyncpg's own errors, so they are here too.
DATABASE_DOWN = (
    OSError,
    TimeoutError,
    exc.TimeoutError,
    exc.InterfaceError,
    exc.OperationalError,
    exc.InternalError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
)


def from_the_database(error: BaseException) -> bool:
    """Whether an error came from talking to PostgreSQL: an OSError may come from a file."""
    if isinstance(error, exc.SQLAlchemyError):
        return True
    frames = traceback.walk_tb(error.__traceback__)
    return any(f.f_globals.get("__name__", "").startswith("asyncpg") for f, _ in frames)


def sqlstate(error: Exception) -> str | None:
    """PostgreSQL's code for the error (for example 57014), when it sent one."""
    # SQLAlchemy's error keeps the driver's as `orig`; the driver's own carries it itself.
    return getattr(getattr(error, "orig", error), "sqlstate", None)


# --8<-- [start:handler]
async def database_error(request: Request, error: Exception) -> JSONResponse:
    code = sqlstate(error) or ""
    if code == QUERY_CANCELED:
        # Retrying would only be as slow: a 504, and no Retry-After.
        logger.warning("statement timeout on %s", request.url.path)
        return JSONResponse({"detail": "The database took too long to answer."}, status_code=504)
    if code in RETRY_SQLSTATES:
        # PostgreSQL rolled the transaction back: the very same request may be sent again.
        logger.warning("transaction rolled back on %s: SQLSTATE %s", request.url.path, code)
        return JSONResponse(
            {"detail": "The request collided with another one and was not applied. Try again."},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "1"},
        )
    # PostgreSQL's code decides when it sent one. Its class XX (an internal error, corrupted
    # data or index) is an exc.InternalError too, and no retry mends it: a 500, logged whole.
    down = code.startswith(UNAVAILABLE_SQLSTATES) if code else isinstance(error, DATABASE_DOWN)
    if not (down and from_the_database(error)):
        # A bug of ours: log it whole, tell the client nothing about it.
        logger.exception("unexpected database error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "Internal server error."}, status_code=500)
    # Say that it failed and when to retry; the reason goes to the log only.
    logger.warning("database unavailable on %s: %s", request.url.path, type(error).__name__)
    return JSONResponse(
        {"detail": "The database is not available right now. Try again shortly."},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "1"},
    )


def add_error_handlers(app: FastAPI) -> None:
    for error in (*DATABASE_DOWN, exc.DBAPIError, asyncpg.PostgresError):
        app.add_exception_handler(error, database_error)


# --8<-- [end:handler]
