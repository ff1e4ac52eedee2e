"""What a client writes, a GET reads back exactly as the operation implies (SPEC F5,
RFC 7644 §3.5.2): PATCH add/replace/remove on emails, the enterprise extension object and
the manager, and removal of `active` and of every optional attribute."""

from __future__ import annotations

import pytest

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

BASE = {
    "schemas": [USER],
    "userName": "bjensen@example.com",
    "name": {"givenName": "Barbara", "familyName": "Jensen", "middleName": "Jane"},
    "displayName": "Babs Jensen",
    "nickName": "Babs",
    "title": "Tour Guide",
    "userType": "Employee",
    "preferredLanguage": "en-US",
    "locale": "en-US",
    "timezone": "America/Los_Angeles",
    "active": True,
    "emails": [
        {"value": "bjensen@example.com", "type": "work", "primary": True},
        {"value": "babs@jensen.test", "type": "home"},
    ],
    "phoneNumbers": [{"value": "555-555-8377", "type": "work"}],
    "addresses": [{"type": "home", "locality": "Hollywood", "country": "USA"}],
    "roles": [{"value": "guide"}],
}


@pytest.fixture
def user(scim) -> dict:
    response = scim("POST", "/Users", json=BASE)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def patched(scim, user: dict, *operations) -> dict:
    """PATCH, then the user as a fresh GET shows it (the PATCH's own answer must agree)."""
    response = scim(
        "PATCH",
        f"/Users/{user['id']}",
        json={"schemas": [PATCH_OP], "Operations": list(operations)},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    read = scim("GET", f"/Users/{user['id']}").get_json()
    assert response.get_json() == read
    return read


def written(body: dict) -> dict:
    """What a client wrote, as a read shows it: without what the server adds."""
    return {k: v for k, v in body.items() if k not in ("id", "meta", "groups")}


# --- emails -------------------------------------------------------------------------------


def test_add_an_email_appends_it(scim, user):
    extra = {"value": "bj@other.test", "type": "other"}

    after = patched(scim, user, {"op": "add", "path": "emails", "value": [extra]})

    assert after["emails"] == [*BASE["emails"], extra]


def test_add_a_primary_email_takes_primary_from_the_others(scim, user):
    """RFC 7644 §3.5.2: a value made primary makes the others non-primary."""
    new = {"value": "new@example.com", "type": "work", "primary": True}

    after = patched(scim, user, {"op": "add", "path": "emails", "value": [new]})

    assert [e.get("primary") for e in after["emails"]] == [False, None, True]
    assert after["emails"][2] == new


def test_replace_emails_replaces_the_whole_list(scim, user):
    emails = [{"value": "only@example.com", "type": "work", "primary": True}]

    after = patched(scim, user, {"op": "replace", "path": "emails", "value": emails})

    assert after["emails"] == emails


def test_replace_a_filtered_email_value_changes_that_email_only(scim, user):
    """Entra ID's `emails[type eq "work"].value`."""
    after = patched(
        scim,
        user,
        {"op": "replace", "path": 'emails[type eq "work"].value', "value": "b2@example.com"},
    )

    assert after["emails"] == [
        {"value": "b2@example.com", "type": "work", "primary": True},
        BASE["emails"][1],
    ]


def test_remove_a_filtered_email_leaves_the_others(scim, user):
    after = patched(scim, user, {"op": "remove", "path": 'emails[type eq "home"]'})

    assert after["emails"] == [BASE["emails"][0]]


def test_remove_all_emails(scim, user):
    after = patched(scim, user, {"op": "remove", "path": "emails"})

    assert "emails" not in after


# --- The enterprise extension and the manager ---------------------------------------------


def test_add_the_extension_object_keeps_its_schema_and_every_value(scim, user):
    extension = {
        "employeeNumber": "701984",
        "costCenter": "4130",
        "organization": "Universal Studios",
        "division": "Theme Park",
        "department": "Tour Operations",
        "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"},
    }

    after = patched(scim, user, {"op": "add", "path": ENTERPRISE, "value": extension})

    assert after["schemas"] == [USER, ENTERPRISE]
    assert after[ENTERPRISE] == extension  # an unknown manager: no $ref added


def test_replace_one_extension_attribute_by_its_urn_path(scim, user):
    patched(scim, user, {"op": "add", "path": ENTERPRISE, "value": {"department": "Tours"}})

    after = patched(
        scim, user, {"op": "replace", "path": f"{ENTERPRISE}:costCenter", "value": "4130"}
    )

    assert after[ENTERPRISE] == {"department": "Tours", "costCenter": "4130"}


def test_removing_the_last_extension_attribute_drops_the_extension(scim, user):
    patched(scim, user, {"op": "add", "path": ENTERPRISE, "value": {"department": "Tours"}})

    after = patched(scim, user, {"op": "remove", "path": f"{ENTERPRISE}:department"})

    assert ENTERPRISE not in after
    assert after["schemas"] == [USER]


@pytest.mark.parametrize(
    "value",
    [
        {"value": "m-1"},
        "m-1",  # Entra ID sends the bare id
        {"value": "m-1", "$ref": "https://idp.example.com/Users/m-1"},  # kept as sent
    ],
)
def test_manager_value_is_kept_as_sent(scim, user, value):
    after = patched(scim, user, {"op": "add", "path": f"{ENTERPRISE}:manager", "value": value})

    expected = {"value": "m-1"} if value == "m-1" else value
    assert after[ENTERPRISE]["manager"] == expected


def test_a_manager_of_the_account_gets_its_predictable_ref(scim, user):
    boss = scim("POST", "/Users", json={"schemas": [USER], "userName": "boss"}).get_json()

    after = patched(
        scim, user, {"op": "replace", "path": f"{ENTERPRISE}:manager.value", "value": boss["id"]}
    )

    assert after[ENTERPRISE]["manager"] == {
        "value": boss["id"],
        "$ref": f"{scim.base}/Users/{boss['id']}",
    }


# --- Removing ---------------------------------------------------------------------------


def test_remove_active_removes_it_from_the_resource(scim, user):
    """`active` is optional: removed, a GET no longer shows it (the member stays active:
    deactivation is always explicit)."""
    after = patched(scim, user, {"op": "remove", "path": "active"})

    assert "active" not in after


@pytest.mark.parametrize(
    "path",
    [
        "nickName",
        "title",
        "userType",
        "preferredLanguage",
        "locale",
        "timezone",
        "displayName",
        "name",
        "name.middleName",
        "phoneNumbers",
        "addresses",
        "roles",
        'phoneNumbers[type eq "work"]',
    ],
)
def test_remove_an_optional_attribute_removes_exactly_it(scim, user, path):
    after = patched(scim, user, {"op": "remove", "path": path})

    expected = written({**user})
    head, _, sub = path.partition(".")
    head = head.split("[", 1)[0]
    if sub:
        expected[head] = {k: v for k, v in expected[head].items() if k != sub}
    else:
        del expected[head]
    assert written(after) == expected


def test_path_less_replace_sets_every_attribute_given(scim, user):
    """Okta and Entra ID send path-less replaces, with dotted and URN keys."""
    after = patched(
        scim,
        user,
        {
            "op": "replace",
            "value": {
                "nickName": "B",
                "name.givenName": "Barb",
                f"{ENTERPRISE}:department": "Rides",
                "phoneNumbers": [{"value": "+1 555 0199", "type": "mobile"}],
            },
        },
    )

    assert (after["nickName"], after["name"]["givenName"]) == ("B", "Barb")
    assert after[ENTERPRISE] == {"department": "Rides"}
    assert after["phoneNumbers"] == [{"value": "+1 555 0199", "type": "mobile"}]
    assert after["name"]["familyName"] == "Jensen"


def test_a_patch_that_changes_nothing_keeps_the_version(scim, user):
    after = patched(scim, user, {"op": "replace", "path": "nickName", "value": "Babs"})

    assert after["meta"]["version"] == user["meta"]["version"]
