"""Accounts: sign up, and see who you are."""

from fastapi import APIRouter, status

from .. import crud
from ..db import SessionDep
from ..errors import Problem
from ..schemas import UserCreate, UserPublic
from ..security import CurrentUser, hash_password

router = APIRouter(prefix="/users", tags=["users"])
TAKEN = {409: {"model": Problem, "description": "An account with this email exists"}}


@router.post("", status_code=status.HTTP_201_CREATED, responses=TAKEN)
async def sign_up(user_in: UserCreate, session: SessionDep) -> UserPublic:
    """Create an account."""
    hashed = await hash_password(user_in.password)
    user = await crud.create_user(session=session, user_in=user_in, hashed_password=hashed)
    return UserPublic.model_validate(user)


@router.get("/me")
async def me(user: CurrentUser) -> UserPublic:
    """The account the token belongs to."""
    return UserPublic.model_validate(user)
