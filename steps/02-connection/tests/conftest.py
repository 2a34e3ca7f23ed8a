"""Step 02's test helpers: apps with a small pool of their own, and a view of the server."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from types import ModuleType
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.fixture
async def make_app(pkg: ModuleType, settings: Any) -> AsyncIterator[Callable[..., FastAPI]]:
    """Build the step's app with some settings changed, plus routes that the tests drive.

    Each app gets an application_name of its own, so its connections can be counted.
    """
    apps: list[FastAPI] = []

    def make(**changes: Any) -> FastAPI:
        changes.setdefault("app_name", f"test-{uuid.uuid4().hex[:8]}")
        app: FastAPI = pkg.main.create_app(settings.model_copy(update=changes))
        session_dep = pkg.db.SessionDep

        @app.get("/test/hold")
        async def hold(session: session_dep, seconds: float = 0.0) -> dict[str, int]:
            """Hold a connection for `seconds`, and say which server process served it."""
            await session.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": seconds})
            return {"pid": await session.scalar(text("SELECT pg_backend_pid()"))}

        app.state.let_go = asyncio.Event()

        @app.get("/test/hold-until-let-go")
        async def hold_until_let_go(session: session_dep) -> dict[str, int]:
            """Hold a connection until the test sets `app.state.let_go`."""
            pid = await session.scalar(text("SELECT pg_backend_pid()"))
            await app.state.let_go.wait()
            return {"pid": pid}

        apps.append(app)
        return app

    yield make
    # Until exercise 02.2 is done, an app leaves its pool open when it stops. The tests have
    # said so already; close what is left here, so that the run ends on their verdict and not
    # on a page of "ResourceWarning: unclosed connection" when Python collects it.
    for app in apps:
        if (engine := getattr(app.state, "engine", None)) is not None:
            await engine.dispose()


@pytest.fixture
def connections(engine: AsyncEngine) -> Callable[[str], Awaitable[int]]:
    """Count the server's connections that carry an application_name (seen from outside)."""

    async def count(app_name: str) -> int:
        async with engine.connect() as connection:
            query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
            return await connection.scalar(query, {"name": app_name})

    return count


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A PostgreSQL URL whose server accepts connections and never answers, as a host that
    hangs or a firewall that swallows packets: only a timeout ends the wait."""
    accepted: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # keep the connection open, say nothing

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"postgresql+asyncpg://app:s3cret@127.0.0.1:{port}/workshop"
    server.close()
    for writer in accepted:
        writer.close()
    await server.wait_closed()
