"""users: token version, case-insensitive usernames

A token version (a password or email change revokes every older token) and a unique
index on lower(username).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# How many colliding names the error lists (the rest are counted).
SHOWN_COLLISIONS = 20


class UsernameCollision(RuntimeError):
    """Existing users whose names differ only in case: a person must decide who is renamed."""


def _refuse_colliding_usernames() -> None:
    rows = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT lower(username) AS name, count(*) AS users FROM users "
                "GROUP BY lower(username) HAVING count(*) > 1 ORDER BY 1"
            )
        )
        .all()
    )
    if rows:
        shown = ", ".join(f"{row.name!r} ({row.users} users)" for row in rows[:SHOWN_COLLISIONS])
        more = f" and {len(rows) - SHOWN_COLLISIONS} more" if len(rows) > SHOWN_COLLISIONS else ""
        raise UsernameCollision(
            # noqa below: a message that shows the SQL to run, not a query.
            f"cannot make usernames unique case-insensitively: {len(rows)} name(s) are taken "  # noqa: S608
            f"by several users differing only in case: {shown}{more}. Rename all but one of "
            "each (UPDATE users SET username = ... WHERE id = ...), then migrate again."
        )


def upgrade() -> None:
    _refuse_colliding_usernames()
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("token_version", sa.Integer(), server_default="0", nullable=False)
        )
    op.create_index("uq_users_username_lower", "users", [sa.text("lower(username)")], unique=True)


def downgrade() -> None:
    op.drop_index("uq_users_username_lower", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("token_version")
