"""Who is asking: passwords hashed with Argon2id, bearer tokens signed with the app's key.

As FastAPI's security tutorial does it, with pwdlib and PyJWT, and OWASP's advice on top.
"""

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import String, cast, func, select
from starlette.datastructures import State

from .config import Settings
from .db import SessionDep
from .models import User

# Argon2id with pwdlib's defaults (64 MiB, 3 passes: above OWASP's minimum): about a tenth
# of a second a hash, on purpose.
password_hash = PasswordHash((Argon2Hasher(),))
# Checked against when the email is unknown, so that answer takes as long as a wrong password.
DUMMY_HASH = password_hash.hash(secrets.token_urlsafe(16))
EXAMPLE_SECRETS = {"change-me", "changeme", "secret", "your-secret-key"}
ALGORITHM = "HS256"
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token")


# --8<-- [start:key]
def signing_key(settings: Settings) -> str:
    """The key that signs tokens; the app refuses to start without a real one."""
    secret = settings.secret_key.get_secret_value() if settings.secret_key else ""
    if not secret and settings.dev_mode:
        return secrets.token_urlsafe(32)  # development only: tokens die with the process
    if len(secret) < 32 or secret.lower() in EXAMPLE_SECRETS:
        # Say what is wrong, never the value.
        raise RuntimeError(
            "SECRET_KEY must be set to 32 or more random characters, e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` "
            "(or set DEV_MODE=true on your own machine)."
        )
    return secret


# --8<-- [end:key]


# --8<-- [start:passwords]
async def hash_password(password: str) -> str:
    """An Argon2id hash of the password, salted: never store the password itself."""
    # Hashing is slow on purpose (it is what makes guessing slow): off the event loop with it.
    return await asyncio.to_thread(password_hash.hash, password)


async def verify_password(password: str, hashed: str) -> bool:
    """Whether the password matches the hash; in constant time, in a thread."""
    return await asyncio.to_thread(password_hash.verify, password, hashed)


# --8<-- [end:passwords]


# --8<-- [start:busy]
BUSY = HTTPException(
    status.HTTP_503_SERVICE_UNAVAILABLE,
    "Too many passwords are being checked right now. Try again in a moment.",
    headers={"Retry-After": "1"},
)
# --8<-- [end:busy]


# --8<-- [start:argon2-slot]
async def take_argon2_slot(state: State) -> None:
    """Take one of this worker's ARGON2_CONCURRENCY slots, or raise BUSY (a 503) at once."""
    # EXERCISE 06.4: take a free slot of state.argon2_slots, or raise BUSY without waiting
    # A line that waits would grow without end under a flood, each waiter holding a request
    # open: refused at once, a client retries after Retry-After, and the worker keeps serving.
    if state.argon2_slots.locked():
        raise BUSY
    await state.argon2_slots.acquire()  # one is free: acquire() returns at once
    # END EXERCISE


# --8<-- [end:argon2-slot]


# --8<-- [start:password-work]
async def password_work(request: Request) -> AsyncIterator[None]:
    """For the routes that run Argon2: a slot before any other work, for the whole route."""
    await take_argon2_slot(request.app.state)
    try:
        yield
    finally:
        request.app.state.argon2_slots.release()


# scope="function": the slot is given back as soon as the route returns.
PasswordWork = Depends(password_work, scope="function")
# --8<-- [end:password-work]


def client_address(request: Request) -> str:
    """The client's address, as the limits count it. Behind a proxy, uvicorn's --proxy-headers
    and --forwarded-allow-ips decide whether it is the client's or the proxy's (one for all)."""
    return request.client.host[:64] if request.client else ""


# --8<-- [start:tokens]
def create_access_token(*, user_id: int, settings: Settings, key: str) -> str:
    """A signed token that says who the user is, for whom, and until when."""
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),  # the subject: JWT wants a string
        "aud": settings.token_audience,  # the API it is for: another API's token won't do
        "iat": now,
        "exp": now + timedelta(minutes=settings.access_token_minutes),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def decode_token(token: str, *, settings: Settings, key: str) -> int:
    """The user id a token carries; jwt.InvalidTokenError when it is not one of ours."""
    # algorithms=[HS256]: a token that says "alg": "none" (or anything else) is refused.
    claims = jwt.decode(
        token,
        key,
        algorithms=[ALGORITHM],
        audience=settings.token_audience,
        options={"require": ["sub", "aud", "iat", "exp"]},
    )
    try:
        user_id = int(claims["sub"])
    except ValueError:
        raise jwt.InvalidTokenError("sub is not a user id") from None
    # users.id is an integer column: a larger number is no user's, and would make the query
    # that looks the user up fail (a 500) instead of answering 401.
    if not 0 < user_id < 2**31:
        raise jwt.InvalidTokenError("sub is not a user id")
    return user_id


# --8<-- [end:tokens]


# --8<-- [start:current-user]
UNAUTHORIZED = HTTPException(
    status.HTTP_401_UNAUTHORIZED,
    "Not authenticated",  # as FastAPI says when there is no token at all
    headers={"WWW-Authenticate": "Bearer"},
)


async def current_user(
    request: Request, session: SessionDep, token: Annotated[str, Depends(oauth2_scheme)]
) -> User:
    """The active user the bearer token names: one query, and no hashing."""
    try:
        user_id = decode_token(
            token, settings=request.app.state.settings, key=request.app.state.signing_key
        )
    except jwt.InvalidTokenError:
        raise UNAUTHORIZED from None
    # The same query tells PostgreSQL who is asking, for this transaction: row-level
    # security (migration 0003) shows this user's items and no one else's.
    as_user = func.set_config("app.user_id", cast(User.id, String), True)
    row = (
        await session.execute(select(User, as_user).where(User.id == user_id, User.is_active))
    ).first()
    if row is None:  # a deleted or disabled user's token is worth nothing
        raise UNAUTHORIZED
    return row[0]


CurrentUser = Annotated[User, Depends(current_user)]
# --8<-- [end:current-user]
