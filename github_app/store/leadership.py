"""Which process runs the deployment's background loops: a PostgreSQL advisory lock.

Reconcile, the redelivery sweep and retention must run once per deployment, not once per worker
(two workers would double GitHub calls and ask for each failed delivery twice). On PostgreSQL
the process holding the session-level advisory lock LOOPS_LOCK_KEY on a dedicated connection
leads; when it dies its connection closes, the lock is freed and the next process to try takes
over. SQLite is one process by design, so its process always leads.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, func, select

from github_app.store.db import Database

log = logging.getLogger(__name__)

LOOPS_LOCK_KEY = 0x67707270_6C6F6F70  # "gprploop": one key per deployment (one database)


class Leadership:
    """`holds()` says (trying once when not leading) whether this process leads. Blocking: call
    it in a thread."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._connection: Connection | None = None

    def holds(self) -> bool:
        if self.database.is_sqlite:
            return True
        if self._connection is not None:
            try:
                self._connection.execute(select(1)).scalar()
                self._connection.commit()
                return True
            except Exception as exc:  # the connection (and with it the lock) is gone
                log.warning("lost the background loops' lock: %s", exc)
                self._drop()
        connection = self.database.engine.connect()
        try:
            got = bool(
                connection.execute(select(func.pg_try_advisory_lock(LOOPS_LOCK_KEY))).scalar()
            )
            connection.commit()
        except Exception:
            connection.close()
            raise
        if not got:
            connection.close()
            return False
        self._connection = connection
        log.info("this process runs the background loops (reconcile, redelivery, retention)")
        return True

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.execute(select(func.pg_advisory_unlock(LOOPS_LOCK_KEY)))
                self._connection.commit()
            except Exception as exc:
                log.debug("releasing the loops' lock: %s", exc)
            self._drop()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.invalidate()  # never back to the pool: the lock must go with it
                connection.close()
            except Exception as exc:
                log.debug("closing the loops' connection: %s", exc)
