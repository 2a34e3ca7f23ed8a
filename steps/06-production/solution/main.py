"""The application factory: `uvicorn app.main:app` serves the app it builds."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from fastapi_offline import FastAPIOffline
from sqlalchemy.ext.asyncio import async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import Settings
from .db import check_connection_budget, create_engine, create_readiness_engine
from .errors import ERROR_RESPONSES, add_error_handlers
from .routes import auth, health, items, users
from .security import signing_key

# 1 MiB: many times a bulk of 100 ordinary items (a few hundred bytes each).
MAX_BODY_SIZE = 1024 * 1024


# --8<-- [start:body-limit]
class BodyLimit:
    """Refuse a request body past `limit` bytes as it arrives, so no client can make the app
    hold megabytes of JSON in memory; the 413 has the API's error shape, like any other."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                # Raised where the route reads its body: errors.py answers it.
                raise HTTPException(413, "The request body is too large.")
            return message

        await self.app(scope, receive_within_limit, send)


# --8<-- [end:body-limit]


# --8<-- [start:lifespan]
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start-up: the engines and the session factory for the app's life, once the connection
    budget is checked. Shut-down: close them."""
    settings = app.state.settings
    # No real SECRET_KEY, no start: better than an app whose tokens anyone can forge.
    app.state.signing_key = signing_key(settings)
    # Creating an engine opens no connection: the pool opens them on first use.
    engine = create_engine(settings)
    app.state.engine = engine
    # The probe's own small pool, apart from the requests' (routes/health.py).
    app.state.readiness_engine = create_readiness_engine(settings)
    # expire_on_commit=False: after a commit, objects keep their values instead of reloading
    # them on the next attribute access, which in async code would be hidden I/O.
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    # One turn per connection the pool may open: requests wait for them in order (db.py).
    app.state.connection_turns = asyncio.Semaphore(settings.pool_size + settings.max_overflow)
    # This worker's Argon2 slots: a login or sign-up past them is answered 503 (security.py).
    app.state.argon2_slots = asyncio.Semaphore(settings.argon2_concurrency)
    try:
        # Through the probe's pool: its connection is then open for the first /readyz.
        await check_connection_budget(app.state.readiness_engine, settings)
        yield
    finally:
        # Close every pooled connection, so none outlives the app on the server.
        await engine.dispose()
        await app.state.readiness_engine.dispose()


# --8<-- [end:lifespan]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; tests pass their own settings, a server reads the environment."""
    # FastAPIOffline: the same app, with /docs served from the package, not a CDN (it works
    # in a room with no Wi-Fi).
    app = FastAPIOffline(
        title="Workshop API", version="0.6.0", lifespan=lifespan, responses=ERROR_RESPONSES
    )
    app.state.settings = settings or Settings()
    add_error_handlers(app)
    app.add_middleware(BodyLimit, limit=MAX_BODY_SIZE)
    app.include_router(health.router)
    app.include_router(users.router)
    app.include_router(auth.router)
    app.include_router(items.router)
    return app


app = create_app()
