"""Token warnings while the automatic refresh fails (SPEC F4, F7, F8)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, update

import app as app_module
from blueprints.common import outbox
from blueprints.scim_settings import connector as service
from blueprints.scim_settings.jobs import EXPIRED_REASON, refresh_tokens, warn_expiring
from models import OutboxEmail, ScimToken, SsoConnection, utcnow
from tests import factories
from tests.common.mail import links_in, received, text_of

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
DAY = timedelta(days=1)
SSO_OFF = "Single sign-on is off."


@pytest.fixture
def team(session, ready, owner):
    """Who gets the warnings: the owner and an active co-owner; not a plain member, a
    deactivated owner or the owner of another account."""
    co_owner = factories.make_user(session, account=ready, email="co@example.com", role="co-owner")
    factories.make_user(session, account=ready, email="member@example.com", role="member")
    factories.make_user(
        session, account=ready, email="gone@example.com", role="owner", active=False
    )
    other = factories.make_account(session, name="Other Inc")
    factories.make_user(session, account=other, email="boss@other.example", role="owner")
    return [owner, co_owner]


def _sso(session, account, enabled: bool) -> None:
    session.execute(
        update(SsoConnection).where(SsoConnection.account_id == account.id).values(enabled=enabled)
    )
    session.commit()


def _failing(session, account, owner, at: datetime = T0, lifetime: str = "30") -> ScimToken:
    """SCIM enabled at `at`, its "Default" token's automatic refresh failing from its first
    attempt (at `at` + 10 days for a 30-day token: 20 days before it expires)."""
    connector = service.enable(session, account.id, owner, "okta", lifetime, at).scim_token
    _sso(session, account, False)
    first_attempt = connector.expires_at - timedelta(days=20)
    assert refresh_tokens(first_attempt)["failed"] == 1
    return connector


def _warnings(session) -> list[OutboxEmail]:
    session.expire_all()
    return list(
        session.scalars(
            select(OutboxEmail)
            .where(OutboxEmail.dedupe_key.startswith("scim-warning:"))
            .order_by(OutboxEmail.id)
        )
    )


def _addresses(emails) -> list[str]:
    return sorted(e.to_addr for e in emails)


def test_warning_emails_every_active_owner_and_co_owner(session, ready, team):
    _failing(session, ready, team[0])
    now = T0 + 10 * DAY  # 20 days left

    counts = warn_expiring(now)

    assert counts == {"connectors": 1, "queued": 2, "already_queued": 0}
    emails = _warnings(session)
    assert _addresses(emails) == sorted(u.email for u in team)
    for email in emails:
        assert email.subject == 'Your SCIM token "Default" expires in 20 days'
        assert "The token expires in 20 days, on 2026-02-04 09:30 UTC" in email.body_text
        assert f"Reason: {SSO_OFF}" in email.body_text
        assert "Example Inc" in email.body_text
        assert "Refresh Token" in email.body_text and "Passphrase" in email.body_text
        assert "http://localhost/enterprise/scim" in email.body_text
        assert 'href="http://localhost/enterprise/scim"' in email.body_html
        assert SSO_OFF in email.body_html
        assert email.next_attempt_at == now


def test_warning_is_sent_once_a_day_when_job_runs_twice_the_same_day(session, ready, team):
    _failing(session, ready, team[0])
    day = T0 + 10 * DAY

    warn_expiring(day)
    counts = warn_expiring(day + timedelta(hours=10))

    assert counts == {"connectors": 1, "queued": 0, "already_queued": 2}
    assert _addresses(_warnings(session)) == sorted(u.email for u in team)


def test_warning_is_sent_once_a_day_when_two_processes_run_the_job_at_once(
    app, session, ready, team
):
    """No lease here (two cron entries, or a cron job beside the scheduler): each thread
    has its own app context and database session; the outbox's unique key decides."""
    _failing(session, ready, team[0])
    now = T0 + 10 * DAY
    start = threading.Barrier(2)
    results, errors = [], []

    def run():
        with app.app_context():
            start.wait()
            try:
                results.append(warn_expiring(now))
            except Exception as exc:  # reported below; a thread must not swallow it
                errors.append(exc)
            finally:
                from app import db

                db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sum(r["queued"] for r in results) == 2
    assert sum(r["already_queued"] for r in results) == 2
    assert _addresses(_warnings(session)) == sorted(u.email for u in team)


def test_warning_is_sent_once_a_day_through_run_job_however_often_it_runs(
    app, session, ready, team
):
    _failing(session, ready, team[0])
    day = T0 + 10 * DAY

    first = app_module.run_job(app, "warn-scim-tokens", day)
    second = app_module.run_job(app, "warn-scim-tokens", day + timedelta(minutes=5))

    assert first == {"connectors": 1, "queued": 2, "already_queued": 0}
    assert second == {"connectors": 1, "queued": 0, "already_queued": 2}
    assert len(_warnings(session)) == 2


def test_warning_is_sent_again_the_next_day_with_one_day_less(session, ready, team):
    _failing(session, ready, team[0])

    for day in (10, 11):
        refresh_tokens(T0 + day * DAY)
        warn_expiring(T0 + day * DAY + timedelta(hours=6))

    emails = _warnings(session)
    assert [e.subject for e in emails] == ['Your SCIM token "Default" expires in 19 days'] * 2 + [
        'Your SCIM token "Default" expires in 18 days'
    ] * 2
    assert _addresses(emails[2:]) == sorted(u.email for u in team)


@pytest.mark.parametrize(
    ("before_expiry", "subject", "sentence"),
    [
        (20 * DAY, 'Your SCIM token "Default" expires in 20 days', "The token expires in 20 days"),
        (DAY, 'Your SCIM token "Default" expires in 1 day', "The token expires in 1 day,"),
        (
            timedelta(hours=5),
            'Your SCIM token "Default" expires in less than a day',
            "The token expires in less than a day",
        ),
        (
            timedelta(0),
            'Your SCIM token "Default" has expired',
            "The token expired on 2026-02-04 09:30",
        ),
        (
            -3 * DAY,
            'Your SCIM token "Default" has expired',
            "The token expired on 2026-02-04 09:30",
        ),
    ],
    ids=["20-days", "1-day", "hours", "just-expired", "expired-3-days"],
)
def test_warning_says_how_long_the_token_has_left(
    session, ready, team, before_expiry, subject, sentence
):
    connector = _failing(session, ready, team[0])
    now = connector.expires_at - before_expiry

    warn_expiring(now)

    emails = _warnings(session)
    assert len(emails) == len(team)
    assert {e.subject for e in emails} == {subject}
    assert sentence in emails[0].body_text
    assert SSO_OFF in emails[0].body_text


def test_warning_after_expiry_gives_the_expired_reason_once_refresh_has_run(session, ready, team):
    connector = _failing(session, ready, team[0])
    now = connector.expires_at + DAY
    refresh_tokens(now)

    warn_expiring(now)

    [email, _] = _warnings(session)
    assert email.subject == 'Your SCIM token "Default" has expired'
    assert EXPIRED_REASON in email.body_text
    assert "requests are refused" in email.body_text


def test_no_warning_while_expiry_is_more_than_20_days_away(session, ready, team):
    """A year-long token whose 90-day refresh fails: the failure is stored at once, but
    nobody is emailed until the expiry is 20 days away."""
    service.enable(session, ready.id, team[0], "okta", "365", T0)
    _sso(session, ready, False)
    assert refresh_tokens(T0 + 90 * DAY)["failed"] == 1

    for day in (90, 200, 344):
        assert warn_expiring(T0 + day * DAY)["connectors"] == 0
    assert _warnings(session) == []
    assert warn_expiring(T0 + 345 * DAY)["queued"] == len(team)


def test_no_warning_while_automatic_refresh_succeeds(session, ready, team):
    service.enable(session, ready.id, team[0], "okta", "30", T0)

    # Inside the window before the refresh has run: nothing is failing, nobody is warned.
    assert warn_expiring(T0 + 10 * DAY)["connectors"] == 0
    assert refresh_tokens(T0 + 10 * DAY)["refreshed"] == 1
    assert warn_expiring(T0 + 10 * DAY)["connectors"] == 0
    assert _warnings(session) == []


def test_no_warning_after_manual_refresh_fixed_it(session, ready, team):
    connector = _failing(session, ready, team[0])
    warn_expiring(T0 + 10 * DAY)
    token = session.get(ScimToken, connector.id)
    service.refresh(session, token.connector, token, team[1], T0 + 11 * DAY)

    assert warn_expiring(T0 + 11 * DAY + timedelta(hours=1))["connectors"] == 0
    assert len(_warnings(session)) == len(team)


def test_no_warning_for_a_disabled_connector(session, ready, team):
    connector = _failing(session, ready, team[0])
    service.disable(session, session.get(ScimToken, connector.id).connector, team[0], T0 + 10 * DAY)

    assert warn_expiring(T0 + 12 * DAY)["connectors"] == 0
    assert _warnings(session) == []


def test_warning_reaches_the_inbox_and_its_link_lands_on_scim_page_after_sign_in(
    app, session, ready, team, smtp_server
):
    """End to end, on the wall clock: the job queues, the outbox delivers over SMTP, and
    the link in the email, opened signed out, leads through sign-in to the SCIM page."""
    now = utcnow()
    _failing(session, ready, team[0], at=now - 10 * DAY - timedelta(hours=1))
    warn_expiring(now)

    outbox.deliver_due(now)

    warnings = [m for m in received(smtp_server) if "expires in" in m["Subject"]]
    assert sorted(m["To"] for m in warnings) == sorted(u.email for u in team)
    [message] = [m for m in warnings if m["To"] == team[0].email]
    assert message["Subject"] == 'Your SCIM token "Default" expires in 19 days'
    body = text_of(message)
    assert SSO_OFF in body
    [link] = links_in(body)
    assert link == "http://localhost/enterprise/scim"

    reader = app.test_client()  # the email reader's browser: signed out
    landing = reader.get(urlsplit(link).path)
    assert landing.status_code == 302
    target = urlsplit(landing.headers["Location"])
    assert (target.path, parse_qs(target.query)) == ("/login", {"next": ["/enterprise/scim"]})
    login_page = reader.get(landing.headers["Location"])
    assert 'value="/enterprise/scim"' in login_page.get_data(as_text=True)
    signed_in = reader.post(
        "/login",
        data={
            "email": team[0].email,
            "passphrase": factories.PASSPHRASE,
            "next": "/enterprise/scim",
        },
    )
    assert signed_in.status_code == 302
    assert signed_in.headers["Location"] == "/enterprise/scim"
    page = reader.get("/enterprise/scim")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'id="scim-warning"' in text
    assert SSO_OFF in text
