"""Every process schedules every job; the lease, given the time a run fell due, lets one
process run it once per due time (SPEC F8, F14). tests/common/test_instances.py runs it
with four real processes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app import JOBS, start_scheduler
from blueprints.common import lease
from blueprints.common.schedule import due_time, trigger

TTL = timedelta(minutes=10)
DAY = datetime(2030, 1, 2, tzinfo=UTC)


def at(hours: int, minutes: int = 0, seconds: float = 0) -> datetime:
    return DAY + timedelta(hours=hours, minutes=minutes, seconds=seconds)


@pytest.mark.parametrize(
    ("spec", "now", "due"),
    [
        # A daily run at 08:00, asked just after, long after, and the day before.
        ({"trigger": "cron", "hour": 8, "minute": 0}, at(8, 0, 0.3), at(8)),
        ({"trigger": "cron", "hour": 8, "minute": 0}, at(8), at(8)),
        ({"trigger": "cron", "hour": 8, "minute": 0}, at(23, 59), at(8)),
        ({"trigger": "cron", "hour": 8, "minute": 0}, at(7, 59), at(8) - timedelta(days=1)),
        # Every two seconds, and a late tick: the latest due time, not the one missed.
        ({"trigger": "cron", "second": "*/2"}, at(10, 0, 1.9), at(10)),
        ({"trigger": "cron", "second": "*/2"}, at(10, 0, 5.5), at(10, 0, 4)),
        # An interval counts from its start.
        (
            {"trigger": "interval", "seconds": 30, "start_date": at(9)},
            at(9, 1, 10),
            at(9, 1),
        ),
    ],
)
def test_due_time_is_the_latest_time_the_job_fell_due(spec, now, due):
    assert due_time(trigger(spec), now) == due


def test_due_time_is_none_before_an_interval_starts():
    assert (
        due_time(trigger({"trigger": "interval", "hours": 1, "start_date": at(9)}), at(8)) is None
    )


def test_a_run_for_a_due_time_is_not_run_again_by_a_later_tick(session):
    """Process A runs the 08:00 run and ends it; process B's tick for 08:00 comes a
    moment later and skips; the 08:00 run of the next day is taken."""
    due = at(8)
    assert lease.acquire("job", "a", TTL, now=due + timedelta(milliseconds=5), due=due)
    lease.release("job", "a", now=due + timedelta(milliseconds=9))

    again = lease.acquire("job", "b", TTL, now=due + timedelta(milliseconds=12), due=due)
    tomorrow = due + timedelta(days=1)
    next_day = lease.acquire("job", "b", TTL, now=tomorrow, due=tomorrow)

    assert (again, next_day) == (False, True)


def test_a_run_without_a_due_time_is_only_held_off_by_a_running_one(session):
    """`flask jobs run` (cron, an operator) runs the job whenever nobody is running it."""
    assert lease.acquire("job", "a", TTL, now=at(8), due=at(8))
    lease.release("job", "a", now=at(8, 0, 1))

    assert lease.acquire("job", "cli", TTL, now=at(8, 0, 2)) is True


class TestJobSchedule:
    @pytest.fixture
    def config_overrides(self):
        return {"JOB_SCHEDULE": {"deliver-outbox": {"trigger": "interval", "seconds": 5}}}

    def test_job_schedule_replaces_a_jobs_trigger(self, app):
        scheduler = start_scheduler(app)
        try:
            jobs = {job.id: job for job in scheduler.get_jobs()}
            assert set(jobs) == set(JOBS)
            assert jobs["deliver-outbox"].trigger.interval == timedelta(seconds=5)
            assert jobs["purge-sso"].trigger.interval == timedelta(hours=1)
        finally:
            scheduler.shutdown(wait=False)


def test_an_interval_falls_due_at_the_same_times_in_every_process():
    """Two processes started 7 s apart: every 30 s means the same instants in both (an
    interval counted from each start would give each its own due times, and each would
    run the job)."""
    first = trigger({"trigger": "interval", "seconds": 30})
    second = trigger({"trigger": "interval", "seconds": 30})
    now = datetime.now(UTC)

    assert due_time(first, now) == due_time(second, now + timedelta(microseconds=1))
    assert due_time(first, now).second in (0, 30)


def test_jitter_delays_the_tick_not_the_due_time():
    spec = {"trigger": "cron", "second": "*/2", "jitter": 1}
    assert due_time(trigger(spec, jitter=False), at(10, 0, 3.5)) == at(10, 0, 2)
