"""The client's cache file: an append-only journal, written off the caller's thread.

A change costs the caller one dict assignment; a background thread gathers changes for
`delay` seconds, appends them as JSON lines and fsyncs once per batch, so neither a bot's event
loop nor its resolve calls wait on the disk, and the cost of a change does not grow with the
number of cached answers. When the journal holds much more than what is live, the thread
rewrites it (to a temporary file, then renamed over the old one: readers see all or nothing).

The first line names the format and the service's base URL: a file written for another
service (say the service, then `guildprompts preview`) is ignored and replaced, never served.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "CacheFile"]

logger = logging.getLogger("bot_bridge.client")

FORMAT = "guildprompts-bridge-cache/2"
_COMPACT_SLACK = 256  # journal lines allowed beyond twice the live records before a rewrite


class CacheFile:
    """A key -> JSON record store persisted to `path` (see the module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        base_url: str,
        live: Callable[[], Mapping[str, Any]],
        *,
        delay: float = 0.2,
    ) -> None:
        """`live()` returns every current record (called by the writer thread, for rewrites)."""
        self.path = Path(path)
        self.base_url = base_url
        self._live = live
        self._delay = delay
        self._pending: dict[str, Any] = {}
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._busy = False
        self._lines = 0
        self._keys: set[str] = set()  # keys live in the journal (decides when to rewrite)
        self._rewrite = True  # until the file is known to be ours
        self.writes = 0  # batches written, for tests and the bench

    # ---- reading ------------------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        """The records last written, or {} (missing, unreadable, other format or service)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.warning("ignoring the unreadable prompt cache file (%s)", exc)
            return {}
        lines = text.splitlines()
        try:
            header = json.loads(lines[0]) if lines else None
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            logger.warning("ignoring a prompt cache file of an unknown format: %s", self.path)
            return {}
        if header.get("base_url") != self.base_url:
            logger.info(
                "ignoring the prompt cache file %s: it was written for %s, not %s",
                self.path,
                header.get("base_url"),
                self.base_url,
            )
            return {}
        records: dict[str, Any] = {}
        for line in lines[1:]:
            try:
                item = json.loads(line)
            except ValueError:
                continue  # a torn last line after a crash: everything before it stands
            if isinstance(item, dict) and isinstance(item.get("k"), str):
                if item.get("v") is None:
                    records.pop(item["k"], None)
                else:
                    records[item["k"]] = item["v"]
        self._lines = len(lines) - 1
        self._keys = set(records)
        self._rewrite = False
        return records

    # ---- writing ------------------------------------------------------------------------------

    def put(self, key: str, record: Any) -> None:
        """Remember `record` under `key` (None deletes it); written within `delay` seconds."""
        with self._condition:
            if self._closed:
                return
            self._pending[key] = record
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="guildprompts-cache-file", daemon=True
                )
                self._thread.start()
            self._condition.notify()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything put so far is on disk; False on timeout."""
        with self._condition:
            self._condition.notify_all()
            return self._condition.wait_for(
                lambda: not self._pending and not self._busy, timeout=timeout
            )

    def close(self, timeout: float = 5.0) -> None:
        """Write what is pending and stop the writer."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._pending or self._closed)
                if not self._pending and self._closed:
                    return
                if not self._closed:  # debounce: let a burst of changes gather
                    self._condition.wait(self._delay)
                batch, self._pending = self._pending, {}
                self._busy = True
            try:
                self._write(batch)
            except Exception as exc:  # best effort: resolving never depends on the file
                logger.warning("cannot write the prompt cache file (%s)", exc)
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()

    def _write(self, batch: Mapping[str, Any]) -> None:
        self.writes += 1
        for key, value in batch.items():
            if value is None:
                self._keys.discard(key)
            else:
                self._keys.add(key)
        if self._rewrite or self._lines + len(batch) > 2 * len(self._keys) + _COMPACT_SLACK:
            self._compact()
            return
        text = "".join(_line(key, value) for key, value in batch.items())
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        self._lines += len(batch)

    def _compact(self) -> None:
        """Rewrite the journal as exactly the live records."""
        records = dict(self._live())
        header = json.dumps({"format": FORMAT, "base_url": self.base_url}) + "\n"
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=directory
        )
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(header)
                stream.write("".join(_line(key, value) for key, value in records.items()))
                stream.flush()
                os.fsync(stream.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self._lines, self._keys, self._rewrite = len(records), set(records), False


def _line(key: str, value: Any) -> str:
    return json.dumps({"k": key, "v": value}, separators=(",", ":"), ensure_ascii=False) + "\n"
