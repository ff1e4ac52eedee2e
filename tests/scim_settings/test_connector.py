"""The connector service (SPEC F4) without HTTP: tokens, storage, lifetimes, refresh with
its grace period, disable, the badge and the owners' security notices."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from blueprints.common.crypto import DecryptionError, decrypt
from blueprints.scim_settings import connector as service
from models import AuditEvent, Membership, OutboxEmail, ScimConnector, ScimToken, SsoConnection
from tests import factories

NOW = datetime(2030, 1, 15, 9, 30, tzinfo=UTC)
TOKEN = re.compile(r"scim_[A-Za-z0-9_-]{43}")


def _enable(session, account, owner, lifetime="90", idp="okta", now=NOW) -> service.Issued:
    return service.enable(session, account.id, owner, idp, lifetime, now)


def _reason(session, connector, token, now) -> str | None:
    return service.authenticate(session, connector.public_id, f"Bearer {token}", now).reason


def _emails(session) -> list[OutboxEmail]:
    session.expire_all()
    return list(session.scalars(select(OutboxEmail).order_by(OutboxEmail.id)))


# --- the token and how it is stored ---------------------------------------------------------


def test_new_token_is_prefixed_and_carries_256_random_bits():
    tokens = {service.new_token() for _ in range(50)}

    assert len(tokens) == 50
    for token in tokens:
        assert TOKEN.fullmatch(token), token
        # 43 url-safe base64 characters without padding are 258 bits holding 32 bytes.
        assert len(base64.urlsafe_b64decode(token.removeprefix("scim_") + "=")) == 32


def test_enable_stores_sha256_hash_and_ciphertext_but_never_the_token(session, ready, owner):
    issued = _enable(session, ready, owner)
    token = issued.token
    session.expire_all()

    connector = service.get_connector(session, ready.id).tokens[0]
    assert TOKEN.fullmatch(token)
    assert connector.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert decrypt(connector.token_encrypted) == token
    secret = token.removeprefix("scim_")
    encodings = {secret, base64.b64encode(token.encode()).decode().rstrip("=")}
    encodings.add(base64.urlsafe_b64encode(token.encode()).decode().rstrip("="))
    encodings.add(token.encode().hex())
    # Every column of every table: the audit trail and the owners' emails included.
    for table in ScimConnector.metadata.sorted_tables:
        for row in session.execute(select(table)):
            for column, value in row._mapping.items():
                text = str(value)
                assert not any(e in text for e in encodings), f"{table.name}.{column}"


def test_token_ciphertext_does_not_decrypt_without_the_key(app, session, ready, owner):
    _enable(session, ready, owner)
    ciphertext = service.get_connector(session, ready.id).tokens[0].token_encrypted

    app.config["SECRET_KEY"] = "another-secret-key"
    with pytest.raises(DecryptionError):
        decrypt(ciphertext)


@pytest.mark.parametrize(
    ("lifetime", "days"),
    [("30", 30), ("90", 90), ("180", 180), ("365", 365), ("730", 730), ("never", None)],
)
def test_enable_sets_expiry_from_chosen_lifetime(session, ready, owner, lifetime, days):
    issued = _enable(session, ready, owner, lifetime=lifetime)

    connector = issued.scim_token
    assert connector.name == "Default"
    assert (connector.issued_at, connector.refreshed_at) == (NOW, NOW)
    assert connector.lifetime_days == days
    assert connector.expires_at == (NOW + timedelta(days=days) if days else None)


def test_lifetime_labels_offer_the_six_choices_in_order():
    assert list(service.LIFETIME_LABELS.values()) == [
        "30 days",
        "90 days",
        "180 days",
        "1 year",
        "2 years",
        "No expiry",
    ]
    assert list(service.LIFETIME_LABELS) == list(service.LIFETIMES)


def test_enable_records_audit_event_and_binds_to_owner(session, ready, owner):
    issued = _enable(session, ready, owner, idp="entra")

    connector = issued.connector
    assert (connector.enabled, connector.idp) == (True, "entra")
    token = issued.scim_token
    assert token.bound_user_id == token.refreshed_by_user_id == token.created_by_user_id == owner.id
    [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "scim.enabled"))
    assert (event.account_id, event.actor_user_id) == (ready.id, owner.id)
    assert event.detail == {"idp": "entra", "lifetime_days": 90, "token": "Default"}


@pytest.mark.parametrize(
    ("idp", "lifetime", "message"),
    [
        ("google", "90", "Choose your identity provider."),
        ("", "90", "Choose your identity provider."),
        ("okta", "7", "Choose how long the token lasts."),
        ("okta", "", "Choose how long the token lasts."),
    ],
)
def test_enable_refuses_unknown_choice(session, ready, owner, idp, lifetime, message):
    with pytest.raises(service.ConnectorError, match=message):
        _enable(session, ready, owner, idp=idp, lifetime=lifetime)

    assert service.get_connector(session, ready.id) is None


@pytest.mark.parametrize("missing", ["domain", "sso", "both"])
def test_enable_refuses_until_domain_verified_and_sso_enabled(session, account, owner, missing):
    if missing == "sso":
        factories.make_domain(session, account, "example.com", verified=True)
    factories.make_domain(session, account, "example.org")  # pending: doesn't count
    # A connection that is off doesn't count either.
    sso = SsoConnection(account_id=account.id, public_id="s", protocol="oidc", enabled=False)
    sso.enabled = missing == "domain"
    session.add(sso)
    session.commit()

    with pytest.raises(service.ConnectorError, match="Verify a domain and enable SSO"):
        _enable(session, account, owner)

    assert service.get_connector(session, account.id) is None


def test_enable_refuses_second_time_and_keeps_token(session, ready, owner):
    first = _enable(session, ready, owner)

    with pytest.raises(service.ConnectorError, match="already enabled"):
        _enable(session, ready, owner, lifetime="30")

    session.expire_all()
    assert _reason(session, first.connector, first.token, NOW) is None
    assert first.scim_token.lifetime_days == 90


def test_enable_after_disable_keeps_url_and_issues_new_token(session, ready, owner):
    first = _enable(session, ready, owner)
    url = service.base_url(first.connector)
    assert _reason(session, first.connector, first.token, NOW) is None  # the IdP's first call
    session.commit()  # the IdP's request ended: the owner's next ones see what it wrote
    service.disable(session, first.connector, owner, NOW + timedelta(days=1))

    again = _enable(session, ready, owner, lifetime="30", now=NOW + timedelta(days=2))

    assert again.connector.id == first.connector.id
    assert service.base_url(again.connector) == url
    assert again.token != first.token
    assert again.scim_token.expires_at == NOW + timedelta(days=32)
    later = NOW + timedelta(days=2, hours=1)
    assert _reason(session, again.connector, first.token, later) == "revoked"
    # The IdP has to be given the new token: step 4 waits for a request carrying it.
    assert again.connector.first_request_at is None
    assert _reason(session, again.connector, again.token, later) is None
    session.expire_all()
    assert again.connector.first_request_at == later


def test_base_url_is_base_and_connector_id(app, session, ready, owner):
    connector = _enable(session, ready, owner).connector

    assert service.base_url(connector) == f"http://localhost/scim/v2/{connector.public_id}"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", connector.public_id)


# --- reveal ---------------------------------------------------------------------------------


def test_reveal_returns_token_and_audits_each_time(session, ready, owner):
    issued = _enable(session, ready, owner)

    assert service.reveal(session, issued.connector, issued.scim_token, owner, NOW) == issued.token
    assert service.reveal(session, issued.connector, issued.scim_token, owner, NOW) == issued.token

    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "scim.token_revealed"))
    assert [(e.account_id, e.actor_user_id) for e in events] == [(ready.id, owner.id)] * 2


def test_reveal_refuses_when_disabled(session, ready, owner):
    issued = _enable(session, ready, owner)
    service.disable(session, issued.connector, owner, NOW)

    with pytest.raises(service.ConnectorError):
        service.reveal(session, issued.connector, issued.scim_token, owner, NOW)
    assert issued.scim_token.token_encrypted is None  # a revoked secret is not kept


def test_security_notice_goes_to_every_active_owner_and_co_owner(session, ready, owner):
    co_owner = factories.make_user(session, ready, "co@example.com", role="co-owner")
    factories.make_user(session, ready, "gone@example.com", role="co-owner", active=False)
    factories.make_user(session, ready, "member@example.com", role="member")
    other = factories.make_account(session, name="Other")
    factories.make_user(session, other, "elsewhere@example.com", role="owner")
    issued = _enable(session, ready, owner)
    before = len(_emails(session))

    service.reveal(session, issued.connector, issued.scim_token, co_owner, NOW)

    notices = _emails(session)[before:]
    assert sorted(e.to_addr for e in notices) == ["co@example.com", "owner@example.com"]
    for email in notices:
        assert email.subject == "Your SCIM token was revealed"
        assert 'the SCIM connector token "Default" was revealed' in email.body_text
        assert "By:   co@example.com" in email.body_text
        assert "http://localhost/enterprise/scim" in email.body_text
        assert 'href="http://localhost/enterprise/scim"' in email.body_html
        assert issued.token not in email.body_text + email.body_html


# --- refresh --------------------------------------------------------------------------------


def test_refresh_issues_new_token_on_same_url_and_honours_old_for_grace(session, ready, owner):
    first = _enable(session, ready, owner)
    url = service.base_url(first.connector)
    at = NOW + timedelta(days=10)

    second = service.refresh(session, first.connector, first.scim_token, owner, at)

    assert second.token != first.token and TOKEN.fullmatch(second.token)
    assert service.base_url(second.connector) == url
    assert second.scim_token.refreshed_at == second.scim_token.issued_at == at
    assert second.scim_token.expires_at == at + timedelta(days=90)
    assert second.scim_token.previous_valid_until == at + timedelta(hours=24)
    for offset, expected in [
        (timedelta(0), None),
        (timedelta(hours=23, minutes=59), None),
        (timedelta(hours=24), "unknown"),
        (timedelta(hours=25), "unknown"),
    ]:
        assert _reason(session, second.connector, first.token, at + offset) == expected, offset
        assert _reason(session, second.connector, second.token, at + offset) is None


def test_refresh_grace_period_follows_configuration(app, session, ready, owner):
    app.config["SCIM_TOKEN_GRACE_HOURS"] = 2
    first = _enable(session, ready, owner)

    service.refresh(session, first.connector, first.scim_token, owner, NOW)

    assert _reason(session, first.connector, first.token, NOW + timedelta(hours=1)) is None
    assert _reason(session, first.connector, first.token, NOW + timedelta(hours=3)) == "unknown"


def test_second_refresh_ends_grace_of_first_token(session, ready, owner):
    first = _enable(session, ready, owner)
    second = service.refresh(session, first.connector, first.scim_token, owner, NOW)
    third = service.refresh(
        session, first.connector, first.scim_token, owner, NOW + timedelta(hours=1)
    )

    later = NOW + timedelta(hours=2)
    assert _reason(session, first.connector, first.token, later) == "unknown"
    assert _reason(session, first.connector, second.token, later) is None
    assert _reason(session, first.connector, third.token, later) is None


def test_refresh_does_not_revive_expired_token(session, ready, owner):
    first = _enable(session, ready, owner, lifetime="30")
    at = NOW + timedelta(days=31)
    assert _reason(session, first.connector, first.token, at) == "expired"

    second = service.refresh(session, first.connector, first.scim_token, owner, at)

    assert second.scim_token.previous_valid_until is None
    assert _reason(session, first.connector, first.token, at) == "unknown"
    assert _reason(session, first.connector, second.token, at) is None


def test_refresh_grace_ends_at_old_expiry_when_that_comes_first(session, ready, owner):
    first = _enable(session, ready, owner, lifetime="30")
    at = NOW + timedelta(days=30) - timedelta(hours=2)

    service.refresh(session, first.connector, first.scim_token, owner, at)

    assert first.scim_token.previous_valid_until == NOW + timedelta(days=30)
    assert _reason(session, first.connector, first.token, at + timedelta(hours=1)) is None
    assert _reason(session, first.connector, first.token, at + timedelta(hours=3)) == "unknown"


def test_refresh_binds_connector_to_refreshing_owner_and_clears_failure(session, ready, owner):
    co_owner = factories.make_user(session, ready, "co@example.com", role="co-owner")
    issued = _enable(session, ready, owner)
    connector = issued.scim_token
    connector.refresh_failure_reason = "Single sign-on is off."
    connector.refresh_failed_at = NOW
    session.commit()

    service.refresh(session, issued.connector, connector, co_owner, NOW + timedelta(days=1))

    session.expire_all()
    assert connector.bound_user_id == connector.refreshed_by_user_id == co_owner.id
    assert (connector.refresh_failure_reason, connector.refresh_failed_at) == (None, None)
    [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "scim.token_refreshed"))
    assert event.actor_user_id == co_owner.id
    notices = [e for e in _emails(session) if e.subject == "Your SCIM token was refreshed"]
    assert sorted(e.to_addr for e in notices) == ["co@example.com", "owner@example.com"]
    assert "keeps working for 24 hours" in notices[0].body_text


def test_refresh_refuses_when_disabled(session, ready, owner):
    issued = _enable(session, ready, owner)
    service.disable(session, issued.connector, owner, NOW)

    with pytest.raises(service.ConnectorError):
        service.refresh(session, issued.connector, issued.scim_token, owner, NOW)


# --- disable --------------------------------------------------------------------------------


def test_disable_refuses_tokens_and_leaves_members(session, ready, owner):
    for n in range(3):
        factories.make_user(session, ready, f"scim{n}@example.com", source="scim")
    first = _enable(session, ready, owner)
    second = service.refresh(session, first.connector, first.scim_token, owner, NOW)
    members = [
        (m.user_id, m.role, m.source, m.active, m.licensed)
        for m in session.scalars(select(Membership).order_by(Membership.id))
    ]

    service.disable(session, first.connector, owner, NOW + timedelta(minutes=5))

    session.expire_all()
    connector = service.get_connector(session, ready.id)
    assert (connector.enabled, connector.disabled_at) == (False, NOW + timedelta(minutes=5))
    # Every token revoked, its secret forgotten (the hash stays: "revoked", not "unknown").
    assert [(t.revoked_at, t.token_encrypted) for t in connector.tokens] == [
        (NOW + timedelta(minutes=5), None)
    ]
    later = NOW + timedelta(minutes=6)
    assert _reason(session, connector, first.token, later) == "disabled"
    assert _reason(session, connector, second.token, later) == "disabled"
    assert [
        (m.user_id, m.role, m.source, m.active, m.licensed)
        for m in session.scalars(select(Membership).order_by(Membership.id))
    ] == members
    assert session.scalars(
        select(AuditEvent.action).where(AuditEvent.action == "scim.disabled")
    ).all()


# --- the badge ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "name", "label", "days_left"),
    [
        (timedelta(days=365), "valid", "Valid", 365),
        (timedelta(days=20, seconds=1), "valid", "Valid", 20),
        (timedelta(days=20), "expiring", "Expiring soon: 20 days left", 20),
        (timedelta(days=1, hours=5), "expiring", "Expiring soon: 1 day left", 1),
        (timedelta(hours=5), "expiring", "Expiring soon: 0 days left", 0),
        (timedelta(0), "expired", "Expired", 0),
        (-timedelta(days=3), "expired", "Expired", 0),
        (None, "no_expiry", "Valid, no expiry", None),
    ],
)
def test_token_state_follows_expiry(app, expires_in, name, label, days_left):
    connector = ScimConnector(enabled=True)
    token = ScimToken(expires_at=NOW + expires_in if expires_in is not None else None)

    state = service.token_state(connector, token, NOW)

    assert state == service.TokenState(name, label, days_left)


def test_token_state_is_disabled_when_scim_is_off_and_revoked_once_revoked(app):
    token = ScimToken(expires_at=NOW + timedelta(days=1))
    assert service.token_state(ScimConnector(enabled=False), token, NOW).name == "disabled"

    token.revoked_at = NOW - timedelta(hours=1)

    assert service.token_state(ScimConnector(enabled=True), token, NOW) == service.TokenState(
        "revoked", "Revoked", None
    )
