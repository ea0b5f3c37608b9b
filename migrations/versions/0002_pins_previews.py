"""Review before it goes live: guild pins (serve one commit instead of the branch head), each
guild's activation history, pull requests seen and channels previewing one.

Revision ID: 0002_pins_previews
Revises: 0001
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_pins_previews"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SURROGATE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
GUILD_ID = sa.String(length=32)
SHA = sa.String(length=64)
NAME = sa.String(length=255)


def upgrade() -> None:
    op.create_table(
        "guild_pins",
        sa.Column("guild_id", GUILD_ID, nullable=False),
        sa.Column("repository_id", sa.BigInteger(), nullable=False),
        sa.Column("snapshot_id", SURROGATE, nullable=False),
        sa.Column("commit_sha", SHA, nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("pinned_by", sa.String(length=64), nullable=False),
        sa.Column("pinned_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_guild_pins_snapshot_id_snapshots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("guild_id", name=op.f("pk_guild_pins")),
    )
    op.create_index(op.f("ix_guild_pins_snapshot_id"), "guild_pins", ["snapshot_id"])
    op.create_table(
        "guild_activations",
        sa.Column("id", SURROGATE, autoincrement=True, nullable=False),
        sa.Column("guild_id", GUILD_ID, nullable=False),
        sa.Column("repository_id", sa.BigInteger(), nullable=False),
        sa.Column("commit_sha", SHA, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("pushed_by", NAME, nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guild_activations")),
    )
    op.create_index(op.f("ix_guild_activations_guild_id"), "guild_activations", ["guild_id"])
    op.create_table(
        "pull_requests",
        sa.Column("repository_id", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("head_sha", SHA, nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("repository_id", "number", name=op.f("pk_pull_requests")),
    )
    op.create_table(
        "channel_previews",
        sa.Column("guild_id", GUILD_ID, nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("repository_id", sa.BigInteger(), nullable=False),
        sa.Column("pull_number", sa.Integer(), nullable=False),
        sa.Column("set_by", sa.String(length=64), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("guild_id", "channel_id", name=op.f("pk_channel_previews")),
    )


def downgrade() -> None:
    op.drop_table("channel_previews")
    op.drop_table("pull_requests")
    op.drop_index(op.f("ix_guild_activations_guild_id"), table_name="guild_activations")
    op.drop_table("guild_activations")
    op.drop_index(op.f("ix_guild_pins_snapshot_id"), table_name="guild_pins")
    op.drop_table("guild_pins")
