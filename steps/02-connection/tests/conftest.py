"""Step 02's test helpers: apps with a small pool of their own, and a view of the server."""

import uuid
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.fixture
def make_app(pkg: ModuleType, settings: Any) -> Callable[..., FastAPI]:
    """Build the step's app with some settings changed, plus routes that the tests drive.

    Each app gets an application_name of its own, so its connections can be counted.
    """

    def make(**changes: Any) -> FastAPI:
        changes.setdefault("app_name", f"test-{uuid.uuid4().hex[:8]}")
        app: FastAPI = pkg.main.create_app(settings.model_copy(update=changes))
        session_dep = pkg.db.SessionDep

        @app.get("/test/hold")
        async def hold(session: session_dep, seconds: float = 0.0) -> dict[str, int]:
            """Hold a connection for `seconds`, and say which server process served it."""
            await session.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": seconds})
            return {"pid": await session.scalar(text("SELECT pg_backend_pid()"))}

        return app

    return make


@pytest.fixture
def connections(engine: AsyncEngine) -> Callable[[str], Awaitable[int]]:
    """Count the server's connections that carry an application_name (seen from outside)."""

    async def count(app_name: str) -> int:
        async with engine.connect() as connection:
            query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
            return await connection.scalar(query, {"name": app_name})

    return count
