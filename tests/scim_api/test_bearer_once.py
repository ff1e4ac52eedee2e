"""A create with a token this process accepted before skips the bearer check's own
statement on PostgreSQL: the create's first statement reads the connector and token
again, and their verdict is given before anything is written (blueprints.scim_api.auth).
An IdP's next create after an owner's change gets exactly the answer the full check
gives: each test creates once (the token is remembered), changes the token or the
connector as the SCIM page does, and creates again. On SQLite the check stays a statement
of its own, and the same answers are asserted."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, func, select, update

from blueprints.common.extensions import db
from blueprints.scim_settings import connector as service
from models import Membership, ScimToken, utcnow
from tests.scim_api.conftest import assert_401, assert_scim_error, provision

USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def _create(scim, user_name: str, **kwargs):
    body = {"schemas": [USER], "userName": user_name, "name": {"givenName": "Ada"}}
    return scim("POST", "/Users", json=body, **kwargs)


def _members_named(session, user_name: str) -> int:
    session.expire_all()
    return session.scalar(
        select(func.count()).select_from(Membership).where(Membership.user_name == user_name)
    )


def _passed(session, issued, column: str) -> None:
    """The token's `column` (its expiry, or its old secret's grace) a second ago, as if
    the clock had passed it."""
    session.execute(
        update(ScimToken)
        .where(ScimToken.id == issued.scim_token.id)
        .values({column: utcnow() - timedelta(seconds=1)})
    )
    session.commit()


@pytest.fixture
def remembered(scim):
    """The token's first create: accepted by the full check, and remembered."""
    provision(scim, "first@example.com")


def test_the_next_create_reads_the_token_in_one_statement(app, scim, remembered):
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        assert _create(scim, "second@example.com").status_code == 201
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    touching = [s for s in statements if "scim_token" in s]
    assert len(touching) == 1, touching
    if db.engine.dialect.name == "sqlite":  # the bearer check's own lookup, in process
        assert "scim_token.token_hash =" in touching[0]
    else:  # the create's read, not the bearer check's lookup
        assert "scim_token.token_hash =" not in touching[0]
        assert "user_name_key" in touching[0]


def test_a_revoked_token_creates_nothing_and_gets_the_revoked_401(
    scim, session, issued, owner, remembered
):
    service.revoke(session, issued.connector, issued.scim_token, owner, utcnow())
    session.commit()

    body = assert_401(_create(scim, "after@example.com"))

    assert 'The SCIM token "Default" was revoked on' in body["detail"]
    assert _members_named(session, "after@example.com") == 0
    assert_401(_create(scim, "again@example.com"))  # and so on, every time


def test_a_revoked_token_with_a_bad_body_gets_401_not_400(scim, session, issued, owner, remembered):
    service.revoke(session, issued.connector, issued.scim_token, owner, utcnow())
    session.commit()

    assert_401(scim("POST", "/Users", json={"schemas": [USER]}))  # no userName
    assert_401(scim("POST", "/Users", data=b"{not json", content_type="application/scim+json"))


def test_a_good_tokens_bad_body_still_gets_its_400(scim, remembered):
    body = assert_scim_error(scim("POST", "/Users", json={"schemas": [USER]}), 400)
    assert "userName" in body["detail"]


def test_a_taken_user_name_with_a_revoked_token_gets_401_not_409(
    scim, session, issued, owner, remembered
):
    service.revoke(session, issued.connector, issued.scim_token, owner, utcnow())
    session.commit()

    assert_401(_create(scim, "first@example.com"))


def test_scim_disabled_meanwhile_gets_the_disabled_401(scim, session, issued, owner, remembered):
    service.disable(session, issued.connector, owner, utcnow())
    session.commit()

    body = assert_401(_create(scim, "after@example.com"))

    assert body["detail"] == "SCIM provisioning is disabled for this account."
    assert _members_named(session, "after@example.com") == 0


def test_a_token_made_read_only_meanwhile_gets_403(scim, session, issued, owner, remembered):
    service.change_access(session, issued.connector, issued.scim_token, owner, None, True, utcnow())
    session.commit()

    body = assert_scim_error(_create(scim, "after@example.com"), 403)

    assert "read-only" in body["detail"]
    assert _members_named(session, "after@example.com") == 0


def test_an_allow_list_that_no_longer_holds_the_address_gets_401(
    scim, session, issued, owner, remembered
):
    service.change_access(
        session, issued.connector, issued.scim_token, owner, "198.51.100.0/24", False, utcnow()
    )
    session.commit()

    body = assert_401(_create(scim, "after@example.com"))

    assert "its IP allow-list does not include that address" in body["detail"]
    assert _members_named(session, "after@example.com") == 0
    # From an address inside the list the token creates again.
    inside = {"environ_base": {"REMOTE_ADDR": "198.51.100.7"}}
    assert _create(scim, "inside@example.com", **inside).status_code == 201


def test_a_connector_put_in_preview_meanwhile_answers_without_applying(
    scim, session, issued, owner, remembered
):
    service.start_preview(session, issued.connector, owner, utcnow())
    session.commit()

    response = _create(scim, "after@example.com")

    assert response.status_code == 201  # answered as live would answer
    assert response.get_json()["userName"] == "after@example.com"
    assert _members_named(session, "after@example.com") == 0  # and only forecast


def test_a_refreshed_tokens_old_secret_works_in_its_grace_and_not_after(
    scim, session, issued, owner, remembered
):
    renewed = service.refresh(session, issued.connector, issued.scim_token, owner, utcnow())
    session.commit()
    assert _create(scim, "in-grace@example.com").status_code == 201  # the old secret

    _passed(session, issued, "previous_valid_until")

    body = assert_401(_create(scim, "after-grace@example.com"))
    assert body["detail"] == "The bearer token is not valid for this SCIM connector."
    assert _members_named(session, "after-grace@example.com") == 0
    assert _create(scim, "renewed@example.com", token=renewed.token).status_code == 201


def test_a_token_expired_meanwhile_gets_the_expired_401(scim, session, issued, remembered):
    _passed(session, issued, "expires_at")

    body = assert_401(_create(scim, "after@example.com"))

    assert body["detail"].startswith("The SCIM token expired on")
    assert _members_named(session, "after@example.com") == 0


def test_a_remembered_token_is_still_unknown_on_another_connectors_url(
    scim, session, other_issued, remembered
):
    body = assert_401(
        _create(scim, "elsewhere@example.com", connector_id=other_issued.connector.public_id)
    )
    assert body["detail"] == "The bearer token is not valid for this SCIM connector."
    assert _members_named(session, "elsewhere@example.com") == 0
