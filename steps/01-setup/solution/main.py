"""The application factory: `uvicorn app.main:app` serves the app it builds."""

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from .config import Settings
from .routes import health


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; tests pass their own settings, a server reads the environment."""
    # FastAPIOffline: the same app, with /docs served from the package, not a CDN (it works
    # in a room with no Wi-Fi).
    app = FastAPIOffline(title="Workshop API", version="0.1.0")
    app.state.settings = settings or Settings()
    app.include_router(health.router)
    return app


app = create_app()
