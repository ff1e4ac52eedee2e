"""The durable email outbox (SPEC F7): nothing lost, nothing sent twice, retried with backoff.

Delivery goes to a real SMTP server on loopback (`smtp_server`); "SMTP is down" is a
loopback port nothing listens on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from blueprints.common import outbox
from blueprints.common.outbox import MAX_ATTEMPTS, backoff, deliver_due, enqueue
from models import OutboxEmail
from tests.common.mail import closed_port, html_of, point_mail_at, received, text_of

NOW = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
LINK = "http://localhost/passphrase/reset/some-token"


def _enqueue(session, to="someone@example.com", **kwargs) -> bool:
    queued = enqueue(
        session,
        to,
        "Reset your passphrase",
        "passphrase_reset",
        now=kwargs.pop("now", NOW),
        link=LINK,
        minutes=60,
        **kwargs,
    )
    session.commit()
    return queued


def _rows(session) -> list[OutboxEmail]:
    session.expire_all()
    return session.scalars(select(OutboxEmail).order_by(OutboxEmail.id)).all()


def test_queued_email_is_delivered_over_smtp(session, smtp_server):
    _enqueue(session, "dana@example.com")
    assert deliver_due(NOW) == {"sent": 1, "retried": 0, "failed": 0}

    (message,) = received(smtp_server)
    assert smtp_server.messages[0].rcpt_tos == ["dana@example.com"]
    assert message["To"] == "dana@example.com"
    assert message["From"] == "identity@localhost"
    assert message["Subject"] == "Reset your passphrase"
    assert LINK in text_of(message)
    assert f'<a href="{LINK}">' in html_of(message)
    (row,) = _rows(session)
    assert row.sent_at == NOW
    assert row.attempts == 1
    assert row.last_error is None


def test_email_of_a_rolled_back_transaction_is_never_sent(session, smtp_server):
    enqueue(session, "x@example.com", "Subject", "passphrase_reset", now=NOW, link=LINK, minutes=1)
    session.rollback()
    assert deliver_due(NOW + timedelta(hours=1))["sent"] == 0
    assert smtp_server.messages == []
    assert _rows(session) == []


def test_email_is_not_sent_before_it_is_due(session, smtp_server):
    _enqueue(session, now=NOW)
    assert deliver_due(NOW - timedelta(seconds=1))["sent"] == 0
    assert smtp_server.messages == []


def test_delivery_is_retried_with_backoff_while_smtp_is_down(app, session, request):
    point_mail_at(app, closed_port())
    _enqueue(session)

    assert deliver_due(NOW) == {"sent": 0, "retried": 1, "failed": 0}
    (row,) = _rows(session)
    assert row.sent_at is None
    assert row.failed_at is None
    assert row.attempts == 1
    assert row.next_attempt_at == NOW + backoff(1) == NOW + timedelta(minutes=1)
    assert row.claimed_until is None
    assert "ConnectionRefusedError" in row.last_error

    # Still down a minute later: the next wait doubles.
    assert deliver_due(NOW + timedelta(minutes=1))["retried"] == 1
    (row,) = _rows(session)
    assert row.attempts == 2
    assert row.next_attempt_at == NOW + timedelta(minutes=1) + timedelta(minutes=2)

    smtp_server = request.getfixturevalue("smtp_server")  # SMTP comes back
    assert deliver_due(NOW + timedelta(minutes=2))["sent"] == 0  # not due yet
    assert deliver_due(NOW + timedelta(minutes=3))["sent"] == 1
    assert deliver_due(NOW + timedelta(hours=1))["sent"] == 0
    assert len(smtp_server.messages) == 1
    (row,) = _rows(session)
    assert row.sent_at == NOW + timedelta(minutes=3)
    assert row.attempts == 3
    assert row.last_error is None


def test_backoff_doubles_and_is_capped():
    assert [backoff(n) for n in (1, 2, 3, 4)] == [timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert backoff(MAX_ATTEMPTS) == timedelta(hours=6)
    assert backoff(100) == timedelta(hours=6)


def test_email_is_given_up_after_max_attempts(app, session, request):
    point_mail_at(app, closed_port())
    _enqueue(session)
    (row,) = _rows(session)
    row.attempts = MAX_ATTEMPTS - 1
    session.commit()

    assert deliver_due(NOW) == {"sent": 0, "retried": 0, "failed": 1}
    (row,) = _rows(session)
    assert row.failed_at == NOW
    assert row.attempts == MAX_ATTEMPTS
    assert row.last_error

    smtp_server = request.getfixturevalue("smtp_server")
    assert deliver_due(NOW + timedelta(days=1))["sent"] == 0
    assert smtp_server.messages == []


def test_email_claimed_by_another_process_is_not_sent(session, smtp_server):
    _enqueue(session)
    (row,) = _rows(session)
    row.claimed_until = NOW + timedelta(minutes=5)  # another worker is sending it
    session.commit()

    assert deliver_due(NOW) == {"sent": 0, "retried": 0, "failed": 0}
    assert smtp_server.messages == []
    # A worker that died mid-send: its claim runs out and the email goes.
    assert deliver_due(NOW + timedelta(minutes=5))["sent"] == 1
    assert len(smtp_server.messages) == 1


def test_an_email_can_be_claimed_by_one_process_only(app, session):
    _enqueue(session)
    (row,) = _rows(session)
    with app.app_context():  # another process, with its own database session
        assert outbox._claim(row.id, NOW) is True
    assert outbox._claim(row.id, NOW) is False


def test_repeated_delivery_runs_never_send_an_email_twice(session, smtp_server):
    for i in range(3):
        _enqueue(session, f"user{i}@example.com")
    assert deliver_due(NOW)["sent"] == 3
    assert deliver_due(NOW)["sent"] == 0
    assert deliver_due(NOW + timedelta(days=1))["sent"] == 0
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "user0@example.com",
        "user1@example.com",
        "user2@example.com",
    ]


def test_parallel_delivery_runs_send_each_email_once(app, session, smtp_server):
    """Workers running the job at the same moment (no lease) still send each email once."""
    import threading

    from app import db

    for i in range(6):
        _enqueue(session, f"user{i}@example.com")
    start = threading.Barrier(3)
    errors: list[Exception] = []

    def worker():
        with app.app_context():
            start.wait()
            try:
                deliver_due(NOW)
            except Exception as exc:
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    recipients = sorted(m.rcpt_tos[0] for m in smtp_server.messages)
    assert recipients == [f"user{i}@example.com" for i in range(6)]
    assert all(row.sent_at == NOW and row.attempts == 1 for row in _rows(session))


def test_dedupe_key_keeps_one_email(session, smtp_server):
    assert _enqueue(session, "owner@example.com", dedupe_key="warn:1:2030-01-01") is True
    assert _enqueue(session, "owner@example.com", dedupe_key="warn:1:2030-01-01") is False
    assert _enqueue(session, "owner@example.com", dedupe_key="warn:1:2030-01-02") is True
    assert len(_rows(session)) == 2
    deliver_due(NOW)
    # Still one per key after delivery: a later sweep cannot queue it again.
    assert _enqueue(session, "owner@example.com", dedupe_key="warn:1:2030-01-01") is False
    assert deliver_due(NOW + timedelta(days=1))["sent"] == 0
    assert len(smtp_server.messages) == 2


def test_dedupe_key_holds_within_one_transaction(session):
    first = enqueue(
        session, "a@example.com", "S", "passphrase_reset", dedupe_key="k", link=LINK, minutes=1
    )
    second = enqueue(
        session, "a@example.com", "S", "passphrase_reset", dedupe_key="k", link=LINK, minutes=1
    )
    session.commit()
    assert (first, second) == (True, False)
    assert session.scalar(select(func.count()).select_from(OutboxEmail)) == 1


def test_email_is_printed_when_no_smtp_server_is_configured(app, session, capsys):
    assert app.config["MAIL_SERVER"] is None
    _enqueue(session, "dev@example.com")
    assert deliver_due(NOW)["sent"] == 1
    out = capsys.readouterr().out
    assert "----- email to dev@example.com -----" in out
    assert "Subject: Reset your passphrase" in out
    assert LINK in out
    (row,) = _rows(session)
    assert row.sent_at == NOW


@pytest.mark.parametrize("limit", [1, 2])
def test_delivery_run_sends_at_most_its_limit(session, smtp_server, limit):
    for i in range(3):
        _enqueue(session, f"user{i}@example.com")
    assert deliver_due(NOW, limit=limit)["sent"] == limit
    assert deliver_due(NOW)["sent"] == 3 - limit
    assert len(smtp_server.messages) == 3
