"""SCIM Groups (SPEC F5): an account's teams, their members, and every PATCH form an IdP
sends to change them (RFC 7644 §3.5.2, with Okta's and Entra ID's variants)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from models import Membership, ScimRequestLog, Team, TeamMember
from tests.scim_api.conftest import Scim, assert_scim_error

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def new_user(scim, name: str) -> str:
    """A provisioned user of the connector's account; returns its id."""
    user_name = f"{name}@example.com"
    response = scim("POST", "/Users", json={"schemas": [USER], "userName": user_name})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["id"]


def new_group(scim, name: str = "Engineering", members=(), **extra) -> dict:
    body = {"schemas": [GROUP], "displayName": name, **extra}
    body["members"] = [{"value": m} for m in members]
    response = scim("POST", "/Groups", json=body)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def patch(scim, group_id: str, *operations, headers=None, query: str = ""):
    body = {"schemas": [PATCH_OP], "Operations": list(operations)}
    return scim("PATCH", f"/Groups/{group_id}{query}", json=body, headers=headers)


def read(scim, group_id: str, query: str = "") -> dict:
    response = scim("GET", f"/Groups/{group_id}{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def ids(group: dict) -> set[str]:
    return {m["value"] for m in group.get("members", [])}


def members(scim, group_id: str) -> set[str]:
    """The group's member ids, as a fresh GET shows them."""
    return ids(read(scim, group_id))


def no_content(scim, group_id: str, response) -> dict:
    """A group PATCH without `attributes`/`excludedAttributes` answers 204 with no body and
    the new version as ETag, so a 50,000-member team is not sent back; returns the group as
    a GET then shows it, whose meta.version is that ETag."""
    assert response.status_code == 204, response.get_data(as_text=True)
    assert response.get_data() == b""
    group = read(scim, group_id)
    assert response.headers["ETag"] == group["meta"]["version"]
    return group


def version(scim, group_id: str) -> str:
    return scim("GET", f"/Groups/{group_id}").get_json()["meta"]["version"]


def count(session, model, *where) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model).where(*where))


def last_log_detail(session) -> str | None:
    """The detail the SCIM request log keeps for the latest request."""
    session.expire_all()
    return session.scalar(select(ScimRequestLog.detail).order_by(ScimRequestLog.id.desc()))


@pytest.fixture
def alice(scim) -> str:
    return new_user(scim, "alice")


@pytest.fixture
def bob(scim) -> str:
    return new_user(scim, "bob")


@pytest.fixture
def carol(scim) -> str:
    return new_user(scim, "carol")


# --- Create -------------------------------------------------------------------------------


def test_create_returns_201_with_the_group_and_its_members(scim, alice, bob):
    response = scim(
        "POST",
        "/Groups",
        json={"schemas": [GROUP], "displayName": "Engineering", "members": [{"value": alice}]},
    )

    assert response.status_code == 201
    body = response.get_json()
    assert body["displayName"] == "Engineering"
    assert [m["value"] for m in body["members"]] == [alice]
    assert response.headers["Location"] == body["meta"]["location"]
    assert response.headers["ETag"] == body["meta"]["version"]
    assert members(scim, body["id"]) == {alice}


def test_create_without_display_name_is_400_and_creates_nothing(scim, session):
    response = scim("POST", "/Groups", json={"schemas": [GROUP], "members": []})

    assert_scim_error(response, 400)
    assert count(session, Team) == 0


def test_create_with_an_unknown_member_adds_the_others_and_logs_the_unknown(scim, session, alice):
    """SPEC F5: one id the account doesn't know never blocks the rest of a group write."""
    response = scim(
        "POST",
        "/Groups",
        json={
            "schemas": [GROUP],
            "displayName": "Engineering",
            "members": [{"value": alice}, {"value": "no-such-user"}],
        },
    )

    assert response.status_code == 201, response.get_data(as_text=True)
    detail = last_log_detail(session)
    assert "Skipped 1 member" in detail and "no-such-user" in detail
    assert ids(response.get_json()) == {alice}
    assert members(scim, response.get_json()["id"]) == {alice}


@pytest.mark.parametrize("second", ["Engineering", "ENGINEERING", "engineering"])
def test_display_name_is_unique_per_account_ignoring_case(scim, session, second):
    new_group(scim, "Engineering")

    response = scim("POST", "/Groups", json={"schemas": [GROUP], "displayName": second})

    assert assert_scim_error(response, 409)["scimType"] == "uniqueness"
    assert count(session, Team) == 1


def test_external_id_is_unique_per_account(scim, session):
    new_group(scim, "Engineering", externalId="okta-00g1")

    response = scim(
        "POST",
        "/Groups",
        json={"schemas": [GROUP], "displayName": "Sales", "externalId": "okta-00g1"},
    )

    assert assert_scim_error(response, 409)["scimType"] == "uniqueness"
    assert count(session, Team) == 1


def test_same_display_name_in_another_account_is_fine(client, scim, other_issued):
    new_group(scim, "Engineering")

    assert new_group(Scim(client, other_issued), "Engineering")["displayName"] == "Engineering"


# --- Read ---------------------------------------------------------------------------------


def test_get_shows_each_member_with_value_ref_type_and_display_as_written(scim, alice, bob):
    """`$ref` and `type` are what the client can predict; `display` is what it wrote
    (Okta sends the user's email there), and absent when it wrote none."""
    body = {
        "schemas": [GROUP],
        "displayName": "Engineering",
        "members": [{"value": alice, "display": "Alice A."}, {"value": bob}],
    }
    group = scim("POST", "/Groups", json=body).get_json()

    response = scim("GET", f"/Groups/{group['id']}")

    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == group["id"]
    assert body["schemas"] == [GROUP]
    assert body["members"] == [
        {
            "value": alice,
            "$ref": f"{scim.base}/Users/{alice}",
            "display": "Alice A.",
            "type": "User",
        },
        {"value": bob, "$ref": f"{scim.base}/Users/{bob}", "type": "User"},
    ]
    assert body["meta"]["resourceType"] == "Group"
    assert body["meta"]["location"] == f"{scim.base}/Groups/{group['id']}"


def test_get_with_excluded_members_returns_no_members(scim, alice):
    group = new_group(scim, "Engineering", [alice])

    body = scim("GET", f"/Groups/{group['id']}?excludedAttributes=members").get_json()

    assert "members" not in body
    assert body["displayName"] == "Engineering"
    assert body["id"] == group["id"]


@pytest.mark.parametrize("path", ["/Groups/{id}", "/Groups"])
def test_excluding_a_member_sub_attribute_keeps_the_members(scim, alice, path):
    """RFC 7644 §3.9: excludedAttributes=members.display leaves out the display only;
    the members were left out whole before."""
    group = new_group(scim, "Engineering", [alice])

    body = scim("GET", path.format(id=group["id"]) + "?excludedAttributes=members.display")

    found = body.get_json()
    found = found["Resources"][0] if "Resources" in found else found
    assert [m["value"] for m in found["members"]] == [alice]
    assert all("display" not in m for m in found["members"])


def test_get_unknown_group_is_404(scim):
    assert_scim_error(scim("GET", "/Groups/00000000-0000-0000-0000-000000000000"), 404)


def test_list_filters_by_display_name_ignoring_case(scim, alice):
    wanted = new_group(scim, "Engineering", [alice])
    new_group(scim, "Sales")

    response = scim("GET", '/Groups?filter=displayName eq "engineering"')

    assert response.status_code == 200
    body = response.get_json()
    assert body["totalResults"] == 1
    assert [g["id"] for g in body["Resources"]] == [wanted["id"]]
    assert [m["value"] for m in body["Resources"][0]["members"]] == [alice]


def test_list_with_excluded_members_and_filter_as_entra_sends_it(scim, alice):
    new_group(scim, "Engineering", [alice])

    body = scim(
        "GET", '/Groups?excludedAttributes=members&filter=displayName eq "Engineering"'
    ).get_json()

    assert body["totalResults"] == 1
    assert "members" not in body["Resources"][0]


def test_list_filter_on_an_unknown_name_finds_nothing(scim):
    new_group(scim, "Engineering")

    body = scim("GET", '/Groups?filter=displayName eq "Marketing"').get_json()

    assert body["totalResults"] == 0
    assert body["Resources"] == []


# --- Replace and delete -------------------------------------------------------------------


def test_put_replaces_name_and_the_whole_member_list(scim, alice, bob, carol):
    group = new_group(scim, "Engineering", [alice, bob])

    response = scim(
        "PUT",
        f"/Groups/{group['id']}",
        json={
            "schemas": [GROUP],
            "displayName": "Platform",
            "members": [{"value": bob}, {"value": carol}],
        },
    )

    assert response.status_code == 200
    assert response.get_json()["displayName"] == "Platform"
    assert members(scim, group["id"]) == {bob, carol}
    # The answer is the group as it now is, new version included.
    assert response.headers["ETag"] == response.get_json()["meta"]["version"]
    assert version(scim, group["id"]) == response.headers["ETag"] != group["meta"]["version"]


def test_put_without_members_empties_the_group(scim, alice):
    group = new_group(scim, "Engineering", [alice])

    response = scim(
        "PUT", f"/Groups/{group['id']}", json={"schemas": [GROUP], "displayName": "Engineering"}
    )

    assert response.status_code == 200
    assert members(scim, group["id"]) == set()


def test_put_with_an_unknown_member_applies_the_rest(scim, session, alice, bob):
    group = new_group(scim, "Engineering", [alice])

    response = scim(
        "PUT",
        f"/Groups/{group['id']}",
        json={
            "schemas": [GROUP],
            "displayName": "Other",
            "members": [{"value": "nobody"}, {"value": bob}],
        },
    )

    assert response.status_code == 200, response.get_data(as_text=True)
    assert "nobody" in last_log_detail(session)
    assert members(scim, group["id"]) == {bob}
    assert scim("GET", f"/Groups/{group['id']}").get_json()["displayName"] == "Other"


def test_delete_removes_the_team_and_its_member_rows_but_not_the_users(scim, session, alice, bob):
    group = new_group(scim, "Engineering", [alice, bob])

    response = scim("DELETE", f"/Groups/{group['id']}")

    assert response.status_code == 204
    assert response.get_data() == b""
    assert count(session, Team) == 0
    assert count(session, TeamMember) == 0
    assert count(session, Membership, Membership.scim_id.in_([alice, bob])) == 2
    assert scim("GET", f"/Users/{alice}").status_code == 200
    assert_scim_error(scim("GET", f"/Groups/{group['id']}"), 404)


def test_deleted_user_disappears_from_the_group(scim, alice, bob):
    group = new_group(scim, "Engineering", [alice, bob])
    before = version(scim, group["id"])

    assert scim("DELETE", f"/Users/{alice}").status_code == 204

    assert members(scim, group["id"]) == {bob}
    assert version(scim, group["id"]) != before


# --- PATCH: members -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["members", "urn:ietf:params:scim:schemas:core:2.0:Group:members"])
def test_patch_add_members_with_a_path(scim, alice, bob, carol, path):
    group = new_group(scim, "Engineering", [alice])

    response = patch(
        scim, group["id"], {"op": "add", "path": path, "value": [{"value": bob}, {"value": carol}]}
    )

    after = no_content(scim, group["id"], response)
    assert ids(after) == {alice, bob, carol}
    assert after["meta"]["version"] != group["meta"]["version"]


def test_patch_add_without_path_takes_members_from_the_value(scim, alice, bob):
    group = new_group(scim, "Engineering", [alice])

    response = patch(scim, group["id"], {"op": "add", "value": {"members": [{"value": bob}]}})

    no_content(scim, group["id"], response)
    assert members(scim, group["id"]) == {alice, bob}


def test_patch_adding_an_existing_member_again_keeps_one_and_the_version(scim, session, alice):
    group = new_group(scim, "Engineering", [alice])

    response = patch(
        scim, group["id"], {"op": "add", "path": "members", "value": [{"value": alice}]}
    )

    after = no_content(scim, group["id"], response)
    assert ids(after) == {alice}
    assert count(session, TeamMember) == 1
    assert response.headers["ETag"] == group["meta"]["version"]


def test_patch_add_an_unknown_member_adds_the_known_ones(scim, session, alice, bob):
    group = new_group(scim, "Engineering", [alice])

    response = patch(
        scim,
        group["id"],
        {"op": "add", "path": "members", "value": [{"value": bob}, {"value": "ghost"}]},
    )

    assert response.status_code == 204
    assert "ghost" in last_log_detail(session)
    assert members(scim, group["id"]) == {alice, bob}


def test_patch_of_only_unknown_members_changes_nothing(scim, session, alice):
    group = new_group(scim, "Engineering", [alice])

    response = patch(
        scim, group["id"], {"op": "add", "path": "members", "value": [{"value": "ghost"}]}
    )

    assert response.status_code == 204
    assert response.headers["ETag"] == group["meta"]["version"]
    assert "ghost" in last_log_detail(session)


def test_a_nested_group_as_member_is_skipped(scim, session, alice):
    """Teams don't nest: a member typed "Group" is skipped like an unknown id."""
    inner = new_group(scim, "Inner")
    outer = new_group(scim, "Outer")

    response = patch(
        scim,
        outer["id"],
        {
            "op": "add",
            "path": "members",
            "value": [{"value": inner["id"], "type": "Group"}, {"value": alice}],
        },
    )

    assert response.status_code == 204
    assert inner["id"] in last_log_detail(session)
    assert members(scim, outer["id"]) == {alice}


def test_patch_remove_one_member_by_value_filter(scim, alice, bob):
    """Okta's removal form: `members[value eq "<id>"]`, without a value."""
    group = new_group(scim, "Engineering", [alice, bob])

    response = patch(scim, group["id"], {"op": "remove", "path": f'members[value eq "{alice}"]'})

    no_content(scim, group["id"], response)
    assert members(scim, group["id"]) == {bob}


def test_patch_remove_members_by_value_list(scim, alice, bob, carol):
    """Entra ID's removal form: path `members` and the members to remove as the value."""
    group = new_group(scim, "Engineering", [alice, bob, carol])

    response = patch(
        scim,
        group["id"],
        {"op": "remove", "path": "members", "value": [{"value": alice}, {"value": carol}]},
    )

    no_content(scim, group["id"], response)
    assert members(scim, group["id"]) == {bob}


def test_patch_remove_members_without_value_removes_them_all(scim, session, alice, bob):
    group = new_group(scim, "Engineering", [alice, bob])

    response = patch(scim, group["id"], {"op": "remove", "path": "members"})

    assert ids(no_content(scim, group["id"], response)) == set()
    assert count(session, Membership, Membership.scim_id.in_([alice, bob])) == 2


def test_patch_remove_of_a_non_member_changes_nothing(scim, alice, bob):
    group = new_group(scim, "Engineering", [alice])

    response = patch(scim, group["id"], {"op": "remove", "path": f'members[value eq "{bob}"]'})

    after = no_content(scim, group["id"], response)
    assert ids(after) == {alice}
    assert after["meta"]["version"] == group["meta"]["version"]


def test_patch_replace_members_sets_the_whole_list(scim, alice, bob, carol):
    group = new_group(scim, "Engineering", [alice, bob])

    response = patch(
        scim,
        group["id"],
        {"op": "replace", "path": "members", "value": [{"value": bob}, {"value": carol}]},
    )

    no_content(scim, group["id"], response)
    assert members(scim, group["id"]) == {bob, carol}


def test_patch_replace_members_with_an_empty_list_empties_the_group(scim, alice):
    group = new_group(scim, "Engineering", [alice])

    response = patch(scim, group["id"], {"op": "replace", "path": "members", "value": []})

    no_content(scim, group["id"], response)
    assert members(scim, group["id"]) == set()


def test_patch_capitalised_ops_as_entra_sends_them(scim, alice, bob):
    group = new_group(scim, "Engineering")

    added = patch(
        scim,
        group["id"],
        {"op": "Add", "path": "members", "value": [{"value": alice}, {"value": bob}]},
    )
    assert ids(no_content(scim, group["id"], added)) == {alice, bob}
    removed = patch(
        scim, group["id"], {"op": "Remove", "path": "members", "value": [{"value": alice}]}
    )
    assert ids(no_content(scim, group["id"], removed)) == {bob}
    renamed = patch(scim, group["id"], {"op": "Replace", "path": "displayName", "value": "Core"})

    after = no_content(scim, group["id"], renamed)
    assert after["displayName"] == "Core"
    assert ids(after) == {bob}


def test_patch_several_operations_apply_in_order(scim, alice, bob):
    group = new_group(scim, "Engineering", [alice])

    response = patch(
        scim,
        group["id"],
        {"op": "remove", "path": f'members[value eq "{alice}"]'},
        {"op": "add", "path": "members", "value": [{"value": bob}, {"value": alice}]},
        {"op": "remove", "path": f'members[value eq "{bob}"]'},
    )

    no_content(scim, group["id"], response)
    assert members(scim, group["id"]) == {alice}


def test_patch_that_fails_halfway_changes_nothing(scim, alice, bob):
    """RFC 7644 §3.5.2: operations are applied atomically."""
    group = new_group(scim, "Engineering", [alice])

    response = patch(
        scim,
        group["id"],
        {"op": "add", "path": "members", "value": [{"value": bob}]},
        {"op": "add", "path": "members", "value": [{"display": "a member without its id"}]},
    )

    assert_scim_error(response, 400)
    assert members(scim, group["id"]) == {alice}


# --- PATCH: displayName -------------------------------------------------------------------


def test_patch_replace_display_name_with_a_path(scim, session, alice):
    group = new_group(scim, "Engineering", [alice])

    response = patch(scim, group["id"], {"op": "replace", "path": "displayName", "value": "Core"})

    after = no_content(scim, group["id"], response)
    assert after["displayName"] == "Core"
    assert ids(after) == {alice}
    session.expire_all()
    assert session.scalar(select(Team.display_name)) == "Core"


def test_patch_replace_without_path_renames(scim, alice):
    group = new_group(scim, "Engineering", [alice])

    response = patch(scim, group["id"], {"op": "replace", "value": {"displayName": "Core"}})

    after = no_content(scim, group["id"], response)
    assert after["displayName"] == "Core"
    assert ids(after) == {alice}


def test_patch_replace_without_path_may_repeat_the_id_but_not_change_it(scim):
    """Okta's rename carries the group's own id in the value; another id is refused."""
    group = new_group(scim, "Engineering")

    same = patch(
        scim, group["id"], {"op": "replace", "value": {"id": group["id"], "displayName": "Core"}}
    )
    other = patch(
        scim, group["id"], {"op": "replace", "value": {"id": "another-id", "displayName": "X"}}
    )

    renamed = no_content(scim, group["id"], same)
    assert assert_scim_error(other, 400)["scimType"] == "mutability"
    assert read(scim, group["id"]) == renamed
    assert renamed["id"] == group["id"]
    assert renamed["displayName"] == "Core"


def test_patch_rename_to_an_existing_name_is_409_and_keeps_the_name(scim):
    new_group(scim, "Sales")
    group = new_group(scim, "Engineering")

    response = patch(scim, group["id"], {"op": "replace", "path": "displayName", "value": "SALES"})

    assert assert_scim_error(response, 409)["scimType"] == "uniqueness"
    assert scim("GET", f"/Groups/{group['id']}").get_json()["displayName"] == "Engineering"


def test_patch_rename_changing_only_case_is_allowed(scim):
    group = new_group(scim, "engineering")

    response = patch(
        scim, group["id"], {"op": "replace", "path": "displayName", "value": "Engineering"}
    )

    assert no_content(scim, group["id"], response)["displayName"] == "Engineering"


def test_patch_removing_display_name_is_refused(scim):
    group = new_group(scim, "Engineering")

    response = patch(scim, group["id"], {"op": "remove", "path": "displayName"})

    assert_scim_error(response, 400)
    assert scim("GET", f"/Groups/{group['id']}").get_json()["displayName"] == "Engineering"


def test_patch_an_unknown_group_is_404(scim, alice):
    response = patch(
        scim, "no-such-group", {"op": "add", "path": "members", "value": [{"value": alice}]}
    )

    assert_scim_error(response, 404)


# --- PATCH: asking for the group back -----------------------------------------------------


def test_patch_with_excluded_members_answers_200_with_the_group_without_members(scim, alice, bob):
    group = new_group(scim, "Engineering", [alice])

    response = patch(
        scim,
        group["id"],
        {"op": "add", "path": "members", "value": [{"value": bob}]},
        query="?excludedAttributes=members",
    )

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert "members" not in body
    assert body["id"] == group["id"]
    assert body["displayName"] == "Engineering"
    assert body["meta"]["version"] == response.headers["ETag"] != group["meta"]["version"]
    assert body == read(scim, group["id"], "?excludedAttributes=members")
    assert members(scim, group["id"]) == {alice, bob}
    assert version(scim, group["id"]) == body["meta"]["version"]


def test_patch_with_attributes_display_name_answers_200_with_just_the_name(scim, alice):
    group = new_group(scim, "Engineering", [alice])

    response = patch(
        scim,
        group["id"],
        {"op": "replace", "path": "displayName", "value": "Core"},
        query="?attributes=displayName",
    )

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["displayName"] == "Core"
    assert body["id"] == group["id"]  # `id` is always returned (RFC 7643 §7)
    assert "members" not in body
    assert body == read(scim, group["id"], "?attributes=displayName")
    after = read(scim, group["id"])
    assert response.headers["ETag"] == after["meta"]["version"] != group["meta"]["version"]
    assert ids(after) == {alice}


# --- ETags --------------------------------------------------------------------------------


def test_version_increases_on_each_member_change(scim, alice, bob):
    group = new_group(scim, "Engineering")
    seen = [group["meta"]["version"]]

    for operation in (
        {"op": "add", "path": "members", "value": [{"value": alice}]},
        {"op": "add", "path": "members", "value": [{"value": bob}]},
        {"op": "remove", "path": f'members[value eq "{alice}"]'},
        {"op": "remove", "path": "members"},
    ):
        response = patch(scim, group["id"], operation)
        no_content(scim, group["id"], response)
        seen.append(response.headers["ETag"])

    assert len(set(seen)) == len(seen), seen
    assert version(scim, group["id"]) == seen[-1]


def test_patch_with_a_stale_if_match_is_412_and_changes_nothing(scim, alice, bob):
    group = new_group(scim, "Engineering")
    stale = group["meta"]["version"]
    added = patch(scim, group["id"], {"op": "add", "path": "members", "value": [{"value": alice}]})
    no_content(scim, group["id"], added)

    response = patch(
        scim,
        group["id"],
        {"op": "add", "path": "members", "value": [{"value": bob}]},
        headers={"If-Match": stale},
    )

    assert_scim_error(response, 412)
    assert members(scim, group["id"]) == {alice}


def test_patch_with_the_current_if_match_is_applied(scim, alice):
    group = new_group(scim, "Engineering")

    response = patch(
        scim,
        group["id"],
        {"op": "add", "path": "members", "value": [{"value": alice}]},
        headers={"If-Match": group["meta"]["version"]},
    )

    no_content(scim, group["id"], response)
    assert members(scim, group["id"]) == {alice}


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_put_and_delete_with_a_stale_if_match_are_412(scim, alice, method):
    group = new_group(scim, "Engineering")
    stale = group["meta"]["version"]
    patch(scim, group["id"], {"op": "add", "path": "members", "value": [{"value": alice}]})

    response = scim(
        method,
        f"/Groups/{group['id']}",
        json={"schemas": [GROUP], "displayName": "Other"},
        headers={"If-Match": stale},
    )

    assert_scim_error(response, 412)
    assert members(scim, group["id"]) == {alice}


def test_get_with_the_current_if_none_match_is_304(scim):
    group = new_group(scim, "Engineering")

    response = scim(
        "GET", f"/Groups/{group['id']}", headers={"If-None-Match": group["meta"]["version"]}
    )

    assert response.status_code == 304


# --- Tenant isolation ---------------------------------------------------------------------


@pytest.fixture
def theirs(client, other_issued) -> Scim:
    """The other account's IdP."""
    return Scim(client, other_issued)


def test_other_account_cannot_see_these_groups(scim, theirs, alice):
    group = new_group(scim, "Engineering", [alice])

    assert_scim_error(theirs("GET", f"/Groups/{group['id']}"), 404)
    listed = theirs("GET", "/Groups").get_json()
    assert listed["totalResults"] == 0
    filtered = theirs("GET", '/Groups?filter=displayName eq "Engineering"').get_json()
    assert filtered["totalResults"] == 0


def test_other_account_cannot_change_or_delete_these_groups(scim, theirs, alice):
    group = new_group(scim, "Engineering", [alice])
    path = f"/Groups/{group['id']}"

    assert_scim_error(
        theirs(
            "PATCH",
            path,
            json={"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "members"}]},
        ),
        404,
    )
    assert_scim_error(theirs("PUT", path, json={"schemas": [GROUP], "displayName": "Mine"}), 404)
    assert_scim_error(theirs("DELETE", path), 404)

    body = scim("GET", path).get_json()
    assert body["displayName"] == "Engineering"
    assert [m["value"] for m in body["members"]] == [alice]


def test_other_account_cannot_add_this_accounts_users_to_its_groups(theirs, session, alice):
    """Another account's user id is unknown there: skipped and logged, never added."""
    response = theirs(
        "POST",
        "/Groups",
        json={"schemas": [GROUP], "displayName": "Stolen", "members": [{"value": alice}]},
    )

    assert response.status_code == 201
    assert "members" not in response.get_json()
    assert alice in last_log_detail(session)
    mine = new_group(theirs, "Mine")
    for operation in (
        {"op": "add", "path": "members", "value": [{"value": alice}]},
        {"op": "replace", "path": "members", "value": [{"value": alice}]},
        {"op": "add", "value": {"members": [{"value": alice}]}},
    ):
        assert patch(theirs, mine["id"], operation).status_code == 204
        assert alice in last_log_detail(session)
    assert count(session, TeamMember) == 0


# --- Odd input ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_group_id_with_a_nul_byte_is_404(scim, method):
    """PostgreSQL refuses NUL in text: the id must never reach a query as such."""
    body = {"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "members"}]}
    if method == "PUT":
        body = {"schemas": [GROUP], "displayName": "X"}

    assert_scim_error(scim(method, "/Groups/a%00b", json=body), 404)


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "add", "path": "members", "value": [{"value": "a\x00b"}]},
        {"op": "replace", "path": "members", "value": [{"value": "a\x00b"}]},
        {"op": "remove", "path": "members", "value": [{"value": "a\x00b"}]},
        {"op": "remove", "path": 'members[value eq "a\x00b"]'},
    ],
)
def test_member_id_with_a_nul_byte_is_400_and_changes_nothing(scim, alice, operation):
    group = new_group(scim, "Engineering", [alice])

    assert_scim_error(patch(scim, group["id"], operation), 400)
    assert members(scim, group["id"]) == {alice}


def test_create_with_a_nul_byte_member_id_is_400(scim, session):
    response = scim(
        "POST",
        "/Groups",
        json={"schemas": [GROUP], "displayName": "X", "members": [{"value": "a\x00b"}]},
    )

    assert_scim_error(response, 400)
    assert count(session, Team) == 0


@pytest.mark.parametrize("name", ["\ud800", "Eng\x00"])
def test_unstorable_display_name_is_400_and_creates_nothing(scim, session, name):
    """A lone surrogate or a NUL cannot be stored: 400 invalidValue, not a 500."""
    response = scim("POST", "/Groups", json={"schemas": [GROUP], "displayName": name})

    assert assert_scim_error(response, 400)["scimType"] == "invalidValue"
    assert scim("GET", "/Groups").get_json()["totalResults"] == 0


def test_id_with_extra_characters_names_no_group(scim):
    created = scim("POST", "/Groups", json={"schemas": [GROUP], "displayName": "Eng"}).get_json()

    assert_scim_error(scim("GET", f"/Groups/{created['id']}x"), 404)
    assert_scim_error(scim("DELETE", f"/Groups/{created['id']}x"), 404)
    assert scim("GET", f"/Groups/{created['id']}").status_code == 200
