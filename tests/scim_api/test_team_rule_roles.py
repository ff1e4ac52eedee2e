"""SCIM `roles` driving team rules (SPEC F12): an IdP that sends `roles[].value` equal to a
ruled team's name puts the user under that rule as if they were in the team; the owner's
order of the rules decides, whichever way a user matched them."""

from __future__ import annotations

from sqlalchemy import select, update

from blueprints.members import rules
from models import Account, Membership, TeamRuleRun, utcnow
from tests.scim_api.conftest import assert_scim_error
from tests.scim_api.test_groups import new_group, new_user, patch
from tests.scim_api.test_team_rules import (
    add,
    add_rule,
    member,
    owner_of,
    run_job,
    seats_consistent,
)

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def user_with_roles(scim, name: str, *roles: str) -> str:
    body = {
        "schemas": [USER],
        "userName": f"{name}@example.com",
        "roles": [{"value": r, "type": "WindowsAzureActiveDirectoryRole"} for r in roles],
    }
    response = scim("POST", "/Users", json=body)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["id"]


def patch_user(scim, scim_id: str, *operations):
    body = {"schemas": [PATCH_OP], "Operations": list(operations)}
    return scim("PATCH", f"/Users/{scim_id}", json=body)


def state(session, scim_id: str) -> tuple[str, bool]:
    found = member(session, scim_id)
    return found.role, found.licensed


def test_a_user_created_with_a_ruled_teams_name_in_roles_gets_its_rule(scim, session, ready):
    admins = new_group(scim, "Admins")
    add_rule(session, ready, admins, "co-owner", False)

    # Entra ID's complex app-role mapping; the name compared without case or spaces.
    ada = user_with_roles(scim, "ada", " admins ")

    assert state(session, ada) == ("co-owner", False)
    used, licensed = seats_consistent(session, ready.id)
    assert used == licensed
    # The document is the IdP's, unchanged: roles round-trip as written.
    assert scim("GET", f"/Users/{ada}").get_json()["roles"][0]["value"] == " admins "


def test_the_first_rule_wins_whether_matched_by_team_or_by_role(scim, session, ready):
    admins, contractors = new_group(scim, "Admins"), new_group(scim, "Contractors")
    first = add_rule(session, ready, admins, "co-owner", True)
    add_rule(session, ready, contractors, "member", False)
    ada = user_with_roles(scim, "ada", "Admins")
    assert patch(scim, contractors["id"], add(ada)).status_code in (200, 204)
    # In Contractors by membership, Admins by role: Admins is first.
    assert state(session, ada) == ("co-owner", True)

    rules.move_rule(session, owner_of(session, ready), first, up=False, now=utcnow())
    session.commit()
    run_job(scim.client.application)
    assert state(session, ada) == ("member", False)
    used, licensed = seats_consistent(session, ready.id)
    assert used == licensed


def test_changing_roles_by_patch_re_evaluates_at_once(scim, session, ready):
    admins = new_group(scim, "Admins")
    add_rule(session, ready, admins, "co-owner", True)
    ada = new_user(scim, "ada")
    assert state(session, ada) == ("member", True)

    # Entra ID's single app-role mapping: a value path on the primary role.
    response = patch_user(
        scim, ada, {"op": "Add", "path": 'roles[primary eq "True"].value', "value": "Admins"}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert state(session, ada) == ("co-owner", True)

    response = patch_user(scim, ada, {"op": "remove", "path": "roles"})
    assert response.status_code in (200, 204), response.get_data(as_text=True)
    assert state(session, ada) == ("member", True)


def test_a_role_needing_a_licence_with_no_seat_left_refuses_the_write(scim, session, ready):
    contractors, staff = new_group(scim, "Contractors"), new_group(scim, "Staff")
    add_rule(session, ready, contractors, "member", False)
    add_rule(session, ready, staff, "member", True)
    ada = user_with_roles(scim, "ada", "Contractors")
    assert state(session, ada) == ("member", False)
    account = session.get(Account, ready.id)
    session.execute(
        update(Account).where(Account.id == ready.id).values(seat_limit=account.seats_used)
    )
    session.commit()
    before = seats_consistent(session, ready.id)

    body = {"schemas": [USER], "userName": "ada@example.com", "roles": [{"value": "Staff"}]}
    response = scim("PUT", f"/Users/{ada}", json=body)

    assert assert_scim_error(response, 403)["detail"].startswith("Licence limit reached")
    assert state(session, ada) == ("member", False)
    roles = scim("GET", f"/Users/{ada}").get_json()["roles"]
    assert [r["value"] for r in roles] == ["Contractors"]
    assert seats_consistent(session, ready.id) == before


def test_roles_never_demote_an_owner(scim, session, ready):
    contractors = new_group(scim, "Contractors")
    add_rule(session, ready, contractors, "member", False)
    ada = new_user(scim, "ada")
    session.execute(update(Membership).where(Membership.scim_id == ada).values(role="owner"))
    session.commit()

    response = patch_user(
        scim, ada, {"op": "add", "path": "roles", "value": [{"value": "Contractors"}]}
    )

    assert response.status_code == 200, response.get_data(as_text=True)
    assert state(session, ada) == ("owner", True)


def test_a_rule_added_later_reaches_users_by_their_roles_through_the_job(scim, session, ready):
    ada = user_with_roles(scim, "ada", "Admins")
    admins = new_group(scim, "Admins")
    assert state(session, ada) == ("member", True)  # no rule yet: the default

    add_rule(session, ready, admins, "co-owner", False)
    run_job(scim.client.application)

    assert state(session, ada) == ("co-owner", False)


def test_renaming_a_ruled_team_re_applies_the_rules_to_everyone(scim, session, ready):
    admins = new_group(scim, "Admins")
    add_rule(session, ready, admins, "co-owner", False)
    ada = user_with_roles(scim, "ada", "Admins")
    assert state(session, ada) == ("co-owner", False)
    run_job(scim.client.application)
    generation = session.scalar(
        select(TeamRuleRun.generation).where(TeamRuleRun.account_id == ready.id)
    )

    renamed = {"op": "replace", "path": "displayName", "value": "Administrators"}
    assert patch(scim, admins["id"], renamed).status_code in (200, 204)
    session.expire_all()
    assert (
        session.scalar(select(TeamRuleRun.generation).where(TeamRuleRun.account_id == ready.id))
        == generation + 1
    )
    run_job(scim.client.application)
    # Her role names a team that no longer exists by that name: the default.
    assert state(session, ada) == ("member", True)
