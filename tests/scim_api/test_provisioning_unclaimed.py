"""A person SCIM creates (a Core INSERT on SQLite, a data-modifying CTE on PostgreSQL:
no ORM event fires) carries their email domain, so once no longer a member they are in
the domain's unclaimed accounts (SPEC F13)."""

from __future__ import annotations

from blueprints.domains import unclaimed
from models import Domain, User
from tests.scim_api.conftest import provision


def test_scim_created_person_has_their_domain_and_becomes_unclaimed(session, scim, ready):
    created = provision(scim, "New.Person@Example.COM")

    person = session.query(User).filter_by(email_key="new.person@example.com").one()
    assert person.email_domain == "example.com"
    domain = session.query(Domain).filter_by(account_id=ready.id, name="example.com").one()
    cursor = unclaimed.Cursor()
    assert unclaimed.list_unclaimed(session, ready.id, domain.name, cursor).people == []

    assert scim("DELETE", f"/Users/{created['id']}").status_code == 204
    session.expire_all()

    found = unclaimed.list_unclaimed(session, ready.id, domain.name, cursor).people
    assert [p.email for p in found] == ["New.Person@Example.COM"]


def test_person_made_by_accepting_an_invitation_is_unclaimed_for_others(
    session, scim, client, smtp_server
):
    """The invitation page creates the person with the ORM (the User event keeps the
    domain): another account that verified that domain sees them unclaimed."""
    from tests import factories
    from tests.scim_api.test_invitations import NEW, _invitation_path

    provision(scim, "kim@elsewhere.test")
    response = client.post(_invitation_path(smtp_server), data={"passphrase": NEW, "confirm": NEW})
    assert response.status_code == 302

    person = session.query(User).filter_by(email_key="kim@elsewhere.test").one()
    assert person.email_domain == "elsewhere.test"
    other = factories.make_account(session, name="Elsewhere Inc")
    factories.make_domain(session, other, "elsewhere.test", verified=True)
    found = unclaimed.list_unclaimed(session, other.id, "elsewhere.test", unclaimed.Cursor())
    assert [p.email for p in found.people] == ["kim@elsewhere.test"]
