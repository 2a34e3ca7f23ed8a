"""GET /health: is the API up, and does PostgreSQL answer?"""

import logging
from typing import Literal

import asyncpg
from fastapi import APIRouter, Response, status
from pydantic import BaseModel

from ..config import SettingsDep

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    postgres: str | None = None  # the server's version, when it answers


# --8<-- [start:health]
@router.get("/health", responses={503: {"model": Health, "description": "PostgreSQL is down"}})
async def health(settings: SettingsDep, response: Response) -> Health:
    """Say whether PostgreSQL answers, and which version it runs."""
    # asyncpg wants plain postgresql://; "+asyncpg" is only there for SQLAlchemy (step 02).
    dsn = settings.database_url.get_secret_value().replace("+asyncpg", "", 1)
    # EXERCISE 01.3: ask PostgreSQL its version; answer 503 with a generic body when it is down
    try:
        # A new connection per request: fine for a health check, too slow for an API (step 02).
        connection = await asyncpg.connect(dsn, timeout=settings.connect_timeout)
        try:
            version = await connection.fetchval("SHOW server_version")
        finally:
            await connection.close()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # The reason goes to the log; the client learns only that the database is down.
        logger.warning("health check: PostgreSQL does not answer (%s)", type(exc).__name__)
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(status="unavailable")
    return Health(status="ok", postgres=version)
    # END EXERCISE


# --8<-- [end:health]
