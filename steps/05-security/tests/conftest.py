"""Step 05's test helpers: users made straight in the database, and tokens made by the test.

They use pwdlib and PyJWT themselves, not the step's code, so each exercise's tests fail on
that exercise alone.
"""

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from types import ModuleType, SimpleNamespace
from typing import Any

import argon2
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

# 64 characters or more: long enough for HS512 too (a test signs a token with it).
SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789-abcdef"
PASSWORD = "correct horse battery staple"
# PASSWORD's Argon2id hash, made once with pwdlib's defaults (`PasswordHash.recommended()`)
# and kept: a hash costs a tenth of a second on purpose, and every check would pay it again.
HASHED = (
    "$argon2id$v=19$m=65536,t=3,p=4$K9EoiXTf/4Ncd2UasjntMQ$"
    "E4phewtShyKJ43durSZNcxYoonLAoVR96Af8DOLb598"
)


@pytest.fixture
def settings(pkg: ModuleType, app_database_url: str) -> Any:
    """The step's settings, with a real secret key (the app refuses to start without one)."""
    return pkg.config.Settings(_env_file=None, database_url=app_database_url, secret_key=SECRET)


def make_token(user_id: int | str, **changes: Any) -> str:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "aud": "workshop-api",
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    claims.update(changes)
    key = claims.pop("key", SECRET)
    algorithm = claims.pop("algorithm", "HS256")
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm=algorithm)


@pytest.fixture
def token() -> Callable[..., str]:
    """A token as the app should issue it; keyword arguments replace claims (None drops one;
    `key` and `algorithm` change the signature)."""
    return make_token


@pytest.fixture
def auth() -> Callable[[Any], dict[str, str]]:
    """The Authorization header of a user's valid token."""
    return lambda user: {"Authorization": f"Bearer {make_token(user.id)}"}


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every Argon2 hash or verify the app runs from now on, by method name: counted in
    argon2-cffi, under pwdlib, so work that skips Argon2 counts as none."""
    counted: list[str] = []
    for method in ("hash", "verify"):
        real = getattr(argon2.PasswordHasher, method)

        def counting(*args: Any, _method: str = method, _real: Any = real, **kw: Any) -> Any:
            counted.append(_method)
            return _real(*args, **kw)

        monkeypatch.setattr(argon2.PasswordHasher, method, counting)
    return counted


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Callable[[], str]:
    """Everything logged (at any level) or printed from now on, as text: a password or a
    token in it would reach whoever reads the logs, and every copy of them."""
    caplog.set_level(logging.DEBUG)
    return lambda: caplog.text + "".join(capsys.readouterr())


@pytest.fixture
def hashed_password() -> str:
    """The Argon2id hash of every test user's password."""
    return HASHED


@pytest.fixture
def password() -> str:
    """Every test user's password."""
    return PASSWORD


@pytest.fixture
def add_user(pkg: ModuleType, session: AsyncSession) -> Callable[..., Any]:
    """Make a user (password PASSWORD) in the test's session."""

    async def add(**fields: Any) -> Any:
        email = f"user-{uuid.uuid4().hex[:10]}@example.com"
        user = pkg.models.User(**{"email": email, "hashed_password": HASHED, **fields})
        session.add(user)
        await session.commit()
        return user

    return add


@pytest.fixture
def add_item(pkg: ModuleType, session: AsyncSession) -> Callable[..., Any]:
    """Make an item of a user's in the test's session."""

    async def add(owner: Any, **fields: Any) -> Any:
        name = f"Item {uuid.uuid4().hex[:8]}"
        item = pkg.models.Item(**{"name": name, "price": 1, "owner_id": owner.id, **fields})
        session.add(item)
        await session.commit()
        return item

    return add


@pytest.fixture
async def committed_user(engine: AsyncEngine) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Make a user, with `items` items of theirs, committed for real: the app's own pool cannot
    see the test's session, which is rolled back. Deleted at the end, their items with them."""
    made: list[int] = []

    async def make(items: int = 0) -> Any:
        email = f"pool-{uuid.uuid4().hex[:8]}@example.com"
        insert = text("INSERT INTO users (email, hashed_password) VALUES (:e, 'x') RETURNING id")
        add = text("INSERT INTO items (name, price, owner_id) VALUES (:n, 1, :o) RETURNING id")
        async with engine.begin() as connection:
            user = SimpleNamespace(id=await connection.scalar(insert, {"e": email}), items=[])
            made.append(user.id)
            for n in range(items):
                user.items.append(await connection.scalar(add, {"n": f"Item {n}", "o": user.id}))
        return user

    yield make
    if made:
        async with engine.begin() as connection:  # and their items, by cascade
            await connection.execute(text("DELETE FROM users WHERE id = ANY(:ids)"), {"ids": made})
