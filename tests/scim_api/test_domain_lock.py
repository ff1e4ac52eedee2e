"""Domain lock and SCIM (SPEC F13): an IdP creating, in its account, a person whose
domain another account verified and locked gets a clear 403 and nothing is written; with
the lock off the person is invited as before; a create inside the account's own verified
domains is unaffected."""

from __future__ import annotations

import html

import pytest
from sqlalchemy import func, select

from models import Membership, OutboxEmail
from tests import factories
from tests.scim_api.conftest import assert_scim_error, provision
from tests.scim_settings.conftest import signed_in  # noqa: F401 (a fixture)

USER = "urn:ietf:params:scim:schemas:core:2.0:User"


@pytest.fixture
def locked(session):
    other = factories.make_account(session, name="Locker Inc")
    return factories.make_domain(session, other, "locked.test", verified=True, locked=True)


def _counts(session) -> tuple[int, int]:
    session.expire_all()
    return (
        session.scalar(select(func.count()).select_from(Membership)),
        session.scalar(select(func.count()).select_from(OutboxEmail)),
    )


def test_create_of_a_person_of_a_domain_locked_elsewhere_is_403(scim, session, ready, locked):
    before = _counts(session)

    response = scim("POST", "/Users", json={"schemas": [USER], "userName": "kim@locked.test"})

    body = assert_scim_error(response, 403)
    assert body["detail"] == "locked.test is managed by another organisation."
    assert _counts(session) == before


def test_lock_off_invites_as_before(scim, session, ready, locked):
    locked.locked = False
    session.commit()

    created = provision(scim, "kim@locked.test")

    member = session.scalar(select(Membership).where(Membership.scim_id == created["id"]))
    assert member.status == "invited"


def test_create_in_own_verified_domain_is_unaffected(scim, session, ready, locked):
    created = provision(scim, "ana@example.com")

    member = session.scalar(select(Membership).where(Membership.scim_id == created["id"]))
    assert member.status == "active"


def test_lock_refusals_are_a_provisioning_problem_on_the_scim_page(
    client,
    session,
    ready,
    locked,
    scim,
    signed_in,  # noqa: F811
):
    for name in ("kim@locked.test", "lee@locked.test"):
        assert _create(scim, name).status_code == 403

    page = html.unescape(client.get("/enterprise/scim").get_data(as_text=True))

    assert 'class="problem problem-domain_locked"' in page
    assert "Refused: domain locked by another organisation" in page
    assert "locked.test is managed by another organisation." in page


def _create(scim, email: str):
    return scim("POST", "/Users", json={"schemas": [USER], "userName": email})
