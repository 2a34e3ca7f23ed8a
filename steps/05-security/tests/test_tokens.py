"""Step 05 checks: tokens are signed, checked in full, and a bad one is a 401."""

import secrets
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncSession


@pytest.mark.exercise("05.2")
@pytest.mark.parametrize(("minutes", "audience"), [(30, "workshop-api"), (7, "reports-api")])
def test_a_token_carries_sub_aud_iat_and_exp(
    pkg: ModuleType, settings: Any, minutes: int, audience: str
) -> None:
    """The lifetime and the audience come from the settings, whatever they say; the signature
    from the key the app is given (in dev mode, a random one: not settings.secret_key)."""
    settings = settings.model_copy(
        update={"access_token_minutes": minutes, "token_audience": audience}
    )
    key = secrets.token_urlsafe(32)
    token = pkg.security.create_access_token(user_id=42, settings=settings, key=key)
    claims = jwt.decode(token, key, algorithms=["HS256"], audience=audience)
    assert claims["sub"] == "42"
    assert abs(claims["iat"] - time.time()) < 60  # issued now
    assert minutes * 60 - 1 <= claims["exp"] - claims["iat"] <= minutes * 60 + 1
    assert pkg.security.decode_token(token, settings=settings, key=key) == 42


BAD_TOKENS: dict[str, dict[str, Any]] = {
    "expired": {"exp": int(time.time()) - 10},
    "signed with another key": {"key": "another-secret-0123456789-abcdefghijklmn"},
    "for another audience": {"aud": "someone-else"},
    "without an expiry": {"exp": None},
    "without an issued-at": {"iat": None},
    "without a subject": {"sub": None},
    "with a sub that is no id": {"sub": "admin"},
    "with a sub past the id column's range": {"sub": str(2**31)},
    "with alg none": {"algorithm": "none", "key": None},
    "signed with HS512": {"algorithm": "HS512"},  # our key, but not our algorithm
}


@pytest.mark.exercise("05.2")
@pytest.mark.parametrize("change", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_decode_refuses_a_bad_token(
    pkg: ModuleType, settings: Any, token: Callable[..., str], change: dict[str, Any]
) -> None:
    key = settings.secret_key.get_secret_value()
    with pytest.raises(jwt.InvalidTokenError):
        pkg.security.decode_token(token(7, **change), settings=settings, key=key)


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    return f"{header}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}"


@pytest.mark.exercise("05.3")
async def test_a_bad_token_is_a_401(
    client: httpx.AsyncClient, session: AsyncSession, add_user: Any, token: Callable[..., str]
) -> None:
    user = await add_user()
    bad = [token(user.id, **change) for change in BAD_TOKENS.values()]
    bad += [tampered(token(user.id)), token(2_000_000_000), "not-a-jwt"]
    for value in bad:
        response = await client.get("/users/me", headers={"Authorization": f"Bearer {value}"})
        assert response.status_code == 401, value
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert (await client.get("/users/me")).status_code == 401  # no token at all


@pytest.mark.exercise("05.3")
async def test_a_disabled_users_token_is_worth_nothing(
    client: httpx.AsyncClient, add_user: Any, auth: Callable[[Any], dict[str, str]]
) -> None:
    user = await add_user(is_active=False)
    assert (await client.get("/users/me", headers=auth(user))).status_code == 401


@pytest.mark.exercise("05.1")
@pytest.mark.exercise("05.2")
@pytest.mark.exercise("05.3")
async def test_log_in_then_ask_who_i_am(
    client: httpx.AsyncClient, add_user: Any, password: str
) -> None:
    user = await add_user()
    response = await client.post("/auth/token", data={"username": user.email, "password": password})
    assert response.status_code == 200 and response.json()["token_type"] == "bearer"
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    me = await client.get("/users/me", headers=headers)
    assert me.status_code == 200 and me.json()["email"] == user.email
