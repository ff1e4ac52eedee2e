"""SCIM Users over HTTP (SPEC F5): CRUD, the attributes we keep, attributes /
excludedAttributes, ETags, errors and tenant isolation, as an IdP sees them."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app import db
from models import Membership
from tests.scim_api.conftest import SCIM_JSON, assert_scim_error

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"

FULL = {
    "schemas": [USER, ENTERPRISE],
    "userName": "bjensen@example.com",
    "externalId": "00u1bjensen",
    "name": {
        "formatted": "Ms. Barbara J Jensen, III",
        "familyName": "Jensen",
        "givenName": "Barbara",
        "middleName": "Jane",
        "honorificPrefix": "Ms.",
        "honorificSuffix": "III",
    },
    "displayName": "Babs Jensen",
    "title": "Tour Guide",
    "active": True,
    "emails": [
        {"value": "bjensen@example.com", "type": "work", "primary": True, "display": "Work"},
        {"value": "babs@jensen.test", "type": "home", "display": "Home"},
    ],
    ENTERPRISE: {
        "employeeNumber": "701984",
        "costCenter": "4130",
        "organization": "Universal Studios",
        "division": "Theme Park",
        "department": "Tour Operations",
        "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"},
    },
}


def create(scim, user_name="bjensen@example.com", **attributes) -> dict:
    response = scim("POST", "/Users", json={"schemas": [USER], "userName": user_name} | attributes)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def patch(scim, user_id, *operations, **kwargs):
    body = {"schemas": [PATCH_OP], "Operations": list(operations)}
    return scim("PATCH", f"/Users/{user_id}", json=body, **kwargs)


def fetch(scim, user_id) -> dict:
    response = scim("GET", f"/Users/{user_id}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def user_names(response) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [r["userName"] for r in response.get_json()["Resources"]]


def memberships(session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(Membership))


# --- CRUD -------------------------------------------------------------------------------


def test_create_answers_201_with_location_etag_and_meta(scim):
    response = scim("POST", "/Users", json={"schemas": [USER], "userName": "bjensen@example.com"})

    assert response.status_code == 201
    assert response.mimetype == SCIM_JSON
    body = response.get_json()
    meta = body["meta"]
    assert body["id"] and body["userName"] == "bjensen@example.com"
    assert body["schemas"] == [USER]
    assert meta["resourceType"] == "User"
    assert meta["created"] and meta["lastModified"]
    assert meta["location"] == f"{scim.base}/Users/{body['id']}"
    assert response.headers["Location"] == meta["location"]
    assert meta["version"] == 'W/"1"'
    assert response.headers["ETag"] == meta["version"]
    assert body["active"] is True  # active unless the IdP says otherwise


def test_get_returns_the_user_as_created(scim):
    created = create(scim)

    response = scim("GET", f"/Users/{created['id']}")

    assert response.status_code == 200
    assert response.mimetype == SCIM_JSON
    assert response.headers["ETag"] == 'W/"1"'
    assert response.get_json() == created


def test_list_returns_every_provisioned_user(scim, owner):
    """The owner (a manual member) is not a SCIM user and stays out of the list."""
    create(scim, "alice@example.com")
    create(scim, "bob@example.com")

    response = scim("GET", "/Users")

    body = response.get_json()
    assert body["schemas"] == [LIST]
    assert body["totalResults"] == 2
    assert sorted(user_names(response)) == ["alice@example.com", "bob@example.com"]


def test_search_post_filters_with_a_search_request_body(scim):
    create(scim, "alice@example.com")
    bob = create(scim, "bob@example.com")

    response = scim(
        "POST",
        "/Users/.search",
        json={"schemas": [SEARCH], "filter": 'userName eq "BOB@example.com"', "count": 10},
    )

    assert response.status_code == 200
    assert response.mimetype == SCIM_JSON
    body = response.get_json()
    assert body["totalResults"] == 1
    assert [r["id"] for r in body["Resources"]] == [bob["id"]]


def test_put_replaces_the_user_and_clears_what_is_absent(scim):
    user = scim("POST", "/Users", json=FULL).get_json()

    response = scim(
        "PUT",
        f"/Users/{user['id']}",
        json={"schemas": [USER], "userName": "bjensen@example.com", "title": "Director"},
    )

    assert response.status_code == 200
    body = fetch(scim, user["id"])
    assert body["title"] == "Director"
    for cleared in ("name", "displayName", "externalId", "emails", ENTERPRISE):
        assert cleared not in body
    assert body["schemas"] == [USER]
    assert body["meta"]["version"] == 'W/"2"'


def test_put_without_active_clears_it_but_leaves_the_member_deactivated(scim, session):
    """RFC 7644 §3.5.1: what a PUT leaves out is cleared, so `active` is no longer in the
    resource; but deactivation is always explicit, so the member stays deactivated (no
    seat, no access) until the IdP sets active again."""
    user = create(scim)
    patch(scim, user["id"], {"op": "replace", "path": "active", "value": False})

    scim("PUT", f"/Users/{user['id']}", json={"schemas": [USER], "userName": user["userName"]})

    assert "active" not in fetch(scim, user["id"])
    session.expire_all()
    member = session.scalar(select(Membership).where(Membership.scim_id == user["id"]))
    assert (member.active, member.licensed) == (False, False)
    patch(scim, user["id"], {"op": "add", "path": "active", "value": True})
    assert fetch(scim, user["id"])["active"] is True


def test_delete_answers_204_and_the_user_is_gone(scim, session):
    user = create(scim)

    response = scim("DELETE", f"/Users/{user['id']}")

    assert response.status_code == 204
    assert response.get_data() == b""
    assert_scim_error(scim("GET", f"/Users/{user['id']}"), 404)
    assert_scim_error(scim("DELETE", f"/Users/{user['id']}"), 404)
    assert scim("GET", "/Users").get_json()["totalResults"] == 0


# --- Attributes ---------------------------------------------------------------------------


WHOLE = FULL | {
    "nickName": "Babs",
    "profileUrl": "https://login.example.com/bjensen",
    "userType": "Employee",
    "preferredLanguage": "en-US",
    "locale": "en-US",
    "timezone": "America/Los_Angeles",
    "emails": [
        {"value": "bjensen@example.com", "type": "work", "primary": True},
        {"value": "babs@jensen.test", "type": "home"},
        {"value": "b.jensen@other.test", "type": "other", "display": "Old address"},
    ],
    "phoneNumbers": [
        {"value": "tel:+1-201-555-0123", "type": "work", "primary": True},
        {"value": "+1 555 0100", "type": "mobile"},
    ],
    "ims": [{"value": "someaimhandle", "type": "aim"}],
    "photos": [
        {"value": "https://photos.example.com/profilephoto/72930000000Ccne/F", "type": "photo"}
    ],
    "addresses": [
        {
            "type": "work",
            "streetAddress": "100 Universal City Plaza",
            "locality": "Hollywood",
            "region": "CA",
            "postalCode": "91608",
            "country": "USA",
            "formatted": "100 Universal City Plaza\nHollywood, CA 91608 USA",
            "primary": True,
        },
        {"type": "home", "streetAddress": "456 Hollywood Blvd", "country": "USA"},
    ],
    "entitlements": [{"value": "full-access", "display": "Full access"}],
    "roles": [{"value": "tour-guide", "primary": True}],
    "x509Certificates": [{"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAwTjELMAkGA1UEBhMC"}],
}


def test_every_rfc_attribute_is_kept_and_read_back_as_written(scim):
    """SPEC F5: the whole resource (RFC 7643 §4.1, §4.3), including several emails,
    phone numbers and addresses, reads back exactly as written; the manager is not a
    user of this account, so it comes back as sent, without a `$ref`."""
    created = scim("POST", "/Users", json=WHOLE)
    assert created.status_code == 201, created.get_data(as_text=True)

    for body in (created.get_json(), fetch(scim, created.get_json()["id"])):
        served = {k: v for k, v in body.items() if k not in ("id", "meta", "groups")}
        assert served == WHOLE


def test_a_manager_who_is_a_user_of_the_account_gets_a_ref(scim):
    """The `$ref` the client can predict: the location of the user the value names."""
    boss = create(scim, "boss@example.com")
    user = scim(
        "POST",
        "/Users",
        json={
            "schemas": [USER, ENTERPRISE],
            "userName": "report@example.com",
            ENTERPRISE: {"manager": {"value": boss["id"]}},
        },
    ).get_json()

    for body in (user, fetch(scim, user["id"])):
        assert body[ENTERPRISE]["manager"] == {
            "value": boss["id"],
            "$ref": f"{scim.base}/Users/{boss['id']}",
        }


def test_manager_sent_as_a_bare_id_string_is_kept(scim):
    """Microsoft Entra ID sends the manager in PATCH as the id alone."""
    user = create(scim)

    response = patch(
        scim,
        user["id"],
        {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": "boss-123"},
    )

    assert response.status_code == 200, response.get_data(as_text=True)
    assert fetch(scim, user["id"])[ENTERPRISE]["manager"]["value"] == "boss-123"


def test_manager_sent_with_path_manager_and_a_list_is_kept(scim):
    """Entra ID's documented update ("Example 5"): no URN, a list of one reference."""
    user = create(scim)
    boss = create(scim, "boss@example.com")

    response = patch(
        scim,
        user["id"],
        {
            "op": "Add",
            "path": "manager",
            "value": [{"$ref": f"http://.../scim/Users/{boss['id']}", "value": boss["id"]}],
        },
    )

    assert response.status_code == 200, response.get_data(as_text=True)
    assert fetch(scim, user["id"])[ENTERPRISE]["manager"]["value"] == boss["id"]
    patch(scim, user["id"], {"op": "Remove", "path": "manager"})
    assert ENTERPRISE not in fetch(scim, user["id"])


def test_manager_sent_as_an_empty_string_clears_it(scim):
    user = create(scim, **{"schemas": [USER, ENTERPRISE], ENTERPRISE: {"manager": "boss-1"}})

    patch(scim, user["id"], {"op": "Replace", "path": f"{ENTERPRISE}:manager", "value": ""})

    assert ENTERPRISE not in fetch(scim, user["id"])


@pytest.fixture
def grouped(scim) -> tuple[dict, dict]:
    """A user added to a group through POST /Groups."""
    user = create(scim)
    response = scim(
        "POST",
        "/Groups",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Tour Guides",
            "members": [{"value": user["id"]}],
        },
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return user, response.get_json()


def test_groups_show_the_groups_the_user_was_added_to(scim, grouped):
    user, group = grouped

    [membership] = fetch(scim, user["id"])["groups"]

    assert membership["value"] == group["id"]
    assert membership["display"] == "Tour Guides"
    assert membership["$ref"].endswith(f"/Groups/{group['id']}")


def test_groups_are_in_list_responses_too(scim, grouped):
    _, group = grouped

    [listed] = scim("GET", "/Users").get_json()["Resources"]

    assert [g["value"] for g in listed["groups"]] == [group["id"]]


def test_patch_cannot_set_groups(scim, grouped):
    user, group = grouped

    response = patch(
        scim, user["id"], {"op": "replace", "path": "groups", "value": [{"value": "other"}]}
    )

    assert assert_scim_error(response, 400)["scimType"] == "mutability"
    after = fetch(scim, user["id"])
    assert [g["value"] for g in after["groups"]] == [group["id"]]
    assert after["meta"]["version"] == 'W/"1"'


def test_put_with_groups_ignores_them(scim, grouped):
    """Read-only attributes in a PUT are ignored (RFC 7644 §3.5.1)."""
    user, group = grouped

    response = scim(
        "PUT",
        f"/Users/{user['id']}",
        json={"schemas": [USER], "userName": user["userName"], "groups": [{"value": "x"}]},
    )

    assert response.status_code == 200, response.get_data(as_text=True)
    assert [g["value"] for g in fetch(scim, user["id"])["groups"]] == [group["id"]]


def _stored_anywhere(text: str) -> list[str]:
    """The tables (of every table in the database) whose rows contain `text`."""
    found = []
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            if any(text in repr(tuple(row)) for row in conn.execute(table.select())):
                found.append(table.name)
    return found


def test_password_is_accepted_never_returned_and_never_stored(scim):
    created = scim(
        "POST",
        "/Users",
        json={"schemas": [USER], "userName": "pw@example.com", "password": "Marker-Pw-1"},
    )
    user_id = created.get_json()["id"]
    replaced = scim(
        "PUT",
        f"/Users/{user_id}",
        json={"schemas": [USER], "userName": "pw@example.com", "password": "Marker-Pw-2"},
    )
    patched = patch(scim, user_id, {"op": "replace", "path": "password", "value": "Marker-Pw-3"})
    asked = scim("GET", f"/Users/{user_id}?attributes=password,userName")

    for response in (created, replaced, patched, asked):
        assert response.status_code in (200, 201), response.get_data(as_text=True)
        assert "password" not in response.get_json()
        assert "Marker-Pw" not in response.get_data(as_text=True)
    assert _stored_anywhere("Marker-Pw") == []


def test_an_attribute_no_schema_declares_is_accepted_and_dropped(scim):
    """The robustness principle for a stray core attribute (no schema has it)."""
    response = scim(
        "POST",
        "/Users",
        json={"schemas": [USER], "userName": "bjensen@example.com", "favouriteColour": "teal"},
    )

    assert response.status_code == 201, response.get_data(as_text=True)
    assert "favouriteColour" not in str(fetch(scim, response.get_json()["id"]))


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_attributes_of_an_extension_we_do_not_serve_are_400_not_dropped(scim, session, method):
    """SPEC F5: an Okta custom extension would otherwise vanish without a word."""
    user = create(scim)
    custom = "urn:okta:custom:1.0:User"
    body = {"schemas": [USER, custom], "userName": "other", custom: {"badge": "B-42"}}
    if method == "PATCH":
        body = {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "add", "path": f"{custom}:badge", "value": "B-42"}],
        }
    path = "/Users" if method == "POST" else f"/Users/{user['id']}"

    error = assert_scim_error(scim(method, path, json=body), 400)

    assert custom in error["detail"] and "/Schemas" in error["detail"]
    assert error["scimType"] == ("invalidPath" if method == "PATCH" else "invalidValue")
    assert fetch(scim, user["id"]) == user
    assert memberships(session) == 2


def test_patch_of_an_attribute_no_schema_declares_changes_nothing(scim):
    user = create(scim)

    response = patch(scim, user["id"], {"op": "add", "path": "favouriteColour", "value": "teal"})

    assert response.status_code == 200, response.get_data(as_text=True)
    body = fetch(scim, user["id"])
    assert "favouriteColour" not in body
    assert body["meta"]["version"] == 'W/"1"'


@pytest.mark.parametrize(
    "user_name",
    [
        "jdoe",
        "DOMAIN\\jdoe",
        "Jöns Ünïcødé 山田",
        "first last",
        "j.doe+scim@example.com",
        "x" * 512,
    ],
)
def test_any_user_name_is_accepted_as_sent(scim, user_name):
    created = create(scim, user_name)

    assert fetch(scim, created["id"])["userName"] == user_name


def test_user_name_over_512_characters_is_400(scim, session):
    response = scim("POST", "/Users", json={"schemas": [USER], "userName": "x" * 513})

    assert assert_scim_error(response, 400)["scimType"] == "invalidValue"
    assert memberships(session) == 1  # the owner only


@pytest.mark.parametrize("user_name", [..., None, "", "   "])
def test_missing_or_empty_user_name_is_400(scim, session, user_name):
    body = {"schemas": [USER], "displayName": "Nameless"}
    if user_name is not ...:
        body["userName"] = user_name

    response = scim("POST", "/Users", json=body)

    assert assert_scim_error(response, 400)["scimType"] == "invalidValue"
    assert memberships(session) == 1


def test_put_with_empty_user_name_is_400_and_keeps_the_user(scim):
    user = create(scim)

    response = scim("PUT", f"/Users/{user['id']}", json={"schemas": [USER], "userName": ""})

    assert assert_scim_error(response, 400)["scimType"] == "invalidValue"
    assert fetch(scim, user["id"]) == user


def test_user_name_is_unique_whatever_its_case(scim, session):
    create(scim, "BJensen")

    response = scim("POST", "/Users", json={"schemas": [USER], "userName": "bjensen"})

    assert assert_scim_error(response, 409)["scimType"] == "uniqueness"
    assert user_names(scim("GET", "/Users")) == ["BJensen"]


def test_renaming_onto_another_users_name_is_409(scim):
    create(scim, "alice")
    bob = create(scim, "bob")

    response = scim("PUT", f"/Users/{bob['id']}", json={"schemas": [USER], "userName": "ALICE"})

    assert assert_scim_error(response, 409)["scimType"] == "uniqueness"
    assert fetch(scim, bob["id"])["userName"] == "bob"


def test_external_id_is_unique(scim):
    create(scim, "alice", externalId="00u42")

    response = scim(
        "POST", "/Users", json={"schemas": [USER], "userName": "bob", "externalId": "00u42"}
    )

    assert assert_scim_error(response, 409)["scimType"] == "uniqueness"
    assert user_names(scim("GET", "/Users")) == ["alice"]


# --- attributes / excludedAttributes ------------------------------------------------------


def test_get_with_attributes_returns_those_and_id_and_schemas(scim):
    user = scim("POST", "/Users", json=FULL).get_json()

    body = fetch(scim, f"{user['id']}?attributes=userName,name.givenName")

    assert set(body) == {"schemas", "id", "userName", "name"}
    assert body["id"] == user["id"]
    assert USER in body["schemas"]
    assert body["userName"] == "bjensen@example.com"
    assert body["name"] == {"givenName": "Barbara"}


def test_get_with_excluded_attributes_leaves_those_out_but_never_id(scim):
    user = scim("POST", "/Users", json=FULL).get_json()

    body = fetch(scim, f"{user['id']}?excludedAttributes=emails,name,id,{ENTERPRISE}")

    assert body["id"] == user["id"]
    assert body["schemas"]
    assert body["userName"] == "bjensen@example.com"
    for left_out in ("emails", "name", ENTERPRISE):
        assert left_out not in body


def test_get_with_an_enterprise_attribute(scim):
    user = scim("POST", "/Users", json=FULL).get_json()

    body = fetch(scim, f"{user['id']}?attributes={ENTERPRISE}:department")

    assert body[ENTERPRISE] == {"department": "Tour Operations"}
    assert set(body) == {"schemas", "id", ENTERPRISE}


def test_list_with_attributes(scim):
    create(scim, "alice", title="Guide")
    create(scim, "bob", title="Driver")

    body = scim("GET", "/Users?attributes=title&sortBy=userName").get_json()

    assert [set(r) for r in body["Resources"]] == [{"schemas", "id", "title"}] * 2
    assert [r["title"] for r in body["Resources"]] == ["Guide", "Driver"]


def test_search_with_excluded_attributes(scim):
    create(scim, "alice", title="Guide")

    body = scim(
        "POST",
        "/Users/.search",
        json={"schemas": [SEARCH], "excludedAttributes": ["meta", "title"]},
    ).get_json()

    [resource] = body["Resources"]
    assert "meta" not in resource and "title" not in resource
    assert resource["userName"] == "alice"


def test_create_honours_attributes(scim):
    response = scim("POST", "/Users?attributes=userName", json=FULL)

    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"schemas", "id", "userName"}
    assert response.headers["Location"].endswith(f"/Users/{body['id']}")


@pytest.mark.parametrize(
    "query",
    ["attributes=no..such", "attributes=userName&excludedAttributes=title", "attributes=%00"],
)
def test_create_with_bad_attributes_parameter_is_400_and_creates_nobody(scim, session, query):
    """The response's shape is checked before anything is written: the create commits
    before its body is built, so a bad `attributes` found then would leave the user
    created behind a 400."""
    before = memberships(session)

    response = scim("POST", f"/Users?{query}", json=FULL)

    assert_scim_error(response, 400)
    assert memberships(session) == before
    found = scim("GET", '/Users?filter=userName eq "bjensen@example.com"').get_json()
    assert found["totalResults"] == 0


def test_patch_honours_excluded_attributes(scim):
    user = scim("POST", "/Users", json=FULL).get_json()

    response = patch(
        scim,
        f"{user['id']}?excludedAttributes=emails,name",
        {"op": "replace", "path": "title", "value": "Director"},
    )

    assert response.status_code == 200
    body = response.get_json()
    assert body["title"] == "Director"
    assert body["id"] == user["id"]
    assert "emails" not in body and "name" not in body


# --- ETags --------------------------------------------------------------------------------

WRITES = [
    ("PUT", {"schemas": [USER], "userName": "renamed"}),
    (
        "PATCH",
        {"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "title", "value": "T"}]},
    ),
    ("DELETE", None),
]


@pytest.mark.parametrize(("method", "body"), WRITES)
@pytest.mark.parametrize("if_match", ['W/"1"', '"1"', "*", 'W/"9", W/"1"'])
def test_if_match_with_the_current_version_or_star_passes(scim, method, body, if_match):
    user = create(scim)

    response = scim(method, f"/Users/{user['id']}", json=body, headers={"If-Match": if_match})

    assert response.status_code in (200, 204), response.get_data(as_text=True)


@pytest.mark.parametrize(("method", "body"), WRITES)
def test_if_match_with_a_stale_version_is_412_and_changes_nothing(scim, method, body):
    user = create(scim)
    patch(scim, user["id"], {"op": "add", "path": "displayName", "value": "Babs"})
    current = fetch(scim, user["id"])

    response = scim(method, f"/Users/{user['id']}", json=body, headers={"If-Match": 'W/"1"'})

    assert_scim_error(response, 412)
    assert fetch(scim, user["id"]) == current


def test_if_none_match_with_the_current_version_is_304_without_body(scim):
    user = create(scim)

    response = scim("GET", f"/Users/{user['id']}", headers={"If-None-Match": 'W/"1"'})

    assert response.status_code == 304
    assert response.get_data() == b""
    assert response.headers["ETag"] == 'W/"1"'


def test_if_none_match_with_an_old_version_returns_the_user(scim):
    user = create(scim)
    patch(scim, user["id"], {"op": "add", "path": "title", "value": "T"})

    response = scim("GET", f"/Users/{user['id']}", headers={"If-None-Match": 'W/"1"'})

    assert response.status_code == 200
    assert response.get_json()["title"] == "T"
    assert response.headers["ETag"] == 'W/"2"'


def test_version_increases_with_each_change(scim):
    user = create(scim)
    versions = [user["meta"]["version"]]

    for title in ("One", "Two"):
        response = patch(scim, user["id"], {"op": "replace", "path": "title", "value": title})
        versions.append(response.headers["ETag"])
    response = scim("PUT", f"/Users/{user['id']}", json={"schemas": [USER], "userName": "b"})
    versions.append(response.headers["ETag"])

    assert versions == ['W/"1"', 'W/"2"', 'W/"3"', 'W/"4"']
    assert fetch(scim, user["id"])["meta"]["version"] == 'W/"4"'


def test_last_modified_moves_with_a_change(scim):
    user = create(scim)

    changed = patch(scim, user["id"], {"op": "add", "path": "title", "value": "T"}).get_json()

    assert changed["meta"]["created"] == user["meta"]["created"]
    assert changed["meta"]["lastModified"] > user["meta"]["lastModified"]


# --- Errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("raw", ['{"userName": ', "not json", "{'a': 1}", ""])
def test_invalid_json_is_400_invalid_syntax(scim, method, raw):
    user = create(scim)
    path = "/Users" if method == "POST" else f"/Users/{user['id']}"

    response = scim(method, path, data=raw, content_type=SCIM_JSON)

    assert assert_scim_error(response, 400)["scimType"] == "invalidSyntax"
    assert fetch(scim, user["id"]) == user


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("body", [[{"userName": "x"}], "x", 42, None, True])
def test_body_that_is_not_an_object_is_400(scim, method, body):
    user = create(scim)
    path = "/Users" if method == "POST" else f"/Users/{user['id']}"

    response = scim(method, path, json=body)

    assert assert_scim_error(response, 400)["scimType"] == "invalidSyntax"


@pytest.mark.parametrize("schemas", [["urn:example:Widget"], [ENTERPRISE], [PATCH_OP]])
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_schemas_without_the_user_schema_is_400_invalid_syntax(scim, session, method, schemas):
    user = create(scim)
    path = "/Users" if method == "POST" else f"/Users/{user['id']}"

    response = scim(method, path, json={"schemas": schemas, "userName": "other"})

    assert assert_scim_error(response, 400)["scimType"] == "invalidSyntax"
    assert fetch(scim, user["id"]) == user
    assert memberships(session) == 2


def test_schemas_that_is_not_a_list_is_400_invalid_value(scim):
    response = scim("POST", "/Users", json={"schemas": USER, "userName": "x"})

    assert assert_scim_error(response, 400)["scimType"] == "invalidValue"


def test_missing_schemas_is_tolerated(scim):
    """scim2-models tolerates an omitted `schemas` (it asserts nothing against the model);
    a peer's request without one is read as the endpoint's resource."""
    response = scim("POST", "/Users", json={"userName": "lenient"})

    assert response.status_code == 201
    assert response.get_json()["schemas"] == [USER]


@pytest.mark.parametrize("schemas", [[USER], ["urn:example:Other"]])
def test_patch_without_the_patch_op_schema_is_400_invalid_syntax(scim, schemas):
    user = create(scim)

    response = scim(
        "PATCH",
        f"/Users/{user['id']}",
        json={"schemas": schemas, "Operations": [{"op": "add", "path": "title", "value": "T"}]},
    )

    assert assert_scim_error(response, 400)["scimType"] == "invalidSyntax"
    assert fetch(scim, user["id"]) == user


@pytest.mark.parametrize(
    "extra",
    [
        {"userName": 5},
        {"emails": "bjensen@example.com"},
        {"emails": [{"value": "a@example.com", "primary": True}, {"value": "b", "primary": True}]},
        {"name": "Barbara"},
        {"active": "maybe"},
        {"title": "x" * 513},
        {"displayName": "nul\x00byte"},
    ],
)
def test_values_of_the_wrong_type_or_size_are_400_invalid_value(scim, session, extra):
    response = scim("POST", "/Users", json={"schemas": [USER], "userName": "bjensen"} | extra)

    assert assert_scim_error(response, 400)["scimType"] == "invalidValue"
    assert memberships(session) == 1


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("GET", None),
        ("PUT", {"schemas": [USER], "userName": "x"}),
        ("PATCH", {"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "title"}]}),
        ("DELETE", None),
    ],
)
@pytest.mark.parametrize(
    "user_id", ["no-such-user", "7", "2f6c0a53-0000-4000-8000-000000000000", "a%00b", "%00"]
)
def test_unknown_id_is_404(scim, method, body, user_id):
    assert_scim_error(scim(method, f"/Users/{user_id}", json=body), 404)


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("GET", None),
        ("PUT", {"schemas": [USER], "userName": "x"}),
        (
            "PATCH",
            {"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "title", "value": "T"}]},
        ),
        ("DELETE", None),
    ],
)
@pytest.mark.parametrize("suffix", ["x", "-0000", "%20%20y", "%00"])
def test_an_id_with_anything_after_it_is_404(scim, method, body, suffix):
    """The stored id is 36 characters; a longer one used to be cut to 36 and name it, and
    a NUL byte (which PostgreSQL refuses in a query) was a 500 there."""
    user = create(scim)

    response = scim(method, f"/Users/{user['id']}{suffix}", json=body)

    assert_scim_error(response, 404)
    assert fetch(scim, user["id"]) == user


ODD_BODIES = [
    {"schemas": [USER], "userName": ["a"]},
    {"schemas": [USER], "userName": {"a": 1}},
    {"schemas": [USER], "userName": "x", "emails": [None]},
    {"schemas": [USER], "userName": "x", "emails": [{"value": 5}]},
    {"schemas": [USER], "userName": "x", "emails": [{"primary": "yes"}]},
    {"schemas": [USER], "userName": "x", ENTERPRISE: "dept"},
    {"schemas": [USER], "userName": "x", ENTERPRISE: {"manager": 5}},
    {"schemas": [USER], "userName": "x", ENTERPRISE: {"manager": {"value": ["a"]}}},
    {"schemas": [USER], "userName": "x", "meta": {"version": 5}},
    {"schemas": [USER], "userName": "x", "id": {"nested": True}},
    {"schemas": [5], "userName": "x"},
    {"schemas": [USER], "userName": "\ud800"},
    {"schemas": [USER], "userName": "x", "externalId": "e" * 10_000},
    {"schemas": [USER], "userName": "x", "name": {"givenName": 1.5}},
    {"schemas": [PATCH_OP], "Operations": "replace"},
    {"schemas": [PATCH_OP], "Operations": [{"op": "explode", "path": "title"}]},
    {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title[["}]},
    {"schemas": [PATCH_OP], "Operations": [{"op": "remove"}]},
    {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "userName", "value": ""}]},
    {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "id", "value": "new"}]},
    {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"emails": 5}}]},
    {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": "x"}]},
]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("body", ODD_BODIES, ids=range(len(ODD_BODIES)))
def test_odd_bodies_never_give_a_500(scim, method, body):
    """Whatever the IdP sends: a success or a SCIM 4xx error, never a server error."""
    user = create(scim)
    path = "/Users" if method == "POST" else f"/Users/{user['id']}"

    response = scim(method, path, json=body)

    if response.status_code >= 400:
        assert_scim_error(response, response.status_code)
        assert 400 <= response.status_code < 500
        assert fetch(scim, user["id"]) == user
    else:
        assert response.status_code in (200, 201)


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("POST", {"schemas": [USER], "userName": "\ud800"}),
        ("PUT", {"schemas": [USER], "userName": "ok", "displayName": "a\udfffb"}),
        (
            "PATCH",
            {
                "schemas": [PATCH_OP],
                "Operations": [{"op": "add", "path": "title", "value": "\ud83d"}],
            },
        ),
    ],
)
def test_a_lone_surrogate_is_400_invalid_value(scim, method, body):
    """JSON can escape half a surrogate pair, which no database can store: was a 500."""
    user = create(scim)
    path = "/Users" if method == "POST" else f"/Users/{user['id']}"

    response = scim(method, path, json=body)

    assert assert_scim_error(response, 400)["scimType"] == "invalidValue"
    assert fetch(scim, user["id"]) == user


@pytest.mark.parametrize(
    "attributes",
    [
        {"userName": "nul\x00name"},
        {"userName": "jdoe@exam\x00ple.com"},
        {"externalId": "00u\x00"},
        {"emails": [{"value": "nul\x00@example.com", "primary": True}]},
        {"name": {"givenName": "Bar\x00bara"}},
        {"schemas": [USER, ENTERPRISE], ENTERPRISE: {"manager": "boss\x00"}},
        {"nickName": "\x00"},
        {"addresses": [{"locality": "Nul\x00ville"}]},
    ],
)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_a_nul_character_is_400_invalid_value(scim, session, method, attributes):
    """PostgreSQL refuses NUL in text: matching and uniqueness queries with it were 500s."""
    user = create(scim)
    body = {"schemas": [USER], "userName": "other"} | attributes
    if method == "PATCH":
        value = {k: v for k, v in attributes.items() if k != "schemas"}
        body = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": value}]}
    path = "/Users" if method == "POST" else f"/Users/{user['id']}"

    response = scim(method, path, json=body)

    error = assert_scim_error(response, 400)
    assert (error["scimType"], "NUL" in error["detail"]) == ("invalidValue", True)
    assert fetch(scim, user["id"]) == user
    assert memberships(session) == 2


@pytest.mark.parametrize(
    ("attributes", "named"),
    [({"favouriteColour": "\x00"}, "favouriteColour"), ({"password": "pw\x00\ud800"}, "password")],
)
def test_a_nul_character_anywhere_in_a_body_is_400_naming_where(scim, session, attributes, named):
    """The body is checked once, on the way in (serialize.check_input), before anyone
    knows which attributes are kept: a NUL in an unknown attribute or the (never stored)
    password is refused as well, with the place named, and nothing is created."""
    response = scim("POST", "/Users", json={"schemas": [USER], "userName": "a"} | attributes)

    error = assert_scim_error(response, 400)
    assert error["scimType"] == "invalidValue"
    assert error["detail"] == f"{named} contains a NUL character."
    assert memberships(session) == 1


# --- Tenant isolation ---------------------------------------------------------------------


@pytest.fixture
def other(scim, other_issued):
    """Requests with the other account's token to the other account's connector URL."""

    def send(method, path, **kwargs):
        return scim(
            method,
            path,
            token=other_issued.token,
            connector_id=other_issued.connector.public_id,
            **kwargs,
        )

    return send


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("GET", None),
        ("PUT", {"schemas": [USER], "userName": "stolen"}),
        (
            "PATCH",
            {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]},
        ),
        ("DELETE", None),
    ],
)
def test_another_accounts_token_cannot_reach_our_users(scim, other, method, body):
    user = scim("POST", "/Users", json=FULL).get_json()

    response = other(method, f"/Users/{user['id']}", json=body)

    assert_scim_error(response, 404)
    assert fetch(scim, user["id"]) == user


@pytest.mark.parametrize(
    "query",
    [
        "",
        '?filter=userName eq "bjensen@example.com"',
        '?filter=id eq "{id}"',
        '?filter=externalId eq "00u1bjensen"',
        '?filter=emails.value co "bjensen"',
    ],
)
def test_another_accounts_lists_never_show_our_users(scim, other, query):
    user = scim("POST", "/Users", json=FULL).get_json()
    other("POST", "/Users", json={"schemas": [USER], "userName": "theirs@example.org"})

    listed = other("GET", "/Users" + query.format(id=user["id"]))
    searched = other(
        "POST",
        "/Users/.search",
        json={"schemas": [SEARCH], "filter": query.partition("=")[2].format(id=user["id"])}
        if query
        else {"schemas": [SEARCH]},
    )

    for response in (listed, searched):
        assert response.status_code == 200, response.get_data(as_text=True)
        assert user["id"] not in response.get_data(as_text=True)
        assert "bjensen" not in response.get_data(as_text=True)


def test_the_same_user_name_may_exist_in_another_account(scim, other):
    """Uniqueness is per account: the other account's user does not clash with ours."""
    create(scim, "shared-name")

    response = other("POST", "/Users", json={"schemas": [USER], "userName": "shared-name"})

    assert response.status_code == 201
    assert user_names(scim("GET", "/Users")) == ["shared-name"]
