"""A resource read without attributes/excludedAttributes is served from its stored
payload directly (serialize.render); asking to exclude an attribute it doesn't have goes
through scim2-models instead. Both must give the same document."""

from __future__ import annotations

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def _user(scim) -> dict:
    body = {
        "schemas": [USER, ENTERPRISE],
        "userName": "Barbara.Jensen@example.com",
        "externalId": "ext-1",
        "name": {"givenName": "Barbara", "familyName": "Jensen", "formatted": "Ms. B Jensen"},
        "displayName": "Babs",
        "active": True,
        "password": "never-returned",
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": True},
            {"value": "babs@elsewhere.test", "type": "home"},
        ],
        ENTERPRISE: {"department": "Tour", "manager": {"value": "m-1"}},
    }
    response = scim("POST", "/Users", json=body)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def test_user_served_directly_equals_the_library_rendering(scim):
    user = _user(scim)
    group = scim("POST", "/Groups", json={"schemas": [GROUP], "displayName": "Tour"})
    scim(
        "PATCH",
        f"/Groups/{group.get_json()['id']}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": user["id"]}]}],
        },
    )

    direct = scim("GET", f"/Users/{user['id']}").get_json()
    library = scim("GET", f"/Users/{user['id']}?excludedAttributes=title").get_json()

    assert direct == library
    assert "password" not in direct and direct["groups"][0]["display"] == "Tour"
    assert direct["meta"]["created"].endswith("Z")


def test_lists_served_directly_equal_the_library_rendering(scim):
    _user(scim)
    scim("POST", "/Groups", json={"schemas": [GROUP], "displayName": "Tour"})

    for kind in ("Users", "Groups"):
        direct = scim("GET", f"/{kind}").get_json()
        library = scim("GET", f"/{kind}?excludedAttributes=externalId").get_json()
        for served, rendered in zip(direct["Resources"], library["Resources"], strict=True):
            rendered.setdefault("externalId", served.get("externalId"))
            assert {k: v for k, v in served.items() if v is not None} == {
                k: v for k, v in rendered.items() if v is not None
            }
