"""exports: progress and the client that asked

`rows_written` and `rows_total` (the count at claim time) show an export's progress;
`client_key` names who asked (a user, or a client address) so that each client has a
bounded number of pending exports.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("exports") as batch:
        batch.add_column(
            sa.Column("rows_written", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("rows_total", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("client_key", sa.String(length=80), nullable=True))
    op.create_index(
        "ix_exports_client_key_status", "exports", ["client_key", "status"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_exports_client_key_status", table_name="exports")
    with op.batch_alter_table("exports") as batch:
        batch.drop_column("client_key")
        batch.drop_column("rows_total")
        batch.drop_column("rows_written")
