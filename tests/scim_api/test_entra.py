"""Microsoft Entra ID's documented SCIM requests, replayed in the order Entra sends them.

The bodies are in samples/entra/ (samples/README.md says where each comes from); only the
placeholders are changed: emails in the verified domain, and the documented ids swapped
for the ones our API returned in the earlier steps, as Entra does.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import select

from models import Account
from tests.scim_api.conftest import SCIM_JSON

SAMPLES = Path(__file__).parent / "samples" / "entra"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
USER_NAME = "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee"
EMAIL = "Test_User_11bb11bb-cc22-dd33-ee44-55ff55ff55ff@example.com"
DOC_MEMBER_ID = "f648f8d5ea4e4cd38e9c"  # "Update Group [Add Members]" / "[Remove Members]"
DOC_MANAGER_ID = "00aa00aa-bb11-cc22-dd33-44ee44ee44ee"
GROUP_NAME = "displayName"


def sample(name: str, replace: dict[str, str] | None = None) -> dict:
    text = (SAMPLES / name).read_text()
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    return json.loads(text)


def query(scim, resource: str, filter_: str, extra: str = "") -> dict:
    response = scim("GET", f"/{resource}?{extra}filter={quote(filter_)}")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == SCIM_JSON
    return response.get_json()


def find_user(scim, user_name: str) -> dict:
    return query(scim, "Users", f'userName eq "{user_name}"')


def find_group(scim, name: str) -> dict:
    """ "Get Group by displayName": members excluded, as Entra asks."""
    return query(scim, "Groups", f'displayName eq "{name}"', "excludedAttributes=members&")


def create_user(scim, n: int | None = None) -> dict:
    """The "Create User" request; `n` makes another user of the same shape."""
    replace = None
    if n is not None:
        replace = {
            "Test_User_00aa": f"Test_User_{n}_00aa",
            "Test_User_11bb": f"Test_User_{n}_11bb",
            "0a21f0f2-8d2a": f"{n}-0a21f0f2-8d2a",
        }
    response = scim("POST", "/Users", json=sample("create_user.json", replace))
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def patch_user(scim, user: dict, name: str, replace: dict[str, str] | None = None) -> dict:
    response = scim("PATCH", f"/Users/{user['id']}", json=sample(name, replace))
    assert response.status_code == 200, response.get_data(as_text=True)
    return scim("GET", f"/Users/{user['id']}").get_json()


@pytest.fixture
def user(scim) -> dict:
    return create_user(scim)


@pytest.fixture
def group(scim) -> dict:
    response = scim("POST", "/Groups", json=sample("create_group.json"))
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def members(scim, group: dict) -> set[str]:
    body = scim("GET", f"/Groups/{group['id']}").get_json()
    return {m["value"] for m in body.get("members", [])}


def no_content(scim, group: dict, response) -> None:
    """ "Update Group [Non-member attributes]", "[Add Members]" and "[Remove Members]" are
    documented with the response `HTTP/1.1 204 No Content`; ours also carries the new
    version as ETag."""
    assert response.status_code == 204, response.get_data(as_text=True)
    assert response.get_data() == b""
    version = scim("GET", f"/Groups/{group['id']}").get_json()["meta"]["version"]
    assert response.headers["ETag"] == version


# --- Users --------------------------------------------------------------------------------


def test_test_connection_query_for_a_random_user_gets_an_empty_list(scim):
    """ "Test Connection" queries a random GUID and expects 200 with an empty ListResponse."""
    body = find_user(scim, str(uuid.uuid4()))

    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
    assert body["totalResults"] == 0
    assert body["Resources"] == []


def test_provisioning_queries_the_user_then_creates_it(scim):
    assert find_user(scim, USER_NAME)["totalResults"] == 0

    response = scim("POST", "/Users", json=sample("create_user.json"))

    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    assert created["id"]
    assert created["userName"] == USER_NAME
    assert created["externalId"] == "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"
    assert created["active"] is True
    assert created["emails"] == [{"value": EMAIL, "type": "work", "primary": True}]
    assert created["name"]["formatted"] == "givenName familyName"
    assert scim("GET", f"/Users/{created['id']}").status_code == 200
    found = find_user(scim, USER_NAME)
    assert [u["id"] for u in found["Resources"]] == [created["id"]]


def test_user_can_be_found_by_work_email_too(scim, user):
    """Entra may match users on `emails[type eq "work"].value`."""
    found = query(scim, "Users", f'emails[type eq "work"].value eq "{EMAIL}"')

    assert [u["id"] for u in found["Resources"]] == [user["id"]]


def test_provision_user_example_with_nulls_and_extension_schema_is_created(scim):
    """ "Example 2. Provision a user": null attributes and an enterprise schema URN."""
    response = scim("POST", "/Users", json=sample("provision_user.json"))

    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    assert created["userName"] == "jyoung@example.com"
    assert created["displayName"] == "Joy Young"
    assert [u["id"] for u in find_user(scim, "jyoung@example.com")["Resources"]] == [created["id"]]


def test_get_unknown_user_is_404(scim):
    response = scim("GET", "/Users/5171a35d82074e068ce2")

    assert response.status_code == 404
    assert response.get_json()["status"] == "404"


def test_update_multi_valued_properties(scim, user):
    after = patch_user(scim, user, "update_user_multi_valued.json")

    assert after["emails"] == [
        {"value": "updatedEmail@example.com", "type": "work", "primary": True}
    ]
    assert after["name"]["familyName"] == "updatedFamilyName"
    assert after["name"]["givenName"] == "givenName"
    found = query(scim, "Users", 'emails[type eq "work"].value eq "updatedEmail@example.com"')
    assert [u["id"] for u in found["Resources"]] == [user["id"]]


def test_update_single_valued_property_user_name(scim, user):
    new_name = "5b50642d-79fc-4410-9e90-4c077cdd1a59@example.com"

    after = patch_user(scim, user, "update_user_single_valued.json")

    assert after["userName"] == new_name
    assert [u["id"] for u in find_user(scim, new_name)["Resources"]] == [user["id"]]
    assert find_user(scim, USER_NAME)["totalResults"] == 0


def test_replace_several_attributes_each_with_a_path(scim, user):
    after = patch_user(scim, user, "replace_attributes.json")

    assert after["displayName"] == "Pvlo"
    assert after["emails"][0]["value"] == "TestBcwqnm@example.com"
    assert after["name"]["givenName"] == "Gtfd"
    assert after["name"]["familyName"] == "Pkqf"
    assert after["externalId"] == "Eqpj"
    assert after[ENTERPRISE]["employeeNumber"] == "Eqpj"


def test_replace_several_attributes_without_path_with_dotted_and_urn_keys(scim, user):
    after = patch_user(scim, user, "replace_attributes_pathless.json")

    assert after["emails"][0]["value"] == "TestMhvaes@example.com"
    assert after["displayName"] == "Bjfe"
    assert after["name"]["givenName"] == "Kkom"
    assert after["name"]["familyName"] == "Unua"
    assert after[ENTERPRISE]["employeeNumber"] == "Aklq"


@pytest.mark.parametrize("body", ["add_single_value.json", "add_single_value_compliant.json"])
def test_add_single_value_sets_nick_name_and_reads_back(scim, user, body):
    """Entra's documented "add a single-value string attribute", in its legacy ("Add")
    and its compliant (aadOptscim062020) form, sets nickName; a GET reads it back."""
    before = scim("GET", f"/Users/{user['id']}").get_json()

    after = patch_user(scim, user, body)

    assert after["nickName"] == "Babs"
    assert after["meta"]["version"] != before["meta"]["version"]
    assert scim("GET", f"/Users/{user['id']}").get_json()["nickName"] == "Babs"


def test_add_manager_as_the_tutorial_shows_sets_the_manager(scim, user):
    """ "Example 5": path `manager` (no URN) and a list holding the manager's reference."""
    manager = create_user(scim, 2)

    after = patch_user(scim, user, "add_manager.json", {DOC_MANAGER_ID: manager["id"]})

    assert after[ENTERPRISE]["manager"]["value"] == manager["id"]


@pytest.mark.parametrize(
    "body", ["disable_user.json", "disable_user_string.json", "disable_user_compliant.json"]
)
def test_disable_user_keeps_it_visible_as_inactive_and_frees_the_seat(scim, session, user, body):
    """Entra soft-deletes with `active` false (or the string "False"); the user must still
    be returned, with active false."""
    session.expire_all()
    seats = session.scalar(select(Account.seats_used))

    after = patch_user(scim, user, body)

    assert after["active"] is False
    found = find_user(scim, USER_NAME)
    assert found["totalResults"] == 1
    assert found["Resources"][0]["active"] is False
    session.expire_all()
    assert session.scalar(select(Account.seats_used)) == seats - 1


def test_delete_user_is_204_and_the_user_is_gone(scim, user):
    response = scim("DELETE", f"/Users/{user['id']}")

    assert response.status_code == 204
    assert scim("GET", f"/Users/{user['id']}").status_code == 404
    assert find_user(scim, USER_NAME)["totalResults"] == 0


# --- Groups -------------------------------------------------------------------------------


def test_group_provisioning_queries_by_name_then_creates_it(scim):
    assert find_group(scim, GROUP_NAME)["totalResults"] == 0

    response = scim("POST", "/Groups", json=sample("create_group.json"))

    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    assert created["displayName"] == GROUP_NAME
    assert created["externalId"] == "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159"
    found = find_group(scim, GROUP_NAME)
    assert [g["id"] for g in found["Resources"]] == [created["id"]]
    assert "members" not in found["Resources"][0]


def test_get_group_excluding_members(scim, group, user):
    added = scim(
        "PATCH",
        f"/Groups/{group['id']}",
        json=sample("add_members.json", {DOC_MEMBER_ID: user["id"]}),
    )
    no_content(scim, group, added)

    response = scim("GET", f"/Groups/{group['id']}?excludedAttributes=members")

    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == group["id"]
    assert body["displayName"] == GROUP_NAME
    assert "members" not in body


def test_update_group_non_member_attributes(scim, group):
    new_name = "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"

    response = scim("PATCH", f"/Groups/{group['id']}", json=sample("update_group_name.json"))

    no_content(scim, group, response)
    assert [g["id"] for g in find_group(scim, new_name)["Resources"]] == [group["id"]]
    assert find_group(scim, GROUP_NAME)["totalResults"] == 0


def test_update_group_add_then_remove_members(scim, group, user):
    other = create_user(scim, 2)
    path = f"/Groups/{group['id']}"

    for member in (user, other):
        added = scim("PATCH", path, json=sample("add_members.json", {DOC_MEMBER_ID: member["id"]}))
        no_content(scim, group, added)
    assert members(scim, group) == {user["id"], other["id"]}

    removed = scim("PATCH", path, json=sample("remove_members.json", {DOC_MEMBER_ID: user["id"]}))

    no_content(scim, group, removed)
    assert members(scim, group) == {other["id"]}


@pytest.mark.parametrize(
    ("body", "doc_id"),
    [
        ("remove_member_by_value.json", "u1091"),
        ("remove_member_by_filter.json", "7f4bc1a3-285e-48ae-8202-5accb43efb0e"),
    ],
)
def test_remove_member_in_both_documented_forms(scim, group, user, body, doc_id):
    """Without and with Entra's "aadOptscim062020" flag."""
    other = create_user(scim, 2)
    path = f"/Groups/{group['id']}"
    for member in (user, other):
        scim("PATCH", path, json=sample("add_members.json", {DOC_MEMBER_ID: member["id"]}))
    assert members(scim, group) == {user["id"], other["id"]}

    response = scim("PATCH", path, json=sample(body, {doc_id: user["id"]}))

    no_content(scim, group, response)
    assert members(scim, group) == {other["id"]}


def test_delete_group_is_204_and_the_group_is_gone(scim, group, user):
    added = scim(
        "PATCH",
        f"/Groups/{group['id']}",
        json=sample("add_members.json", {DOC_MEMBER_ID: user["id"]}),
    )
    no_content(scim, group, added)

    response = scim("DELETE", f"/Groups/{group['id']}")

    assert response.status_code == 204
    assert scim("GET", f"/Groups/{group['id']}").status_code == 404
    assert find_group(scim, GROUP_NAME)["totalResults"] == 0
    assert scim("GET", f"/Users/{user['id']}").status_code == 200
