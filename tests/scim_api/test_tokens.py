"""Named tokens through the SCIM API (SPEC F11), as an IdP sees them: each token of a
connector works on its own; revoking or refreshing one leaves the others alone; a token
never works on another connector's URL; each token's last use (time and address) is
stamped by the batched request log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from blueprints.scim_settings import connector as service
from models import ScimToken, utcnow
from tests.scim_api.conftest import assert_401

SPC = "/ServiceProviderConfig"


@pytest.fixture
def second(session, issued, owner) -> service.Issued:
    """A second token, "Entra migration", on the connector `issued` enabled."""
    return service.create_token(
        session, issued.connector, owner, "Entra migration", "365", utcnow()
    )


def _token(session, issued_token: service.Issued) -> ScimToken:
    session.expire_all()
    return session.get(ScimToken, issued_token.scim_token.id)


def test_two_tokens_of_one_connector_both_work(scim, issued, second):
    assert scim("GET", SPC).status_code == 200
    assert scim("GET", SPC, token=second.token).status_code == 200
    assert scim("GET", "/Users", token=second.token).status_code == 200


def test_revoking_one_token_refuses_it_at_once_and_leaves_the_other(
    scim, session, issued, second, owner
):
    service.revoke(session, second.connector, second.scim_token, owner, utcnow())
    session.commit()

    body = assert_401(scim("GET", SPC, token=second.token))

    assert 'The SCIM token "Entra migration" was revoked on' in body["detail"]
    assert second.token not in body["detail"]
    assert scim("GET", SPC).status_code == 200  # "Default" keeps working


def test_refreshing_one_token_leaves_the_other_and_honours_its_old_secret_for_the_grace(
    scim, session, issued, second, owner
):
    hours = scim.client.application.config["SCIM_TOKEN_GRACE_HOURS"]
    now = utcnow()
    renewed = service.refresh(session, second.connector, second.scim_token, owner, now)
    session.commit()

    assert scim("GET", SPC).status_code == 200  # the other token: untouched
    assert scim("GET", SPC, token=renewed.token).status_code == 200
    assert scim("GET", SPC, token=second.token).status_code == 200  # its grace
    later = now + timedelta(hours=hours, seconds=1)
    header = f"Bearer {second.token}"
    public_id = issued.connector.public_id
    assert service.authenticate(session, public_id, header, later).reason == "unknown"
    assert service.authenticate(session, public_id, f"Bearer {issued.token}", later).reason is None


def test_a_token_of_connector_a_is_refused_on_connector_b(scim, issued, second, other_issued):
    """Tenant isolation: every token of A (the second one too) is unknown on B's URL,
    and B's on A's."""
    for token in (issued.token, second.token):
        body = assert_401(
            scim("GET", SPC, token=token, connector_id=other_issued.connector.public_id)
        )
        assert body["detail"] == "The bearer token is not valid for this SCIM connector."
    assert_401(scim("GET", SPC, token=other_issued.token))


def test_each_token_gets_its_own_last_use_and_address_from_the_request_log(
    scim, session, issued, second
):
    scim("GET", SPC, environ_base={"REMOTE_ADDR": "203.0.113.5"})
    scim("GET", SPC, token=second.token, environ_base={"REMOTE_ADDR": "2001:db8::7"})

    default, migration = _token(session, issued), _token(session, second)
    assert default.last_used_addr == "203.0.113.5"
    assert migration.last_used_addr == "2001:db8::7"
    assert default.last_used_at is not None and migration.last_used_at is not None
    assert issued.connector.last_used_at is not None  # the connector's too (health panel)


def test_a_refused_token_gets_no_last_use(scim, session, issued, second, owner):
    service.revoke(session, second.connector, second.scim_token, owner, utcnow())
    session.commit()

    assert_401(scim("GET", SPC, token=second.token))

    assert _token(session, second).last_used_at is None


def test_the_bearer_check_is_one_statement_however_many_tokens(app, scim, session, issued, owner):
    """One indexed lookup per request: the tokens of a connector are not walked."""
    from sqlalchemy import event

    from blueprints.common.extensions import db

    for n in range(4):
        service.create_token(session, issued.connector, owner, f"Token {n}", "90", utcnow())
    session.commit()
    scim("GET", SPC)  # the first use is stamped; what follows is the plain path
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        assert scim("GET", SPC).status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)

    touching_tokens = [s for s in statements if "scim_token" in s]
    assert len(touching_tokens) == 1, touching_tokens
    assert "scim_token.token_hash =" in touching_tokens[0]


def test_revoked_names_can_be_given_again(session, issued, second, owner):
    service.revoke(session, second.connector, second.scim_token, owner, utcnow())

    again = service.create_token(
        session, issued.connector, owner, "Entra migration", "30", utcnow()
    )

    names = session.scalars(
        select(ScimToken.name).where(ScimToken.connector_id == issued.connector.id)
    ).all()
    assert sorted(names) == ["Default", "Entra migration", "Entra migration"]
    assert again.scim_token.revoked_at is None
