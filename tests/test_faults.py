"""Each step's reference under attack: its server connections ended again and again while
clients keep asking. Every request gets an answer, 200 or an honest 503, and the app
recovers by itself once the attack stops. Bounded: a few seconds a step, loopback only."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import psutil
import pytest

from workshop.checks.pgbouncer import missing
from workshop.course import Course, Step
from workshop.postgres import Server
from workshop.postgres.pgbouncer import REQUIRE
from workshop.postgres.pgbouncer_config import QUERY_WAIT_SECONDS, find_pgbouncer

from .faults import (
    Load,
    PrivateServer,
    Served,
    ending_app_connections,
    load,
    pgbouncer_in_front,
    reachable_folder,
    serve_step,
)

# Minutes of attack: CI runs them (`uv run pytest -m exhaustive`), the README's run does not.
pytestmark = pytest.mark.exhaustive

# A request of each step that needs the database (step 05's needs a token too).
REQUESTS = {
    "02": "/health",
    "03": "/items?limit=1",
    "04": "/items?limit=1",
    "05": "/items?limit=1",
    "06": "/items?limit=1",
}
# Step 06 as it is served: 2 workers through PgBouncer (where this machine has one; CI does).
needs_pgbouncer = pytest.mark.skipif(
    find_pgbouncer() is None and not os.environ.get(REQUIRE), reason=missing()
)


async def token_headers(served: Served) -> dict[str, str]:
    """Sign up and log in on step 05's (or 06's) app: its items need a token."""
    account = {"email": "mallory@example.com", "password": "a long enough password"}
    async with httpx.AsyncClient(base_url=served.base_url) as client:
        assert (await client.post("/users", json=account)).status_code == 201
        form = {"username": account["email"], "password": account["password"]}
        token = (await client.post("/auth/token", data=form)).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def until_served(check: Callable[[], Awaitable[int]], within: float) -> float:
    """Seconds until `check` answers 200 (at most `within`)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await check() == 200:
            break
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def private_server() -> Iterator[PrivateServer]:
    with reachable_folder("workshop-private-") as folder:
        server = PrivateServer(folder / "pgdata")
        server.start()
        yield server
        server.stop()


@pytest.mark.parametrize("number", sorted(REQUESTS))
async def test_postgresql_stopped_and_started_again_is_a_fast_503_then_served(
    course: Course, private_server: PrivateServer, number: str
) -> None:
    """PostgreSQL itself stopped (`pg_ctl stop -m fast`) under load, down for a while, then
    started again: every request gets an answer, the 503s come fast (no request waits past
    the connect timeout), and the app serves again by itself, without a restart."""
    connect_timeout = 2.0
    step: Step = course.step(number)
    path = REQUESTS[number]
    server = await asyncio.to_thread(private_server.start)
    async with serve_step(step, server, connect_timeout=str(connect_timeout)) as served:
        headers = await token_headers(served) if number >= "05" else None
        back = 0.0

        async def stop_then_start() -> None:
            nonlocal back
            await asyncio.sleep(0.5)
            await asyncio.to_thread(private_server.stop)
            await asyncio.sleep(1.5)
            await asyncio.to_thread(private_server.start)
            back = time.monotonic()

        seen, _ = await asyncio.gather(
            load(served, lambda c: c.get(path), clients=8, seconds=3, headers=headers),
            stop_then_start(),
        )
        async with httpx.AsyncClient(base_url=served.base_url, headers=headers) as client:
            await until_served(lambda: status_of(client, path), within=5)
        recovery = time.monotonic() - back
        after = await load(served, lambda c: c.get(path), clients=8, seconds=1, headers=headers)
    log = "\n".join(line for line in served.log if "database unavailable" not in line)
    assert not seen.dropped, f"requests left without an answer: {dict(seen.dropped)}\n{log}"
    assert set(seen.statuses) <= {200, 503}, f"{dict(seen.statuses)}\n{log}"
    assert seen.statuses[503] > 0, "PostgreSQL was down, yet no request noticed"
    slowest = max(seen.latencies)
    assert slowest < connect_timeout + 1, f"a request waited {slowest:.1f} s"
    assert recovery < 5, "the app did not serve again once PostgreSQL was back"
    assert set(after.statuses) == {200} and not after.dropped, dict(after.statuses)
    print(
        f"{step.name}: {dict(seen.statuses)} while PostgreSQL restarted, slowest answer "
        f"{slowest:.2f} s, served again {recovery:.2f} s after it was back, "
        f"then {after.statuses[200]} x 200"
    )


@pytest.mark.parametrize("number", sorted(REQUESTS))
async def test_connections_ended_under_load_get_200_or_503_and_recover(
    course: Course, server: Server, number: str
) -> None:
    step: Step = course.step(number)
    path = REQUESTS[number]
    async with serve_step(step, server) as served:
        headers = await token_headers(served) if number >= "05" else None
        async with ending_app_connections(served) as ended:
            seen = await load(served, lambda c: c.get(path), clients=16, seconds=3, headers=headers)
        killed = ended["connections"]
        async with httpx.AsyncClient(base_url=served.base_url, headers=headers) as client:
            recovery = await until_served(lambda: status_of(client, path), within=5)
    log = "\n".join(served.log[-40:])
    assert killed > 0, "the attack ended no connection: it proved nothing"
    assert not seen.dropped, f"requests left without an answer: {dict(seen.dropped)}\n{log}"
    assert set(seen.statuses) <= {200, 503}, f"{dict(seen.statuses)}\n{log}"
    assert seen.statuses[200] > 0
    assert recovery < 5, "the app did not recover by itself after the attack"
    print(
        f"{step.name}: {dict(seen.statuses)}, {killed} connections ended, "
        f"recovered in {recovery:.2f} s"
    )


async def status_of(client: httpx.AsyncClient, path: str) -> int:
    return (await client.get(path)).status_code


@asynccontextmanager
async def locked(served: Served, table: str) -> AsyncIterator[None]:
    """Hold an ACCESS EXCLUSIVE lock on a table, as a long migration would."""
    connection = await asyncpg.connect(served.url.replace("+asyncpg", ""))
    try:
        async with connection.transaction():
            await connection.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await connection.close()


async def test_the_database_away_is_a_fast_503_and_the_app_recovers_by_itself(
    course: Course, server: Server
) -> None:
    """The network to PostgreSQL cut (the server restarting), then back."""
    async with (
        serve_step(course.step("04"), server, proxied=True, connect_timeout="2") as served,
        httpx.AsyncClient(base_url=served.base_url, timeout=30) as client,
    ):
        assert served.proxy is not None
        assert (await client.get("/items")).status_code == 200
        await served.proxy.stop()
        away = [await client.get("/items") for _ in range(5)]
        assert {r.status_code for r in away} == {503}
        assert all(r.headers["Retry-After"] for r in away)
        await served.proxy.start()
        recovery = await until_served(lambda: status_of(client, "/items"), within=5)
    assert recovery < 5, "the app did not serve again once PostgreSQL was back"
    print(f"database away: 5 x 503; served again {recovery:.2f} s after it came back")


async def test_a_locked_table_is_a_504_after_the_statement_timeout(
    course: Course, server: Server
) -> None:
    async with (
        serve_step(course.step("04"), server, statement_timeout="1") as served,
        httpx.AsyncClient(base_url=served.base_url, timeout=30) as client,
    ):
        async with locked(served, "items"):
            response = await client.get("/items")
            assert response.status_code == 504
            assert "items" not in response.text.lower().replace("/items", "")
        assert (await client.get("/items")).status_code == 200  # at once, once it is free


async def test_a_full_pool_is_a_503_with_retry_after_and_no_pile_up(
    course: Course, server: Server
) -> None:
    """One connection, held by a request stuck on a lock: the others wait POOL_TIMEOUT for it,
    then get a 503 that says when to try again; once it is free, everything is served."""
    settings = {"pool_size": "1", "max_overflow": "0", "pool_timeout": "0.5"}
    async with (
        serve_step(course.step("04"), server, statement_timeout="5", **settings) as served,
        httpx.AsyncClient(base_url=served.base_url, timeout=30) as client,
    ):
        async with locked(served, "items"):
            stuck = asyncio.create_task(client.get("/items"))
            await asyncio.sleep(0.3)  # it has the connection, and waits on the lock
            others = await asyncio.gather(*(client.get("/items") for _ in range(8)))
            assert {r.status_code for r in others} == {503}
            assert all(r.headers["Retry-After"] == "1" for r in others)
        assert (await stuck).status_code == 200
        after = await asyncio.gather(*(client.get("/items") for _ in range(8)))
        assert {r.status_code for r in after} == {200}
        assert await served.app_backends() <= 1


async def test_sigterm_lets_a_bulk_create_in_flight_finish_whole(
    course: Course, server: Server
) -> None:
    """A deploy stops the server while a bulk create waits on a lock: the request finishes,
    all of its rows or none are written, and no connection of the app stays on the server."""
    items = [
        {"name": f"bulk item {n}", "price": "1.00"} for n in range(100)
    ]  # the most a bulk create takes
    async with (
        serve_step(course.step("04"), server) as served,
        httpx.AsyncClient(base_url=served.base_url, timeout=30) as client,
    ):
        async with locked(served, "items"):
            bulk = asyncio.create_task(client.post("/items/bulk", json=items))
            await asyncio.sleep(0.3)
            stopping = asyncio.create_task(served.stop())  # SIGTERM, the request in flight
            await asyncio.sleep(0.3)
        response = await bulk
        code = await stopping
        rows = (await served.sql("SELECT count(*) FROM items"))[0][0]
        left = await served.app_backends()
    assert response.status_code == 201, response.text
    assert rows == len(items)
    # uvicorn shuts down gracefully, then exits by the signal it was sent.
    assert code in (0, -signal.SIGTERM), "\n".join(served.log)
    assert left == 0


async def test_load_leaves_the_pool_idle_and_memory_flat(course: Course, server: Server) -> None:
    """Mixed reads and writes, three times over: no 5xx, the app's connections back to idle
    within the pool after each run, and the server process no bigger after the second run."""
    async with serve_step(course.step("04"), server) as served:
        process = psutil.Process(served.process.pid)
        counter = iter(range(10**6))

        async def mixed(client: httpx.AsyncClient) -> httpx.Response:
            n = next(counter)
            if n % 4 == 0:
                return await client.post("/items", json={"name": f"load {n}", "price": "2.50"})
            return await client.get("/items", params={"limit": 20})

        sizes, runs = [], []
        for _ in range(3):
            runs.append(await load(served, mixed, clients=16, seconds=2))
            sizes.append(process.memory_info().rss)
            assert await served.app_backends() <= 20  # POOL_SIZE: the overflow was closed
    for seen in runs:
        assert not seen.dropped and set(seen.statuses) <= {200, 201}, dict(seen.statuses)
    growth = (sizes[2] - sizes[1]) / 2**20
    assert growth < 10, f"the server grew by {growth:.1f} MiB between two equal runs"
    total = sum(r.total for r in runs)
    p99 = max(r.quantile(0.99) for r in runs)
    print(f"load: {total} requests, 0 errors, p99 {p99 * 1000:.0f} ms, growth {growth:.1f} MiB")


# -- step 06 as it is served: 2 workers through PgBouncer ------------------------------------

STEP_06 = "06"


async def attacked_through_pgbouncer(
    served: Served, attack: Callable[[], Awaitable[object]], seconds: float = 3
) -> tuple[Load, float, Load]:
    """Load on step 06's items while `attack` runs beside it; then the seconds until it serves
    again, and a second of load after that."""
    path = REQUESTS[STEP_06]
    headers = await token_headers(served)
    seen, _ = await asyncio.gather(
        load(served, lambda c: c.get(path), clients=16, seconds=seconds, headers=headers),
        attack(),
    )
    async with httpx.AsyncClient(base_url=served.base_url, headers=headers) as client:
        recovery = await until_served(lambda: status_of(client, path), within=15)
    after = await load(served, lambda c: c.get(path), clients=8, seconds=1, headers=headers)
    return seen, recovery, after


def assert_answered_and_recovered(
    name: str, served: Served, seen: Load, recovery: float, after: Load
) -> None:
    log = "\n".join(served.log[-40:])
    assert not seen.dropped, f"requests left without an answer: {dict(seen.dropped)}\n{log}"
    assert set(seen.statuses) <= {200, 503}, f"{dict(seen.statuses)}\n{log}"
    assert recovery < 15, f"the app did not serve again after {name}"
    assert set(after.statuses) == {200} and not after.dropped, dict(after.statuses)
    print(
        f"06 through PgBouncer, {name}: {dict(seen.statuses)}, slowest answer "
        f"{max(seen.latencies):.2f} s, served again within {recovery:.2f} s"
    )


@needs_pgbouncer
async def test_step_06_through_pgbouncer_survives_its_server_connections_ended(
    course: Course, server: Server
) -> None:
    """The server ends PgBouncer's connections to it, every 200 ms, under load."""
    with pgbouncer_in_front(course, server) as bouncer:
        async with serve_step(course.step(STEP_06), server, pgbouncer=bouncer, workers=2) as served:
            ended: Counter[str] = Counter()

            async def attack() -> None:
                async with ending_app_connections(served) as counted:
                    await asyncio.sleep(3)
                ended.update(counted)

            seen, recovery, after = await attacked_through_pgbouncer(served, attack)
            killed = ended["connections"]
    assert killed > 0, "the attack ended no connection: it proved nothing"
    assert seen.statuses[200] > 0
    assert_answered_and_recovered(
        f"{killed} server connections ended", served, seen, recovery, after
    )


@needs_pgbouncer
async def test_step_06_through_pgbouncer_survives_postgresql_stopped_and_started(
    course: Course, private_server: PrivateServer
) -> None:
    """PostgreSQL stopped under load behind PgBouncer, down for a while, started again."""
    server = await asyncio.to_thread(private_server.start)
    with pgbouncer_in_front(course, server) as bouncer:
        async with serve_step(course.step(STEP_06), server, pgbouncer=bouncer, workers=2) as served:

            async def stop_then_start() -> None:
                await asyncio.sleep(0.5)
                await asyncio.to_thread(private_server.stop)
                await asyncio.sleep(1.5)
                await asyncio.to_thread(private_server.start)

            seen, recovery, after = await attacked_through_pgbouncer(served, stop_then_start)
    # Down for 1.5 s: PgBouncer keeps the clients' queries waiting for a server connection
    # (retrying the login each second), so a request either waited across the outage or got
    # its 503; none waits past PgBouncer's query_wait_timeout.
    slowest = max(seen.latencies)
    assert seen.statuses[503] > 0 or slowest >= 1, "PostgreSQL was down, yet no request noticed"
    assert slowest < QUERY_WAIT_SECONDS + 1, f"a request waited {slowest:.1f} s"
    assert_answered_and_recovered("PostgreSQL restarted", served, seen, recovery, after)


@needs_pgbouncer
async def test_step_06_survives_pgbouncer_itself_restarted(course: Course, server: Server) -> None:
    """PgBouncer stopped and started again under load: every client connection of the app's
    pools is gone at once."""
    with pgbouncer_in_front(course, server) as bouncer:
        async with serve_step(course.step(STEP_06), server, pgbouncer=bouncer, workers=2) as served:

            async def restart() -> None:
                await asyncio.sleep(1)
                await asyncio.to_thread(bouncer.restart)

            seen, recovery, after = await attacked_through_pgbouncer(served, restart)
    assert_answered_and_recovered("PgBouncer restarted", served, seen, recovery, after)
