"""Helpers for the steps' tests: serve an app in-process, wait for the database to catch up,
make PostgreSQL fail on purpose."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import URL

if TYPE_CHECKING:  # step 01 has no async engine: importing SQLAlchemy's costs 0.2 s
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")

# The backends of this test's database that wait for a lock, whoever holds it.
LOCK_WAITERS = text(
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


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


@asynccontextmanager
async def serve_from(app: FastAPI, *hosts: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Like `serve`, with one client per host: each one's requests come from its own address
    (the app's `request.client.host`), as from machines of their own."""
    async with LifespanManager(app) as manager, AsyncExitStack() as stack:
        clients = []
        for host in hosts:
            transport = httpx.ASGITransport(app=manager.app, client=(host, 50000))
            client = httpx.AsyncClient(transport=transport, base_url="http://test")
            clients.append(await stack.enter_async_context(client))
        yield clients


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


async def waiting_for_a_lock(engine: AsyncEngine) -> int:
    """How many transactions of this database wait for a lock now: each look in a transaction
    of its own, as PostgreSQL shows a transaction the one view of pg_stat_activity it took
    first."""
    async with engine.connect() as connection:
        return await connection.scalar(LOCK_WAITERS)


def raising(code: str) -> str:
    """A statement that makes PostgreSQL itself answer with the error `code` (SQLSTATE), as a
    test route runs it to see what the app answers."""
    if not (code.isalnum() and len(code) == 5):  # the test's own codes, never a client's
        raise ValueError(f"not a SQLSTATE: {code!r}")
    return f"DO $$ BEGIN RAISE EXCEPTION 'raised by the test' USING ERRCODE = '{code}'; END $$"


class TcpProxy:
    """A hop between an app and PostgreSQL that a test can cut and restore, like a network.

    The app connects to 127.0.0.1:<port>; the proxy forwards to the real server (over TCP, or
    the embedded server's Unix socket). `stop()` drops every connection and refuses new ones,
    as a server that went down; `start()` brings it back on the same port. `async with
    TcpProxy(url) as proxy:` starts it, and stops it at the end.

    `to_server` and `to_client` replace bytes on their way, like a network that tampers:
    `{b"server_version": b"no_such_settin"}` makes the server refuse a query, a made-up version
    in what the server says makes it look like another server. A replacement keeps the length
    (the protocol counts bytes) and is made within what one read brings, which on a local
    connection is the whole of a message this short.
    """

    def __init__(
        self,
        target: URL,
        *,
        to_server: Mapping[bytes, bytes] | None = None,
        to_client: Mapping[bytes, bytes] | None = None,
    ) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.to_server = dict(to_server or {})
        self.to_client = dict(to_client or {})
        for old, new in [*self.to_server.items(), *self.to_client.items()]:
            if len(old) != len(new):
                raise ValueError(f"{old!r} and {new!r}: a replacement must keep the length")

    @property
    def url(self) -> str:
        """The target's URL, pointed at the proxy."""
        url = self.target.set(host="127.0.0.1", port=self.port)
        url = url.difference_update_query(["host"])
        return url.render_as_string(hide_password=False)

    async def _open_target(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if socket_dir := self.target.query.get("host"):
            socket_path = f"{socket_dir}/.s.PGSQL.{self.target.port or 5432}"
            return await asyncio.open_unix_connection(socket_path)
        return await asyncio.open_connection(self.target.host, self.target.port or 5432)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        replace: Mapping[bytes, bytes] | None = None,
    ) -> None:
        try:
            while data := await reader.read(65536):
                for old, new in (replace or {}).items():
                    data = data.replace(old, new)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await self._open_target()
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(
            self._pipe(reader, upstream_writer, self.to_server),
            self._pipe(upstream_reader, writer, self.to_client),
        )

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        await self._server.wait_closed()
