"""Scheduled jobs: one run at a time under a lease, and from the CLI for cron (SPEC F8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from app import JOBS, run_job, start_scheduler
from blueprints.common import lease
from blueprints.common.outbox import enqueue
from models import JobLease, OutboxEmail, utcnow


def _queue_email(session, to="ops@example.com", at=datetime(2030, 1, 1, tzinfo=UTC)):
    enqueue(
        session,
        to,
        "Reset your passphrase",
        "passphrase_reset",
        now=at,
        link="http://localhost/passphrase/reset/t",
        minutes=60,
    )
    session.commit()


def _sent(session) -> bool:
    session.expire_all()
    return session.scalar(select(OutboxEmail.sent_at)) is not None


def _hold_lease(name: str, holder: str = "another-process") -> None:
    assert lease.acquire(name, holder, timedelta(minutes=10))


def test_run_job_runs_the_job_at_the_given_time(app, session, smtp_server):
    _queue_email(session)
    # Not due yet at an earlier `now`: the job really uses the time it is given.
    assert run_job(app, "deliver-outbox", datetime(2029, 12, 31, tzinfo=UTC))["sent"] == 0
    result = run_job(app, "deliver-outbox", datetime(2030, 1, 2, tzinfo=UTC))
    assert result == {"sent": 1, "retried": 0, "failed": 0}
    assert smtp_server.messages[0].rcpt_tos == ["ops@example.com"]
    session.expire_all()
    row = session.get(JobLease, "deliver-outbox")
    assert row.holder is None
    assert row.runs == 2


def test_run_job_skips_while_another_process_holds_the_lease(app, session, smtp_server):
    _queue_email(session)
    _hold_lease("deliver-outbox")
    assert run_job(app, "deliver-outbox", datetime(2030, 1, 2, tzinfo=UTC)) is None
    assert smtp_server.messages == []
    assert not _sent(session)
    session.expire_all()
    # The other process's lease is left alone.
    assert session.get(JobLease, "deliver-outbox").holder == "another-process"


def test_run_job_runs_again_once_the_lease_is_released(app, session, smtp_server):
    _queue_email(session)
    _hold_lease("deliver-outbox", "worker-a")
    assert run_job(app, "deliver-outbox", datetime(2030, 1, 2, tzinfo=UTC)) is None
    lease.release("deliver-outbox", "worker-a")
    assert run_job(app, "deliver-outbox", datetime(2030, 1, 2, tzinfo=UTC))["sent"] == 1


def test_lease_of_one_job_does_not_block_another(app, session):
    _hold_lease("recheck-domains")
    assert run_job(app, "deliver-outbox", utcnow()) is not None


def test_cli_job_run_prints_its_result(app, session, smtp_server):
    _queue_email(session, at=utcnow())
    result = app.test_cli_runner().invoke(args=["jobs", "run", "deliver-outbox"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "deliver-outbox: sent=1 retried=0 failed=0"
    assert len(smtp_server.messages) == 1


def test_cli_job_run_says_when_it_skips(app, session):
    _hold_lease("deliver-outbox")
    result = app.test_cli_runner().invoke(args=["jobs", "run", "deliver-outbox"])
    assert result.exit_code == 0
    assert "deliver-outbox: skipped, another process is running it" in result.output


def test_cli_job_run_of_an_unknown_job_is_a_usage_error(app):
    result = app.test_cli_runner().invoke(args=["jobs", "run", "nonexistent"])
    assert result.exit_code == 2
    assert "Invalid value" in result.output
    assert "deliver-outbox" in result.output  # it lists the valid names


def test_cli_job_list_names_every_job(app):
    result = app.test_cli_runner().invoke(args=["jobs", "list"])
    assert result.exit_code == 0
    assert result.output.split() == list(JOBS)


@pytest.mark.parametrize("name", sorted(JOBS))
def test_every_job_runs_once_from_the_cli(app, name):
    result = app.test_cli_runner().invoke(args=["jobs", "run", name])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{name}: ")
    assert "skipped" not in result.output


def test_scheduler_schedules_every_job(app):
    scheduler = start_scheduler(app)
    try:
        assert {job.id for job in scheduler.get_jobs()} == set(JOBS)
        assert all(job.max_instances == 1 for job in scheduler.get_jobs())
    finally:
        scheduler.shutdown(wait=False)


class TestSchedulerUnderTesting:
    @pytest.fixture
    def config_overrides(self):
        return {"SCHEDULER_ENABLED": True}

    def test_scheduler_stays_off_in_tests_even_when_enabled(self, app):
        assert app.config["SCHEDULER_ENABLED"] is True
        assert "scheduler" not in app.extensions
