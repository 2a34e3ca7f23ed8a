"""Accounts: sign up, and see who you are."""

from fastapi import APIRouter, HTTPException, Request, status

from .. import crud
from ..db import SessionDep
from ..errors import Problem
from ..schemas import UserCreate, UserPublic
from ..security import CurrentUser, PasswordWork, client_address, hash_password

router = APIRouter(prefix="/users", tags=["users"])
REFUSED = {
    409: {"model": Problem, "description": "An account with this email exists"},
    429: {"model": Problem, "description": "Too many sign-ups and logins from this address"},
    503: {"model": Problem, "description": "Too many passwords being hashed: retry"},
}


# --8<-- [start:sign-up]
# PasswordWork first: past the worker's Argon2 slots, a 503 before anything else is done.
@router.post(
    "", status_code=status.HTTP_201_CREATED, responses=REFUSED, dependencies=[PasswordWork]
)
async def sign_up(user_in: UserCreate, session: SessionDep, request: Request) -> UserPublic:
    """Create an account."""
    settings = request.app.state.settings
    window = settings.login_window_seconds
    # A sign-up costs a hash as a login does: it counts against its address's limit, as an
    # attempt at no account (email ''), which no login's success can clear.
    allowed = await crud.record_attempt(
        session=session,
        email="",
        address=client_address(request),
        limit=settings.address_attempts,
        address_limit=settings.address_attempts,
        seconds=window,
    )
    if not allowed:
        raise HTTPException(
            429,
            "Too many attempts from your address. Try again later.",
            {"Retry-After": str(window)},
        )
    # End the count's transaction: its connection goes back to the pool while Argon2 works.
    await session.commit()
    hashed = await hash_password(user_in.password)
    user = await crud.create_user(session=session, user_in=user_in, hashed_password=hashed)
    return UserPublic.model_validate(user)


# --8<-- [end:sign-up]


@router.get("/me")
async def me(user: CurrentUser) -> UserPublic:
    """The account the token belongs to."""
    return UserPublic.model_validate(user)
