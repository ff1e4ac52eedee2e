"""What the IdP provisions is what the Members page finds (SPEC F6): a SCIM create (a
Core INSERT) and a PATCH (an ORM update) both keep the page's search columns current."""

from __future__ import annotations

from tests.members.conftest import listed
from tests.scim_api.test_provisioning import create, patch

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"


def _search(client, **params) -> list[str]:
    response = client.get("/enterprise/members", query_string=params)
    assert response.status_code == 200
    return listed(response.get_data(as_text=True))


def test_provisioned_user_is_found_by_name_and_renaming_moves_them(scim, client, login_as, owner):
    grace = create(scim, "grace@example.com", displayName="Grace Hopper")
    create(scim, "ada@example.com", name={"givenName": "Ada", "familyName": "Lovelace"})
    login_as(owner)

    assert _search(client, q="HOPPER") == ["grace@example.com"]
    assert _search(client, q="ada lovelace") == ["ada@example.com"]  # given + family name
    assert _search(client, sort="name")[:2] == ["ada@example.com", "grace@example.com"]

    response = patch(
        scim, grace["id"], {"op": "replace", "path": "displayName", "value": "Aardvark Grace"}
    )
    assert response.status_code == 200

    assert _search(client, q="hopper") == []
    assert _search(client, q="aardvark") == ["grace@example.com"]
    assert _search(client, sort="name")[:2] == ["grace@example.com", "ada@example.com"]


def test_changed_email_is_searchable(scim, client, login_as, owner):
    user = create(scim, "lin@example.com")
    patch(
        scim,
        user["id"],
        {
            "op": "replace",
            "path": "emails",
            "value": [{"value": "linus@example.com", "primary": True}],
        },
    )
    login_as(owner)
    assert _search(client, q="linus@") == ["linus@example.com"]
