"""Initial schema: installations, repositories, bindings, snapshots, deliveries, logs, secrets.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model's column types: a migration must not change when models.py does.
SURROGATE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
GUILD_ID = sa.String(length=32)
SHA = sa.String(length=64)
NAME = sa.String(length=255)


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    generation = op.create_table(
        "activation_generation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activation_generation")),
    )
    op.bulk_insert(generation, [{"id": 1, "value": 0}])

    op.create_table(
        "app_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_app_secrets")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", SURROGATE, autoincrement=True, nullable=False),
        _time("at"),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("guild_id", GUILD_ID, nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_guild_id"), "audit_log", ["guild_id"])

    op.create_table(
        "blobs",
        sa.Column("sha", SHA, nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        _time("created_at"),
        sa.PrimaryKeyConstraint("sha", name=op.f("pk_blobs")),
    )
    op.create_table(
        "check_runs",
        sa.Column("id", SURROGATE, autoincrement=True, nullable=False),
        sa.Column("repository_id", sa.BigInteger(), nullable=False),
        sa.Column("head_sha", SHA, nullable=False),
        sa.Column("check_run_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("conclusion", sa.String(length=32), nullable=True),
        _time("created_at"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_check_runs")),
        sa.UniqueConstraint("check_run_id", name=op.f("uq_check_runs_check_run_id")),
    )
    op.create_index(
        "ix_check_runs_repository_id_head_sha", "check_runs", ["repository_id", "head_sha"]
    )

    op.create_table(
        "deliveries",
        sa.Column("id", SURROGATE, autoincrement=True, nullable=False),
        sa.Column("guid", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=True),
        sa.Column("installation_id", sa.BigInteger(), nullable=True),
        sa.Column("repository_id", sa.BigInteger(), nullable=True),
        sa.Column("ref", NAME, nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        _time("received_at"),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _time("next_attempt_at", nullable=True),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        _time("lease_expires_at", nullable=True),
        _time("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("guid", name=op.f("uq_deliveries_guid")),
    )
    op.create_index(op.f("ix_deliveries_received_at"), "deliveries", ["received_at"])
    op.create_index("ix_deliveries_repository_id_ref", "deliveries", ["repository_id", "ref"])
    op.create_index(
        "ix_deliveries_state_next_attempt_at", "deliveries", ["state", "next_attempt_at"]
    )

    op.create_table(
        "guild_bindings",
        sa.Column("guild_id", GUILD_ID, nullable=False),
        sa.Column("repository_id", sa.BigInteger(), nullable=True),
        sa.Column("repository_full_name", NAME, nullable=False),
        sa.Column("branch", NAME, nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("set_by", sa.String(length=64), nullable=False),
        _time("set_at"),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("token_ciphertext", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("guild_id", name=op.f("pk_guild_bindings")),
    )
    op.create_index(op.f("ix_guild_bindings_repository_id"), "guild_bindings", ["repository_id"])

    op.create_table(
        "installations",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_login", NAME, nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=True),
        sa.Column("account_type", sa.String(length=32), nullable=True),
        sa.Column("suspended", sa.Boolean(), nullable=False),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        _time("created_at"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_installations")),
    )
    op.create_table(
        "pending_bindings",
        sa.Column("guild_id", GUILD_ID, nullable=False),
        sa.Column("repository_id", sa.BigInteger(), nullable=True),
        sa.Column("repository_full_name", NAME, nullable=False),
        sa.Column("branch", NAME, nullable=True),
        sa.Column("set_by", sa.String(length=64), nullable=False),
        _time("set_at"),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("token_ciphertext", sa.Text(), nullable=True),
        sa.Column("base_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("guild_id", name=op.f("pk_pending_bindings")),
    )
    op.create_index(
        op.f("ix_pending_bindings_repository_id"), "pending_bindings", ["repository_id"]
    )

    op.create_table(
        "sync_log",
        sa.Column("id", SURROGATE, autoincrement=True, nullable=False),
        _time("at"),
        sa.Column("repository_id", sa.BigInteger(), nullable=False),
        sa.Column("branch", NAME, nullable=True),
        sa.Column("commit_sha", SHA, nullable=True),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("files_fetched", sa.Integer(), nullable=False),
        sa.Column("api_calls", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_log")),
    )
    op.create_index(op.f("ix_sync_log_at"), "sync_log", ["at"])
    op.create_index(op.f("ix_sync_log_repository_id"), "sync_log", ["repository_id"])

    op.create_table(
        "repositories",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=True),
        sa.Column("full_name", NAME, nullable=False),
        sa.Column("private", sa.Boolean(), nullable=False),
        sa.Column("default_branch", NAME, nullable=False),
        _time("created_at"),
        _time("updated_at"),
        sa.ForeignKeyConstraint(
            ["installation_id"],
            ["installations.id"],
            name=op.f("fk_repositories_installation_id_installations"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_repositories")),
    )
    op.create_index(op.f("ix_repositories_full_name"), "repositories", ["full_name"])
    op.create_index(op.f("ix_repositories_installation_id"), "repositories", ["installation_id"])

    op.create_table(
        "snapshots",
        sa.Column("id", SURROGATE, autoincrement=True, nullable=False),
        sa.Column("repository_id", sa.BigInteger(), nullable=False),
        sa.Column("commit_sha", SHA, nullable=False),
        sa.Column("valid", sa.Boolean(), nullable=False),
        sa.Column("diagnostics", sa.JSON(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("warning_count", sa.Integer(), nullable=False),
        _time("created_at"),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_snapshots_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshots")),
        sa.UniqueConstraint(
            "repository_id", "commit_sha", name=op.f("uq_snapshots_repository_id_commit_sha")
        ),
    )
    op.create_index(op.f("ix_snapshots_created_at"), "snapshots", ["created_at"])

    op.create_table(
        "snapshot_files",
        sa.Column("snapshot_id", SURROGATE, nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("blob_sha", SHA, nullable=False),
        sa.ForeignKeyConstraint(
            ["blob_sha"], ["blobs.sha"], name=op.f("fk_snapshot_files_blob_sha_blobs")
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_snapshot_files_snapshot_id_snapshots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("snapshot_id", "path", name=op.f("pk_snapshot_files")),
    )
    op.create_index(op.f("ix_snapshot_files_blob_sha"), "snapshot_files", ["blob_sha"])

    op.create_table(
        "tracked_branches",
        sa.Column("repository_id", sa.BigInteger(), nullable=False),
        sa.Column("branch", NAME, nullable=False),
        sa.Column("active_snapshot_id", SURROGATE, nullable=True),
        _time("active_head_at", nullable=True),
        _time("activated_at", nullable=True),
        sa.Column("latest_sha", SHA, nullable=True),
        _time("latest_seen_at", nullable=True),
        sa.Column("etag", NAME, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("diagnostics", sa.JSON(), nullable=False),
        _time("last_sync_at", nullable=True),
        _time("updated_at"),
        sa.ForeignKeyConstraint(
            ["active_snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_tracked_branches_active_snapshot_id_snapshots"),
        ),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_tracked_branches_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repository_id", "branch", name=op.f("pk_tracked_branches")),
    )
    op.create_index(
        op.f("ix_tracked_branches_active_snapshot_id"), "tracked_branches", ["active_snapshot_id"]
    )


def downgrade() -> None:
    # Dependents first; dropping a table drops its indexes on both engines.
    for table in (
        "tracked_branches",
        "snapshot_files",
        "snapshots",
        "repositories",
        "sync_log",
        "pending_bindings",
        "installations",
        "guild_bindings",
        "deliveries",
        "check_runs",
        "blobs",
        "audit_log",
        "app_secrets",
        "activation_generation",
    ):
        op.drop_table(table)
