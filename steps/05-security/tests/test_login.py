"""Step 05 checks: the login holds no connection while Argon2 works."""

import uuid
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncEngine

from workshop.testing import serve

STATES = text("SELECT state FROM pg_stat_activity WHERE application_name = :name")


@pytest.mark.exercise("05.1")
async def test_no_connection_is_held_while_the_password_is_checked(
    pkg: ModuleType,
    settings: Any,
    engine: AsyncEngine,
    password: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Argon2 takes a tenth of a second on purpose, plus the wait for a free thread. A login
    that checks the password with the user's read still open keeps a pooled connection "idle
    in transaction" all that while: a burst of logins would hold the pool. Read, end the
    transaction, then check (a known email, a wrong password, an unknown email)."""
    app_name = f"login-{uuid.uuid4().hex[:8]}"
    app = pkg.main.create_app(settings.model_copy(update={"app_name": app_name}))
    email = f"login-{uuid.uuid4().hex[:8]}@example.com"
    seen: list[tuple[int, list[str]]] = []
    real = pkg.routes.auth.verify_password

    async def watched(given: str, hashed: str) -> bool:
        async with engine.connect() as connection:  # the app's connections, from outside
            states = (await connection.scalars(STATES, {"name": app_name})).all()
        seen.append((app.state.engine.pool.checkedout(), list(states)))
        return await real(given, hashed)

    monkeypatch.setattr(pkg.routes.auth, "verify_password", watched)
    try:
        async with serve(app) as client:
            account = {"email": email, "password": password}
            assert (await client.post("/users", json=account)).status_code == 201
            logins = [(email, password, 200), (email, "a wrong password", 401)]
            logins.append((f"nobody-{uuid.uuid4().hex[:8]}@example.com", password, 401))
            for username, given, status in logins:
                form = {"username": username, "password": given}
                assert (await client.post("/auth/token", data=form)).status_code == status
    finally:
        users, attempts = pkg.models.User.__table__, pkg.models.LoginAttempt.__table__
        async with engine.begin() as connection:
            await connection.execute(delete(attempts).where(attempts.c.email == email))
            await connection.execute(delete(users).where(users.c.email == email))
    assert len(seen) == len(logins), "the login checked no password"
    for (checked_out, states), (username, _, _) in zip(seen, logins, strict=True):
        if checked_out or "idle in transaction" in states:
            pytest.fail(
                f"while the password of {username} was checked, the app held {checked_out} "
                f"connection(s) of its pool (server side: {states}): end the transaction that "
                "read the user (commit) before verify_password"
            )
