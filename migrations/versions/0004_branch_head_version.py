"""Branch head version: syncs of one branch conclude by compare-and-set on it (see
`github_app.store.branches`), instead of comparing push times.

Revision ID: 0004_branch_head_version
Revises: 0003_setup_states
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_branch_head_version"
down_revision: str | Sequence[str] | None = "0003_setup_states"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tracked_branches") as batch:
        batch.add_column(
            sa.Column("head_version", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("tracked_branches") as batch:
        batch.drop_column("head_version")
