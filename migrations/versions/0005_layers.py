"""Layers: a branch serves its commit together with the commits of the bases its PATH
`extends` (`tracked_branches.active_layers`; `ref_kind` says whether a followed ref is a branch or
a tag, since a base may follow a tag), a pin keeps the layers it was made with, and
`branch_bases` says which branches extend which base, so that a push to a base re-syncs them.

Revision ID: 0005_layers
Revises: 0004_branch_head_version
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_layers"
down_revision: str | Sequence[str] | None = "0004_branch_head_version"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tracked_branches") as batch:
        batch.add_column(sa.Column("active_layers", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("ref_kind", sa.String(8), nullable=True))
    with op.batch_alter_table("guild_pins") as batch:
        batch.add_column(sa.Column("layers", sa.JSON(), nullable=True))
    op.create_table(
        "branch_bases",
        sa.Column("repository_id", sa.BigInteger(), nullable=False),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("base_full_name", sa.String(255), nullable=False),
        sa.Column("base_ref", sa.String(255), nullable=False),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name="fk_branch_bases_repository_id_repositories",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repository_id", "branch", "position", name="pk_branch_bases"),
    )
    op.create_index(
        "ix_branch_bases_base_full_name_base_ref",
        "branch_bases",
        ["base_full_name", "base_ref"],
    )


def downgrade() -> None:
    op.drop_index("ix_branch_bases_base_full_name_base_ref", table_name="branch_bases")
    op.drop_table("branch_bases")
    with op.batch_alter_table("guild_pins") as batch:
        batch.drop_column("layers")
    with op.batch_alter_table("tracked_branches") as batch:
        batch.drop_column("ref_kind")
        batch.drop_column("active_layers")
