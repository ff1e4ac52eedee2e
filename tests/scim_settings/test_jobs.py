"""The daily automatic refresh of SCIM tokens (SPEC F4 "Automatic refresh", F8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

import app as app_module
from app import db
from blueprints.scim_settings import connector as service
from blueprints.scim_settings import jobs
from blueprints.scim_settings.jobs import EXPIRED_REASON, refresh_tokens
from models import (
    AuditEvent,
    Domain,
    JobLease,
    Membership,
    OutboxEmail,
    ScimToken,
    SsoConnection,
)
from tests import factories

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
DAY = timedelta(days=1)
NOT_DUE = {"due": 0, "refreshed": 0, "failed": 0, "expired": 0}


def _enable(session, account, owner, lifetime: str = "365", at: datetime = T0):
    """SCIM enabled: its "Default" token (the row the sweeps walk) and its secret."""
    issued = service.enable(session, account.id, owner, "okta", lifetime, at)
    return issued.scim_token, issued.token


def _reload(session, token_row: ScimToken) -> ScimToken:
    session.expire_all()
    return session.get(ScimToken, token_row.id)


def _events(session, action: str) -> list[AuditEvent]:
    session.expire_all()
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
    )


def _accepts(session, token_row: ScimToken, token: str, at: datetime) -> bool:
    result = service.authenticate(session, token_row.connector.public_id, f"Bearer {token}", at)
    return result.reason is None


def _snapshot(token_row: ScimToken) -> tuple:
    return (
        token_row.token_hash,
        token_row.token_encrypted,
        token_row.expires_at,
        token_row.refreshed_at,
        token_row.refresh_failure_reason,
        token_row.refresh_failed_at,
    )


def _set_role(session, account, user, **values) -> None:
    session.execute(
        update(Membership)
        .where(Membership.account_id == account.id, Membership.user_id == user.id)
        .values(**values)
    )
    session.commit()


def _sso(session, account, enabled: bool) -> None:
    session.execute(
        update(SsoConnection).where(SsoConnection.account_id == account.id).values(enabled=enabled)
    )
    session.commit()


def _lose_domains(session, account) -> None:
    session.execute(
        update(Domain)
        .where(Domain.account_id == account.id)
        .values(status="failed", failure_reason="record_missing", verified_at=None)
    )
    session.commit()


def test_refresh_leaves_token_alone_when_last_refresh_is_89_days_old(session, ready, owner):
    token_row, _ = _enable(session, ready, owner)
    before = _snapshot(token_row)

    assert refresh_tokens(T0 + 89 * DAY) == NOT_DUE

    assert _snapshot(_reload(session, token_row)) == before
    assert _events(session, "scim.token_auto_refreshed") == []


def test_refresh_extends_expiry_and_keeps_secret_when_last_refresh_is_90_days_old(
    session, ready, owner
):
    token_row, token = _enable(session, ready, owner)
    hashed, encrypted = token_row.token_hash, token_row.token_encrypted
    now = T0 + 90 * DAY

    counts = refresh_tokens(now)

    assert counts == {"due": 1, "refreshed": 1, "failed": 0, "expired": 0}
    token_row = _reload(session, token_row)
    assert (token_row.expires_at, token_row.refreshed_at) == (now + 365 * DAY, now)
    assert (token_row.token_hash, token_row.token_encrypted) == (hashed, encrypted)
    assert token_row.issued_at == T0  # the secret is the one issued at T0
    assert token_row.refresh_failure_reason is None
    # The IdP's token keeps working past the old expiry (T0 + 365 days).
    assert _accepts(session, token_row, token, T0 + 400 * DAY)
    assert service.reveal(session, token_row.connector, token_row, owner, now) == token
    [event] = _events(session, "scim.token_auto_refreshed")
    assert (event.account_id, event.actor_user_id) == (ready.id, None)
    assert event.detail == {
        "token": "Default",
        "token_id": token_row.id,
        "expires_at": (now + 365 * DAY).isoformat(),
    }
    assert event.target == "SCIM token Default"
    # Nobody clicked anything: the page must not credit the owner with this refresh, but
    # the token stays bound to their authority.
    assert (token_row.refreshed_by_user_id, token_row.bound_user_id) == (None, owner.id)
    # A refresh that changes no secret and fixes no failure emails nobody.
    assert not session.scalars(
        select(OutboxEmail).where(OutboxEmail.subject.contains("refreshed automatically"))
    ).all()


def test_refresh_is_not_due_again_the_day_after(session, ready, owner):
    token_row, _ = _enable(session, ready, owner)
    refresh_tokens(T0 + 90 * DAY)

    assert refresh_tokens(T0 + 91 * DAY) == NOT_DUE
    assert refresh_tokens(T0 + 179 * DAY) == NOT_DUE
    assert refresh_tokens(T0 + 180 * DAY)["refreshed"] == 1
    assert _reload(session, token_row).expires_at == T0 + 180 * DAY + 365 * DAY


def test_refresh_renews_30_day_token_when_expiry_is_20_days_away(session, ready, owner):
    """With a 30-day lifetime the warning window comes before the 90-day mark."""
    token_row, token = _enable(session, ready, owner, lifetime="30")

    assert refresh_tokens(T0 + 9 * DAY) == NOT_DUE  # 21 days left

    counts = refresh_tokens(T0 + 10 * DAY)  # 20 days left
    assert counts["refreshed"] == 1
    token_row = _reload(session, token_row)
    assert token_row.expires_at == T0 + 40 * DAY
    assert refresh_tokens(T0 + 19 * DAY) == NOT_DUE
    assert refresh_tokens(T0 + 20 * DAY)["refreshed"] == 1
    assert _reload(session, token_row).expires_at == T0 + 50 * DAY
    assert _accepts(session, token_row, token, T0 + 49 * DAY)


def test_refresh_counts_a_refresh_that_is_due_for_both_reasons_once(session, ready, owner):
    _enable(session, ready, owner, lifetime="90")

    counts = refresh_tokens(T0 + 90 * DAY - timedelta(minutes=1))  # 1 minute before expiry

    assert counts == {"due": 1, "refreshed": 1, "failed": 0, "expired": 0}
    assert len(_events(session, "scim.token_auto_refreshed")) == 1


@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        pytest.param(
            lambda s, a, o: _set_role(s, a, o, role="member"),
            "The owner this token is bound to is no longer an active owner or co-owner.",
            id="owner-demoted",
        ),
        pytest.param(
            lambda s, a, o: _set_role(s, a, o, active=False),
            "The owner this token is bound to is no longer an active owner or co-owner.",
            id="owner-deactivated",
        ),
        pytest.param(
            lambda s, a, o: _lose_domains(s, a), "No verified domain is left.", id="no-domain"
        ),
        pytest.param(lambda s, a, o: _sso(s, a, False), "Single sign-on is off.", id="sso-off"),
    ],
)
def test_refresh_fails_with_stored_reason_and_is_retried_daily(
    session, ready, owner, break_it, reason
):
    # Another owner does not help: the refresh relies on the bound owner's authority.
    factories.make_user(session, account=ready, email="co@example.com", role="co-owner")
    token_row, token = _enable(session, ready, owner)
    hashed, expires = token_row.token_hash, token_row.expires_at
    break_it(session, ready, owner)
    now = T0 + 90 * DAY

    counts = refresh_tokens(now)

    assert counts == {"due": 1, "refreshed": 0, "failed": 1, "expired": 0}
    token_row = _reload(session, token_row)
    assert (token_row.refresh_failure_reason, token_row.refresh_failed_at) == (reason, now)
    assert (token_row.token_hash, token_row.expires_at, token_row.refreshed_at) == (
        hashed,
        expires,
        T0,
    )
    assert _accepts(session, token_row, token, now)  # still valid until it expires
    [event] = _events(session, "scim.token_auto_refresh_failed")
    assert (event.account_id, event.detail["reason"], event.detail["token"]) == (
        ready.id,
        reason,
        "Default",
    )

    # Retried the next day, and the day after.
    assert refresh_tokens(now + DAY)["failed"] == 1
    assert refresh_tokens(now + 2 * DAY)["failed"] == 1
    token_row = _reload(session, token_row)
    assert token_row.refresh_failed_at == now + 2 * DAY
    assert len(_events(session, "scim.token_auto_refresh_failed")) == 3


def test_refresh_recovers_after_manual_refresh_by_another_owner(session, ready, owner):
    co_owner = factories.make_user(session, account=ready, email="co@example.com", role="co-owner")
    token_row, _ = _enable(session, ready, owner)
    _set_role(session, ready, owner, role="member")
    refresh_tokens(T0 + 90 * DAY)
    assert _reload(session, token_row).refresh_failure_reason is not None

    issued = service.refresh(
        session, token_row.connector, _reload(session, token_row), co_owner, T0 + 91 * DAY
    )

    token_row = _reload(session, token_row)
    assert token_row.bound_user_id == co_owner.id
    assert (token_row.refresh_failure_reason, token_row.refresh_failed_at) == (None, None)
    assert refresh_tokens(T0 + 92 * DAY) == NOT_DUE
    # 90 days after the manual refresh the job refreshes again, on the co-owner's authority.
    assert refresh_tokens(T0 + 181 * DAY)["refreshed"] == 1
    token_row = _reload(session, token_row)
    assert token_row.expires_at == T0 + 181 * DAY + 365 * DAY
    assert _accepts(session, token_row, issued.token, T0 + 500 * DAY)


def test_refresh_recovers_by_itself_and_tells_owners_once_problem_is_fixed(session, ready, owner):
    co_owner = factories.make_user(session, account=ready, email="co@example.com", role="co-owner")
    factories.make_user(session, account=ready, email="member@example.com")
    token_row, token = _enable(session, ready, owner, lifetime="30")
    _sso(session, ready, False)
    assert refresh_tokens(T0 + 10 * DAY)["failed"] == 1
    _sso(session, ready, True)

    counts = refresh_tokens(T0 + 11 * DAY)

    assert counts["refreshed"] == 1
    token_row = _reload(session, token_row)
    assert token_row.refresh_failure_reason is None
    assert token_row.expires_at == T0 + 41 * DAY
    assert _accepts(session, token_row, token, T0 + 40 * DAY)
    notices = session.scalars(
        select(OutboxEmail).where(OutboxEmail.dedupe_key.startswith("scim-auto-refreshed:"))
    ).all()
    assert sorted(e.to_addr for e in notices) == sorted([owner.email, co_owner.email])
    assert notices[0].subject == 'Your SCIM token "Default" was refreshed automatically'
    assert "did not change" in notices[0].body_text
    assert "http://localhost/enterprise/scim" in notices[0].body_text


def test_refresh_never_touches_connector_without_expiry(session, ready, owner):
    token_row, _ = _enable(session, ready, owner, lifetime="never")
    _sso(session, ready, False)  # would fail if it were attempted
    before = _snapshot(token_row)

    for days in (90, 365, 3650):
        assert refresh_tokens(T0 + days * DAY) == NOT_DUE

    assert _snapshot(_reload(session, token_row)) == before
    assert before[2] is None


def test_refresh_never_touches_disabled_connector(session, ready, owner):
    token_row, _ = _enable(session, ready, owner, lifetime="30")
    service.disable(session, token_row.connector, owner, T0 + DAY)
    before = _snapshot(_reload(session, token_row))

    for days in (10, 29, 31, 90):
        assert refresh_tokens(T0 + days * DAY) == NOT_DUE

    token_row = _reload(session, token_row)
    assert _snapshot(token_row) == before
    assert not token_row.connector.enabled


def test_refresh_does_not_revive_an_expired_token(session, ready, owner):
    """E.g. the scheduler was down for weeks: the IdP has been getting 401s, so the same
    secret must not quietly come back; the owners are told to refresh it by hand."""
    token_row, token = _enable(session, ready, owner, lifetime="30")
    expired_at = T0 + 30 * DAY

    counts = refresh_tokens(expired_at + timedelta(hours=1))

    assert counts == {"due": 1, "refreshed": 0, "failed": 0, "expired": 1}
    token_row = _reload(session, token_row)
    assert token_row.expires_at == expired_at
    assert token_row.refresh_failure_reason == EXPIRED_REASON
    later = expired_at + 2 * DAY
    assert refresh_tokens(later)["expired"] == 1
    assert token_row.refresh_failed_at == expired_at + timedelta(hours=1)  # recorded once
    assert len(_events(session, "scim.token_auto_refresh_failed")) == 1
    assert service.authenticate(
        session, token_row.connector.public_id, f"Bearer {token}", later
    ).reason == ("expired")

    # A manual refresh is what brings SCIM back.
    issued = service.refresh(
        session, token_row.connector, _reload(session, token_row), owner, later
    )
    token_row = _reload(session, token_row)
    assert token_row.refresh_failure_reason is None
    assert _accepts(session, token_row, issued.token, later)
    assert refresh_tokens(later + DAY) == NOT_DUE


def test_refresh_replaces_failure_reason_once_token_has_expired(session, ready, owner):
    token_row, _ = _enable(session, ready, owner, lifetime="30")
    _sso(session, ready, False)
    for day in range(10, 30):
        refresh_tokens(T0 + day * DAY)
    assert _reload(session, token_row).refresh_failure_reason == "Single sign-on is off."

    refresh_tokens(T0 + 30 * DAY)

    assert _reload(session, token_row).refresh_failure_reason == EXPIRED_REASON
    event = _events(session, "scim.token_auto_refresh_failed")[-1]
    assert event.detail == {
        "token": "Default",
        "token_id": token_row.id,
        "reason": EXPIRED_REASON,
        "previous_reason": "Single sign-on is off.",
    }


@pytest.mark.parametrize("sso_on", [True, False], ids=["would-refresh", "would-fail"])
def test_refresh_leaves_a_connector_an_owner_changed_meanwhile_alone(session, ready, owner, sso_on):
    """The job read the token, then an owner refreshed it by hand before the job
    wrote: the job neither overwrites the new token's expiry nor records a failure."""
    token_row, _ = _enable(session, ready, owner)
    _sso(session, ready, sso_on)
    stale = _reload(session, token_row)  # what the job read
    with db.engine.begin() as conn:  # the owner's refresh, in another connection
        conn.execute(
            update(ScimToken.__table__)
            .where(ScimToken.__table__.c.id == token_row.id)
            .values(token_hash="0" * 64, expires_at=T0 + 400 * DAY, refreshed_at=T0 + 35 * DAY)
        )

    assert jobs._refresh_one(stale, T0 + 90 * DAY) is False

    session.commit()
    token_row = _reload(session, token_row)
    assert (token_row.expires_at, token_row.refreshed_at) == (T0 + 400 * DAY, T0 + 35 * DAY)
    assert token_row.refresh_failure_reason is None
    assert _events(session, "scim.token_auto_refreshed") == []
    assert _events(session, "scim.token_auto_refresh_failed") == []


def test_refresh_walks_many_connectors_in_batches(session, monkeypatch):
    monkeypatch.setattr(jobs, "BATCH", 2)
    connectors = []
    for n in range(5):
        account = factories.make_account(session, name=f"Account {n}")
        boss = factories.make_user(
            session, account=account, email=f"boss{n}@example.com", role="owner"
        )
        factories.make_domain(session, account, f"example{n}.com", verified=True)
        session.add(
            SsoConnection(
                account_id=account.id, public_id=f"sso-{n}", protocol="oidc", enabled=True
            )
        )
        session.commit()
        connectors.append(_enable(session, account, boss)[0])

    counts = refresh_tokens(T0 + 90 * DAY)

    assert counts == {"due": 5, "refreshed": 5, "failed": 0, "expired": 0}
    assert {_reload(session, c).refreshed_at for c in connectors} == {T0 + 90 * DAY}


def test_refresh_runs_through_run_job_under_its_lease(app, session, ready, owner):
    token_row, _ = _enable(session, ready, owner)
    session.commit()  # the test is the caller: the job runs in a session of its own

    result = app_module.run_job(app, "refresh-scim-tokens", T0 + 90 * DAY)

    assert result == {"due": 1, "refreshed": 1, "failed": 0, "expired": 0}
    assert _reload(session, token_row).refreshed_at == T0 + 90 * DAY
    job = session.get(JobLease, "refresh-scim-tokens")
    assert (job.runs, job.holder, job.last_error) == (1, None, None)


def test_request_log_older_than_the_retention_is_purged(app, session, ready, owner):
    from datetime import UTC, datetime

    from app import run_job
    from models import ScimRequestLog

    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    issued = service.enable(session, ready.id, owner, "okta", "365", now)
    for age in (31, 29, 1):
        session.add(
            ScimRequestLog(
                connector_id=issued.connector.id,
                method="GET",
                resource="/Users",
                status=200,
                outcome="success",
                created_at=now - timedelta(days=age),
            )
        )
    session.commit()
    assert run_job(app, "purge-scim-log", now) == {"deleted": 1}
    assert session.scalar(select(func.count(ScimRequestLog.id))) == 2
