"""An index on items (owner_id, id): a user's page of items, found and ordered by the index.

Every list is `WHERE owner_id = $1 AND id > $2 ORDER BY id LIMIT $3`. Without this index,
PostgreSQL reads every item of the owner (or walks the whole table by id) and sorts them, for
each page. A revision of its own, not an edit of 0003: a database already at 0004 never runs
0003 again.

A plain CREATE INDEX, in the migrations' transaction: it blocks writes to items (not reads)
while it builds, milliseconds on this course's tables. Why not CONCURRENTLY: the step's page,
"An index for every page".

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_items_owner_id_id", "items", ["owner_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_items_owner_id_id", table_name="items")
