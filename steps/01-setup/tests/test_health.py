"""Step 01 checks: the app starts, and GET /health tells whether PostgreSQL answers."""

import asyncio
import socket
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import make_url

from workshop.testing import TcpProxy, eventually, serve

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


async def server_version(database_url: str) -> str:
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        return await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()


@pytest.mark.exercise("01.3")
async def test_health_reports_the_server_version(
    client: httpx.AsyncClient, database_url: str
) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert set(response.json()) == {"status", "postgres"}
    assert response.json()["status"] == "ok"
    if response.json()["postgres"] != await server_version(database_url):
        pytest.fail("`postgres` is not the version the server reports: ask it, SHOW server_version")


@pytest.mark.exercise("01.3")
async def test_health_reports_what_the_server_answers(pkg: ModuleType, database_url: str) -> None:
    """The version is the one the server sends, not a string typed into the code: here the
    network between app and server makes the server claim a version it does not run."""
    real = await server_version(database_url)
    made_up = real.translate(str.maketrans("0123456789", "1234567890"))  # 16.4 -> 27.5
    replace = {real.encode(): made_up.encode()}
    async with TcpProxy(make_url(database_url), to_client=replace) as proxy:
        app = pkg.main.create_app(pkg.config.Settings(database_url=proxy.url))
        async with client_for(app) as client:
            response = await client.get("/health")
    assert response.status_code == 200
    if response.json()["postgres"] != made_up:
        pytest.fail("`postgres` is not what the server answered: ask it, SHOW server_version")


async def app_connections(database_url: str, application_name: str) -> int:
    """How many connections named `application_name` the server holds to the database."""
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        return await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = $1",
            application_name,
        )
    finally:
        await connection.close()


@pytest.mark.exercise("01.3")
@pytest.mark.parametrize("query", ["answered", "refused"])
async def test_health_closes_its_connection(pkg: ModuleType, database_url: str, query: str) -> None:
    """Every check closes the connection it opened, also when its query fails: a check that
    leaks one per call would fill the server's connection slots in a few minutes."""
    name = "workshop-health-check"
    target = make_url(database_url).update_query_dict({"application_name": name})
    # "refused": the query reaches the server misspelt, and the server answers with an error.
    refuse = {b"server_version": b"no_such_settin"} if query == "refused" else {}
    async with TcpProxy(target, to_server=refuse) as proxy:
        app = pkg.main.create_app(pkg.config.Settings(database_url=proxy.url))
        async with client_for(app) as client:
            response = await client.get("/health")
        # The server ends a closed connection's process a moment after the client has gone.
        left = await eventually(lambda: app_connections(database_url, name), lambda n: n == 0)
    # A query the server refuses is a database that does not work: 503, as when it is down.
    assert response.status_code == (200 if query == "answered" else 503)
    assert left == 0, "the health check left its connection open"


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


async def busy_processes(database_url: str, application_name: str) -> list[int]:
    """The server processes of connections named `application_name` that are running a query."""
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        query = (
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = $1 AND state = 'active'"
        )
        return [row["pid"] for row in await connection.fetch(query, application_name)]
    finally:
        await connection.close()


async def end_processes(database_url: str, pids: list[int]) -> None:
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        query = "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid"
        await connection.execute(query, pids)
    finally:
        await connection.close()


@pytest.mark.exercise("01.3")
@pytest.mark.parametrize("drop", ["ended-by-the-server", "cut-by-the-network"])
async def test_health_answers_503_when_the_connection_drops_mid_query(
    pkg: ModuleType, database_url: str, drop: str
) -> None:
    """The connection drops while the server runs the query: PostgreSQL ends it (a restart, a
    failover, pg_terminate_backend) or the network between app and server cuts it. asyncpg
    raises ConnectionDoesNotExistError, one of its PostgresErrors: the database went away
    mid-check, a 503 like a refused connection, whatever the class's name."""
    name = "workshop-health-drop"
    target = make_url(database_url).update_query_dict({"application_name": name})
    # The query reaches the server as a slow one (the same length): the drop comes mid-query.
    slow = {b"SHOW server_version": b"SELECT pg_sleep(30)"}
    async with TcpProxy(target, to_server=slow) as proxy:
        app = pkg.main.create_app(pkg.config.Settings(database_url=proxy.url))
        async with serve(app, raise_app_exceptions=False) as client:
            request = asyncio.create_task(client.get("/health"))
            pids = await eventually(
                lambda: busy_processes(database_url, name),
                lambda found: bool(found) or request.done(),
                within=10,
            )
            try:
                if not pids:
                    status = (await request).status_code
                    pytest.fail(f"/health answered {status} before its query reached the server")
                if drop == "cut-by-the-network":
                    await proxy.stop()
            finally:
                # The server's process: ended now, or (network cut) left sleeping until now.
                await end_processes(database_url, pids)
            response = await asyncio.wait_for(request, timeout=10)
    assert response.status_code == 503, "a connection that dropped mid-query is not a 503"
    assert response.json() == {"status": "unavailable", "postgres": None}


@pytest.mark.exercise("01.3")
async def test_health_answers_503_when_asyncpg_cannot_connect_as_configured(
    pkg: ModuleType, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """DATABASE_URL asks asyncpg to check the server's certificate (sslmode=verify-full), and
    the CA certificate to check it with is not there: a deployment that forgot to mount it.
    asyncpg refuses to connect with an InterfaceError, neither an OSError nor a PostgresError.
    The app cannot reach its database: a 503 and a warning, as for a wrong password."""
    # An empty home: no ~/.postgresql/root.crt (%APPDATA%\postgresql on Windows).
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("APPDATA", str(tmp_path))
    monkeypatch.delenv("PGSSLROOTCERT", raising=False)
    url = make_url(database_url).update_query_dict({"sslmode": "verify-full"})
    app = pkg.main.create_app(pkg.config.Settings(database_url=url.render_as_string(False)))
    async with serve(app, raise_app_exceptions=False) as client:
        response = await client.get("/health")
    assert response.status_code == 503, (
        "asyncpg's InterfaceError (it cannot connect as configured) is not a 503"
    )
    assert response.json() == {"status": "unavailable", "postgres": None}


@pytest.mark.exercise("01.3")
async def test_health_gives_up_after_connect_timeout(pkg: ModuleType) -> None:
    """A server that takes the connection but never answers counts as down once
    `connect_timeout` has passed; without a timeout, the request would hang for a minute."""
    # A listening socket that nobody accepts from: the connection opens, then silence.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        settings = pkg.config.Settings(
            database_url=f"postgresql+asyncpg://app:pw@127.0.0.1:{port}/workshop",
            connect_timeout=0.2,
        )
        async with client_for(pkg.main.create_app(settings)) as client:
            # A bound far above 0.2 s, only so that a missing timeout fails instead of hanging.
            response = await asyncio.wait_for(client.get("/health"), timeout=10)
    assert response.status_code == 503


@pytest.mark.exercise("01.3")
async def test_a_bug_in_health_is_a_500_not_a_503(pkg: ModuleType, database_url: str) -> None:
    """A bug is not an outage: catch the database's errors only. Here the settings hold a
    timeout of the wrong type (model_copy does not validate), so the route fails before it
    reaches the database: a 500 the developer sees, not a 503 that blames PostgreSQL."""
    settings = pkg.config.Settings(database_url=database_url)
    broken = settings.model_copy(update={"connect_timeout": "5"})
    async with serve(pkg.main.create_app(settings), raise_app_exceptions=False) as client:
        assert (await client.get("/health")).status_code == 200
    async with serve(pkg.main.create_app(broken), raise_app_exceptions=False) as client:
        assert (await client.get("/health")).status_code == 500
