"""Domain capture and domain lock switches on the Domains page (SPEC F13): owners only,
after the passphrase, CSRF, audited; verified domains only; the "SCIM only" note; the
lock's list of outside memberships; removal and the daily re-check turn them off."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from blueprints.domains.jobs import LOST_GRACE, recheck_verified
from models import AuditEvent, Domain, OutboxEmail
from tests import factories

PAGE = "/enterprise/domains"
NOW = datetime(2026, 3, 2, 3, 17, tzinfo=UTC)


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


@pytest.fixture
def verified(session, account) -> Domain:
    return factories.make_domain(session, account, "example.com", verified=True)


def _domain(session, domain: Domain) -> Domain | None:
    domain_id = domain.id
    session.expire_all()
    return session.get(Domain, domain_id)


def _events(session, action: str) -> list[AuditEvent]:
    session.expire_all()
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


@pytest.mark.parametrize(("control", "column"), [("capture", "capture"), ("lock", "locked")])
def test_owner_turns_a_switch_on_then_off_after_the_passphrase(
    client, session, verified, as_owner, htmx, control, column
):
    page = _text(client.get(PAGE))
    assert "Domain capture" in page and "Domain lock" in page
    assert "joins this account as a member and takes a seat" in page
    assert "can't sign up, or be members of" in page

    form = client.get(f"{PAGE}/{verified.id}/{control}?on=1", headers=htmx)
    assert form.status_code == 200 and "<html" not in _text(form)
    assert _text(form).lstrip().startswith(f'<tr id="domain-row-{verified.id}"')
    assert 'name="passphrase"' in _text(form) and 'name="on" value="1"' in _text(form)

    response = client.post(
        f"{PAGE}/{verified.id}/{control}",
        data={"on": "1", "passphrase": factories.PASSPHRASE},
        headers=htmx,
    )
    assert response.status_code == 200
    assert _text(response).lstrip().startswith(f'<tr id="domain-row-{verified.id}"')
    assert getattr(_domain(session, verified), column) is True

    client.post(
        f"{PAGE}/{verified.id}/{control}",
        data={"on": "0", "passphrase": factories.PASSPHRASE},
        headers=htmx,
    )
    assert getattr(_domain(session, verified), column) is False
    events = _events(session, f"domain.{control}_changed")
    assert [e.detail for e in events] == [{"on": True}, {"on": False}]
    assert {e.target for e in events} == {"example.com"}


def test_wrong_passphrase_changes_nothing(client, session, verified, as_owner, htmx):
    response = client.post(
        f"{PAGE}/{verified.id}/capture", data={"on": "1", "passphrase": "nope"}, headers=htmx
    )
    assert response.status_code == 422
    assert "That passphrase is incorrect." in _text(response)
    assert _domain(session, verified).capture is False
    assert _events(session, "domain.capture_changed") == []


def test_switch_is_refused_without_csrf_token(client, session, verified, as_owner):
    response = client.post(
        f"{PAGE}/{verified.id}/lock",
        data={"on": "1", "passphrase": factories.PASSPHRASE},
        csrf=False,
    )
    assert response.status_code == 400
    assert _domain(session, verified).locked is False


def test_co_owners_see_the_switches_read_only(client, session, account, verified, login_as):
    co = factories.make_user(session, account=account, email="co@example.com", role="co-owner")
    login_as(co)
    page = _text(client.get(PAGE))
    assert "Domain capture" in page and "Only an owner can change these." in page
    assert "Turn capture on" not in page
    assert client.get(f"{PAGE}/{verified.id}/capture?on=1").status_code == 403
    response = client.post(
        f"{PAGE}/{verified.id}/capture", data={"on": "1", "passphrase": factories.PASSPHRASE}
    )
    assert response.status_code == 403
    assert _domain(session, verified).capture is False


def test_members_get_403(client, session, account, verified, login_as):
    member = factories.make_user(session, account=account, email="m@example.com")
    login_as(member)
    assert client.get(f"{PAGE}/{verified.id}/lock?on=1").status_code == 403


def test_unverified_domain_has_no_switches(client, session, account, as_owner):
    pending = factories.make_domain(session, account, "pending.example")
    assert "Domain capture" not in _text(client.get(PAGE))
    response = client.post(
        f"{PAGE}/{pending.id}/capture", data={"on": "1", "passphrase": factories.PASSPHRASE}
    )
    assert response.status_code == 404
    assert _domain(session, pending).capture is False


def test_another_accounts_domain_is_404(client, session, as_owner):
    other = factories.make_account(session, name="Other")
    theirs = factories.make_domain(session, other, "other.example", verified=True)
    response = client.post(
        f"{PAGE}/{theirs.id}/lock", data={"on": "1", "passphrase": factories.PASSPHRASE}
    )
    assert response.status_code == 404
    assert _domain(session, theirs).locked is False


def test_scim_only_is_said_next_to_the_capture_switch(client, session, account, verified, as_owner):
    account.scim_only = True
    session.commit()
    assert "The account is SCIM only" in _text(client.get(PAGE))


def test_removing_a_domain_ends_its_capture_and_lock(
    client, session, account, verified, as_owner, htmx
):
    verified.capture = verified.locked = True
    session.commit()
    domain_id = verified.id
    form = client.get(f"{PAGE}/{verified.id}/remove", headers=htmx)
    assert "domain capture and domain lock end" in _text(form)
    client.post(
        f"{PAGE}/{verified.id}/remove", data={"passphrase": factories.PASSPHRASE}, headers=htmx
    )
    session.expire_all()
    assert session.get(Domain, domain_id) is None
    [event] = _events(session, "domain.removed")
    assert event.detail == {"capture": True, "lock": True}


def test_revoked_verification_turns_capture_and_lock_off_and_says_so(session, account, owner, dns):
    domain = factories.make_domain(
        session,
        account,
        "example.com",
        verified=True,
        capture=True,
        locked=True,
        lost_since=NOW - LOST_GRACE - timedelta(minutes=1),
    )
    counts = recheck_verified(NOW)
    assert counts["revoked"] == 1
    domain = _domain(session, domain)
    assert (domain.status, domain.capture, domain.locked) == ("failed", False, False)
    [mail] = session.scalars(select(OutboxEmail))
    assert mail.to_addr == "owner@example.com"
    assert "Domain capture and Domain lock ended with the verification" in mail.body_text
    [event] = _events(session, "domain.verification_lost")
    assert event.detail["ended"] == ["capture", "lock"]


def test_lost_record_without_switches_says_nothing_of_them(session, account, owner, dns):
    factories.make_domain(
        session,
        account,
        "example.com",
        verified=True,
        lost_since=NOW - LOST_GRACE - timedelta(minutes=1),
    )
    recheck_verified(NOW)
    [mail] = session.scalars(select(OutboxEmail))
    assert "ended with the verification" not in mail.body_text


def test_locked_domain_lists_members_of_other_accounts(
    client, session, account, verified, as_owner
):
    verified.locked = True
    session.commit()
    elsewhere = factories.make_account(session, name="Elsewhere Ltd")
    for n in range(52):
        factories.make_user(session, account=elsewhere, email=f"p{n:02}@example.com")
    factories.make_user(session, account=account, email="mine@example.com")  # ours: not listed
    factories.make_user(session, account=elsewhere, email="x@other.example")  # other domain

    page = _text(client.get(PAGE))
    assert "Members of other accounts" in page
    response = client.get(f"{PAGE}/{verified.id}/outside")
    text = _text(response)
    assert response.status_code == 200
    assert "52 memberships in other accounts (the first 50 shown)" in text
    assert "p00@example.com" in text and "Elsewhere Ltd" in text
    assert "p51@example.com" not in text and "mine@example.com" not in text
    assert "x@other.example" not in text


def test_switch_works_without_javascript(client, session, verified, as_owner):
    page = client.get(f"{PAGE}/{verified.id}/lock?on=1")
    assert page.status_code == 200
    text = _text(page)
    assert "<html" in text and "<h1>Domain lock</h1>" in text and 'name="passphrase"' in text

    response = client.post(
        f"{PAGE}/{verified.id}/lock", data={"on": "1", "passphrase": factories.PASSPHRASE}
    )
    assert response.status_code == 302 and response.headers["Location"].endswith(PAGE)
    assert _domain(session, verified).locked is True


def test_capture_of_a_domain_no_longer_verified_captures_nobody(session, account, verified):
    from blueprints.domains import policy

    verified.capture = True
    session.commit()
    assert policy.capturing_account(session, "kim@example.com").id == account.id
    verified.status = "failed"
    session.commit()
    assert policy.capturing_account(session, "kim@example.com") is None
