"""Step 06 checks (06.3): /livez says the process is up without asking the database; /readyz
asks it, through a pool of its own, for READINESS_TIMEOUT at most."""

import asyncio
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import event

from workshop.testing import serve

NOWHERE = SecretStr("postgresql+asyncpg://workshop:workshop@127.0.0.1:9/workshop")  # discard


def statements_of(app: Any) -> Iterator[list[str]]:
    """The SQL run on the app's engines (the requests' and the probe's) from now on."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engines = [app.state.engine.sync_engine, app.state.readiness_engine.sync_engine]
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    yield seen
    for engine in engines:
        event.remove(engine, "before_cursor_execute", record)


@pytest.mark.exercise("06.3")
async def test_livez_answers_with_the_database_down(pkg: ModuleType, settings: Any) -> None:
    """A database that is down is no reason to restart the app: restarted, it comes back to
    the same database, down, and every instance restarts at once."""
    app = pkg.main.create_app(settings.model_copy(update={"database_url": NOWHERE}))
    async with serve(app, raise_app_exceptions=False) as client:
        response = await client.get("/livez")
    if response.status_code != 200:
        pytest.fail(
            f"/livez answered {response.status_code} with PostgreSQL unreachable: liveness "
            "is the process's own health, so ask the database nothing"
        )
    assert response.json() == {"status": "ok"}


@pytest.mark.exercise("06.3")
async def test_livez_runs_no_sql(pkg: ModuleType, settings: Any) -> None:
    app = pkg.main.create_app(settings)
    async with serve(app, raise_app_exceptions=False) as client:
        for seen in statements_of(app):  # noqa: B007 (read after the loop)
            response = await client.get("/livez")
    assert response.status_code == 200, response.text
    if seen:
        pytest.fail(f"/livez ran SQL ({seen[0]!r}): a liveness probe asks the database nothing")


@pytest.mark.exercise("06.3")
async def test_readyz_says_whether_postgresql_answers(pkg: ModuleType, settings: Any) -> None:
    async with serve(pkg.main.create_app(settings)) as client:
        up = await client.get("/readyz")
    app = pkg.main.create_app(settings.model_copy(update={"database_url": NOWHERE}))
    async with serve(app, raise_app_exceptions=False) as client:
        down = await client.get("/readyz")
    assert up.status_code == 200, up.text
    assert up.json() == {"status": "ok"}
    if down.status_code != 503:
        pytest.fail(
            f"/readyz answered {down.status_code} with PostgreSQL unreachable: a worker that "
            "cannot reach its database is not ready (503, and the load balancer sends it "
            "nothing until it is)"
        )
    assert down.json() == {"status": "unavailable"}


@pytest.mark.exercise("06.3")
async def test_probes_answer_while_every_connection_is_taken(
    pkg: ModuleType, settings: Any
) -> None:
    """The requests' pool saturated (its one turn and its one connection held, POOL_TIMEOUT
    long): the worker is busy, not broken. /readyz asks through its own pool and says ok at
    once; waiting in the requests' line, it would fail after POOL_TIMEOUT, and every worker of
    a saturated service would leave the load balancer at once."""
    pool_timeout = 4.0
    small = {"pool_size": 1, "max_overflow": 0, "pool_timeout": pool_timeout}
    app = pkg.main.create_app(settings.model_copy(update=small))
    async with (
        serve(app, raise_app_exceptions=False) as client,
        pkg.db.turn_for_a_connection(app.state),
        app.state.engine.connect(),
    ):
        started = time.monotonic()
        try:
            ready = await asyncio.wait_for(client.get("/readyz"), timeout=pool_timeout / 2)
            live = await asyncio.wait_for(client.get("/livez"), timeout=pool_timeout / 2)
        except TimeoutError:
            pytest.fail(
                "a probe waited behind the requests for the pool's connection: /readyz asks "
                "through app.state.readiness_engine, and /livez asks nothing"
            )
        print(f"/readyz and /livez with the pool saturated: {time.monotonic() - started:.3f} s")
    assert ready.status_code == 200, ready.text
    assert live.status_code == 200, live.text


@pytest.mark.exercise("06.3")
async def test_readyz_gives_up_after_readiness_timeout(
    pkg: ModuleType, settings: Any, hop: Any
) -> None:
    """A server that accepted the connection and then hangs (a frozen network, a stuck
    server): /readyz answers 503 after READINESS_TIMEOUT, not after the client's patience.
    The connect timeout is far longer here, so only the probe's own bound can answer."""
    readiness_timeout = 0.3
    slow = {
        "database_url": SecretStr(hop.url),
        "readiness_timeout": readiness_timeout,
        "connect_timeout": 30.0,
    }
    app = pkg.main.create_app(settings.model_copy(update=slow))
    async with serve(app, raise_app_exceptions=False) as client:
        assert (await client.get("/readyz")).status_code == 200
        hop.flowing.clear()  # PostgreSQL stops answering
        started = time.monotonic()
        try:
            response = await asyncio.wait_for(client.get("/readyz"), timeout=5.0)
        except TimeoutError:
            pytest.fail(
                "/readyz did not answer within 5 s while PostgreSQL did not answer: bound "
                "the question with asyncio.timeout(settings.readiness_timeout)"
            )
        finally:
            waited = time.monotonic() - started
            await hop.stop()  # the frozen connections drop: the app can shut down
    print(f"/readyz with PostgreSQL frozen: {response.status_code} after {waited:.3f} s")
    assert response.status_code == 503, response.text
    assert response.json() == {"status": "unavailable"}


@pytest.mark.exercise("06.3")
async def test_a_flood_of_probes_opens_no_more_than_the_probes_budget(
    pkg: ModuleType, settings: Any, hop: Any
) -> None:
    """Twenty probes at once (a few load balancers, an orchestrator, a curious operator): the
    worker opens at most READINESS_CONNECTIONS connections for them, the budget 06.1 counts.
    A new connection per probe would spend connections no budget holds."""
    app = pkg.main.create_app(settings.model_copy(update={"database_url": SecretStr(hop.url)}))
    async with serve(app, raise_app_exceptions=False) as client:
        answers = await asyncio.gather(*(client.get("/readyz") for _ in range(20)))
    codes = [answer.status_code for answer in answers]
    assert set(codes) <= {200, 503} and 200 in codes, codes
    if hop.opened > settings.readiness_connections:
        pytest.fail(
            f"20 probes opened {hop.opened} connections, more than READINESS_CONNECTIONS "
            f"({settings.readiness_connections}): ask through app.state.readiness_engine"
        )


@pytest.mark.exercise("06.3")
async def test_readyz_says_ok_again_when_postgresql_is_back(
    pkg: ModuleType, settings: Any, hop: Any
) -> None:
    """PostgreSQL goes away (every connection cut, new ones refused) and comes back: /readyz
    says 503, then 200 again, with no restart of the app: the probe's pool replaces the
    connection it lost."""
    app = pkg.main.create_app(settings.model_copy(update={"database_url": SecretStr(hop.url)}))
    async with serve(app, raise_app_exceptions=False) as client:
        before = (await client.get("/readyz")).status_code
        await hop.stop()
        during = (await client.get("/readyz")).status_code
        await hop.start()
        after = (await client.get("/readyz")).status_code
    assert (before, during) == (200, 503)
    if after != 200:
        pytest.fail(
            f"PostgreSQL was back, and /readyz answered {after}: ask through the probe's pool, "
            "which replaces a connection it finds dead"
        )
