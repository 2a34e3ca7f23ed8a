"""The application factory: `uvicorn app.main:app` serves the app it builds."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from sqlalchemy.ext.asyncio import async_sessionmaker

from .config import Settings
from .db import create_engine
from .errors import add_error_handlers
from .routes import health, items


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start-up: one engine and one session factory for the app's life. Shut-down: close them."""
    # Creating the engine opens no connection: the pool opens them on first use.
    engine = create_engine(app.state.settings)
    app.state.engine = engine
    # expire_on_commit=False: after a commit, objects keep their values instead of reloading
    # them on the next attribute access, which in async code would be hidden I/O.
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        # Close every pooled connection, so none outlives the app on the server.
        await engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; tests pass their own settings, a server reads the environment."""
    # FastAPIOffline: the same app, with /docs served from the package, not a CDN (it works
    # in a room with no Wi-Fi).
    app = FastAPIOffline(title="Workshop API", version="0.3.0", lifespan=lifespan)
    app.state.settings = settings or Settings()
    add_error_handlers(app)
    app.include_router(health.router)
    app.include_router(items.router)
    return app


app = create_app()
