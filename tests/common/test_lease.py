"""Database leases: each scheduled job runs in one process at a time (SPEC F8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from blueprints.common import lease
from models import JobLease

NOW = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
TTL = timedelta(minutes=10)


def _row(session, name="job") -> JobLease:
    session.expire_all()
    return session.get(JobLease, name)


def test_held_lease_cannot_be_taken_by_a_second_holder(session):
    assert lease.acquire("job", "worker-a", TTL, now=NOW) is True
    assert lease.acquire("job", "worker-b", TTL, now=NOW + timedelta(minutes=9)) is False
    row = _row(session)
    assert row.holder == "worker-a"
    assert row.expires_at == NOW + TTL
    assert row.last_started_at == NOW


def test_held_lease_cannot_be_taken_twice_by_its_holder(session):
    """A process whose previous run is still going does not start a second one."""
    assert lease.acquire("job", "worker-a", TTL, now=NOW) is True
    assert lease.acquire("job", "worker-a", TTL, now=NOW) is False


def test_expired_lease_is_taken_over(session):
    """A worker that crashed mid-run does not block the job for ever."""
    assert lease.acquire("job", "crashed", TTL, now=NOW) is True
    assert lease.acquire("job", "worker-b", TTL, now=NOW + TTL) is True
    row = _row(session)
    assert row.holder == "worker-b"
    assert row.expires_at == NOW + 2 * TTL
    # The crashed worker coming back cannot release the new holder's lease.
    lease.release("job", "crashed", now=NOW + TTL)
    assert _row(session).holder == "worker-b"


def test_released_lease_can_be_taken_by_another_holder(session):
    assert lease.acquire("job", "worker-a", TTL, now=NOW) is True
    lease.release("job", "worker-a", now=NOW + timedelta(seconds=5))
    row = _row(session)
    assert row.holder is None
    assert row.runs == 1
    assert row.last_finished_at == NOW + timedelta(seconds=5)
    assert row.last_error is None
    assert lease.acquire("job", "worker-b", TTL, now=NOW + timedelta(seconds=6)) is True


def test_release_records_the_error_of_a_failed_run(session):
    lease.acquire("job", "worker-a", TTL, now=NOW)
    lease.release("job", "worker-a", error="RuntimeError: boom", now=NOW)
    row = _row(session)
    assert row.last_error == "RuntimeError: boom"
    assert row.holder is None
    # The next successful run clears it.
    lease.acquire("job", "worker-a", TTL, now=NOW)
    lease.release("job", "worker-a", now=NOW)
    assert _row(session).last_error is None
    assert _row(session).runs == 2


def test_leases_of_different_jobs_are_independent(session):
    assert lease.acquire("job-one", "worker-a", TTL, now=NOW) is True
    assert lease.acquire("job-two", "worker-b", TTL, now=NOW) is True


def test_only_one_of_many_racing_workers_gets_the_lease(app):
    """Workers asking for a new job's lease at the same moment: exactly one wins."""
    import threading

    from app import db

    start = threading.Barrier(4)
    won: list[str] = []
    errors: list[Exception] = []

    def worker(holder: str):
        with app.app_context():
            start.wait()
            try:
                if lease.acquire("race", holder, TTL, now=NOW):
                    won.append(holder)
            except Exception as exc:
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(won) == 1


def test_new_holder_names_are_unique():
    assert len({lease.new_holder() for _ in range(50)}) == 50
