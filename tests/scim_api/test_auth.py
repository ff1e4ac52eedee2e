"""Bearer authentication and the rate limits of the SCIM API (SPEC F4, F5): a token works
only for its own connector; every refusal is a 401 SCIM error with WWW-Authenticate."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from blueprints.scim_settings import connector as service
from models import AuditEvent, OutboxEmail, ScimConnector, utcnow
from tests.scim_api.conftest import Scim, assert_401, assert_scim_error

SPC = "/ServiceProviderConfig"


def _connector(session, issued) -> ScimConnector:
    session.expire_all()
    return session.get(ScimConnector, issued.connector.id)


def _count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_valid_token_is_accepted_on_its_own_connector(scim):
    assert scim("GET", SPC).status_code == 200


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_valid_token_is_accepted_whatever_the_scheme_case(scim, scheme):
    response = scim(
        "GET", SPC, token=None, headers={"Authorization": f"{scheme} {scim.token(...)}"}
    )

    assert response.status_code == 200


def test_no_authorization_header_gets_401(scim, session, issued):
    body = assert_401(scim("GET", SPC, token=None))

    assert "Bearer" in body["detail"]
    assert _connector(session, issued).first_request_at is None


@pytest.mark.parametrize(
    "header",
    ["Basic {token}", "Basic b3duZXI6c2VjcmV0", "Token {token}", "{token}", "Bearer", "Bearer "],
)
def test_other_schemes_or_bare_tokens_get_401(scim, header):
    assert_401(
        scim(
            "GET", SPC, token=None, headers={"Authorization": header.format(token=scim.token(...))}
        )
    )


@pytest.mark.parametrize("token", ["scim_" + "A" * 43, "{token}x", "{token_cut}", "nonsense"])
def test_wrong_token_gets_401_and_records_no_use(scim, session, issued, token):
    token = token.format(token=issued.token, token_cut=issued.token[:-1])

    body = assert_401(scim("GET", SPC, token=token))

    assert body["detail"] == "The bearer token is not valid for this SCIM connector."
    connector = _connector(session, issued)
    assert connector.first_request_at is None and connector.last_used_at is None


def test_another_accounts_valid_token_gets_401_on_this_connector(client, scim, other_issued):
    """Tokens only work for their own connector, both ways."""
    assert_401(scim("GET", SPC, token=other_issued.token))
    theirs = Scim(client, other_issued)
    assert_401(theirs("GET", SPC, token=scim.token(...)))
    assert theirs("GET", SPC).status_code == 200


@pytest.mark.parametrize("connector_id", ["no-such-connector", "A" * 22, "x" * 500, "%00", "ü"])
def test_unknown_connector_id_gets_401(scim, connector_id):
    assert_401(scim("GET", SPC, connector_id=connector_id))


def test_disabled_connector_gets_401_with_its_token(scim, session, issued, owner):
    service.disable(session, issued.connector, owner, utcnow())

    body = assert_401(scim("GET", SPC))

    assert "disabled" in body["detail"]


def test_expired_token_gets_401_saying_when_and_that_an_owner_must_refresh(
    client, session, ready, owner
):
    issued = service.enable(session, ready.id, owner, "okta", "30", utcnow() - timedelta(days=31))
    connector = _connector(session, issued)
    token = connector.tokens[0]
    before = (
        token.token_hash,
        token.expires_at,
        _count(session, AuditEvent),
        _count(session, OutboxEmail),
    )

    body = assert_401(Scim(client, issued)("GET", SPC))

    assert f"expired on {token.expires_at:%Y-%m-%d %H:%M} UTC" in body["detail"]
    assert 'must refresh it (the token "Default")' in body["detail"]
    assert "owner must refresh" in body["detail"]
    connector = _connector(session, issued)
    token = connector.tokens[0]
    after = (
        token.token_hash,
        token.expires_at,
        _count(session, AuditEvent),
        _count(session, OutboxEmail),
    )
    assert after == before  # nothing else happens: no refresh, no event, no email
    assert connector.first_request_at is None and connector.last_used_at is None


def test_previous_token_works_during_grace_period_after_refresh(scim, session, issued, owner):
    connector = _connector(session, issued)
    new = service.refresh(session, connector, connector.tokens[0], owner, utcnow())

    assert scim("GET", SPC).status_code == 200  # the previous token
    assert scim("GET", SPC, token=new.token).status_code == 200


def test_previous_token_gets_401_after_grace_period(scim, session, issued, owner):
    hours = scim.client.application.config["SCIM_TOKEN_GRACE_HOURS"]
    connector = _connector(session, issued)
    at = utcnow() - timedelta(hours=hours + 1)
    new = service.refresh(session, connector, connector.tokens[0], owner, at)

    assert_401(scim("GET", SPC))
    assert scim("GET", SPC, token=new.token).status_code == 200


def test_new_token_works_and_old_fails_after_disable_and_enable(scim, session, issued, owner):
    service.disable(session, _connector(session, issued), owner, utcnow())
    again = service.enable(session, issued.connector.account_id, owner, "okta", "90", utcnow())

    assert_401(scim("GET", SPC))
    assert scim("GET", SPC, token=again.token).status_code == 200
    assert again.connector.public_id == issued.connector.public_id  # the URL never changes


def test_a_dropped_database_connection_is_503_with_retry_after_then_served(
    scim, drop_database_connections
):
    """PostgreSQL restarted under the pool: the IdP gets one 503 it retries, not a 500."""
    assert scim("GET", SPC).status_code == 200
    drop_database_connections()

    first = scim("GET", SPC)

    assert_scim_error(first, 503)
    assert first.headers["Retry-After"] == "1"
    assert scim("GET", SPC).status_code == 200
