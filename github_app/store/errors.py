"""Errors of the data layer: each one says what happened and what a person can do about it."""

from __future__ import annotations


class StoreError(Exception):
    """Base class: the data layer refused or could not do what was asked."""


class DatabaseUnavailableError(StoreError):
    """The database did not answer (down, locked for too long, connection lost).

    Callers that must not pretend success (webhook intake) turn this into a 503.
    """


class SchemaError(StoreError):
    """The database schema is not the one this version of guildprompts needs."""


class NotFoundError(StoreError):
    """The row an update targets does not exist (any more)."""


class ConcurrentUpdateError(StoreError):
    """Someone changed a guild's binding since the caller read it (optimistic concurrency)."""

    def __init__(self, guild_id: str, expected: int | None, actual: int | None) -> None:
        self.guild_id = guild_id
        self.expected = expected
        self.actual = actual
        seen = "no binding" if expected is None else f"version {expected}"
        now = "none exists any more" if actual is None else f"it is now at version {actual}"
        super().__init__(
            f"the binding of guild {guild_id} was changed by someone else since it was read "
            f"({seen}; {now}): reload it and try again"
        )


class InvalidSnapshotError(StoreError):
    """A snapshot cannot be stored or activated as asked (missing blobs, invalid content)."""


class ImmutableRowError(StoreError):
    """Something tried to change a snapshot, its file list or a blob after it was written."""
