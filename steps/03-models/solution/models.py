"""The database's side: tables as SQLAlchemy classes, typed to match PostgreSQL exactly."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, Identity, MetaData, Numeric, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


# --8<-- [start:base]
class Base(DeclarativeBase):
    # EXERCISE 03.1: give constraints stable names with a naming convention on the MetaData
    # Named constraints (uq_items_name, ...) are the same in every database and migration,
    # so an error can be traced to its rule by name (step 04 maps them to 409 and 422).
    # --8<-- [start:convention]
    metadata = MetaData(
        naming_convention={
            "pk": "pk_%(table_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "ix": "ix_%(table_name)s_%(column_0_name)s",
        }
    )
    # --8<-- [end:convention]
    # END EXERCISE


class Timestamped:
    """Columns every table has: set by the server, with their time zone."""

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


# --8<-- [end:base]


# --8<-- [start:item]
class Item(Timestamped, Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    # EXERCISE 03.2: declare name, description, price and attributes, typed like the table
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    # Numeric(10, 2): exact decimal money, 8 digits before the point and 2 after. Never a float.
    price: Mapped[Decimal] = mapped_column(
        Numeric(10, 2), CheckConstraint("price >= 0", name="price_not_negative")
    )
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    # END EXERCISE


# --8<-- [end:item]
