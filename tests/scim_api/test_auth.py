"""Bearer authentication and the rate limits of the SCIM API (SPEC F4, F5): a token works
only for its own connector; every refusal is a 401 SCIM error with WWW-Authenticate."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from blueprints.scim_api import auth
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
    before = (
        connector.token_hash,
        connector.expires_at,
        _count(session, AuditEvent),
        _count(session, OutboxEmail),
    )

    body = assert_401(Scim(client, issued)("GET", SPC))

    assert f"expired on {connector.expires_at:%Y-%m-%d %H:%M} UTC" in body["detail"]
    assert "owner must refresh" in body["detail"]
    connector = _connector(session, issued)
    after = (
        connector.token_hash,
        connector.expires_at,
        _count(session, AuditEvent),
        _count(session, OutboxEmail),
    )
    assert after == before  # nothing else happens: no refresh, no event, no email
    assert connector.first_request_at is None and connector.last_used_at is None


def test_previous_token_works_during_grace_period_after_refresh(scim, session, issued, owner):
    new = service.refresh(session, _connector(session, issued), owner, utcnow())

    assert scim("GET", SPC).status_code == 200  # the previous token
    assert scim("GET", SPC, token=new.token).status_code == 200


def test_previous_token_gets_401_after_grace_period(scim, session, issued, owner):
    hours = scim.client.application.config["SCIM_TOKEN_GRACE_HOURS"]
    new = service.refresh(
        session, _connector(session, issued), owner, utcnow() - timedelta(hours=hours + 1)
    )

    assert_401(scim("GET", SPC))
    assert scim("GET", SPC, token=new.token).status_code == 200


def test_new_token_works_and_old_fails_after_disable_and_enable(scim, session, issued, owner):
    service.disable(session, _connector(session, issued), owner, utcnow())
    again = service.enable(session, issued.connector.account_id, owner, "okta", "90", utcnow())

    assert_401(scim("GET", SPC))
    assert scim("GET", SPC, token=again.token).status_code == 200
    assert again.connector.public_id == issued.connector.public_id  # the URL never changes


# --- rate limits ----------------------------------------------------------------------------


def _burst(send, count: int) -> list:
    """`count` requests inside one limiter second (the window is `int(time.monotonic())`);
    retried, a few times at most, when a burst straddles a second boundary."""
    for _ in range(5):
        auth._requests.reset()
        auth._failures.reset()
        second = int(time.monotonic())
        responses = [send(n) for n in range(count)]
        if int(time.monotonic()) == second:
            return responses
    pytest.fail("no burst fitted in one second")


@pytest.mark.parametrize("config_overrides", [{"SCIM_REQUESTS_PER_SECOND": 3}])
def test_request_over_connector_limit_gets_429_with_retry_after(scim):
    responses = _burst(lambda n: scim("GET", SPC), 4)

    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    body = assert_scim_error(responses[3], 429)
    assert responses[3].headers["Retry-After"] == "1"
    assert "Too many requests" in body["detail"]


@pytest.mark.parametrize("config_overrides", [{"SCIM_REQUESTS_PER_SECOND": 3}])
def test_connector_limit_does_not_slow_another_connector(client, scim, other_issued):
    theirs = Scim(client, other_issued)

    responses = _burst(lambda n: scim("GET", SPC) if n < 4 else theirs("GET", SPC), 5)

    assert [r.status_code for r in responses] == [200, 200, 200, 429, 200]


@pytest.mark.parametrize("config_overrides", [{"SCIM_FAILED_AUTH_PER_SECOND": 2}])
def test_third_failed_authentication_from_one_address_gets_429_even_with_good_token(scim):
    here = {"REMOTE_ADDR": "192.0.2.10"}
    elsewhere = {"REMOTE_ADDR": "192.0.2.20"}

    def send(n):
        if n < 3:
            return scim("GET", SPC, token="scim_wrong", environ_base=here)
        if n == 3:
            return scim("GET", SPC, environ_base=here)
        return scim("GET", SPC, environ_base=elsewhere)

    responses = _burst(send, 5)

    assert [r.status_code for r in responses] == [401, 401, 429, 429, 200]
    for refused in responses[2:4]:
        body = assert_scim_error(refused, 429)
        assert refused.headers["Retry-After"] == "1"
        assert "failed authentications" in body["detail"]


def test_limiter_window_forgets_keys_of_past_seconds():
    """Only the current second is kept, so many client addresses cannot grow it forever."""
    window = auth._Window()
    for n in range(100):
        window.add(f"198.51.100.{n}")
    window._second -= 1  # as if a second had passed

    assert window.current("198.51.100.1") == 0
    assert window.add("198.51.100.1") == 1
    assert len(window._counts) == 1


# --- one SCIM write at a time per process ------------------------------------------------

NEW_USER = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "userName": "queued@example.com",
}
QUEUED = {"SCIM_WRITERS_PER_PROCESS": 1, "SCIM_WRITERS_WAIT_SECONDS": 0.2}


def _users(scim) -> int:
    return scim("GET", "/Users?count=0").get_json()["totalResults"]


@pytest.mark.parametrize("config_overrides", [QUEUED])
def test_write_waiting_too_long_for_its_turn_gets_503_and_changes_nothing(scim):
    """While another thread of the process writes, a write waits; past the wait it is a
    503 with Retry-After (the IdP retries), and reads are never held up."""
    gate = auth.writers_gate(1)
    assert gate.acquire(timeout=1)
    try:
        busy = scim("POST", "/Users", json=NEW_USER)
        read = scim("GET", SPC)
        search = scim(
            "POST",
            "/Users/.search",
            json={"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]},
        )
    finally:
        gate.release()

    body = assert_scim_error(busy, 503)
    assert busy.headers["Retry-After"] == "1"
    assert "retry" in body["detail"]
    assert read.status_code == 200
    assert search.status_code == 200
    assert _users(scim) == 0
    assert scim("POST", "/Users", json=NEW_USER).status_code == 201


@pytest.mark.parametrize("config_overrides", [QUEUED])
def test_writers_turn_is_given_back_after_errors(scim):
    """A refused write (bad body, unknown id, bad token) does not keep the process's
    turn: the next write goes straight in."""
    assert scim("POST", "/Users", json={"userName": 5}).status_code == 400
    assert scim("PATCH", "/Users/no-such-id", json={}).status_code == 404
    assert scim("DELETE", "/Users/no-such-id", token="scim_wrong").status_code == 401
    assert (
        scim("POST", "/Users", data=b"{not json", content_type="application/json").status_code
        == 400
    )

    assert scim("POST", "/Users", json=NEW_USER).status_code == 201
    assert _users(scim) == 1
