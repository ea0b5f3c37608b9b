"""The delivery queue on both engines: stored once, claimed once, retried, reclaimed, coalesced."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from github_app.store import deliveries
from github_app.store.db import Database
from github_app.store.errors import NotFoundError
from github_app.store.migrate import open_database
from github_app.store.models import DeliveryState
from tests.store_helpers import failed_deliveries

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _record(
    db: Database,
    guid: str,
    *,
    event: str = "push",
    ref: str | None = "refs/heads/main",
    repository_id: int | None = 7,
    at: datetime = T0,
) -> bool:
    with db.session() as session:
        return deliveries.record_delivery(
            session,
            guid,
            event,
            None,
            1,
            repository_id,
            {"guid": guid},
            ref=ref,
            received_at=at,
        )


def test_a_duplicate_guid_is_stored_once(db: Database) -> None:
    assert _record(db, "guid-1") is True
    assert _record(db, "guid-1") is False
    with db.session() as session:
        stored = deliveries.get_delivery(session, "guid-1")
        assert stored is not None and json.loads(stored.payload) == {"guid": "guid-1"}
        assert deliveries.queue_stats(session, T0).pending == 1


def test_concurrent_duplicates_are_stored_once(db: Database) -> None:
    """Two sessions racing to store one GUID: exactly one wins, neither fails."""
    barrier = threading.Barrier(4)
    results: list[bool] = []

    def intake() -> None:
        barrier.wait()
        results.append(_record(db, "same-guid"))

    threads = [threading.Thread(target=intake) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]


def test_invalid_guid_is_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="GUID"):
        _record(db, " ")


def test_claim_retry_backoff_and_finish(db: Database) -> None:
    _record(db, "a")
    _record(db, "b")
    with db.session() as session:
        first = deliveries.claim_next(session, "w1", T0)
        assert first is not None and first.guid == "a"
        assert (first.state, first.claimed_by, first.attempts) == ("processing", "w1", 1)
        second = deliveries.claim_next(session, "w1", T0)
        assert second is not None and second.guid == "b"
        assert deliveries.claim_next(session, "w1", T0) is None
        deliveries.mark_retry(session, first.id, "GitHub 502", T0 + timedelta(seconds=30))
        deliveries.mark_done(session, second.id, T0)

    with db.session() as session:
        assert deliveries.claim_next(session, "w1", T0 + timedelta(seconds=29)) is None
        again = deliveries.claim_next(session, "w2", T0 + timedelta(seconds=30))
        assert again is not None and again.guid == "a" and again.attempts == 2
        assert again.last_error == "GitHub 502"
        deliveries.mark_failed(session, again.id, "gave up", T0 + timedelta(seconds=31))
        stats = deliveries.queue_stats(session, T0)
        assert (stats.pending, stats.processing, stats.failed) == (0, 0, 1)
        assert [d.guid for d in failed_deliveries(session)] == ["a"]
        with pytest.raises(NotFoundError):
            deliveries.mark_done(session, 987654, T0)


def test_an_expired_claim_is_picked_up_again(db: Database) -> None:
    """A worker that crashed mid-delivery: after its lease the delivery is processed again."""
    _record(db, "crash")
    lease = timedelta(minutes=5)
    with db.session() as session:
        assert deliveries.claim_next(session, "dead-worker", T0, lease=lease) is not None
    with db.session() as session:
        assert deliveries.claim_next(session, "w2", T0 + lease) is None  # lease still running
        reclaimed = deliveries.claim_next(session, "w2", T0 + lease + timedelta(seconds=1))
        assert reclaimed is not None
        assert (reclaimed.guid, reclaimed.claimed_by, reclaimed.attempts) == ("crash", "w2", 2)


def test_coalescing_and_metrics(db: Database) -> None:
    _record(db, "p1", at=T0)
    _record(db, "other-branch", ref="refs/heads/dev", at=T0 + timedelta(seconds=1))
    _record(db, "other-repo", repository_id=8, at=T0 + timedelta(seconds=2))
    with db.session() as session:
        first = deliveries.get_delivery(session, "p1")
        assert first is not None
        assert not deliveries.has_newer_push(session, 7, "refs/heads/main", first.id)
    _record(db, "p2", at=T0 + timedelta(seconds=3))
    with db.session() as session:
        assert deliveries.has_newer_push(session, 7, "refs/heads/main", first.id)
        stats = deliveries.queue_stats(session, T0 + timedelta(seconds=10))
        assert stats.pending == 4 and stats.oldest_pending_age == 10.0


def test_an_empty_queue(db: Database) -> None:
    with db.session() as session:
        stats = deliveries.queue_stats(session)
        assert (stats.pending, stats.oldest_pending_age) == (0, None)
        assert deliveries.claim_next(session, "w") is None


@pytest.mark.postgres
def test_skip_locked_workers_never_share_a_delivery(postgres_url: str) -> None:
    db = open_database(postgres_url, auto_upgrade=True)
    try:
        for number in range(40):
            _record(db, f"d{number}")
        # A claim held open (not committed) does not block another worker, who gets the next.
        with db.session() as holder:
            held = deliveries.claim_next(holder, "holder", T0)
            with db.session() as other:
                other.execute(_statement_timeout())
                taken = deliveries.claim_next(other, "other", T0)
                assert held is not None and taken is not None and taken.id != held.id
                deliveries.mark_done(other, taken.id, T0)
            deliveries.mark_done(holder, held.id, T0)

        processed: list[str] = []
        lock = threading.Lock()

        def worker(name: str) -> None:
            while True:
                with db.session() as session:
                    delivery = deliveries.claim_next(session, name, T0)
                    if delivery is None:
                        return
                    deliveries.mark_done(session, delivery.id, T0)
                with lock:
                    processed.append(delivery.guid)

        threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(processed) == 38 and len(set(processed)) == 38
        with db.session() as session:
            assert deliveries.queue_stats(session, T0).pending == 0
            done = deliveries.get_delivery(session, "d39")
            assert done is not None and done.state == DeliveryState.DONE
    finally:
        db.dispose()


def _statement_timeout():
    from sqlalchemy import text

    return text("SET LOCAL statement_timeout = '2s'")  # a blocked claim fails instead of hanging
