"""Full-text search and JSONB filters on items, each with a GIN index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH = (
    "setweight(to_tsvector('english', name), 'A') || "
    "setweight(to_tsvector('english', coalesce(description, '')), 'B')"
)


def upgrade() -> None:
    # A generated column: PostgreSQL computes it on every write, the app never sets it.
    op.add_column(
        "items",
        sa.Column("search", postgresql.TSVECTOR(), sa.Computed(SEARCH, persisted=True)),
    )
    op.create_index("ix_items_search", "items", ["search"], postgresql_using="gin")
    op.create_index(
        "ix_items_attributes",
        "items",
        ["attributes"],
        postgresql_using="gin",
        postgresql_ops={"attributes": "jsonb_path_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_items_attributes", table_name="items")
    op.drop_index("ix_items_search", table_name="items")
    op.drop_column("items", "search")
