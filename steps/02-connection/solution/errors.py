"""When the database cannot serve a request, the client gets 503 and a generic body."""

import logging

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import exc

logger = logging.getLogger(__name__)

# PostgreSQL's error codes that mean "not now", not "wrong request": a cancelled statement
# (statement_timeout), a server shutting down, too many connections.
UNAVAILABLE_SQLSTATES = {"57014", "57P01", "57P02", "57P03", "53300"}

# What "the database does not answer" looks like from the app: a refused or timed-out
# connection (OSError, TimeoutError), no free connection in the pool (exc.TimeoutError),
# a connection that broke (exc.InterfaceError, exc.OperationalError).
DATABASE_DOWN = (OSError, TimeoutError, exc.TimeoutError, exc.InterfaceError, exc.OperationalError)


def is_unavailable(error: Exception) -> bool:
    """Whether an error says the database cannot serve now (retry later), not that we erred."""
    if isinstance(error, DATABASE_DOWN):
        return True
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None)
    return isinstance(error, exc.DBAPIError) and sqlstate in UNAVAILABLE_SQLSTATES


# --8<-- [start:handler]
async def database_error(request: Request, error: Exception) -> JSONResponse:
    if not is_unavailable(error):
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
    for error in (*DATABASE_DOWN, exc.DBAPIError):
        app.add_exception_handler(error, database_error)


# --8<-- [end:handler]
