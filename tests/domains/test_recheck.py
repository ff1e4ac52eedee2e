"""The daily re-check of verified domains (SPEC F2, F8): a plain function of `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

import app as app_module
from blueprints.common import lease, outbox
from blueprints.domains import services
from blueprints.domains.jobs import LOST_GRACE, recheck_verified
from models import AuditEvent, Domain, JobLease, OutboxEmail
from tests import factories
from tests.domains.conftest import publish

NOW = datetime(2026, 3, 2, 3, 17, tzinfo=UTC)


@pytest.fixture
def team(session, account, owner, other_account):
    """Who gets the warnings: the owner and an active co-owner; not a plain member, an
    inactive co-owner or the owner of another account."""
    co_owner = factories.make_user(
        session, account=account, email="co@example.com", role="co-owner"
    )
    factories.make_user(session, account=account, email="member@example.com", role="member")
    factories.make_user(
        session, account=account, email="gone@example.com", role="co-owner", active=False
    )
    factories.make_user(session, account=other_account, email="boss@other.example", role="owner")
    return [owner, co_owner]


@pytest.fixture
def verified(session, account) -> Domain:
    return factories.make_domain(
        session, account, "example.com", verified=True, verified_at=NOW - timedelta(days=30)
    )


def _reload(session, domain: Domain) -> Domain:
    session.expire_all()
    return session.get(Domain, domain.id)


def _emails(session) -> list[OutboxEmail]:
    session.expire_all()
    return list(session.scalars(select(OutboxEmail).order_by(OutboxEmail.id)))


def test_recheck_keeps_domain_verified_when_record_is_still_published(session, team, verified, dns):
    publish(dns, verified)

    counts = recheck_verified(NOW)

    assert counts["checked"] == counts["ok"] == 1
    domain = _reload(session, verified)
    assert (domain.status, domain.lost_since, domain.checked_at) == ("verified", None, NOW)
    assert _emails(session) == []


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        pytest.param(lambda dns, d: dns.add_domain(d.name), "record_missing", id="record-gone"),
        pytest.param(
            lambda dns, d: publish(dns, d, "identity-verification=replaced"),
            "value_mismatch",
            id="value-replaced",
        ),
        pytest.param(lambda dns, d: None, "no_such_domain", id="domain-gone"),
    ],
)
def test_recheck_marks_record_lost_and_warns_owners_when_record_is_gone(
    session, team, verified, dns, setup, reason
):
    setup(dns, verified)

    counts = recheck_verified(NOW)

    assert counts["lost"] == 1
    domain = _reload(session, verified)
    assert (domain.status, domain.lost_since, domain.failure_reason) == ("verified", NOW, reason)
    emails = _emails(session)
    assert sorted(e.to_addr for e in emails) == sorted(u.email for u in team)
    for email in emails:
        assert email.subject == "DNS record for example.com is missing"
        assert "_identity-verification.example.com" in email.body_text
        assert services.record_value(domain) in email.body_text
        assert services.REASONS[reason] in email.body_text
        assert f"within {LOST_GRACE.days} days" in email.body_text
        assert "http://localhost/enterprise/domains" in email.body_text
        assert 'href="http://localhost/enterprise/domains"' in email.body_html


def test_recheck_warns_once_when_job_runs_twice_the_same_day(session, team, verified, dns):
    dns.add_domain(verified.name)

    recheck_verified(NOW)
    counts = recheck_verified(NOW + timedelta(hours=5))

    assert counts["lost"] == 1
    assert len(_emails(session)) == len(team)
    assert _reload(session, verified).lost_since == NOW  # the grace period is not restarted


def test_recheck_warns_once_when_two_processes_see_the_loss_the_same_day(
    session, team, verified, dns
):
    """Two processes that both read the domain before either committed both send the
    warning; the outbox's dedupe key keeps it to one email per owner that day."""
    dns.add_domain(verified.name)
    recheck_verified(NOW)
    domain = _reload(session, verified)
    domain.lost_since = None  # what the second process read
    session.commit()

    recheck_verified(NOW + timedelta(minutes=1))

    assert len(_emails(session)) == len(team)


def test_recheck_keeps_domain_verified_when_loss_is_younger_than_grace(
    session, team, verified, dns
):
    dns.add_domain(verified.name)
    recheck_verified(NOW)

    counts = recheck_verified(NOW + LOST_GRACE - timedelta(minutes=1))

    assert counts["revoked"] == 0
    assert _reload(session, verified).status == "verified"
    assert {e.subject for e in _emails(session)} == {"DNS record for example.com is missing"}


def test_recheck_ends_verification_and_emails_owners_when_record_is_gone_seven_days(
    client, session, team, verified, dns, login_as
):
    dns.add_domain(verified.name)
    recheck_verified(NOW)
    for day in range(1, 7):
        recheck_verified(NOW + timedelta(days=day))

    counts = recheck_verified(NOW + LOST_GRACE)

    assert counts["revoked"] == 1
    domain = _reload(session, verified)
    assert (domain.status, domain.failure_reason, domain.verified_at) == (
        "failed",
        "record_missing",
        None,
    )
    revoked = [e for e in _emails(session) if e.subject == "example.com is no longer verified"]
    assert sorted(e.to_addr for e in revoked) == sorted(u.email for u in team)
    assert "Verify Domain" in revoked[0].body_text
    assert "_identity-verification.example.com" in revoked[0].body_text
    [event] = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "domain.verification_lost")
    )
    assert (event.target, event.detail) == ("example.com", {"reason": "record_missing"})

    # The owner sees it: the row says Failed, and the dashboard no longer counts it as a
    # verified domain with a lost record.
    login_as(team[0])
    page = client.get("/enterprise/domains").get_data(as_text=True)
    assert '<span class="badge bad">Failed</span>' in page
    assert services.REASONS["record_missing"] in page
    dashboard = client.get("/").get_data(as_text=True)
    assert "lost its DNS record" not in dashboard
    assert "0 of 1 verified" in dashboard

    # A failed domain is not re-checked, so nobody is emailed again.
    recheck_verified(NOW + LOST_GRACE + timedelta(days=1))
    assert len(_emails(session)) == 2 * len(team)


def test_recheck_shows_lost_record_to_owner_on_domains_page_and_dashboard(
    client, session, team, verified, dns, login_as
):
    dns.add_domain(verified.name)
    recheck_verified(NOW)
    login_as(team[0])

    page = client.get("/enterprise/domains").get_data(as_text=True)
    dashboard = client.get("/").get_data(as_text=True)

    assert '<span class="badge ok">Verified</span>' in page
    assert "Record missing since 2026-03-02." in page
    assert "Verify Domain" in page
    assert "1 verified domain lost its DNS record" in dashboard


def test_recheck_changes_nothing_when_lookup_times_out(session, team, account, silent_dns):
    """Even a domain past its grace period stays verified while DNS does not answer."""
    lost_since = NOW - LOST_GRACE - timedelta(days=1)
    domain = factories.make_domain(
        session,
        account,
        "example.com",
        verified=True,
        lost_since=lost_since,
        failure_reason="record_missing",
        checked_at=NOW - timedelta(days=1),
    )

    counts = recheck_verified(NOW)

    assert counts["inconclusive"] == 1
    domain = _reload(session, domain)
    assert (domain.status, domain.lost_since, domain.checked_at) == (
        "verified",
        lost_since,
        NOW - timedelta(days=1),
    )
    assert _emails(session) == []


def test_recheck_changes_nothing_when_name_server_answers_servfail(session, team, verified, dns):
    dns.servfail(services.record_name(verified))

    counts = recheck_verified(NOW)

    assert counts["inconclusive"] == 1
    domain = _reload(session, verified)
    assert (domain.status, domain.lost_since, domain.checked_at) == ("verified", None, None)
    assert _emails(session) == []


def test_recheck_clears_lost_record_when_record_comes_back(session, team, verified, dns):
    dns.add_domain(verified.name)
    recheck_verified(NOW)
    dns.add_txt(services.record_name(verified), services.record_value(verified))

    counts = recheck_verified(NOW + timedelta(days=3))

    assert counts["ok"] == 1
    domain = _reload(session, verified)
    assert (domain.status, domain.lost_since, domain.failure_reason) == ("verified", None, None)
    assert len(_emails(session)) == len(team)  # only the first warning


def test_recheck_warns_again_when_record_is_lost_a_second_time(session, team, verified, dns):
    dns.add_domain(verified.name)
    recheck_verified(NOW)
    dns.add_txt(services.record_name(verified), services.record_value(verified))
    recheck_verified(NOW + timedelta(days=1))
    dns.remove_txt(services.record_name(verified))

    recheck_verified(NOW + timedelta(days=2))

    assert len(_emails(session)) == 2 * len(team)
    assert _reload(session, verified).lost_since == NOW + timedelta(days=2)


def test_recheck_leaves_pending_and_failed_domains_alone(session, team, account, dns):
    factories.make_domain(session, account, "pending.example")
    factories.make_domain(
        session, account, "failed.example", status="failed", failure_reason="record_missing"
    )

    counts = recheck_verified(NOW)

    assert counts["checked"] == 0
    assert dns.queries == []
    assert _emails(session) == []


def test_recheck_names_international_domain_in_unicode_in_warning(session, team, account, dns):
    domain = factories.make_domain(session, account, "xn--bcher-kva.example", verified=True)
    dns.add_domain(domain.name)

    recheck_verified(NOW)

    subjects = {e.subject for e in _emails(session)}
    assert subjects == {"DNS record for bücher.example is missing"}
    assert "_identity-verification.xn--bcher-kva.example" in _emails(session)[0].body_text


def test_recheck_warns_owner_whose_email_address_is_very_long(session, account, verified, dns):
    long_email = "o" * 64 + "@" + ".".join(["d" * 60] * 3) + ".example"  # 254 characters
    factories.make_user(session, account=account, email=long_email, role="owner")
    dns.add_domain(verified.name)

    recheck_verified(NOW)

    assert [e.to_addr for e in _emails(session)] == [long_email]


def test_recheck_warning_reaches_owners_inbox_through_outbox(
    session, team, verified, dns, smtp_server
):
    dns.add_domain(verified.name)
    recheck_verified(NOW)

    counts = outbox.deliver_due(NOW + timedelta(seconds=1))

    assert counts["sent"] == len(team)
    received = sorted(rcpt for m in smtp_server.messages for rcpt in m.rcpt_tos)
    assert received == sorted(u.email for u in team)
    assert b"DNS record for example.com is missing" in smtp_server.messages[0].content


def test_recheck_runs_through_run_job_under_its_lease(app, session, team, verified, dns):
    dns.add_domain(verified.name)

    result = app_module.run_job(app, "recheck-domains", NOW)

    assert result == {"checked": 1, "ok": 0, "lost": 1, "revoked": 0, "inconclusive": 0}
    assert _reload(session, verified).lost_since == NOW
    assert len(_emails(session)) == len(team)
    job = session.get(JobLease, "recheck-domains")
    assert (job.runs, job.holder, job.last_error) == (1, None, None)


def test_recheck_is_skipped_when_another_process_holds_the_lease(app, session, team, verified, dns):
    dns.add_domain(verified.name)
    assert lease.acquire("recheck-domains", "other-worker", timedelta(hours=1))

    result = app_module.run_job(app, "recheck-domains", NOW)

    assert result is None
    assert _reload(session, verified).lost_since is None
    assert dns.queries == []
    assert _emails(session) == []
