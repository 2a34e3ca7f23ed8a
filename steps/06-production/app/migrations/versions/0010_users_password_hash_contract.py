"""users.password_hash, 3 of 3: contract. hashed_password, and the trigger, are dropped.

Run it once no process of step 05's app is left: from here, only password_hash exists.

One short transaction. SET NOT NULL would read the whole table to check it, holding ACCESS
EXCLUSIVE, but PostgreSQL (12 and later) skips that when a validated CHECK already proves the
column has no NULL: 0009's. Dropping a column only marks it dropped. So the lock lasts a
moment, and is waited for at most lock_timeout.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-20
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("users", "password_hash", nullable=False)  # no scan: the CHECK proves it
    op.drop_constraint(op.f("ck_users_password_hash_not_null"), "users", type_="check")
    op.execute("DROP TRIGGER users_password_hash_sync ON users")
    op.execute("DROP FUNCTION users_password_hash_sync()")
    op.drop_column("users", "hashed_password")


def downgrade() -> None:
    # Back to 0009's state, for step 05's app. Not a step to take while it serves: one UPDATE
    # of every row, and a scan of the table for hashed_password's NOT NULL.
    expand = context.script.get_revision("0008").module  # 0008's trigger, as it made it
    op.add_column("users", sa.Column("hashed_password", sa.String(length=255), nullable=True))
    op.execute("UPDATE users SET hashed_password = password_hash")
    op.alter_column("users", "hashed_password", nullable=False)
    op.execute(expand.SYNC)
    op.execute(expand.TRIGGER)
    op.create_check_constraint(
        op.f("ck_users_password_hash_not_null"), "users", "password_hash IS NOT NULL"
    )
    op.alter_column("users", "password_hash", nullable=True)
