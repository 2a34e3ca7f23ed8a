"""Step 01 checks: the app starts, and GET /health tells whether PostgreSQL answers."""

from types import ModuleType
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import make_url

# Nothing listens on port 1: connecting there is refused at once.
CLOSED_PORT_URL = "postgresql+asyncpg://app:s3cret-pw@127.0.0.1:1/workshop"


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_app_starts_and_documents_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert "/health" in response.json()["paths"]
    assert (await client.get("/docs")).status_code == 200


def test_module_level_app_is_built_by_create_app(pkg: ModuleType) -> None:
    # `uvicorn app.main:app` serves this one; it reads its settings from the environment.
    assert pkg.main.app.title == pkg.main.create_app().title
    assert isinstance(pkg.main.app.state.settings, pkg.config.Settings)


@pytest.mark.exercise("01.3")
async def test_health_reports_the_server_version(
    client: httpx.AsyncClient, database_url: str
) -> None:
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        expected = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "postgres": expected}


@pytest.mark.exercise("01.3")
async def test_health_answers_503_when_postgres_is_down(
    pkg: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    app = pkg.main.create_app(pkg.config.Settings(database_url=CLOSED_PORT_URL))
    async with LifespanManager(app), client_for(app) as client:
        response = await client.get("/health")
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable", "postgres": None}
        # The app stays up: the next request is answered too.
        assert (await client.get("/openapi.json")).status_code == 200
    # The reason is logged for the operator, as a warning...
    assert [r.levelname for r in caplog.records if r.name.endswith("routes.health")] == ["WARNING"]
    # ...but neither the body nor the log line gives away the address or the password.
    for text in (response.text, caplog.text):
        assert "s3cret-pw" not in text
        assert "127.0.0.1" not in text


@pytest.mark.exercise("01.3")
async def test_health_answers_503_on_a_wrong_database(pkg: ModuleType, database_url: str) -> None:
    missing = make_url(database_url).set(database="no_such_database").render_as_string(False)
    app = pkg.main.create_app(pkg.config.Settings(database_url=missing))
    async with client_for(app) as client:
        response = await client.get("/health")
    assert response.status_code == 503
    assert "no_such_database" not in response.text
