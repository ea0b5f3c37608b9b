"""Setup states in the database: any web process can finish the App's manifest flow.

Revision ID: 0003_setup_states
Revises: 0002_pins_previews
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_setup_states"
down_revision: str | Sequence[str] | None = "0002_pins_previews"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "setup_states",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_setup_states")),
    )
    op.create_index(op.f("ix_setup_states_expires_at"), "setup_states", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_setup_states_expires_at"), table_name="setup_states")
    op.drop_table("setup_states")
