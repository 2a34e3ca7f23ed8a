"""Users, item owners, the login limit's table, least privilege and row-level security.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The role the app connects as (alembic.ini's app_role): it may read and write, nothing more.
APP_ROLE = context.config.get_main_option("app_role", "workshop_app")
# Items made before there were users belong to this account: disabled, and with no hash.
UNOWNED = "unowned@workshop.invalid"


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("hashed_password", sa.String(length=255), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("email = lower(email)", name=op.f("ck_users_email_lowercase")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column(
            "attempted_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_attempts")),
    )
    op.create_index("ix_login_attempts_email_at", "login_attempts", ["email", "attempted_at"])

    # Every item gets an owner: existing ones go to an account no password opens ("!" is
    # never an Argon2 hash), so the column can be NOT NULL.
    op.add_column("items", sa.Column("owner_id", sa.Integer(), nullable=True))
    op.execute(
        f"INSERT INTO users (email, hashed_password, is_active) SELECT '{UNOWNED}', '!', false "
        "WHERE EXISTS (SELECT 1 FROM items)"
    )
    op.execute(f"UPDATE items SET owner_id = (SELECT id FROM users WHERE email = '{UNOWNED}')")
    op.alter_column("items", "owner_id", nullable=False)
    op.create_foreign_key(
        op.f("fk_items_owner_id_users"), "items", "users", ["owner_id"], ["id"], ondelete="CASCADE"
    )
    # A name is unique per owner now, not across all users.
    op.drop_constraint(op.f("uq_items_name"), "items", type_="unique")
    op.create_unique_constraint(op.f("uq_items_owner_id_name"), "items", ["owner_id", "name"])

    # Least privilege: the app's role reads and writes rows. It owns nothing, so it cannot
    # ALTER or DROP a table, and cannot CREATE one in the schema.
    op.execute(
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON items, users, login_attempts TO "{APP_ROLE}"'
    )

    # Row-level security: even a query that forgets `WHERE owner_id = ...` gets only the
    # rows of app.user_id, which the app sets per transaction (security.py). No user set:
    # no rows. The table's owner (the migrations) is not bound by it; the app's role is.
    op.execute("ALTER TABLE items ENABLE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY items_owner ON items "
        "USING (owner_id = NULLIF(current_setting('app.user_id', true), '')::integer) "
        "WITH CHECK (owner_id = NULLIF(current_setting('app.user_id', true), '')::integer)"
    )


def downgrade() -> None:
    op.execute("DROP POLICY IF EXISTS items_owner ON items")
    op.execute("ALTER TABLE items DISABLE ROW LEVEL SECURITY")
    op.execute(f'REVOKE ALL ON items, users, login_attempts FROM "{APP_ROLE}"')
    op.drop_constraint(op.f("uq_items_owner_id_name"), "items", type_="unique")
    op.create_unique_constraint(op.f("uq_items_name"), "items", ["name"])
    op.drop_constraint(op.f("fk_items_owner_id_users"), "items", type_="foreignkey")
    op.drop_column("items", "owner_id")
    op.drop_index("ix_login_attempts_email_at", table_name="login_attempts")
    op.drop_table("login_attempts")
    op.drop_table("users")
