"""One place turns every failure into a response: the same JSON shape, honest status codes.

The body says what the client can act on; the log says what the operator needs. Neither
gives a client a stack trace, SQL, a driver's message or a constraint's name. Each error
gets a request id, in the body, the X-Request-ID header and the log line alike.
"""

import logging
import re
import traceback
import uuid
from typing import Any

import asyncpg
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc
from starlette.exceptions import HTTPException
from starlette.routing import Match

logger = logging.getLogger(__name__)

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
# A lock not had within lock_timeout (the app's role sets it: migration 0006), as when a
# migration holds the table: the statement was not run, and it may well run in a moment.
LOCK_NOT_AVAILABLE = "55P03"
# A constraint's name (from the naming convention) -> the field the client should fix.
CONSTRAINT_FIELDS = {
    "uq_items_owner_id_name": "name",
    "ck_items_price_not_negative": "price",
    "uq_users_email": "email",
}
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


# --8<-- [start:shape]
class FieldError(BaseModel):
    loc: list[str | int]  # where: ["body", "price"], ["query", "limit"]
    msg: str
    type: str


class Problem(BaseModel):
    """The body of every error the API answers: the shape /docs shows for them."""

    status: int
    detail: str
    request_id: str
    errors: list[FieldError] | None = None  # a 422: what to fix in the request, and where
    field: str | None = None  # a 409 or 422 from a table's rule: the field it is about


# Given to every route: without it, /docs would show FastAPI's own 422 body ({"detail": [...]}),
# which this app never sends, and no body at all for the other errors.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": Problem, "description": "The request cannot be served as it is"},
    "5XX": {"model": Problem, "description": "The server or its database failed"},
}
# --8<-- [end:shape]


# --8<-- [start:problem]
def request_id(request: Request) -> str:
    """The client's X-Request-ID if it is a sane one, else a new id; the same all request."""
    if "request_id" not in request.scope:  # the scope lives as long as the request
        given = request.headers.get("x-request-id", "")
        request.scope["request_id"] = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    return request.scope["request_id"]


def problem(
    request: Request,
    status_code: int,
    detail: str,
    headers: dict[str, str] | None = None,
    reason: str = "",
    **extra: Any,
) -> JSONResponse:
    """Every error response: {"status", "detail", "request_id", ...}, and its log line.

    `reason` is for the log only: what the operator needs to know, which the client must not.
    """
    rid = request_id(request)
    logger.warning(
        "%s %s answered %d%s [request %s]",
        request.method,
        request.url.path,
        status_code,
        f" ({reason})" if reason else "",
        rid,
    )
    body = {"status": status_code, "detail": detail, "request_id": rid, **extra}
    return JSONResponse(body, status_code, headers={"X-Request-ID": rid, **(headers or {})})


# --8<-- [end:problem]


async def invalid_request(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    # Where and what, never the input itself: it may hold a password.
    errors = [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in error.errors()]
    return problem(request, 422, "The request is not valid.", errors=errors)


# --8<-- [start:allow]
# The methods a 405's Allow header may name.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> str:
    """Every method the app serves at the request's path: those a route takes there.

    Starlette answers the 405 from the first route whose path matched, so its Allow header
    names that route's methods only: GET and POST /items are two routes, as are the GET, PATCH
    and DELETE of /items/{item_id}. Each route is asked instead, method by method.
    """

    def taken(method: str) -> bool:
        scope = {**request.scope, "method": method}
        return any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes)

    return ", ".join(filter(taken, METHODS))


async def http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    headers = error.headers
    if error.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        headers = {**(headers or {}), "Allow": allowed_methods(request)}
    return problem(request, error.status_code, str(error.detail), headers)


# --8<-- [end:allow]


# --8<-- [start:integrity]
async def integrity_error(request: Request, error: Exception) -> JSONResponse:
    """A write broke a rule of the table: the client's mistake, told in its own terms."""
    assert isinstance(error, exc.IntegrityError)
    code = sqlstate(error)
    cause = getattr(error.orig, "__cause__", None)  # asyncpg's error, with the details
    field = CONSTRAINT_FIELDS.get(getattr(cause, "constraint_name", None) or "")
    field = field or getattr(cause, "column_name", None)  # a NOT NULL names its column
    reason = f"integrity error {code} on {field}"
    if code == "23505" and field:  # unique_violation
        detail = f"This {field} is already taken."
        return problem(request, 409, detail, reason=reason, field=field)
    if code in {"23514", "23502"} and field:  # check_violation, not_null_violation
        return problem(request, 422, f"The {field} is not allowed.", reason=reason, field=field)
    return problem(request, 409, "The change conflicts with the data.", reason=reason)


# --8<-- [end:integrity]


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


async def database_error(request: Request, error: Exception) -> JSONResponse:
    code = sqlstate(error) or ""
    if code == QUERY_CANCELED:
        # Retrying would only be as slow: a 504, and no Retry-After.
        return problem(request, 504, "The database took too long to answer.", reason="timeout")
    if code == LOCK_NOT_AVAILABLE:
        return problem(
            request,
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "The data is busy right now. Try again shortly.",
            headers={"Retry-After": "1"},
            reason="lock_timeout",
        )
    if code in RETRY_SQLSTATES:
        # PostgreSQL rolled the transaction back: the very same request may be sent again.
        return problem(
            request,
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "The request collided with another one and was not applied. Try again.",
            headers={"Retry-After": "1"},
            reason=f"transaction rolled back, SQLSTATE {code}",
        )
    # PostgreSQL's code decides when it sent one. Its class XX (an internal error, corrupted
    # data or index) is an exc.InternalError too, and no retry mends it: a 500, logged whole.
    down = code.startswith(UNAVAILABLE_SQLSTATES) if code else isinstance(error, DATABASE_DOWN)
    if not (down and from_the_database(error)):
        return await unexpected_error(request, error)
    return problem(
        request,
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "The database is not available right now. Try again shortly.",
        headers={"Retry-After": "1"},
        reason=f"database unavailable: {type(error).__name__}",
    )


async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
    # A bug of ours: the whole story in the log, none of it in the response.
    logger.error("unexpected error [request %s]", request_id(request), exc_info=error)
    return problem(request, 500, "Internal server error.")


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(exc.IntegrityError, integrity_error)
    for error in (*DATABASE_DOWN, exc.DBAPIError, asyncpg.PostgresError):
        app.add_exception_handler(error, database_error)
    app.add_exception_handler(Exception, unexpected_error)
