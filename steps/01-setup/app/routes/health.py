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


@router.get("/health", responses={503: {"model": Health, "description": "PostgreSQL is down"}})
async def health(settings: SettingsDep, response: Response) -> Health:
    """Say whether PostgreSQL answers, and which version it runs."""
    # asyncpg wants plain postgresql://; "+asyncpg" is only there for SQLAlchemy (step 02).
    dsn = settings.database_url.get_secret_value().replace("+asyncpg", "", 1)
    # EXERCISE 01.3: ask PostgreSQL its version; answer 503 with a generic body when it is down
    raise NotImplementedError("exercise 01.3 is yours to do: `uv run workshop hint 01.3`")
    # END EXERCISE
