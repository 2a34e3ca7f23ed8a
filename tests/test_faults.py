"""Each step's reference under attack: its server connections ended again and again while
clients keep asking. Every request gets an answer, 200 or an honest 503, and the app
recovers by itself once the attack stops. Bounded: a few seconds a step, loopback only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest

from workshop.course import Course, Step
from workshop.database import Server

from .faults import Served, load, serve_step

# A request of each step that needs the database (step 05's needs a token too).
REQUESTS = {
    "02": "/health",
    "03": "/items?limit=1",
    "04": "/items?limit=1",
    "05": "/items?limit=1",
}


async def token_headers(served: Served) -> dict[str, str]:
    """Sign up and log in on step 05's app: its items need a token."""
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


@pytest.mark.parametrize("number", sorted(REQUESTS))
async def test_connections_ended_under_load_get_200_or_503_and_recover(
    course: Course, server: Server, number: str
) -> None:
    step: Step = course.step(number)
    path = REQUESTS[number]
    async with serve_step(step, server) as served:
        headers = await token_headers(served) if number == "05" else None
        stop = asyncio.Event()
        killed = 0

        async def kill_every_200_ms() -> None:
            nonlocal killed
            while not stop.is_set():
                await asyncio.sleep(0.2)
                killed += await served.kill_app_backends()

        killer = asyncio.create_task(kill_every_200_ms())
        seen = await load(served, lambda c: c.get(path), clients=16, seconds=3, headers=headers)
        stop.set()
        await killer
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
