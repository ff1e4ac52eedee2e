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
