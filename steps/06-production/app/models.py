"""The database's side: tables as SQLAlchemy classes, typed to match PostgreSQL exactly."""

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, Unmapped, mapped_column, unmapped_column


class Base(DeclarativeBase):
    # Named constraints (uq_items_name, ...) are the same in every database and migration,
    # so an error can be traced to its rule by name (step 04 maps them to 409 and 422).
    metadata = MetaData(
        naming_convention={
            "pk": "pk_%(table_name)s",
            # Every column of the constraint: (owner_id, name) is uq_items_owner_id_name.
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "ix": "ix_%(table_name)s_%(column_0_name)s",
        }
    )


class Timestamped:
    """Columns every table has: set by the server, with their time zone."""

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class User(Base):
    __tablename__ = "users"
    # Emails are stored lowercased (the schema does it), so unique means case-insensitive:
    # the check makes the database hold the app to it.
    __table_args__ = (CheckConstraint("email = lower(email)", name="email_lowercase"),)

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    # An Argon2id hash (with its salt and cost), never the password. Stored in the column
    # password_hash since step 06 (migrations 0008-0010, a rename by expand and contract); the
    # attribute keeps its name, so no line of Python changes.
    hashed_password: Mapped[str] = mapped_column("password_hash", String(255))
    is_active: Mapped[bool] = mapped_column(server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LoginAttempt(Base):
    """A login checked against a password: the rate limit counts them here, per email and
    client address, so every app process sees them."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_email_address_at", "email", "address", "attempted_at"),
        # The limit per client address alone (step 06), built CONCURRENTLY by 0007.
        Index("ix_login_attempts_address_at", "address", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    # request.client.host, cut to 64: behind a proxy, uvicorn's --proxy-headers decide it.
    address: Mapped[str] = mapped_column(String(64))
    attempted_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class Item(Timestamped, Base):
    __tablename__ = "items"
    __table_args__ = (
        # A name is unique per owner: two users may both have a "Lamp".
        UniqueConstraint("owner_id", "name"),
        # A user's items in id order: each page of the list is one range of it (0005).
        Index("ix_items_owner_id_id", "owner_id", "id"),
        # GIN indexes answer "which rows contain this?": words for search, pairs for @>.
        Index("ix_items_search", "search", postgresql_using="gin"),
        Index(
            "ix_items_attributes",
            "attributes",
            postgresql_using="gin",
            postgresql_ops={"attributes": "jsonb_path_ops"},  # smaller; serves @> only
        ),
    )
    # Read what the server sets (updated_at) back in the INSERT or UPDATE itself (RETURNING),
    # so a write never needs a second SELECT.
    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    # Whose item it is. Set from the token by the server, never from a request body.
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    # Numeric(10, 2): exact decimal money, 8 digits before the point and 2 after. Never a float.
    price: Mapped[Decimal] = mapped_column(
        Numeric(10, 2), CheckConstraint("price >= 0", name="price_not_negative")
    )
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    # The words of name (weight A) and description (weight B), kept up to date by PostgreSQL.
    # Unmapped: a column of the table, not of the object, so no write sends it back;
    # queries use it as SEARCH.
    search: Unmapped[str] = unmapped_column(
        TSVECTOR,
        Computed(
            "setweight(to_tsvector('english', name), 'A') || "
            "setweight(to_tsvector('english', coalesce(description, '')), 'B')",
            persisted=True,
        ),
    )


SEARCH = Item.__table__.c.search
