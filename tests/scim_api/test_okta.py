"""Okta's documented SCIM 2.0 requests, replayed in the order Okta sends them.

The bodies are in samples/okta/ (samples/README.md says where each comes from); only the
placeholders are changed: emails in the verified domain, and the documented ids swapped
for the ones our API returned in the earlier steps, as Okta does.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import select

from models import Account
from tests.scim_api.conftest import SCIM_JSON

SAMPLES = Path(__file__).parent / "samples" / "okta"
# The ids in Okta's examples, replaced by ours.
DOC_USER_ID = "23a35c27-23d3-4c03-b4c5-6443c09e7173"
DOC_OTHER_USER_ID = "89bb1940-b905-4575-9e7f-6f887cfb368e"
DOC_GROUP_ID = "abf4dd94-a4c0-4f67-89c9-76b03340cb9b"
USER_NAME = "test.user@example.com"


def sample(name: str, replace: dict[str, str] | None = None) -> dict:
    text = (SAMPLES / name).read_text()
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    return json.loads(text)


def find_user(scim, user_name: str) -> dict:
    """Okta's lookup before it creates a user (section "Determine if the User already
    exists"): a filter on userName, first page of 100."""
    query = quote(f'userName eq "{user_name}"')
    response = scim("GET", f"/Users?filter={query}&startIndex=1&count=100")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == SCIM_JSON
    return response.get_json()


def create_user(scim, replace: dict[str, str] | None = None) -> dict:
    response = scim("POST", "/Users", json=sample("create_user.json", replace))
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def no_content(scim, path: str, response) -> dict:
    """Okta's group PATCH: its guide shows 200 with the group but notes that "the SCIM
    server response to PATCH method requests can also be a HTTP 204 response, with no body
    returned"; ours is 204 with the new version as ETag. Returns the group as a GET shows it."""
    assert response.status_code == 204, response.get_data(as_text=True)
    assert response.get_data() == b""
    group = scim("GET", path).get_json()
    assert response.headers["ETag"] == group["meta"]["version"]
    return group


@pytest.fixture
def user(scim) -> dict:
    """test.user, created as Okta creates it."""
    assert find_user(scim, USER_NAME)["totalResults"] == 0
    return create_user(scim)


@pytest.fixture
def other_user(scim, user) -> dict:
    return create_user(
        scim,
        {"test.user@example.com": "other.user@example.com", "00ujl29u0le5T6Aj10h7": "00ujl2x"},
    )


def test_assigning_a_user_looks_it_up_then_creates_it(scim):
    before = find_user(scim, USER_NAME)
    assert before["totalResults"] == 0
    assert before["Resources"] == []
    assert before["startIndex"] == 1

    response = scim("POST", "/Users", json=sample("create_user.json"))

    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    assert created["id"]
    assert created["userName"] == USER_NAME
    assert created["externalId"] == "00ujl29u0le5T6Aj10h7"
    assert created["active"] is True
    assert created["name"] == {"givenName": "Test", "familyName": "User"}
    assert created["emails"] == [{"value": USER_NAME, "type": "work", "primary": True}]
    assert "password" not in created
    after = find_user(scim, USER_NAME)
    assert after["totalResults"] == 1
    assert [u["id"] for u in after["Resources"]] == [created["id"]]


def test_creating_an_existing_user_again_is_409(scim, user):
    """Okta stops the provisioning job on a 409 rather than creating a duplicate."""
    response = scim("POST", "/Users", json=sample("create_user.json"))

    assert response.status_code == 409
    assert response.get_json()["scimType"] == "uniqueness"
    assert find_user(scim, USER_NAME)["totalResults"] == 1


def test_import_pages_through_users_and_groups(scim, user):
    users = scim("GET", "/Users?startIndex=1&count=100").get_json()
    groups = scim("GET", "/Groups?startIndex=1&count=100").get_json()

    assert users["totalResults"] == 1
    assert [u["id"] for u in users["Resources"]] == [user["id"]]
    assert isinstance(users["itemsPerPage"], int) and isinstance(users["startIndex"], int)
    assert groups["totalResults"] == 0


def test_profile_update_reads_the_user_then_puts_it_back(scim, user):
    read = scim("GET", f"/Users/{user['id']}")
    assert read.status_code == 200
    assert read.get_json()["userName"] == USER_NAME

    response = scim(
        "PUT", f"/Users/{user['id']}", json=sample("put_user.json", {DOC_USER_ID: user["id"]})
    )

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["id"] == user["id"]
    assert body["name"] == {"givenName": "Another", "middleName": "Excited", "familyName": "User"}
    assert body["active"] is True
    assert scim("GET", f"/Users/{user['id']}").get_json()["name"]["middleName"] == "Excited"


def test_deactivation_patch_sets_active_false_and_frees_the_seat(scim, session, user):
    session.expire_all()
    seats = session.scalar(select(Account.seats_used))

    response = scim("PATCH", f"/Users/{user['id']}", json=sample("deactivate_user.json"))

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["active"] is False
    found = find_user(scim, USER_NAME)
    assert found["totalResults"] == 1
    assert found["Resources"][0]["active"] is False
    session.expire_all()
    assert session.scalar(select(Account.seats_used)) == seats - 1


def test_group_push_creates_the_group_and_syncs_its_members(scim, user, other_user):
    created = scim("POST", "/Groups", json=sample("create_group.json"))
    assert created.status_code == 201, created.get_data(as_text=True)
    group = created.get_json()
    assert group["displayName"] == "Test SCIMv2"
    ids = {DOC_GROUP_ID: group["id"], DOC_USER_ID: user["id"], DOC_OTHER_USER_ID: other_user["id"]}
    path = f"/Groups/{group['id']}"

    # Okta renames (to the same name) with each membership update, then patches members.
    renamed = scim("PATCH", path, json=sample("rename_group.json", ids))
    assert no_content(scim, path, renamed)["id"] == group["id"]
    membership = scim("PATCH", path, json=sample("update_group_membership.json", ids))
    assert no_content(scim, path, membership)["displayName"] == "Test SCIMv2"
    assert _members(scim, path) == {user["id"]}

    full_push = scim("PATCH", path, json=sample("replace_group_members.json", ids))
    no_content(scim, path, full_push)
    assert _members(scim, path) == {user["id"], other_user["id"]}

    removal = scim("PATCH", path, json=sample("update_group_membership.json", ids))
    no_content(scim, path, removal)
    assert _members(scim, path) == {user["id"]}


def test_group_rename_patch_changes_the_name(scim):
    group = scim("POST", "/Groups", json=sample("create_group.json")).get_json()
    body = sample(
        "rename_group.json", {DOC_GROUP_ID: group["id"], '"Test SCIMv2"': '"Test SCIMv20"'}
    )

    response = scim("PATCH", f"/Groups/{group['id']}", json=body)

    assert no_content(scim, f"/Groups/{group['id']}", response)["displayName"] == "Test SCIMv20"
    listed = scim("GET", "/Groups?startIndex=1&count=100").get_json()
    assert [g["displayName"] for g in listed["Resources"]] == ["Test SCIMv20"]


def test_unlinking_a_pushed_group_deletes_it(scim, user):
    group = scim("POST", "/Groups", json=sample("create_group.json")).get_json()
    ids = {DOC_USER_ID: user["id"]}
    added = scim(
        "PATCH", f"/Groups/{group['id']}", json=sample("update_group_membership.json", ids)
    )
    no_content(scim, f"/Groups/{group['id']}", added)

    response = scim("DELETE", f"/Groups/{group['id']}")

    assert response.status_code == 204
    assert scim("GET", f"/Groups/{group['id']}").status_code == 404
    assert scim("GET", f"/Users/{user['id']}").get_json()["active"] is True


def _members(scim, path: str) -> set[str]:
    return {m["value"] for m in scim("GET", path).get_json().get("members", [])}
