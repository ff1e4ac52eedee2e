"""Streaming the audit log to a SIEM (SPEC F10), against a real HTTP receiver on loopback
that verifies every signature: the owner starts a stream behind the passphrase and sees
its secret once; every event of the account (and only of it) reaches the receiver, in
order, exactly once, even when the receiver is down for an hour; a test event from the
page; the secret revealed again, the stream stopped; URLs into our own network refused."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from blueprints.audit import jobs, streaming
from blueprints.common import audit, outbound
from models import AuditDelivery, AuditEvent, AuditStream
from tests import factories
from tests.audit.receiver import Receiver

PAGE = "/enterprise/audit/streaming"
HTMX = {"HX-Request": "true"}
SECRET = re.compile(r'<code id="stream-secret">(whsec_[\w-]+)</code>')
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def receiver():
    running = Receiver().start()
    yield running
    running.stop()


def start_streaming(client, url: str, passphrase: str = factories.PASSPHRASE):
    return client.post(PAGE, data={"endpoint_url": url, "passphrase": passphrase}, headers=HTMX)


@pytest.fixture
def streaming_to(as_owner, receiver, session, account):
    """The owner has started a stream to the receiver, which knows the secret; the
    events written so far (the sign-in, the start) are delivered and forgotten."""
    response = start_streaming(as_owner, receiver.url)
    assert response.status_code == 200, response.get_data(as_text=True)
    receiver.secret = SECRET.search(response.get_data(as_text=True)).group(1)
    jobs.deliver_streams(NOW)
    receiver.accepted.clear()
    receiver.ids.clear()
    return receiver


def record(session, account, action: str, **values) -> int:
    event = audit.record(session, action, account_id=account.id, **values)
    session.commit()
    return event.id


def queued(session) -> int:
    return session.scalar(select(func.count()).select_from(AuditDelivery))


def test_only_owners_and_co_owners_configure_streaming(client, session, account, login_as):
    member = factories.make_user(session, account, "m@example.com", role="member")
    login_as(member)

    assert client.get(PAGE).status_code == 403
    assert start_streaming(client, "https://siem.example.com/x").status_code == 403
    assert session.scalar(select(func.count()).select_from(AuditStream)) == 0


def test_starting_a_stream_shows_its_secret_once_and_stores_it_encrypted(
    as_owner, receiver, session, account
):
    assert "Start streaming" in as_owner.get(PAGE).get_data(as_text=True)

    response = start_streaming(as_owner, receiver.url)

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    secret = SECRET.search(page).group(1)
    stream = session.scalar(select(AuditStream))
    assert stream.account_id == account.id and stream.endpoint_url == receiver.url
    assert secret not in stream.secret_encrypted and streaming.secret(stream) == secret
    # Shown once: the page afterwards has the state and the actions, not the secret.
    again = as_owner.get(PAGE).get_data(as_text=True)
    assert secret not in again
    assert "Send test event" in again and "Reveal secret" in again
    started = session.scalar(
        select(AuditEvent).where(AuditEvent.action == "audit.stream_configured")
    )
    assert started.target == receiver.url and secret not in str(started.detail)


def test_the_audit_log_names_the_endpoint_without_its_query(as_owner, receiver, session):
    """A receiver's key may ride in the query (some SIEMs' intake URLs): not logged."""
    response = start_streaming(as_owner, receiver.url + "?api-key=k3y")

    assert response.status_code == 200
    started = session.scalar(
        select(AuditEvent).where(AuditEvent.action == "audit.stream_configured")
    )
    assert started.target == receiver.url


def test_a_wrong_passphrase_starts_nothing_and_counts(as_owner, receiver, session):
    response = start_streaming(as_owner, receiver.url, passphrase="not my passphrase")

    assert response.status_code == 422
    assert "That passphrase is incorrect." in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(AuditStream)) == 0
    refused = session.scalar(
        select(AuditEvent).where(AuditEvent.action == "user.passphrase_refused")
    )
    assert refused is not None  # kept although the answer was an error


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "Enter the URL of your endpoint."),
        ("ftp://siem.example.com/in", "The URL must start with https://."),
        ("http://siem.example.com/in", "The URL must start with https://."),
        ("https://siem example.com/in", "The URL contains spaces or control characters."),
        ("https://user:pw@siem.example.com/in", "Put credentials in the receiver's settings"),
        ("https://127.0.0.1/in", "private, loopback or reserved"),
        ("https://localhost:8443/in", "private, loopback or reserved"),
        ("https://10.1.2.3/in", "private, loopback or reserved"),
        ("https://192.168.0.10/in", "private, loopback or reserved"),
        ("https://169.254.169.254/latest/meta-data", "private, loopback or reserved"),
        ("https://100.64.0.1/in", "private, loopback or reserved"),
        ("https://[::1]/in", "private, loopback or reserved"),
        ("https://[fd00::1]/in", "private, loopback or reserved"),
        ("https://[::ffff:127.0.0.1]/in", "private, loopback or reserved"),
        ("https://no-such-host.invalid/in", "does not resolve"),
    ],
)
def test_urls_into_our_own_network_are_refused_next_to_the_field(
    app, as_owner, session, url, message
):
    app.config["OUTBOUND_ALLOW_PRIVATE"] = False  # production

    response = start_streaming(as_owner, url)

    page = response.get_data(as_text=True)
    assert response.status_code == 422
    error = re.search(r'<p class="error" id="endpoint_url-error">([^<]*)</p>', page)
    assert error and message in error.group(1).replace("&#39;", "'")
    assert session.scalar(select(func.count()).select_from(AuditStream)) == 0


def test_a_stored_url_that_now_resolves_inside_is_not_requested(app):
    """The address is checked again at each delivery (the host's DNS may have changed)."""
    app.config["OUTBOUND_ALLOW_PRIVATE"] = False
    answer = outbound.post("https://localhost/in", b"{}", {})

    assert not answer.ok and answer.status is None and "private" in answer.error


def test_every_event_reaches_the_receiver_signed_in_order_once(
    streaming_to, session, account, owner
):
    ids = [
        record(session, account, "domain.added", actor_user_id=owner.id, target="domain:a.test"),
        record(session, account, "sso.enabled", actor_user_id=owner.id),
        record(
            session,
            account,
            "member.deactivate",
            target="member:x@example.com",
            detail={"changes": {"active": [True, False]}},
        ),
    ]

    result = jobs.deliver_streams(NOW)

    assert result == {"streams": 1, "delivered": 3, "failed": 0}
    assert streaming_to.ids == [str(i) for i in ids]
    assert streaming_to.actions == ["domain.added", "sso.enabled", "member.deactivate"]
    first = streaming_to.accepted[0]
    assert first["actor"] == owner.email and first["resource"] == "domain:a.test"
    assert streaming_to.accepted[2]["detail"] == {"changes": {"active": [True, False]}}
    assert streaming_to.bad_signatures == 0
    assert queued(session) == 0
    assert jobs.deliver_streams(NOW) == {"streams": 0, "delivered": 0, "failed": 0}
    assert len(streaming_to.ids) == 3  # nothing sent twice


def test_another_accounts_events_never_reach_this_stream(streaming_to, session, account):
    other = factories.make_account(session, name="Other Inc")
    record(session, other, "domain.added", target="domain:secret.test")
    record(session, account, "domain.added", target="domain:mine.test")

    jobs.deliver_streams(NOW)

    assert [e["resource"] for e in streaming_to.accepted] == ["domain:mine.test"]


def test_a_rolled_back_change_sends_nothing(streaming_to, session, account):
    audit.record(session, "domain.added", account_id=account.id, target="domain:gone.test")
    session.flush()
    session.rollback()

    assert queued(session) == 0
    jobs.deliver_streams(NOW)
    assert streaming_to.accepted == []


def test_a_receiver_down_for_an_hour_gets_everything_once_in_order_afterwards(
    streaming_to, session, account, as_owner
):
    streaming_to.stop()
    ids = [record(session, account, "domain.added", target=f"domain:d{i}.test") for i in range(3)]

    assert jobs.deliver_streams(NOW) == {"streams": 1, "delivered": 0, "failed": 1}
    stream = session.scalar(select(AuditStream))
    assert stream.failures == 1 and stream.next_attempt_at == NOW + timedelta(seconds=30)
    assert "Could not connect to 127.0.0.1" in stream.last_error
    page = as_owner.get(PAGE).get_data(as_text=True)
    assert "Retrying" in page and "Could not connect" in page and "3 events" in page

    # Not due again before its backoff; then failing on, further apart each time, for
    # an hour, while events keep coming.
    assert jobs.deliver_streams(NOW + timedelta(seconds=10))["streams"] == 0
    back = NOW + timedelta(hours=1)
    while (at := session.scalar(select(AuditStream.next_attempt_at))) < back:
        assert jobs.deliver_streams(at)["failed"] == 1
        ids.append(record(session, account, "sso.enabled"))
    stream = session.scalar(select(AuditStream))
    assert stream.failures == 8  # after 30 s, 1, 2, 4, 8 minutes, then every 15
    assert at - back <= jobs.BACKOFF_CAP

    streaming_to.start()  # back after an hour: caught up at the next attempt
    result = jobs.deliver_streams(at)

    assert result == {"streams": 1, "delivered": len(ids), "failed": 0}
    assert streaming_to.ids == [str(i) for i in ids]
    assert queued(session) == 0
    page = as_owner.get(PAGE).get_data(as_text=True)
    assert "Streaming" in page and "0 events" in page and "Retrying" not in page


def test_a_refusal_is_retried_and_holds_back_later_events(streaming_to, session, account):
    streaming_to.answer = 503
    first = record(session, account, "domain.added", target="domain:first.test")
    jobs.deliver_streams(NOW)
    second = record(session, account, "domain.added", target="domain:second.test")
    stream = session.scalar(select(AuditStream))
    assert stream.last_status == 503 and "receiver refuses for now" in stream.last_error

    streaming_to.answer = 200
    jobs.deliver_streams(NOW + timedelta(minutes=1))

    assert streaming_to.ids == [str(first), str(second)]


def test_a_stream_claimed_by_another_process_is_left_to_it(streaming_to, session, account):
    record(session, account, "domain.added")
    stream_id = session.scalar(select(AuditStream.id))

    assert jobs._claim(stream_id, NOW)
    assert jobs.deliver_streams(NOW)["streams"] == 0  # claimed: not due here
    assert not jobs._claim(stream_id, NOW)
    assert jobs.deliver_streams(NOW + jobs.CLAIM + timedelta(seconds=1))["delivered"] == 1


def test_send_test_event_shows_the_outcome_at_once(streaming_to, as_owner, session):
    response = as_owner.post(f"{PAGE}/test", headers=HTMX)

    assert response.status_code == 200
    assert "Test event delivered (HTTP 204)" in response.get_data(as_text=True)
    assert streaming_to.actions == ["audit.stream_test"]
    assert streaming_to.ids[0].startswith("test-")

    streaming_to.stop()
    response = as_owner.post(f"{PAGE}/test", headers=HTMX)
    assert "Test event not delivered: Could not connect" in response.get_data(as_text=True)


def test_reveal_secret_asks_for_the_passphrase(streaming_to, as_owner, session):
    form = as_owner.get(f"{PAGE}/reveal", headers=HTMX).get_data(as_text=True)
    assert 'name="passphrase"' in form and "whsec_" not in form

    wrong = as_owner.post(f"{PAGE}/reveal", data={"passphrase": "nope"}, headers=HTMX)
    assert wrong.status_code == 422 and "whsec_" not in wrong.get_data(as_text=True)

    right = as_owner.post(f"{PAGE}/reveal", data={"passphrase": factories.PASSPHRASE}, headers=HTMX)
    assert SECRET.search(right.get_data(as_text=True)).group(1) == streaming_to.secret
    assert (
        session.scalar(
            select(func.count()).where(AuditEvent.action == "audit.stream_secret_revealed")
        )
        == 1
    )


def test_changing_the_endpoint_keeps_the_secret_and_the_queue(
    streaming_to, as_owner, session, account
):
    streaming_to.stop()
    waiting = record(session, account, "domain.added")
    moved = Receiver().start()
    moved.secret = streaming_to.secret
    try:
        response = as_owner.post(
            PAGE,
            data={"endpoint_url": moved.url, "passphrase": factories.PASSPHRASE},
            headers=HTMX,
        )
        assert response.status_code == 200
        assert "the signing secret is unchanged" in response.get_data(as_text=True)
        jobs.deliver_streams(NOW)
        assert moved.ids[0] == str(waiting)
        assert moved.actions == ["domain.added", "audit.stream_changed"]
    finally:
        moved.stop()


def test_stopping_the_stream_drops_its_queue_not_the_log(streaming_to, as_owner, session, account):
    streaming_to.stop()
    record(session, account, "domain.added")
    assert queued(session) == 1

    response = as_owner.post(
        f"{PAGE}/remove", data={"passphrase": factories.PASSPHRASE}, headers=HTMX
    )

    assert response.status_code == 200
    assert "Streaming stopped" in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(AuditStream)) == 0
    assert queued(session) == 0
    record(session, account, "sso.enabled")
    assert queued(session) == 0
    assert session.scalar(select(func.count()).where(AuditEvent.action == "domain.added")) == 1


def test_each_owner_sees_only_their_own_stream(streaming_to, client, session, login_as):
    other = factories.make_account(session, name="Other Inc")
    other_owner = factories.make_user(session, other, "owner@example.org", role="owner")
    client.get("/logout")
    login_as(other_owner)

    page = client.get(PAGE).get_data(as_text=True)
    assert streaming_to.url not in page and "Start streaming" in page
    assert client.post(f"{PAGE}/test", headers=HTMX).status_code == 404
    assert client.get(f"{PAGE}/reveal", headers=HTMX).status_code == 404


def test_the_purge_forgets_events_past_the_retention_and_their_deliveries(
    app, streaming_to, session, account
):
    streaming_to.stop()
    old = record(session, account, "domain.added")
    session.execute(
        AuditEvent.__table__.update()
        .where(AuditEvent.id == old)
        .values(created_at=NOW - timedelta(days=366))
    )
    kept = record(session, account, "sso.enabled")
    session.commit()
    app.config["AUDIT_RETENTION_DAYS"] = 365

    assert jobs.purge_events(NOW)["deleted"] >= 1

    assert session.get(AuditEvent, old) is None and session.get(AuditEvent, kept) is not None
    assert session.scalars(select(AuditDelivery.event_id)).all() == [kept]


def test_the_purge_works_in_batches(app, session, account, monkeypatch):
    monkeypatch.setattr(jobs, "PURGE_BATCH", 3)
    for _ in range(7):
        record(session, account, "domain.added")
    session.execute(AuditEvent.__table__.update().values(created_at=NOW - timedelta(days=400)))
    session.commit()

    assert jobs.purge_events(NOW) == {"deleted": 7}
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0
