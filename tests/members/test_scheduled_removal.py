"""Members scheduled for removal by the deprovisioning policy (SPEC F12) on the Members
page: "Scheduled for removal on …", the "Scheduled for removal" filter, and the owners'
two actions, Remove now and Keep, behind the passphrase like the page's other actions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from blueprints.scim_api import users
from models import Account, AuditEvent, Membership, utcnow
from tests import factories
from tests.members.conftest import MEMBERS, enable_scim, listed, make_team, scim_member
from tests.members.test_actions import act, find, row_html, shown

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def assert_seats(session, account) -> int:
    """`seats_used` equals the licensed memberships, counted."""
    session.expire_all()
    counted = session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.account_id == account.id, Membership.licensed.is_(True))
    )
    assert session.get(Account, account.id).seats_used == counted
    return counted


@pytest.fixture
def connector(session, account, owner):
    """SCIM on, under "suspend" for 10 days."""
    found = enable_scim(session, account, owner)
    found.deprovision_mode, found.suspend_days = "suspend", 10
    session.commit()
    return found


@pytest.fixture
def paused(session, account, connector) -> Membership:
    """A SCIM member the IdP deactivated (active: false): scheduled."""
    member = scim_member(session, account, "paused@example.com")
    member.scim_resource = {"userName": member.user_name, "active": True}
    session.commit()
    body = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
    users.patch(session, connector, member.scim_id, body, utcnow())
    session.commit()
    return find(session, member.id)


@pytest.fixture
def gone(session, account, connector) -> Membership:
    """A SCIM member (in a team) the IdP deleted: suspended, scheduled."""
    member = scim_member(session, account, "gone@example.com")
    make_team(session, account, "Ops", [member])
    users.delete(session, connector, member.scim_id, utcnow())
    session.commit()
    return find(session, member.id)


def test_scheduled_members_show_the_date(as_owner, paused, gone):
    page = shown(as_owner.get(MEMBERS))

    for member in (paused, gone):
        row = row_html(page, member.id)
        when = member.removal_due_at.strftime("%Y-%m-%d %H:%M")
        assert f"Scheduled for removal on {when}" in row
        assert ">Remove now</a>" in row and ">Keep</a>" in row
        assert ">Reactivate<" not in row and ">Remove</" not in row
    assert "SCIM (deleted)" in row_html(page, gone.id)


def test_scheduled_filter(as_owner, session, account, paused, gone):
    scim_member(session, account, "busy@example.com")

    page = shown(as_owner.get(MEMBERS, query_string={"status": "scheduled"}))

    assert sorted(listed(page)) == ["gone@example.com", "paused@example.com"]


def test_keep_asks_for_the_passphrase_and_explains(as_owner, gone, paused, htmx):
    deleted = shown(as_owner.get(f"{MEMBERS}/{gone.id}/keep", headers=htmx))
    assert "no longer managed by the identity provider" in deleted
    assert 'name="passphrase"' in deleted
    deactivated = shown(as_owner.get(f"{MEMBERS}/{paused.id}/keep", headers=htmx))
    assert "can still reactivate them" in deactivated


def test_keep_a_deactivated_member(as_owner, session, account, paused, htmx):
    seats = assert_seats(session, account)

    response = act(as_owner, paused.id, "keep", headers=htmx)

    assert response.status_code == 200, shown(response)[:500]
    assert "no longer scheduled for removal" in shown(response)
    member = find(session, paused.id)
    assert (member.source, member.active, member.removal_due_at) == ("scim", False, None)
    assert assert_seats(session, account) == seats
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "member.keep"))
    assert event.target == "paused@example.com" and event.actor_user_id is not None


def test_keep_a_deleted_member_makes_it_manual(as_owner, session, account, gone, htmx):
    response = act(as_owner, gone.id, "keep", headers=htmx)

    assert response.status_code == 200
    member = find(session, gone.id)
    assert (member.source, member.active, member.licensed) == ("manual", False, False)
    assert member.removal_due_at is None and member.scim_id is None
    assert member.user_name_key is None and member.external_id is None
    assert member.role == "member" and member.user_id is not None
    assert_seats(session, account)
    row = row_html(shown(as_owner.get(MEMBERS)), gone.id)
    assert "Scheduled for removal" not in row and ">Reactivate</a>" in row


def test_remove_now(as_owner, session, account, gone, paused, htmx):
    seats = assert_seats(session, account)

    for member in (gone, paused):
        response = act(as_owner, member.id, "remove-now", headers=htmx)
        assert response.status_code == 200, shown(response)[:500]
        assert "was removed from the account" in shown(response)
        assert find(session, member.id) is None

    assert assert_seats(session, account) == seats
    removed = session.scalars(
        select(AuditEvent.target).where(AuditEvent.action == "member.remove_now")
    ).all()
    assert sorted(removed) == ["gone@example.com", "paused@example.com"]


def test_actions_need_the_passphrase_and_csrf(as_owner, session, gone):
    assert (
        act(as_owner, gone.id, "remove-now", passphrase="wrong passphrase here").status_code == 422
    )
    assert act(as_owner, gone.id, "keep", csrf=False).status_code == 400
    assert find(session, gone.id).removal_due_at is not None


def test_co_owner_gets_403(app, session, account, gone):
    deputy = factories.make_user(session, account, "deputy@example.com", role="co-owner")
    client = app.test_client()
    client.post("/login", data={"email": deputy.email, "passphrase": factories.PASSPHRASE})

    row = row_html(shown(client.get(MEMBERS)), gone.id)
    assert "Scheduled for removal on" in row and ">Keep</a>" not in row
    for action in ("remove-now", "keep"):
        assert client.get(f"{MEMBERS}/{gone.id}/{action}").status_code == 403
        assert act(client, gone.id, action).status_code == 403
    assert find(session, gone.id).removal_due_at is not None


def test_another_accounts_member_is_404(as_owner, session):
    other = factories.make_account(session, name="Other")
    factories.make_user(session, other, "boss@example.org", role="owner")
    theirs = scim_member(session, other, "theirs@example.org")
    theirs = find(session, theirs.id)
    theirs.active, theirs.removal_due_at = False, utcnow() + timedelta(days=3)
    session.commit()

    assert act(as_owner, theirs.id, "remove-now").status_code == 404
    assert act(as_owner, theirs.id, "keep").status_code == 404
    assert find(session, theirs.id) is not None


def test_an_unscheduled_member_has_no_such_actions(as_owner, session, account, connector, htmx):
    member = scim_member(session, account, "busy@example.com")

    response = act(as_owner, member.id, "keep", headers=htmx)

    assert response.status_code == 422
    assert "not scheduled for removal" in shown(response)


def test_other_actions_wait_for_remove_now_or_keep(as_owner, session, account, gone, htmx):
    """Reactivating a deleted member here would leave it due: refused."""
    response = act(as_owner, gone.id, "reactivate", headers=htmx)

    assert response.status_code == 422
    assert "Remove now or Keep first" in shown(response)
    assert find(session, gone.id).active is False
