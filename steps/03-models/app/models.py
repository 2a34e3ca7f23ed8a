"""The database's side: tables as SQLAlchemy classes, typed to match PostgreSQL exactly."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, Identity, MetaData, Numeric, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    # EXERCISE 03.1: give constraints stable names with a naming convention on the MetaData
    metadata = MetaData()
    # END EXERCISE


class Timestamped:
    """Columns every table has: set by the server, with their time zone."""

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class Item(Timestamped, Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    # EXERCISE 03.2: declare name, description, price and attributes, typed like the table
    # END EXERCISE
