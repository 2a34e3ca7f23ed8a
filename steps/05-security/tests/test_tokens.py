"""Step 05 checks: tokens are signed, checked in full, and a bad one is a 401."""

import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from types import ModuleType
from typing import Any

import httpx
import jwt
import pytest
from jwt.algorithms import Algorithm, requires_cryptography
from jwt.api_jws import get_algorithm_by_name, register_algorithm, unregister_algorithm
from jwt.utils import base64url_encode
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
    "signed with HS384": {"algorithm": "HS384"},
    # A clock that is wrong, or a forger's: a token is never issued in the future.
    "issued in the future": {"iat": int(time.time()) + 3600, "exp": int(time.time()) + 7200},
}


@pytest.mark.exercise("05.2")
@pytest.mark.parametrize("change", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_decode_refuses_a_bad_token(
    pkg: ModuleType,
    settings: Any,
    token: Callable[..., str],
    change: dict[str, Any],
    logs: Callable[[], str],
) -> None:
    key = settings.secret_key.get_secret_value()
    bad = token(7, **change)
    with pytest.raises(jwt.InvalidTokenError):
        pkg.security.decode_token(bad, settings=settings, key=key)
    # A refused token may still be good elsewhere (another API's, or one a moment from
    # expiring): like a password, it is a key, and never goes into a log.
    if bad in logs():
        pytest.fail("decode_token logged (or printed) the token it refused")


@pytest.mark.exercise("05.2")
def test_only_the_configured_audience_is_accepted(
    pkg: ModuleType, settings: Any, token: Callable[..., str]
) -> None:
    """TOKEN_AUDIENCE names this API, and only its tokens are accepted: a token for any other
    API, the default "workshop-api" included, is refused."""
    settings = settings.model_copy(update={"token_audience": "reports-api"})
    key = settings.secret_key.get_secret_value()
    assert pkg.security.decode_token(token(7, aud="reports-api"), settings=settings, key=key) == 7
    for other in ("workshop-api", "billing-api"):
        with pytest.raises(jwt.InvalidTokenError):
            pkg.security.decode_token(token(7, aud=other), settings=settings, key=key)


class AnySignature(Algorithm):
    """A verifier that accepts every signature: what an algorithm other than ours amounts to
    once the token may choose it (a public key everybody has read as an HMAC secret, or our
    secret read as a key it is not)."""

    def prepare_key(self, key: Any) -> Any:
        return key

    def sign(self, msg: bytes, key: Any) -> bytes:
        return b"forged"

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        return True

    @staticmethod
    def to_jwk(key_obj: Any, as_dict: bool = False) -> Any:
        raise NotImplementedError

    @staticmethod
    def from_jwk(jwk: Any) -> Any:
        raise NotImplementedError


# Every algorithm PyJWT knows but ours: with `cryptography` installed, it verifies RS256,
# ES256, EdDSA and the others too.
OTHER_ALGORITHMS = sorted({"HS384", "HS512", "none"} | requires_cryptography)


@contextmanager
def other_algorithms_accepting_any_signature() -> Iterator[None]:
    """PyJWT's verifiers of every other algorithm replaced by AnySignature, then put back."""
    saved = {}
    for name in OTHER_ALGORITHMS:
        try:
            saved[name] = get_algorithm_by_name(name)
            unregister_algorithm(name)
        except NotImplementedError:  # one that needs `cryptography`, which is not installed
            pass
        register_algorithm(name, AnySignature())
    try:
        yield
    finally:
        for name in OTHER_ALGORITHMS:
            unregister_algorithm(name)
            if name in saved:
                register_algorithm(name, saved[name])


def signed_as(algorithm: str) -> str:
    """A token whose header names the algorithm, with good claims and a made-up signature."""
    now = int(time.time())
    header = {"alg": algorithm, "typ": "JWT"}
    claims = {"sub": "7", "aud": "workshop-api", "iat": now, "exp": now + 300}
    parts = [base64url_encode(json.dumps(part).encode()) for part in (header, claims)]
    return b".".join([*parts, base64url_encode(b"forged")]).decode()


@pytest.mark.exercise("05.2")
def test_only_hs256_is_trusted(pkg: ModuleType, settings: Any) -> None:
    """The token's header names its algorithm, and an attacker writes the header: a verifier
    that accepts a second algorithm lets the token choose how it is checked (RFC 8725, 2.1).
    Here every other algorithm's verifier says yes to anything; each such token must still be
    refused, by its algorithm's name alone."""
    key = settings.secret_key.get_secret_value()
    accepted = []
    with other_algorithms_accepting_any_signature():
        for algorithm in OTHER_ALGORITHMS:
            try:
                pkg.security.decode_token(signed_as(algorithm), settings=settings, key=key)
            except jwt.InvalidTokenError:
                continue
            accepted.append(algorithm)
    if accepted:
        pytest.fail(
            f"a token signed with {', '.join(accepted)} is accepted: allow HS256 and nothing "
            "else (algorithms=[ALGORITHM])"
        )


# A server's local time zone, as POSIX TZ strings that need no time-zone database: "EST+5" is
# 5 hours behind UTC (New York in winter), "JST-9" 9 hours ahead (Tokyo). Only a process that
# can change its own zone (time.tzset: every system but Windows) tries them.
ZONES = {"new-york": ("EST+5", -5), "tokyo": ("JST-9", 9)} if hasattr(time, "tzset") else {}


@pytest.fixture(params=["here", *ZONES])
def server_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    """The process's local time zone, for one test: this machine's, New York's or Tokyo's."""
    if request.param == "here":
        yield "on this machine"
        return
    zone, hours = ZONES[request.param]
    before = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        assert datetime.now().astimezone().utcoffset().total_seconds() == hours * 3600  # type: ignore[union-attr]
        yield f"in {request.param} (UTC{hours:+d})"
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.mark.exercise("05.2")
def test_a_fresh_token_is_valid_in_any_time_zone(
    pkg: ModuleType, settings: Any, server_zone: str
) -> None:
    """A JWT's times are seconds since 1970 in UTC, and PyJWT reads a naive datetime as UTC.
    datetime.now() without a zone is the server's local time: right only on a server set to
    UTC. In New York every token would be born expired; in Tokyo, not valid for 9 hours."""
    key = settings.secret_key.get_secret_value()
    token = pkg.security.create_access_token(user_id=42, settings=settings, key=key)
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"], audience="workshop-api")
    except jwt.InvalidTokenError as exc:
        pytest.fail(
            f"a token made {server_zone} is refused at once ({exc}): take the time with its "
            "zone, datetime.now(UTC)"
        )
    assert abs(claims["iat"] - time.time()) < 60, f"iat is not now, {server_zone}"
    assert pkg.security.decode_token(token, settings=settings, key=key) == 42


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    return f"{header}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}"


def said(response: httpx.Response) -> dict[str, Any]:
    """An error's body but for its request id, which is every request's own."""
    return {k: v for k, v in response.json().items() if k != "request_id"}


@pytest.mark.exercise("05.3")
async def test_a_bad_token_is_a_401(
    client: httpx.AsyncClient,
    session: AsyncSession,
    add_user: Any,
    token: Callable[..., str],
    logs: Callable[[], str],
) -> None:
    """Every bad token gets the same 401 as no token at all: the client learns that its token
    is no good, not why (expired? which key? whose id?), and nothing of it is logged."""
    user, disabled = await add_user(), await add_user(is_active=False)
    bad = [token(user.id, **change) for change in BAD_TOKENS.values()]
    bad += [tampered(token(user.id)), token(2_000_000_000), token(disabled.id), "not-a-jwt"]
    none = await client.get("/users/me")  # no token at all
    assert none.status_code == 401
    for value in bad:
        response = await client.get("/users/me", headers={"Authorization": f"Bearer {value}"})
        assert response.status_code == 401, value
        assert response.headers["WWW-Authenticate"] == "Bearer"
        if said(response) != said(none):
            pytest.fail(
                "a bad token's 401 says more than a missing token's: answer every bad token "
                "with UNAUTHORIZED, not with why it failed"
            )
    written = logs()
    if any(value in written for value in bad):
        pytest.fail("a token was logged (or printed): a token is a key, never log one")


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
