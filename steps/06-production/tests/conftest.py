"""Step 06's test helpers: users made straight in the database, tokens made by the test, a gate
in front of Argon2, and client addresses of each test's own.

They use pwdlib, argon2-cffi and PyJWT themselves, not the step's code, so each exercise's
tests fail on that exercise alone.
"""

import asyncio
import gc
import itertools
import threading
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from types import ModuleType, SimpleNamespace
from typing import Any

import argon2
import jwt
import pytest
from sqlalchemy import delete, insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from workshop.testing import TcpProxy

SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789-abcdef"
PASSWORD = "correct horse battery staple"
# PASSWORD's Argon2id hash with pwdlib's defaults, made once: a hash costs a tenth of a second.
HASHED = (
    "$argon2id$v=19$m=65536,t=3,p=4$K9EoiXTf/4Ncd2UasjntMQ$"
    "E4phewtShyKJ43durSZNcxYoonLAoVR96Af8DOLb598"
)
# Every test's requests come from 127.0.0.1 unless it says otherwise, and the database keeps
# their attempts for a window: the per-address limit is set out of reach, except in the
# tests of that limit, which use addresses of their own.
UNLIMITED = 1_000_000
# Addresses kept for documentation (RFC 5737, 198.51.100.0/24), one per call in this session.
_addresses = (f"198.51.100.{n}" for n in itertools.cycle(range(1, 255)))


@pytest.fixture
def settings(pkg: ModuleType, app_database_url: str) -> Any:
    """The step's settings, with a real secret key and no per-address limit in the way."""
    return pkg.config.Settings(
        _env_file=None,
        database_url=app_database_url,
        secret_key=SECRET,
        address_attempts=UNLIMITED,
    )


@pytest.fixture
def address() -> Callable[[], str]:
    """A client address no other test of the session uses at the same time."""
    return lambda: next(_addresses)


def make_token(user_id: int | str, **changes: Any) -> str:
    now = datetime.now(UTC)
    claims = {"sub": str(user_id), "aud": "workshop-api", "iat": now}
    claims["exp"] = now + timedelta(minutes=5)
    claims.update(changes)
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture
def auth() -> Callable[[Any], dict[str, str]]:
    """The Authorization header of a user's valid token."""
    return lambda user: {"Authorization": f"Bearer {make_token(user.id)}"}


@pytest.fixture
def password() -> str:
    """Every test user's password."""
    return PASSWORD


@pytest.fixture
async def committed_user(
    pkg: ModuleType, engine: AsyncEngine
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Make a user (password PASSWORD), committed for real: the app's own pool cannot see the
    test's session. Deleted at the end, with their items and their login attempts."""
    users, attempts = pkg.models.User.__table__, pkg.models.LoginAttempt.__table__
    made: list[Any] = []

    async def make() -> Any:
        email = f"user-{uuid.uuid4().hex[:10]}@example.com"
        # Through the model: the column's name in the database is the model's business.
        model = pkg.models.User
        new = insert(model).values(email=email, hashed_password=HASHED).returning(model.id)
        async with engine.begin() as connection:
            user = SimpleNamespace(id=await connection.scalar(new), email=email)
        made.append(user)
        return user

    yield make
    if made:
        async with engine.begin() as connection:
            emails = [user.email for user in made]
            await connection.execute(delete(attempts).where(attempts.c.email.in_(emails)))
            await connection.execute(delete(users).where(users.c.id.in_([u.id for u in made])))


class Gate:
    """Every Argon2 hash and check of the app waits here until the test opens the gate; the
    gate counts how many wait (run) at once. In argon2-cffi, under pwdlib: what skips Argon2
    is not counted."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.done = 0

    def enter(self) -> None:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        # Bounded: a test that never opens the gate fails instead of hanging.
        self.open.wait(timeout=30)

    def leave(self) -> None:
        with self.lock:
            self.running -= 1
            self.done += 1


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    """Argon2 behind a gate the test opens (see Gate)."""
    found = Gate()
    for method in ("hash", "verify"):
        real = getattr(argon2.PasswordHasher, method)

        def gated(*args: Any, _real: Any = real, **kw: Any) -> Any:
            found.enter()
            try:
                return _real(*args, **kw)
            finally:
                found.leave()

        monkeypatch.setattr(argon2.PasswordHasher, method, gated)
    yield found
    found.open.set()  # never leave a thread waiting


class Hop(TcpProxy):
    """A hop between the app and PostgreSQL (workshop.testing's TcpProxy) that counts the
    connections opened through it, and can freeze: bytes stop flowing both ways on the
    connections already open, as a server that accepted them and then hangs."""

    def __init__(self, target: URL) -> None:
        super().__init__(target)
        self.opened = 0
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        await super()._serve(reader, writer)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        replace: Mapping[bytes, bytes] | None = None,
    ) -> None:
        try:
            while data := await reader.read(65536):
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def hop(app_database_url: str) -> AsyncIterator[Hop]:
    """A Hop in front of the test database, as the app's role; `hop.url` is the app's URL
    through it. Cut at the end (the app's connections through it drop)."""
    async with Hop(make_url(app_database_url)) as started:
        yield started


@pytest.fixture(autouse=True)
def collect_cancelled_connections() -> Iterator[None]:
    """A connect cut short by a timeout (the probe's READINESS_TIMEOUT, on purpose; any
    connect on a busy machine) can leave asyncpg's connection object unclosed, and its
    warning would then be raised in whatever test the garbage collector runs in (warnings are
    errors there). Collected here, after each test, with that one warning let through quietly."""
    yield
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "unclosed connection", ResourceWarning)
        gc.collect()
