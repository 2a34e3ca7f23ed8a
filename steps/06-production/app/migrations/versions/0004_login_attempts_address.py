"""The login limit counts per email and client address: login_attempts gains the address.

A revision of its own, not an edit of 0003: a database already at 0003 never runs 0003 again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows already there get '' (the address the app records when it knows none), so the
    # column can be NOT NULL; the default then goes: the app always gives the address.
    op.add_column(
        "login_attempts",
        sa.Column("address", sa.String(length=64), server_default="", nullable=False),
    )
    op.alter_column("login_attempts", "address", server_default=None)
    # The app role's rights are on the whole table (0003): the new column needs no GRANT.
    op.drop_index("ix_login_attempts_email_at", table_name="login_attempts")
    op.create_index(
        "ix_login_attempts_email_address_at",
        "login_attempts",
        ["email", "address", "attempted_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_login_attempts_email_address_at", table_name="login_attempts")
    op.create_index("ix_login_attempts_email_at", "login_attempts", ["email", "attempted_at"])
    op.drop_column("login_attempts", "address")
