"""The deprovisioning policy on the SCIM API (SPEC F12): under "suspend", `active: false`
schedules the removal and DELETE hides the member (RFC 7644 §3.6: 404 everywhere) while
keeping it; the IdP re-creating the user inside the window restores it (new id, teams and
role back, a seat taken); the `remove-suspended-members` job removes what is due. Under
"remove" (the default) nothing changes (test_users.py and test_provisioning.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from blueprints.members.jobs import remove_suspended_members
from models import Account, AuditEvent, Membership, ScimConnector, TeamMember, utcnow
from tests.scim_api.conftest import assert_scim_error, provision

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def set_policy(session, issued, mode: str = "suspend", days: int = 30) -> None:
    connector = session.get(ScimConnector, issued.connector.id)
    connector.deprovision_mode, connector.suspend_days = mode, days
    session.commit()


def patch_active(scim, user_id: str, active: bool):
    body = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": "active", "value": active}],
    }
    return scim("PATCH", f"/Users/{user_id}", json=body)


def membership(session, **where) -> Membership | None:
    session.expire_all()
    column, value = next(iter(where.items()))
    return session.scalar(select(Membership).where(getattr(Membership, column) == value))


def assert_seats(session, account_id: int) -> int:
    """`Account.seats_used` equals the licensed memberships, counted."""
    session.expire_all()
    counted = session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.account_id == account_id, Membership.licensed.is_(True))
    )
    assert session.get(Account, account_id).seats_used == counted
    return counted


def group(scim, name: str, *user_ids: str) -> dict:
    body = {"schemas": [GROUP], "displayName": name, "members": [{"value": i} for i in user_ids]}
    response = scim("POST", "/Groups", json=body)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def group_members(scim, group_id: str) -> list[str]:
    return [m["value"] for m in scim("GET", f"/Groups/{group_id}").get_json().get("members", [])]


def actions(session, account_id: int) -> list[str]:
    return list(
        session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.account_id == account_id)
            .order_by(AuditEvent.id)
        )
    )


# --- active: false ----------------------------------------------------------------------------


def test_deactivation_under_suspend_schedules_removal_and_frees_the_seat(scim, session, issued):
    set_policy(session, issued, days=10)
    user = provision(scim, "ann@example.com")
    seats = assert_seats(session, issued.connector.account_id)
    before = utcnow()

    response = patch_active(scim, user["id"], False)

    assert response.status_code == 200, response.get_data(as_text=True)
    assert scim("GET", f"/Users/{user['id']}").get_json()["active"] is False
    member = membership(session, scim_id=user["id"])
    assert (member.source, member.active, member.licensed) == ("scim", False, False)
    assert before + timedelta(days=10) <= member.removal_due_at
    assert member.removal_due_at <= utcnow() + timedelta(days=10)
    assert assert_seats(session, issued.connector.account_id) == seats - 1
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "scim.user_deactivated"))
    assert event.detail["removal_due_at"] == member.removal_due_at.isoformat()


def test_deactivation_under_remove_schedules_nothing(scim, session, issued):
    user = provision(scim, "ann@example.com")

    patch_active(scim, user["id"], False)

    member = membership(session, scim_id=user["id"])
    assert (member.active, member.licensed, member.removal_due_at) == (False, False, None)


def test_reactivation_in_the_window_restores_the_licence_keeps_teams_and_role(
    scim, session, issued
):
    set_policy(session, issued)
    user = provision(scim, "ann@example.com")
    team = group(scim, "Engineering", user["id"])
    member = membership(session, scim_id=user["id"])
    member.role = "co-owner"
    session.commit()
    patch_active(scim, user["id"], False)
    seats = assert_seats(session, issued.connector.account_id)

    response = patch_active(scim, user["id"], True)

    assert response.status_code == 200
    member = membership(session, scim_id=user["id"])
    assert (member.active, member.licensed, member.role) == (True, True, "co-owner")
    assert member.removal_due_at is None
    assert group_members(scim, team["id"]) == [user["id"]]
    assert assert_seats(session, issued.connector.account_id) == seats + 1


def test_put_active_false_schedules_like_patch(scim, session, issued):
    set_policy(session, issued, days=5)
    user = provision(scim, "ann@example.com")
    body = {"schemas": [USER], "userName": "ann@example.com", "active": False}

    assert scim("PUT", f"/Users/{user['id']}", json=body).status_code == 200

    assert membership(session, scim_id=user["id"]).removal_due_at is not None


# --- DELETE -------------------------------------------------------------------------------


@pytest.fixture
def deleted(scim, session, issued):
    """Under "suspend" for 30 days: Ann, a co-owner in Engineering and Design, deleted
    by the IdP; Bob stays. Returns (Ann's old id, the groups, the seats before)."""
    set_policy(session, issued)
    ann = provision(scim, "ann@example.com", externalId="ext-ann", displayName="Ann")
    bob = provision(scim, "bob@example.com")
    engineering = group(scim, "Engineering", ann["id"], bob["id"])
    design = group(scim, "Design", ann["id"])
    member = membership(session, scim_id=ann["id"])
    member.role = "co-owner"
    session.commit()
    seats = assert_seats(session, issued.connector.account_id)
    versions = {g["id"]: g["meta"]["version"] for g in (engineering, design)}
    response = scim("DELETE", f"/Users/{ann['id']}")
    assert response.status_code == 204, response.get_data(as_text=True)
    for g in (engineering, design):
        assert scim("GET", f"/Groups/{g['id']}").get_json()["meta"]["version"] != versions[g["id"]]
    return ann["id"], (engineering, design), seats, bob["id"]


def test_deleted_user_is_404_for_every_operation(scim, deleted):
    old_id = deleted[0]
    body = {"schemas": [USER], "userName": "ann@example.com"}

    assert_scim_error(scim("GET", f"/Users/{old_id}"), 404)
    assert_scim_error(patch_active(scim, old_id, True), 404)
    assert_scim_error(scim("PUT", f"/Users/{old_id}", json=body), 404)
    assert_scim_error(scim("DELETE", f"/Users/{old_id}"), 404)


def test_deleted_user_is_absent_from_lists_filters_and_groups(scim, deleted):
    old_id, (engineering, design), _, bob_id = deleted

    listed = scim("GET", "/Users").get_json()
    assert [u["userName"] for u in listed["Resources"]] == ["bob@example.com"]
    for query in (
        'userName eq "ann@example.com"',
        'externalId eq "ext-ann"',
        f'id eq "{old_id}"',
        'displayName eq "Ann"',
        'emails.value co "ann"',
    ):
        found = scim("GET", "/Users", query_string={"filter": query}).get_json()
        assert found["totalResults"] == 0, query
    search = scim(
        "POST",
        "/.search",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'userName eq "ann@example.com"',
        },
    ).get_json()
    assert search["totalResults"] == 0
    assert group_members(scim, engineering["id"]) == [bob_id]
    assert group_members(scim, design["id"]) == []
    members_filter = scim(
        "GET", "/Groups", query_string={"filter": f'members.value eq "{old_id}"'}
    ).get_json()
    assert members_filter["totalResults"] == 0


def test_group_patch_cannot_add_a_deleted_user_back(scim, deleted):
    old_id, (_, design), _, _ = deleted
    body = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": old_id}]}],
    }

    response = scim("PATCH", f"/Groups/{design['id']}", json=body)

    assert response.status_code in (200, 204)
    assert group_members(scim, design["id"]) == []


def test_deleted_user_is_kept_deactivated_with_its_data_and_seat_freed(
    scim, session, issued, deleted
):
    old_id, _, seats, _ = deleted
    member = membership(session, scim_id=old_id)
    assert (member.source, member.active, member.licensed) == ("suspended", False, False)
    assert member.role == "co-owner"
    assert member.scim_resource["userName"] == "ann@example.com"
    assert member.user_id is not None
    assert len(member.suspended_team_ids) == 2
    assert session.scalar(select(func.count()).where(TeamMember.membership_id == member.id)) == 0
    assert member.removal_due_at > utcnow() + timedelta(days=29)
    assert assert_seats(session, issued.connector.account_id) == seats - 1
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "scim.user_deleted"))
    assert event.detail["suspended_until"] == member.removal_due_at.isoformat()


def test_delete_after_deactivation_keeps_the_earlier_date(scim, session, issued):
    set_policy(session, issued, days=3)
    user = provision(scim, "ann@example.com")
    patch_active(scim, user["id"], False)
    first = membership(session, scim_id=user["id"]).removal_due_at
    set_policy(session, issued, days=60)

    assert scim("DELETE", f"/Users/{user['id']}").status_code == 204

    assert membership(session, scim_id=user["id"]).removal_due_at == first


def test_delete_under_remove_removes_at_once(scim, session, issued):
    user = provision(scim, "ann@example.com")

    assert scim("DELETE", f"/Users/{user['id']}").status_code == 204

    assert membership(session, scim_id=user["id"]) is None
    assert_seats(session, issued.connector.account_id)


def test_the_only_active_owner_is_still_refused(scim, session, issued, owner):
    set_policy(session, issued)
    body = {"schemas": [USER], "userName": "owner@example.com"}
    created = scim("POST", "/Users", json=body)  # adopts the owner's manual membership
    assert created.status_code == 201

    assert_scim_error(scim("DELETE", f"/Users/{created.get_json()['id']}"), 403)

    member = membership(session, scim_id=created.get_json()["id"])
    assert (member.source, member.active, member.removal_due_at) == ("scim", True, None)


# --- Re-created in the window -------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [
        {"userName": "ann@example.com"},
        {"userName": "ANN@example.com"},  # userName is case-insensitive (RFC 7643 §4.1.1)
        {"userName": "ann.new", "externalId": "ext-ann"},
        {"userName": "ann.renamed", "emails": [{"value": "ann@example.com", "primary": True}]},
    ],
    ids=["userName", "userName-case", "externalId", "email"],
)
def test_recreating_restores_the_membership_under_a_new_id(scim, session, issued, deleted, sent):
    old_id, (engineering, design), seats, bob_id = deleted
    member_id = membership(session, scim_id=old_id).id

    response = scim("POST", "/Users", json={"schemas": [USER]} | sent)

    assert response.status_code == 201, response.get_data(as_text=True)
    restored = response.get_json()
    assert restored["id"] != old_id
    assert restored["active"] is True
    assert restored["userName"] == sent["userName"]
    member = membership(session, scim_id=restored["id"])
    assert member.id == member_id  # the same membership, not a new one
    assert (member.source, member.active, member.licensed) == ("scim", True, True)
    assert member.role == "co-owner"
    assert member.removal_due_at is None and member.suspended_team_ids is None
    assert sorted(group_members(scim, engineering["id"])) == sorted([bob_id, restored["id"]])
    assert group_members(scim, design["id"]) == [restored["id"]]
    groups = scim("GET", f"/Users/{restored['id']}").get_json()["groups"]
    assert sorted(g["display"] for g in groups) == ["Design", "Engineering"]
    assert_scim_error(scim("GET", f"/Users/{old_id}"), 404)
    assert assert_seats(session, issued.connector.account_id) == seats
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "member.restored"))
    assert event.detail["previous_id"] == old_id and event.detail["id"] == restored["id"]
    assert event.detail["teams"] == 2


def test_restore_skips_teams_deleted_meanwhile(scim, session, deleted):
    _, (_, design), _, _ = deleted
    assert scim("DELETE", f"/Groups/{design['id']}").status_code == 204
    group(scim, "Newcomers")  # on SQLite, may get the deleted team's row id

    restored = provision(scim, "ann@example.com")

    groups = scim("GET", f"/Users/{restored['id']}").get_json()["groups"]
    assert [g["display"] for g in groups] == ["Engineering"]


def test_restore_without_a_seat_is_403_and_changes_nothing(scim, session, issued, deleted):
    old_id, _, _, _ = deleted
    provision(scim, "filler@example.com")
    session.expire_all()
    account = session.get(Account, issued.connector.account_id)
    account.seat_limit = account.seats_used
    session.commit()
    before = membership(session, scim_id=old_id)
    snapshot = (before.id, before.source, before.active, before.licensed, before.removal_due_at)
    events = actions(session, account.id)
    seats = assert_seats(session, account.id)

    response = scim("POST", "/Users", json={"schemas": [USER], "userName": "ann@example.com"})

    assert "licence limit" in assert_scim_error(response, 403)["detail"].lower()
    after = membership(session, scim_id=old_id)
    assert (after.id, after.source, after.active, after.licensed, after.removal_due_at) == snapshot
    assert len(after.suspended_team_ids) == 2
    assert actions(session, account.id) == events
    assert assert_seats(session, account.id) == seats


def test_recreating_with_values_of_two_deleted_users_is_409(scim, session, issued):
    set_policy(session, issued)
    ann = provision(scim, "ann@example.com", externalId="ext-ann")
    bob = provision(scim, "bob@example.com", externalId="ext-bob")
    scim("DELETE", f"/Users/{ann['id']}")
    scim("DELETE", f"/Users/{bob['id']}")

    body = {"schemas": [USER], "userName": "ann@example.com", "externalId": "ext-bob"}
    assert_scim_error(scim("POST", "/Users", json=body), 409)


def test_a_new_user_is_still_created_normally(scim, session, issued, deleted):
    created = provision(scim, "carol@example.com")

    assert membership(session, scim_id=created["id"]).source == "scim"


# --- The removal job ------------------------------------------------------------------------


def test_job_removes_what_is_due_once_and_seats_stay_right(scim, session, issued, deleted):
    old_id, (engineering, _), _, bob_id = deleted
    account_id = issued.connector.account_id
    version = scim("GET", f"/Groups/{engineering['id']}").get_json()["meta"]["version"]
    assert remove_suspended_members(utcnow()) == 0  # not due yet
    seats = assert_seats(session, account_id)

    assert remove_suspended_members(utcnow() + timedelta(days=31)) == 1

    assert membership(session, scim_id=old_id) is None
    assert assert_seats(session, account_id) == seats  # held no seat
    events = [a for a in actions(session, account_id) if a == "member.removed_on_schedule"]
    assert events == ["member.removed_on_schedule"]
    # Ann was no longer in the group: its ETag is what the DELETE left.
    assert scim("GET", f"/Groups/{engineering['id']}").get_json()["meta"]["version"] == version

    assert remove_suspended_members(utcnow() + timedelta(days=31)) == 0
    assert [a for a in actions(session, account_id) if a == "member.removed_on_schedule"] == events
    assert assert_seats(session, account_id) == seats
    assert group_members(scim, engineering["id"]) == [bob_id]


def test_job_removes_a_deactivated_member_and_bumps_its_teams(scim, session, issued):
    set_policy(session, issued, days=1)
    ann = provision(scim, "ann@example.com")
    team = group(scim, "Engineering", ann["id"])
    patch_active(scim, ann["id"], False)
    version = scim("GET", f"/Groups/{team['id']}").get_json()["meta"]["version"]

    assert remove_suspended_members(utcnow() + timedelta(days=2)) == 1

    assert_scim_error(scim("GET", f"/Users/{ann['id']}"), 404)
    after = scim("GET", f"/Groups/{team['id']}").get_json()
    assert after["meta"]["version"] != version and after.get("members", []) == []
    assert_seats(session, issued.connector.account_id)


def test_job_spares_a_member_reactivated_or_restored_before_it_runs(scim, session, issued):
    set_policy(session, issued, days=1)
    ann = provision(scim, "ann@example.com")
    bob = provision(scim, "bob@example.com")
    patch_active(scim, ann["id"], False)
    scim("DELETE", f"/Users/{bob['id']}")
    patch_active(scim, ann["id"], True)
    bob = provision(scim, "bob@example.com")
    seats = assert_seats(session, issued.connector.account_id)

    assert remove_suspended_members(utcnow() + timedelta(days=2)) == 0

    assert membership(session, scim_id=ann["id"]).active is True
    assert membership(session, scim_id=bob["id"]).active is True
    assert assert_seats(session, issued.connector.account_id) == seats


def test_job_works_in_batches(scim, session, issued):
    set_policy(session, issued, days=1)
    ids = [provision(scim, f"u{i}@example.com")["id"] for i in range(5)]
    for user_id in ids:
        scim("DELETE", f"/Users/{user_id}")

    assert remove_suspended_members(utcnow() + timedelta(days=2), batch=2) == 5

    assert session.scalar(select(func.count()).where(Membership.source == "suspended")) == 0
    assert_seats(session, issued.connector.account_id)


def test_job_is_registered():
    from app import JOBS

    assert JOBS["remove-suspended-members"][0] is remove_suspended_members


def test_an_invitation_of_a_deleted_user_is_closed_until_restored(
    scim, client, session, issued, smtp_server
):
    """The invitation link of a user the IdP deleted (kept, suspended) opens nothing, as
    it would once the membership is removed; a restore opens it again."""
    from tests.scim_api.test_invitations import _invitation_path

    set_policy(session, issued)
    kim = provision(scim, "kim@elsewhere.test")
    path = _invitation_path(smtp_server)
    scim("DELETE", f"/Users/{kim['id']}")

    assert client.get(path).status_code == 410

    provision(scim, "kim@elsewhere.test")
    assert client.get(path).status_code == 200


def test_two_concurrent_runs_remove_and_audit_each_member_once(app, scim, session, issued):
    """Two processes past the lease at once (each thread its own app context, so its own
    session and connection): every due member is removed once, one event each."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    set_policy(session, issued, days=1)
    ids = [provision(scim, f"u{i}@example.com")["id"] for i in range(7)]
    for user_id in ids:
        scim("DELETE", f"/Users/{user_id}")
    session.commit()
    later = utcnow() + timedelta(days=2)
    barrier = threading.Barrier(2)

    def run() -> int:
        with app.app_context():
            barrier.wait(timeout=30)
            try:
                return remove_suspended_members(later, batch=2)
            finally:
                from app import db

                db.session.remove()

    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = list(pool.map(lambda _: run(), range(2)))

    assert sum(counts) == 7
    assert session.scalar(select(func.count()).where(Membership.source == "suspended")) == 0
    removed = actions(session, issued.connector.account_id)
    assert removed.count("member.removed_on_schedule") == 7
    assert_seats(session, issued.connector.account_id)


def test_restore_under_team_rules_gets_what_its_rule_says(scim, session, issued):
    """The rules see the restored teams (rules.apply, as a reactivation): a member of a
    ruled "Admins" team comes back a co-owner with a licence."""
    from blueprints.members import rules
    from blueprints.members.jobs import apply_team_rules
    from models import Team

    set_policy(session, issued)
    ann = provision(scim, "ann@example.com")
    admins = group(scim, "Admins", ann["id"])
    owner_membership = session.scalar(select(Membership).where(Membership.role == "owner"))
    team_id = session.scalar(select(Team.id).where(Team.scim_id == admins["id"]))
    rules.add_rule(session, owner_membership, team_id, "co-owner", True, utcnow())
    session.commit()
    apply_team_rules(utcnow())
    assert membership(session, scim_id=ann["id"]).role == "co-owner"
    scim("DELETE", f"/Users/{ann['id']}")
    assert membership(session, scim_id=ann["id"]).role == "co-owner"  # rules skip it

    restored = provision(scim, "ann@example.com")

    member = membership(session, scim_id=restored["id"])
    assert (member.role, member.active, member.licensed) == ("co-owner", True, True)
    assert group_members(scim, admins["id"]) == [restored["id"]]
    assert_seats(session, issued.connector.account_id)
