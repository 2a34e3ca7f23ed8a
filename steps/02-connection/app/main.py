"""The application factory: `uvicorn app.main:app` serves the app it builds."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from sqlalchemy.ext.asyncio import async_sessionmaker

from .config import Settings
from .db import create_engine
from .errors import add_error_handlers
from .routes import health


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start-up: one engine and one session factory for the app's life. Shut-down: close them."""
    # Creating the engine opens no connection: the pool opens them on first use.
    engine = create_engine(app.state.settings)
    app.state.engine = engine
    # EXERCISE 02.2: make the session factory, serve, then dispose of the engine at shut-down
    app.state.sessionmaker = async_sessionmaker(engine)
    yield
    # END EXERCISE


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; tests pass their own settings, a server reads the environment."""
    # FastAPIOffline: the same app, with /docs served from the package, not a CDN (it works
    # in a room with no Wi-Fi).
    app = FastAPIOffline(title="Workshop API", version="0.2.0", lifespan=lifespan)
    app.state.settings = settings or Settings()
    add_error_handlers(app)
    app.include_router(health.router)
    return app


app = create_app()
