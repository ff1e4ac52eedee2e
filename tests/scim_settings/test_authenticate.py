"""connector.authenticate: the bearer check the SCIM API runs on every request (SPEC F4, F5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from blueprints.scim_settings import connector as service
from models import SsoConnection
from tests import factories

NOW = datetime(2030, 1, 15, 9, 30, tzinfo=UTC)


@pytest.fixture
def issued(session, ready, owner) -> service.Issued:
    return service.enable(session, ready.id, owner, "okta", "90", NOW)


@pytest.fixture
def other_issued(session) -> service.Issued:
    """Another account with SCIM on, and its own token."""
    other = factories.make_account(session, name="Other Inc")
    other_owner = factories.make_user(session, other, "owner@example.org", role="owner")
    factories.make_domain(session, other, "example.org", verified=True)
    session.add(
        SsoConnection(account_id=other.id, public_id="sso-other", protocol="oidc", enabled=True)
    )
    session.commit()
    return service.enable(session, other.id, other_owner, "entra", "365", NOW)


def _check(session, issued, header, now=NOW) -> service.Authentication:
    return service.authenticate(session, issued.connector.public_id, header, now)


def test_authenticate_accepts_current_token_and_records_first_request(session, issued):
    result = _check(session, issued, f"Bearer {issued.token}", NOW + timedelta(hours=1))

    assert (result.connector.id, result.reason) == (issued.connector.id, None)
    assert result.connector.account_id == issued.connector.account_id
    session.expire_all()
    assert issued.connector.first_request_at == NOW + timedelta(hours=1)
    assert issued.connector.last_used_at == NOW + timedelta(hours=1)


def test_authenticate_accepts_scheme_in_any_case(session, issued):
    """RFC 7235: the auth scheme is case-insensitive."""
    assert _check(session, issued, f"bearer {issued.token}").reason is None
    assert _check(session, issued, f"BEARER  {issued.token} ").reason is None


def test_authenticate_updates_last_used_at_most_once_a_minute(session, issued):
    header = f"Bearer {issued.token}"
    _check(session, issued, header, NOW)

    _check(session, issued, header, NOW + timedelta(seconds=59))
    session.expire_all()
    assert issued.connector.last_used_at == NOW

    _check(session, issued, header, NOW + timedelta(seconds=60))
    session.expire_all()
    assert issued.connector.last_used_at == NOW + timedelta(seconds=60)
    _check(session, issued, header, NOW + timedelta(hours=3))
    session.expire_all()
    assert issued.connector.last_used_at == NOW + timedelta(hours=3)
    assert issued.connector.first_request_at == NOW


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "Basic {token}",
        "Token {token}",
        "Bearer{token}",
        "{token}",
        "Bearer " + "a" * 201,
        "Bearer {token}" + "x" * 200,
    ],
)
def test_authenticate_says_missing_when_header_is_absent_or_garbled(session, issued, header):
    header = header.format(token=issued.token) if header else header

    result = _check(session, issued, header)

    assert (result.connector, result.reason) == (None, "missing")
    assert issued.connector.first_request_at is None


@pytest.mark.parametrize(
    "token",
    ["scim_" + "A" * 43, "{token}x", "{token_upper}", "{token_cut}", "not a token", "é" * 10],
)
def test_authenticate_says_unknown_for_any_other_token(session, issued, token):
    token = token.format(
        token=issued.token, token_upper=issued.token.upper(), token_cut=issued.token[:-1]
    )

    result = _check(session, issued, f"Bearer {token}")

    assert (result.connector, result.reason) == (None, "unknown")
    session.expire_all()
    assert issued.connector.first_request_at is None
    assert issued.connector.last_used_at is None


def test_authenticate_refuses_token_on_another_accounts_connector(session, issued, other_issued):
    """A token works only for its own connector: B's valid token on A's URL is refused,
    and so is A's on B's."""
    on_a = service.authenticate(
        session, issued.connector.public_id, f"Bearer {other_issued.token}", NOW
    )
    on_b = service.authenticate(
        session, other_issued.connector.public_id, f"Bearer {issued.token}", NOW
    )

    assert (on_a.connector, on_a.reason) == (None, "unknown")
    assert (on_b.connector, on_b.reason) == (None, "unknown")
    session.expire_all()
    assert issued.connector.first_request_at is other_issued.connector.first_request_at is None


def test_authenticate_refuses_previous_token_of_another_account(session, issued, other_issued):
    owner_b = other_issued.scim_token.bound_user
    service.refresh(session, other_issued.connector, other_issued.scim_token, owner_b, NOW)

    result = service.authenticate(
        session, issued.connector.public_id, f"Bearer {other_issued.token}", NOW
    )

    assert result.reason == "unknown"


@pytest.mark.parametrize("public_id", ["no-such-connector", "", "x" * 500])
def test_authenticate_says_unknown_for_unknown_connector(session, issued, public_id):
    result = service.authenticate(session, public_id, f"Bearer {issued.token}", NOW)

    assert (result.connector, result.reason) == (None, "unknown")


def test_authenticate_says_expired_after_expiry_and_records_nothing(session, issued):
    expiry = issued.scim_token.expires_at
    assert (
        _check(session, issued, f"Bearer {issued.token}", expiry - timedelta(seconds=1)).reason
        is None
    )
    session.expire_all()
    last_used = issued.connector.last_used_at
    assert last_used == expiry - timedelta(seconds=1)

    result = _check(session, issued, f"Bearer {issued.token}", expiry)

    assert (result.connector.id, result.reason) == (issued.connector.id, "expired")
    assert (
        _check(session, issued, f"Bearer {issued.token}", expiry + timedelta(days=400)).reason
        == "expired"
    )
    session.expire_all()
    assert issued.connector.last_used_at == last_used


def test_authenticate_never_expires_token_without_expiry(session, ready, owner):
    issued = service.enable(session, ready.id, owner, "other", "never", NOW)

    result = _check(session, issued, f"Bearer {issued.token}", NOW + timedelta(days=3650))

    assert result.reason is None


def test_authenticate_says_disabled_when_scim_is_off(session, issued, owner):
    service.disable(session, issued.connector, owner, NOW)

    result = _check(session, issued, f"Bearer {issued.token}", NOW + timedelta(minutes=1))

    assert (result.connector, result.reason) == (None, "disabled")


def test_authenticate_accepts_previous_token_only_during_grace(session, issued, owner):
    new = service.refresh(session, issued.connector, issued.scim_token, owner, NOW)

    assert (
        _check(session, issued, f"Bearer {issued.token}", NOW + timedelta(hours=23)).reason is None
    )
    assert (
        _check(session, issued, f"Bearer {issued.token}", NOW + timedelta(hours=25)).reason
        == "unknown"
    )
    assert _check(session, issued, f"Bearer {new.token}", NOW + timedelta(hours=25)).reason is None
