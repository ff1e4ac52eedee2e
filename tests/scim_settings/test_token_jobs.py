"""The daily sweeps per token (SPEC F4, F11): each live token of a connector is refreshed
automatically and warned about on its own, once a day each, and the emails name it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

import app as app_module
from blueprints.scim_settings import connector as service
from blueprints.scim_settings.jobs import refresh_tokens, warn_expiring
from models import AuditEvent, OutboxEmail, ScimToken, SsoConnection
from tests import factories

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
DAY = timedelta(days=1)


def _two_tokens(session, ready, owner):
    """SCIM enabled at T0 ("Default", 1 year) and a second token, "Okta production", of
    30 days created the same moment."""
    issued = service.enable(session, ready.id, owner, "okta", "365", T0)
    second = service.create_token(session, issued.connector, owner, "Okta production", "30", T0)
    session.commit()
    return issued, second


def _token(session, issued) -> ScimToken:
    session.expire_all()
    return session.get(ScimToken, issued.scim_token.id)


def _sso_off(session, ready) -> None:
    session.execute(
        update(SsoConnection).where(SsoConnection.account_id == ready.id).values(enabled=False)
    )
    session.commit()


def _emails(session, prefix: str) -> list[OutboxEmail]:
    session.expire_all()
    return list(
        session.scalars(
            select(OutboxEmail)
            .where(OutboxEmail.dedupe_key.startswith(prefix))
            .order_by(OutboxEmail.id)
        )
    )


def test_each_token_is_refreshed_when_it_is_due_and_once_a_day(session, ready, owner):
    default, second = _two_tokens(session, ready, owner)

    # Day 10: the 30-day token is 20 days from expiry; "Default" is not due.
    assert refresh_tokens(T0 + 10 * DAY) == {"due": 1, "refreshed": 1, "failed": 0, "expired": 0}
    assert refresh_tokens(T0 + 10 * DAY + timedelta(hours=2))["due"] == 0  # once a day

    assert _token(session, second).expires_at == T0 + 40 * DAY
    assert _token(session, default).expires_at == T0 + 365 * DAY
    # Day 90: "Default" is due (90 days since its refresh) and is refreshed; the 30-day
    # one, left to lapse on day 40 (no sweep ran since), stays expired: neither decides
    # for the other.
    assert refresh_tokens(T0 + 90 * DAY) == {"due": 2, "refreshed": 1, "failed": 0, "expired": 1}
    assert _token(session, default).expires_at == T0 + 90 * DAY + 365 * DAY
    assert _token(session, second).expires_at == T0 + 40 * DAY
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "scim.token_auto_refreshed")
    ).all()
    assert sorted(e.detail["token"] for e in events) == [
        "Default",
        "Okta production",
    ]


def test_a_revoked_token_is_never_refreshed_or_warned_about(session, ready, owner):
    _, second = _two_tokens(session, ready, owner)
    service.revoke(session, second.connector, second.scim_token, owner, T0 + DAY)
    session.commit()
    _sso_off(session, ready)

    assert refresh_tokens(T0 + 10 * DAY)["due"] == 0
    assert warn_expiring(T0 + 12 * DAY)["connectors"] == 0
    assert _token(session, second).expires_at == T0 + 30 * DAY


def test_warnings_go_per_token_once_a_day_each_and_name_the_token(session, ready, owner):
    default, _ = _two_tokens(session, ready, owner)
    _sso_off(session, ready)
    # Both failing: "Default" made to expire within the window too.
    session.execute(
        update(ScimToken)
        .where(ScimToken.id == default.scim_token.id)
        .values(expires_at=T0 + 25 * DAY)
    )
    session.commit()
    assert refresh_tokens(T0 + 10 * DAY)["failed"] == 2

    assert warn_expiring(T0 + 10 * DAY)["queued"] == 2  # one owner, two tokens
    assert warn_expiring(T0 + 10 * DAY + timedelta(hours=5))["queued"] == 0  # same day
    assert warn_expiring(T0 + 11 * DAY)["queued"] == 2  # the next day

    emails = _emails(session, "scim-warning:")
    subjects = sorted({e.subject for e in emails if e.dedupe_key.endswith("2026-01-15")})
    assert subjects == [
        'Your SCIM token "Default" expires in 15 days',
        'Your SCIM token "Okta production" expires in 20 days',
    ]
    by_token = {e.subject: e for e in emails}
    body = by_token['Your SCIM token "Okta production" expires in 20 days'].body_text
    assert 'The automatic refresh of the SCIM token "Okta production" of' in body
    assert 'click Refresh Token on the token "Okta production"' in body
    html = by_token['Your SCIM token "Okta production" expires in 20 days'].body_html
    assert "“Okta production”" in html


def test_warning_sweep_under_its_lease_sends_each_token_once_a_day(app, session, ready, owner):
    """The sweep as the scheduler runs it, in several processes' turns the same day."""
    _two_tokens(session, ready, owner)
    _sso_off(session, ready)
    refresh_tokens(T0 + 10 * DAY)

    for hour in (0, 1, 2):
        app_module.run_job(app, "warn-scim-tokens", T0 + 10 * DAY + timedelta(hours=hour))

    emails = _emails(session, "scim-warning:")
    assert [e.subject for e in emails] == ['Your SCIM token "Okta production" expires in 20 days']


def test_recovery_email_names_the_token(session, ready, owner):
    _two_tokens(session, ready, owner)
    _sso_off(session, ready)
    refresh_tokens(T0 + 10 * DAY)
    session.execute(
        update(SsoConnection).where(SsoConnection.account_id == ready.id).values(enabled=True)
    )
    session.commit()

    refresh_tokens(T0 + 11 * DAY)

    [email] = _emails(session, "scim-auto-refreshed:")
    assert email.subject == 'Your SCIM token "Okta production" was refreshed automatically'
    assert 'The SCIM token "Okta production" of' in email.body_text


def _at_once(app, job, *args, processes: int = 3) -> list:
    """`job(*args)` in `processes` threads at the same moment, each with its own app
    context and database session (two cron entries, or cron beside the scheduler: no
    lease between them); their results, any error raised."""
    import threading

    from app import db

    start = threading.Barrier(processes)
    results, errors = [], []

    def run():
        with app.app_context():
            start.wait()
            try:
                results.append(job(*args))
            except Exception as exc:  # reported below; a thread must not swallow it
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(processes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    return results


def test_several_processes_refresh_each_token_once_and_warn_once_per_token(
    app, session, ready, owner
):
    default, _ = _two_tokens(session, ready, owner)
    co_owner = factories.make_user(session, ready, "co@example.com", role="co-owner")
    session.execute(
        update(ScimToken)
        .where(ScimToken.id == default.scim_token.id)
        .values(expires_at=T0 + 25 * DAY)
    )
    session.commit()

    # Both tokens due on day 10: each is refreshed by exactly one of the processes (the
    # others find it changed since they found it due, and leave it).
    refreshed = _at_once(app, refresh_tokens, T0 + 10 * DAY)
    assert sum(r["refreshed"] for r in refreshed) == 2
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "scim.token_auto_refreshed")
    ).all()
    assert sorted(e.detail["token"] for e in events) == ["Default", "Okta production"]

    # Failing from day 12 on (SSO off, both within the window): each token's warning goes
    # to each of the two admins once that day, however many processes send it.
    _sso_off(session, ready)
    session.execute(update(ScimToken).values(expires_at=T0 + 30 * DAY))
    session.commit()
    refresh_tokens(T0 + 12 * DAY)
    warned = _at_once(app, warn_expiring, T0 + 12 * DAY)

    assert sum(r["queued"] for r in warned) == 4  # two tokens x two admins
    emails = _emails(session, "scim-warning:")
    assert sorted((e.to_addr, e.subject) for e in emails) == sorted(
        (who, f'Your SCIM token "{name}" expires in 18 days')
        for who in (owner.email, co_owner.email)
        for name in ("Default", "Okta production")
    )
