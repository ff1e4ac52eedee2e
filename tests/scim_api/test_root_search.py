"""POST /.search at the root (RFC 7644 §3.4.3): Users and Groups in one list, paged,
filtered and sorted across both types, only the connector's own account."""

from __future__ import annotations

import pytest

from tests.scim_api.conftest import assert_scim_error

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


@pytest.fixture
def directory(scim) -> dict:
    """Two users and two groups; "Sales" is both a user's displayName and a group."""
    made = {}
    for name, display in (("alice", "Alice"), ("bob", "Sales")):
        body = {"schemas": [USER], "userName": name, "displayName": display}
        response = scim("POST", "/Users", json=body)
        assert response.status_code == 201, response.get_data(as_text=True)
        made[name] = response.get_json()
    for name in ("Sales", "Engineering"):
        members = [{"value": made["alice"]["id"]}] if name == "Engineering" else []
        response = scim(
            "POST", "/Groups", json={"schemas": [GROUP], "displayName": name, "members": members}
        )
        assert response.status_code == 201, response.get_data(as_text=True)
        made[name] = response.get_json()
    return made


def search(scim, **query) -> dict:
    response = scim("POST", "/.search", json={"schemas": [SEARCH], **query})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def shown(body: dict) -> list[str]:
    """Each resource as "User:<userName>" or "Group:<displayName>"."""
    return [
        f"User:{r['userName']}" if r["schemas"][0] == USER else f"Group:{r['displayName']}"
        for r in body.get("Resources", [])
    ]


def test_lists_users_then_groups_with_their_schemas(scim, directory):
    body = search(scim)

    assert body["totalResults"] == 4
    assert shown(body) == ["User:alice", "User:bob", "Group:Sales", "Group:Engineering"]
    group = body["Resources"][3]
    assert group["members"][0]["value"] == directory["alice"]["id"]
    assert body["Resources"][0]["meta"]["resourceType"] == "User"


def test_an_attribute_of_one_type_matches_nothing_in_the_other(scim, directory):
    """RFC 7644 §3.4.2.1: userName is no Group attribute, members no User attribute."""
    assert shown(search(scim, filter='userName eq "bob"')) == ["User:bob"]
    assert shown(search(scim, filter="members pr")) == ["Group:Engineering"]
    assert shown(search(scim, filter='displayName eq "sales"')) == ["User:bob", "Group:Sales"]
    assert shown(search(scim, filter='userName eq "alice" or displayName sw "eng"')) == [
        "User:alice",
        "Group:Engineering",
    ]
    assert shown(search(scim, filter="not (userName pr)")) == ["Group:Sales", "Group:Engineering"]


def test_an_attribute_of_neither_type_is_invalid_filter(scim, directory):
    response = scim("POST", "/.search", json={"schemas": [SEARCH], "filter": 'foo eq "x"'})

    assert assert_scim_error(response, 400)["scimType"] == "invalidFilter"


def test_pages_cross_from_users_to_groups(scim, directory):
    pages = [search(scim, startIndex=start, count=3) for start in (1, 4)]

    assert [shown(p) for p in pages] == [
        ["User:alice", "User:bob", "Group:Sales"],
        ["Group:Engineering"],
    ]
    assert [p["totalResults"] for p in pages] == [4, 4]
    totals_only = search(scim, count=0)
    assert (totals_only["totalResults"], totals_only.get("Resources", [])) == (4, [])


def test_sort_by_an_attribute_of_both_types(scim, directory):
    body = search(scim, sortBy="displayName")

    assert shown(body) == ["User:alice", "Group:Engineering", "User:bob", "Group:Sales"]
    descending = search(scim, sortBy="displayName", sortOrder="descending")
    assert shown(descending) == shown(body)[::-1]


def test_sort_by_an_attribute_of_one_type_puts_the_other_last(scim, directory):
    assert shown(search(scim, sortBy="userName")) == [
        "User:alice",
        "User:bob",
        "Group:Sales",
        "Group:Engineering",
    ]


def test_attributes_apply_to_each_type(scim, directory):
    body = search(scim, attributes=["userName"])

    users = [r for r in body["Resources"] if r["schemas"] == [USER]]
    groups = [r for r in body["Resources"] if r["schemas"] == [GROUP]]
    assert [set(r) for r in users] == [{"schemas", "id", "userName"}] * 2
    assert [set(r) for r in groups] == [{"schemas", "id"}] * 2
    excluded = search(scim, excludedAttributes=["members", "displayName"])
    assert all("members" not in r and "displayName" not in r for r in excluded["Resources"])


def test_only_the_connectors_account_is_searched(scim, directory, other_issued):
    from tests.scim_api.conftest import Scim

    theirs = Scim(scim.client, other_issued)
    response = theirs("POST", "/.search", json={"schemas": [SEARCH]})

    assert response.status_code == 200
    assert response.get_json()["totalResults"] == 0


def test_root_search_needs_the_bearer_token(scim, directory):
    assert scim("POST", "/.search", token=None, json={"schemas": [SEARCH]}).status_code == 401
