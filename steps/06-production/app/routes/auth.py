"""POST /auth/token: the OAuth2 password flow, rate-limited, giving nothing away."""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from .. import crud
from ..db import SessionDep
from ..errors import Problem
from ..schemas import Token
from ..security import (
    DUMMY_HASH,
    PasswordWork,
    client_address,
    create_access_token,
    verify_password,
)

router = APIRouter(prefix="/auth", tags=["auth"])
FAILED = HTTPException(
    status.HTTP_401_UNAUTHORIZED,
    "Incorrect email or password.",
    headers={"WWW-Authenticate": "Bearer"},
)
REFUSED = {
    401: {"model": Problem, "description": "Incorrect email or password"},
    429: {"model": Problem, "description": "Too many failed logins"},
    503: {"model": Problem, "description": "Too many passwords being checked: retry"},
}


# PasswordWork first: past the worker's Argon2 slots, a 503 before anything else is done.
@router.post("/token", responses=REFUSED, dependencies=[PasswordWork])
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep, request: Request
) -> Token:
    """Trade an email (as `username`) and a password for a bearer token."""
    settings = request.app.state.settings
    email = form.username.strip().lower()[:254]
    if "\x00" in email:
        # PostgreSQL's text cannot hold it (a 500), and no account's email has one: the answer
        # for an unknown email, before anything is written.
        raise FAILED
    window = settings.login_window_seconds
    # Two limits: per email and client address (an attacker elsewhere cannot lock the owner
    # out), and per address whatever the email (one client cannot try many accounts).
    address = client_address(request)
    # Each attempt is written before it is checked, then counted, in PostgreSQL: every app
    # process sees the same count, and a burst of concurrent guesses cannot slip past it.
    # One refused is not written: only attempts checked against a password count.
    allowed = await crud.record_attempt(
        session=session,
        email=email,
        address=address,
        limit=settings.login_attempts,
        address_limit=settings.address_attempts,
        seconds=window,
    )
    if not allowed:
        raise HTTPException(
            429, "Too many failed logins. Try again later.", {"Retry-After": str(window)}
        )
    user = await crud.get_user_by_email(session=session, email=email)
    # End the read's transaction before the slow part: its connection goes back to the pool
    # instead of sitting "idle in transaction" through Argon2's tenth of a second and the
    # wait for a thread. expire_on_commit=False keeps the user's values loaded.
    await session.commit()
    known = user is not None and user.is_active and len(form.password) <= 128
    # An unknown (or disabled) email still costs one hash check: its answer takes as long as
    # a wrong password's, so timing cannot tell which emails have accounts.
    hashed = user.hashed_password if known and user else DUMMY_HASH
    matches = await verify_password(form.password[:128], hashed)
    if not (known and matches) or user is None:
        raise FAILED  # the same answer for an unknown email and a wrong password
    # A success clears the count of its own address.
    await crud.forget_attempts(session=session, email=email, address=address)
    token = create_access_token(
        user_id=user.id, settings=settings, key=request.app.state.signing_key
    )
    return Token(access_token=token)
