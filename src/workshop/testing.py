"""Helpers for the steps' tests: serve an app in-process, wait for the database to catch up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

T = TypeVar("T")


@asynccontextmanager
async def serve(
    app: FastAPI, *, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """Start the app's lifespan and yield an HTTP client over it; shut it down on exit.

    With raise_app_exceptions=False, an error in a route is a 500 response, as a real server
    answers, instead of an exception in the test.
    """
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def eventually(
    check: Callable[[], Awaitable[T]], until: Callable[[T], bool], *, within: float = 3.0
) -> T:
    """Call `check` until `until(result)` holds (or `within` seconds pass) and return the result.

    PostgreSQL ends a closed connection's process a moment after the client has gone.
    """
    deadline = time.monotonic() + within
    # Polling on purpose: the server has no event to wait for.
    while not until(result := await check()) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    return result
