"""The tables of guildprompts (SQLAlchemy 2 declarative models).

GitHub's numeric ids are the keys of installations and repositories, so renames and transfers
change a column, never an identity. Guild ids are Discord snowflakes kept as text. Every
timestamp is an aware UTC datetime on both engines (`UTCDateTime`).

Snapshots, their file lists and blobs are immutable once written: there is no function that
updates them, and the ORM refuses to flush a change to one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from github_app.store.errors import ImmutableRowError

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Surrogate keys: BIGINT on PostgreSQL, INTEGER (the rowid alias, so it autoincrements) on SQLite.
SurrogateKey = BigInteger().with_variant(Integer(), "sqlite")
GUILD_ID = String(32)
SHA = String(64)  # git object ids: 40 hex (SHA-1) or 64 hex (SHA-256 repositories)
NAME = String(255)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Unchanged:
    """Type of `UNCHANGED`: "leave this field as it is", where None is a meaningful value."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged()


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which keeps no zone) as on PostgreSQL.

    A naive datetime is refused: guessing its zone is how timestamps silently drift.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store: use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Every model here is mapped to a Table (none to a join or a select).
    __table__: ClassVar[Table]
    type_annotation_map = {datetime: UTCDateTime()}


class DeliveryState(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


class BindingState(StrEnum):
    """A live binding's access: ACTIVE serves its branch; NO_ACCESS serves built-in defaults."""

    ACTIVE = "active"
    NO_ACCESS = "no_access"


class BranchStatus(StrEnum):
    """Outcome of the latest sync of a tracked branch."""

    PENDING = "pending"  # never synced yet
    OK = "ok"  # the latest seen commit is the active one
    REJECTED = "rejected"  # the latest commit failed validation; the last good one serves
    ERROR = "error"  # syncing fails (GitHub unreachable, fetch error); the last good one serves
    DELETED = "deleted"  # the branch was deleted; the last good one serves


# A guild served by a branch in one of these states is told its answer is stale (issue 5:
# a validation rejection is not staleness, the content served is the current good one).
STALE_BRANCH_STATUSES = frozenset({BranchStatus.ERROR, BranchStatus.DELETED})


class Installation(Base):
    __tablename__ = "installations"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account_login: Mapped[str] = mapped_column(NAME)
    account_id: Mapped[int | None] = mapped_column(BigInteger)
    account_type: Mapped[str | None] = mapped_column(String(32))
    suspended: Mapped[bool] = mapped_column(Boolean, default=False)
    permissions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    events: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Repository(Base):
    __tablename__ = "repositories"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    installation_id: Mapped[int | None] = mapped_column(
        ForeignKey("installations.id", ondelete="SET NULL"), index=True
    )
    full_name: Mapped[str] = mapped_column(NAME, index=True)
    private: Mapped[bool] = mapped_column(Boolean, default=True)
    default_branch: Mapped[str] = mapped_column(NAME, default="main")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class GuildBinding(Base):
    """What a guild is served from. `version` guards admin edits (optimistic concurrency)."""

    __tablename__ = "guild_bindings"

    guild_id: Mapped[str] = mapped_column(GUILD_ID, primary_key=True)
    repository_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    repository_full_name: Mapped[str] = mapped_column(NAME)
    branch: Mapped[str | None] = mapped_column(NAME)  # None: follow the default branch
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default=BindingState.ACTIVE)
    status_message: Mapped[str] = mapped_column(Text, default="")
    last_error: Mapped[str | None] = mapped_column(Text)
    token_ciphertext: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)


class PendingBinding(Base):
    """A requested binding not live yet (App not installed, first sync not good yet).

    Kept apart from the live binding so a failed attempt never replaces a working one;
    `base_version` is the live binding's version when the request was made (0: none).
    """

    __tablename__ = "pending_bindings"

    guild_id: Mapped[str] = mapped_column(GUILD_ID, primary_key=True)
    repository_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    repository_full_name: Mapped[str] = mapped_column(NAME)
    branch: Mapped[str | None] = mapped_column(NAME)
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[datetime] = mapped_column(default=utcnow)
    status_message: Mapped[str] = mapped_column(Text, default="")
    token_ciphertext: Mapped[str | None] = mapped_column(Text)
    base_version: Mapped[int] = mapped_column(Integer, default=0)


class Blob(Base):
    """File content, stored once per git blob id whatever the number of snapshots using it."""

    __tablename__ = "blobs"

    sha: Mapped[str] = mapped_column(SHA, primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Snapshot(Base):
    """A repository at one commit: its validation result and (in SnapshotFile) its files."""

    __tablename__ = "snapshots"
    __table_args__ = (UniqueConstraint("repository_id", "commit_sha"),)

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    commit_sha: Mapped[str] = mapped_column(SHA)
    valid: Mapped[bool] = mapped_column(Boolean)
    diagnostics: Mapped[list[Any]] = mapped_column(JSON, default=list)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    warning_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class SnapshotFile(Base):
    __tablename__ = "snapshot_files"

    snapshot_id: Mapped[int] = mapped_column(
        ForeignKey("snapshots.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    blob_sha: Mapped[str] = mapped_column(ForeignKey("blobs.sha"), index=True)


class TrackedBranch(Base):
    """Per (repository, branch): the active (last known good) snapshot and what was last seen.

    Ordering: `head_version` grows each time a sync concludes the branch at the head GitHub
    reported (`latest_sha`, with that reading's `etag`); see `store.branches`. `active_head_at`
    is when the active commit was activated. The foreign key makes deleting an active snapshot
    fail.
    """

    __tablename__ = "tracked_branches"

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    branch: Mapped[str] = mapped_column(NAME, primary_key=True)
    active_snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("snapshots.id"), index=True)
    # The bases served with it (`store.layers`): one JSON list, so that the pair moves in the
    # same single-row update as the pointer. None or []: the commit has no bases.
    active_layers: Mapped[list[Any] | None] = mapped_column(JSON)
    active_head_at: Mapped[datetime | None] = mapped_column()
    activated_at: Mapped[datetime | None] = mapped_column()
    latest_sha: Mapped[str | None] = mapped_column(SHA)
    latest_seen_at: Mapped[datetime | None] = mapped_column()
    etag: Mapped[str | None] = mapped_column(NAME)
    ref_kind: Mapped[str | None] = mapped_column(String(8))  # "tags": a base following a tag
    head_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    status: Mapped[str] = mapped_column(String(16), default=BranchStatus.PENDING)
    status_message: Mapped[str] = mapped_column(Text, default="")
    diagnostics: Mapped[list[Any]] = mapped_column(JSON, default=list)
    last_sync_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class BranchBase(Base):
    """A base that the branch's head commit `extends` (by name and ref, as its PATH writes them),
    so that a push to the base re-syncs every branch built on it (`store.layers`)."""

    __tablename__ = "branch_bases"
    __table_args__ = (
        Index("ix_branch_bases_base_full_name_base_ref", "base_full_name", "base_ref"),
    )

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    branch: Mapped[str] = mapped_column(NAME, primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    base_full_name: Mapped[str] = mapped_column(NAME)  # lower case
    base_ref: Mapped[str] = mapped_column(NAME)
    problem: Mapped[str | None] = mapped_column(Text)  # why the base could not be read


class ActivationGeneration(Base):
    """One row whose value grows whenever what any guild is served may have changed."""

    __tablename__ = "activation_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class DeliveryRow(Base):
    """A webhook delivery as received, and where its processing stands."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_deliveries_repository_id_ref", "repository_id", "ref"),
    )

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    guid: Mapped[str] = mapped_column(String(64), unique=True)
    event: Mapped[str] = mapped_column(String(64))
    action: Mapped[str | None] = mapped_column(String(64))
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    repository_id: Mapped[int | None] = mapped_column(BigInteger)
    ref: Mapped[str | None] = mapped_column(NAME)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class CheckRun(Base):
    __tablename__ = "check_runs"
    __table_args__ = (Index("ix_check_runs_repository_id_head_sha", "repository_id", "head_sha"),)

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    repository_id: Mapped[int] = mapped_column(BigInteger)
    head_sha: Mapped[str] = mapped_column(SHA)
    check_run_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    status: Mapped[str] = mapped_column(String(16), default="in_progress")
    conclusion: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """One configuration change: who, which guild, before and after (never a secret)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    guild_id: Mapped[str] = mapped_column(GUILD_ID, index=True)
    action: Mapped[str] = mapped_column(String(32))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class SyncLogEntry(Base):
    __tablename__ = "sync_log"

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    repository_id: Mapped[int] = mapped_column(BigInteger, index=True)
    branch: Mapped[str | None] = mapped_column(NAME)
    commit_sha: Mapped[str | None] = mapped_column(SHA)
    trigger: Mapped[str] = mapped_column(String(32))
    files_fetched: Mapped[int] = mapped_column(Integer, default=0)
    api_calls: Mapped[int] = mapped_column(Integer, default=0)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")


class GuildPin(Base):
    """A guild served one commit of its bound repository instead of its branch's newest one.

    Retention never prunes a pinned snapshot; purging a repository's content (access lost)
    deletes its pins with its snapshots (the foreign key cascades). A pin on another repository
    than the binding's (the guild was re-bound) is ignored by serving.
    """

    __tablename__ = "guild_pins"

    guild_id: Mapped[str] = mapped_column(GUILD_ID, primary_key=True)
    repository_id: Mapped[int] = mapped_column(BigInteger)
    snapshot_id: Mapped[int] = mapped_column(
        ForeignKey("snapshots.id", ondelete="CASCADE"), index=True
    )
    commit_sha: Mapped[str] = mapped_column(SHA)
    reason: Mapped[str] = mapped_column(String(16))  # "pin" or "rollback"
    layers: Mapped[list[Any] | None] = mapped_column(JSON)  # the bases pinned with it
    pinned_by: Mapped[str] = mapped_column(String(64))
    pinned_at: Mapped[datetime] = mapped_column(default=utcnow)


class GuildActivation(Base):
    """One change of the commit a guild serves: kept past delivery pruning, `HISTORY_KEEP` per
    guild."""

    __tablename__ = "guild_activations"

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    guild_id: Mapped[str] = mapped_column(GUILD_ID, index=True)
    repository_id: Mapped[int] = mapped_column(BigInteger)
    commit_sha: Mapped[str] = mapped_column(SHA)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    trigger: Mapped[str] = mapped_column(String(32))  # push, reconcile, bind, pin, rollback, ...
    pushed_by: Mapped[str | None] = mapped_column(NAME)  # the GitHub user who pushed, if known
    actor: Mapped[str | None] = mapped_column(String(64))  # who asked (pin, rollback, unpin)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)


class PullRequest(Base):
    """A pull request of a repository as its webhooks last described it: what a channel
    preview resolves from (its head) and until when (open)."""

    __tablename__ = "pull_requests"

    repository_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    head_sha: Mapped[str] = mapped_column(SHA)
    open: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChannelPreview(Base):
    """One channel of a guild resolving from a pull request's head until it closes."""

    __tablename__ = "channel_previews"

    guild_id: Mapped[str] = mapped_column(GUILD_ID, primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    repository_id: Mapped[int] = mapped_column(BigInteger)
    pull_number: Mapped[int] = mapped_column(Integer)
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[datetime] = mapped_column(default=utcnow)


class AppSecret(Base):
    """Encrypted App credentials stored by the manifest flow (private key, webhook secret...)."""

    __tablename__ = "app_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SetupState(Base):
    """A `state` issued by /setup, kept by its SHA-256 so that any web process can finish the
    manifest flow; used once, until `expires_at`."""

    __tablename__ = "setup_states"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


def _refuse_update(_mapper: Any, _connection: Any, target: Any) -> None:
    raise ImmutableRowError(f"{type(target).__name__} rows are immutable once written")


for _immutable in (Snapshot, SnapshotFile, Blob):
    event.listen(_immutable, "before_update", _refuse_update)
