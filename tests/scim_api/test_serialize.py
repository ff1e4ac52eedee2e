"""blueprints.scim_api.serialize without HTTP, an app or a database: what a validated
body becomes (the membership columns, the email rows, the stored document), what a row
becomes on the way out (the JSON, `meta`, ETags), attributes/excludedAttributes, and the
If-Match / If-None-Match preconditions (RFC 7643, RFC 7644 §3.9 and §3.14)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from scim2_models import Context, PreconditionFailedException, SCIMException

from blueprints.scim_api import query, serialize
from blueprints.scim_api.schemas import (
    CORE_GROUP,
    CORE_USER,
    ENTERPRISE,
    MAX_LENGTH,
    MAX_VALUES,
    Group,
    UserResource,
)
from blueprints.scim_api.serialize import UserState
from tests.scim_api.conftest import refusal

BASE = "https://id.example.test/scim/v2/c-1"
REFUSED = (400, "invalidValue")
ACME = "urn:example:params:scim:schemas:extension:acme:2.0:User"
CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
MODIFIED = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


def user(**attributes) -> UserResource:
    """A User as POST /Users validates it (both schemas listed, as IdPs send)."""
    body = {"schemas": [CORE_USER, ENTERPRISE], "userName": "bjensen", **attributes}
    return serialize.validate(UserResource, body, Context.RESOURCE_CREATION_REQUEST)


def group(**attributes) -> Group:
    body = {"schemas": [CORE_GROUP], "displayName": "Tour Guides", **attributes}
    return serialize.validate(Group, body, Context.RESOURCE_CREATION_REQUEST)


def state(document: dict | None, active: bool = True, version: int = 3) -> UserState:
    return UserState(7, 1, "u-1", document, active, version, CREATED, MODIFIED)


def team(**overrides) -> SimpleNamespace:
    values = {
        "scim_id": "g-1",
        "display_name": "Tour Guides",
        "external_id": None,
        "version": 2,
        "created_at": CREATED,
        "updated_at": MODIFIED,
    }
    return SimpleNamespace(**(values | overrides))


# --- user_columns ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_name", "key"),
    [
        ("bjensen", "bjensen"),
        ("BJensen", "bjensen"),
        ("  bjensen  ", "bjensen"),
        ("Barbara.Jensen@Example.COM", "barbara.jensen@example.com"),
        ("ÉLODIE", "élodie"),
        ("E\u0301lodie", "\u00e9lodie"),  # decomposed É: the same key as the composed one
    ],
)
def test_user_name_key_is_folded_and_trimmed(user_name, key):
    """userName is caseExact=false (RFC 7643 §4.1.1): the unique key is folded (NFC, lower
    case, no surrounding spaces), while the userName itself is kept as written."""
    columns, _ = serialize.user_columns(user(userName=user_name))

    assert columns["user_name_key"] == key
    assert columns["user_name"] == user_name
    assert columns["scim_resource"]["userName"] == user_name


@pytest.mark.parametrize("user_name", ["", " ", "\t \n"])
def test_user_name_is_required_when_blank(user_name):
    assert refusal(lambda: serialize.user_columns(user(userName=user_name))) == (
        400,
        "invalidValue",
    )


def test_user_name_is_required_when_missing():
    def create():
        body = {"schemas": [CORE_USER]}
        serialize.validate(UserResource, body, Context.RESOURCE_CREATION_REQUEST)

    assert refusal(create) == (400, "invalidValue")


def test_user_columns_copy_what_is_looked_up_often():
    resource = user(
        externalId="EXT-1",
        displayName=" Babs Jensen ",
        name={"givenName": "Barbara", "familyName": "Jensen"},
    )

    columns, _ = serialize.user_columns(resource)

    assert {k: v for k, v in columns.items() if k != "scim_resource"} == {
        "user_name": "bjensen",
        "user_name_key": "bjensen",
        "external_id": "EXT-1",  # caseExact (RFC 7643 §3.1): not folded
        "display_name": " Babs Jensen ",
        "display_name_key": "babs jensen",
        "given_name": "Barbara",
        "family_name": "Jensen",
    }


def test_user_columns_clear_what_the_resource_omits():
    """PUT semantics: an attribute the body leaves out is cleared, not kept."""
    columns, emails = serialize.user_columns(user())

    assert columns["external_id"] is None
    assert columns["display_name"] is None and columns["display_name_key"] is None
    assert columns["given_name"] is None and columns["family_name"] is None
    assert emails == []


def test_email_rows_keep_order_and_fold_the_value():
    resource = user(
        emails=[
            {"value": "Babs@Example.COM", "type": "work", "primary": True, "display": "Work"},
            {"value": "babs@home.test", "type": "home"},
        ]
    )

    _, emails = serialize.user_columns(resource)

    assert emails == [
        {
            "position": 0,
            "value": "Babs@Example.COM",
            "value_key": "babs@example.com",
            "type": "work",
            "primary": True,
            "display": "Work",
        },
        {
            "position": 1,
            "value": "babs@home.test",
            "value_key": "babs@home.test",
            "type": "home",
            "primary": False,
            "display": None,
        },
    ]


@pytest.mark.parametrize(
    ("primaries", "refused"),
    [
        ([True, True], REFUSED),
        ([True, True, False], REFUSED),
        ([True, False], None),
        ([None, True], None),
        ([None, None], None),
    ],
)
def test_at_most_one_primary_email(primaries, refused):
    """RFC 7643 §2.4: the primary attribute value "true" MUST appear no more than once."""
    emails = [
        {"value": f"e{i}@example.test", **({} if p is None else {"primary": p})}
        for i, p in enumerate(primaries)
    ]

    assert refusal(lambda: serialize.user_columns(user(emails=emails))) == refused


@pytest.mark.parametrize(
    ("body_active", "default", "stored"),
    [
        (None, None, None),  # nobody said: the document doesn't either
        (None, True, True),  # a create's default is written down
        (False, False, False),
        (True, True, True),
    ],
)
def test_active_is_in_the_document_when_said(body_active, default, stored):
    attributes = {} if body_active is None else {"active": body_active}

    columns, _ = serialize.user_columns(user(**attributes), active=default)

    assert columns["scim_resource"].get("active") == stored


@pytest.mark.parametrize(
    ("attributes", "where"),
    [
        ({"userName": "u" * (MAX_LENGTH + 1)}, "userName"),
        ({"externalId": "x" * (MAX_LENGTH + 1)}, "externalId"),
        ({"displayName": "d" * (MAX_LENGTH + 1)}, "displayName"),
        ({"name": {"givenName": "g" * (MAX_LENGTH + 1)}}, "givenName"),
        ({"name": {"familyName": "f" * (MAX_LENGTH + 1)}}, "familyName"),
        ({"emails": [{"value": "e" * (MAX_LENGTH + 1)}]}, "emails.value"),
        ({"emails": [{"value": "e@x.test", "display": "d" * (MAX_LENGTH + 1)}]}, "display"),
    ],
)
def test_columns_longer_than_they_hold_are_refused(attributes, where):
    with pytest.raises(SCIMException) as raised:
        serialize.user_columns(user(**attributes))

    assert raised.value.scim_type == "invalidValue"
    assert where in raised.value.detail and str(MAX_LENGTH) in raised.value.detail


@pytest.mark.parametrize(
    ("attributes", "column"),
    [
        ({"userName": "u" * MAX_LENGTH}, "user_name"),
        ({"externalId": "x" * MAX_LENGTH}, "external_id"),
        ({"displayName": "d" * MAX_LENGTH}, "display_name"),
        ({"name": {"givenName": "g" * MAX_LENGTH}}, "given_name"),
        ({"name": {"familyName": "f" * MAX_LENGTH}}, "family_name"),
    ],
)
def test_columns_as_long_as_they_hold_are_kept(attributes, column):
    columns, _ = serialize.user_columns(user(**attributes))

    assert len(columns[column]) == MAX_LENGTH


def test_email_as_long_as_a_column_holds_is_kept():
    emails = [{"value": "e" * MAX_LENGTH, "display": "d" * MAX_LENGTH}]

    _, rows = serialize.user_columns(user(emails=emails))

    assert (rows[0]["value"], rows[0]["display"]) == ("e" * MAX_LENGTH, "d" * MAX_LENGTH)


# --- document -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("password", "t1meMa$heen"),  # RFC 7643 §4.1.1: never returned, so never kept
        ("id", "client-chosen-id"),  # ours (RFC 7643 §3.1: issued by the provider)
        ("meta", {"resourceType": "User", "location": "https://elsewhere.test/"}),
        ("groups", [{"value": "g-1", "display": "Sneaked in"}]),  # read-only
    ],
)
def test_document_never_keeps(attribute, value):
    doc = serialize.document(user(**{attribute: value}))

    assert attribute not in doc
    assert doc["userName"] == "bjensen"


@pytest.mark.parametrize(
    "attributes",
    [
        {"emails": []},
        {"phoneNumbers": []},
        {"name": {}},
        {ENTERPRISE: {}},
        {ENTERPRISE: {"manager": None}},
        {"title": None},
    ],
)
def test_document_omits_unassigned_values(attributes):
    """RFC 7643 §2.5: null, an empty array or object is unassigned; nothing is kept."""
    assert serialize.document(user(**attributes)) == {"userName": "bjensen"}


@pytest.mark.parametrize(
    ("attributes", "kept"),
    [
        ({"title": "Tour Guide"}, {"title": "Tour Guide"}),
        ({"nickName": "Babs"}, {"nickName": "Babs"}),
        ({"active": False}, {"active": False}),  # false is a value, not an absence
        (
            {"name": {"formatted": "Ms. Barbara J Jensen III", "middleName": "Jane"}},
            {"name": {"formatted": "Ms. Barbara J Jensen III", "middleName": "Jane"}},
        ),
        (
            {"addresses": [{"type": "work", "locality": "Hollywood", "country": "US"}]},
            {"addresses": [{"type": "work", "locality": "Hollywood", "country": "US"}]},
        ),
        (
            {"phoneNumbers": [{"value": "555-555-5555", "type": "work"}]},
            {"phoneNumbers": [{"value": "555-555-5555", "type": "work"}]},
        ),
        (
            {ENTERPRISE: {"employeeNumber": "701984", "manager": {"value": "m-1"}}},
            {ENTERPRISE: {"employeeNumber": "701984", "manager": {"value": "m-1"}}},
        ),
        ({ENTERPRISE: {"manager": "m-2"}}, {ENTERPRISE: {"manager": {"value": "m-2"}}}),
    ],
)
def test_document_keeps_what_the_client_wrote(attributes, kept):
    assert serialize.document(user(**attributes)) == {"userName": "bjensen", **kept}


NUL, SURROGATE = "a\x00b", "ok\udfffok"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        pytest.param({"userName": NUL}, "userName", id="userName"),
        pytest.param({"title": SURROGATE}, "title", id="title"),
        pytest.param({"name": {"givenName": NUL}}, "name.givenName", id="name.givenName"),
        pytest.param(
            {"addresses": [{"locality": "x"}, {"locality": SURROGATE}]},
            "addresses[1].locality",
            id="addresses.locality",
        ),
        pytest.param(
            {"emails": [{"value": "e@x.test", "display": NUL}]},
            "emails[0].display",
            id="emails.display",
        ),
        pytest.param(
            {ENTERPRISE: {"department": SURROGATE}},
            f"{ENTERPRISE}.department",
            id="enterprise.department",
        ),
        pytest.param(
            {ENTERPRISE: {"manager": {"value": NUL}}},
            f"{ENTERPRISE}.manager.value",
            id="enterprise.manager",
        ),
        pytest.param({"members": [{"value": SURROGATE}]}, "members[0].value", id="members.value"),
        pytest.param(
            {"urn:example:ext": {"ignored": [NUL]}},
            "urn:example:ext.ignored[0]",
            id="an-attribute-we-drop",
        ),
        pytest.param({f"title{SURROGATE}": "x"}, "A key of", id="a-key"),
    ],
)
def test_input_refused_when_no_database_holds_it(body, where):
    """A NUL (PostgreSQL refuses it in text) or a lone surrogate (not Unicode), anywhere
    in a body: a 400 that says where, not a 500 from the driver."""
    with pytest.raises(SCIMException) as raised:
        serialize.check_input({"schemas": [CORE_USER], **body})

    assert raised.value.status == 400 and raised.value.scim_type == "invalidValue"
    assert where in raised.value.detail


@pytest.mark.parametrize(
    "body",
    [
        {"userName": "Élodie 😀"},  # an astral character is a surrogate *pair* in JSON: fine
        {"userName": "", "emails": [], "name": {}},
        {"active": False, "count": 3, "members": [{"value": "u-1", "display": None}]},
        "plain text",
        ["a", {"b": ["c"]}],
    ],
)
def test_input_storable_passes(body):
    assert refusal(lambda: serialize.check_input(body)) is None


def test_input_deeply_nested_is_checked_without_recursion():
    """A body nested far deeper than Python's recursion limit is still a 400, not a 500."""
    body: dict = {"x": "\x00"}
    for _ in range(5000):
        body = {"x": [body]}

    assert refusal(lambda: serialize.check_input(body)) == (400, "invalidValue")


def _url(length: int) -> str:
    head = "https://cdn.example.test/"
    return head + "p" * (length - len(head))


@pytest.mark.parametrize(
    ("make", "limit", "step"),
    [
        (lambda n: {"title": "t" * n}, MAX_LENGTH, 1),
        (lambda n: {"name": {"formatted": "f" * n}}, MAX_LENGTH, 1),
        (lambda n: {"addresses": [{"streetAddress": "s" * n}]}, MAX_LENGTH, 1),
        (lambda n: {"phoneNumbers": [{"value": "5" * n}]}, MAX_LENGTH, 1),
        (lambda n: {ENTERPRISE: {"department": "d" * n}}, MAX_LENGTH, 1),
        (lambda n: {ENTERPRISE: {"manager": {"value": "m" * n}}}, MAX_LENGTH, 1),
        (lambda n: {"profileUrl": _url(n)}, 2048, 1),
        (lambda n: {"photos": [{"value": _url(n)}]}, 2048, 1),
        # base64 comes in blocks of 4 characters
        (lambda n: {"x509Certificates": [{"value": "QUJD" * (n // 4)}]}, 16384, 4),
    ],
    ids=[
        "title",
        "name.formatted",
        "addresses.streetAddress",
        "phoneNumbers.value",
        "enterprise.department",
        "enterprise.manager.value",
        "profileUrl",
        "photos.value",
        "x509Certificates.value",
    ],
)
def test_document_bounds_each_string(make, limit, step):
    """Strings are bounded by their attribute: MAX_LENGTH, or more for what is long by
    nature (a URL, a certificate). At the bound it is kept; past it, a 400."""
    at_limit = make(limit)
    assert serialize.document(user(**at_limit)) == {"userName": "bjensen", **at_limit}

    assert refusal(lambda: serialize.document(user(**make(limit + step)))) == (
        400,
        "invalidValue",
    )


@pytest.mark.parametrize(
    ("attribute", "item"),
    [
        ("phoneNumbers", lambda i: {"value": f"555-{i:04}"}),
        ("emails", lambda i: {"value": f"e{i}@example.test"}),
        ("addresses", lambda i: {"locality": f"Town {i}"}),
        ("roles", lambda i: {"value": f"role-{i}"}),
        ("entitlements", lambda i: {"value": f"entitlement-{i}"}),
        ("ims", lambda i: {"value": f"im-{i}"}),
    ],
)
def test_document_bounds_the_values_of_a_multi_valued_attribute(attribute, item):
    most = [item(i) for i in range(MAX_VALUES)]
    too_many = [item(i) for i in range(MAX_VALUES + 1)]

    assert len(serialize.document(user(**{attribute: most}))[attribute]) == MAX_VALUES
    assert refusal(lambda: serialize.document(user(**{attribute: too_many}))) == (
        400,
        "invalidValue",
    )


# --- refuse_unknown_schemas, text, prune, usable_id -------------------------------


@pytest.mark.parametrize(
    ("key", "schemas", "refused"),
    [
        ("userName", serialize.USER_SCHEMAS, None),
        (ENTERPRISE, serialize.USER_SCHEMAS, None),
        (ENTERPRISE.upper(), serialize.USER_SCHEMAS, None),  # URNs compare without case
        (f"{CORE_USER}:userName", serialize.USER_SCHEMAS, None),
        (f"{ENTERPRISE}:department", serialize.USER_SCHEMAS, None),
        (ACME, serialize.USER_SCHEMAS, REFUSED),
        ("URN:example:ext", serialize.USER_SCHEMAS, REFUSED),
        (f"{ENTERPRISE}X", serialize.USER_SCHEMAS, REFUSED),  # a prefix is not the schema
        # Entra ID's "…:enterprise:2.0User" (no colon) names no schema we serve.
        (ENTERPRISE.replace(":User", "User"), serialize.USER_SCHEMAS, REFUSED),
        ("displayName", serialize.GROUP_SCHEMAS, None),
        (f"{CORE_GROUP}:members", serialize.GROUP_SCHEMAS, None),
        (ENTERPRISE, serialize.GROUP_SCHEMAS, REFUSED),  # a User extension on a Group
    ],
)
def test_unknown_extension_attributes_are_refused(key, schemas, refused):
    """Data in an extension schema we don't serve is a 400 invalidValue (not dropped
    without a word); a known schema, or an attribute that is no URN, passes."""
    body = {"schemas": [CORE_USER], key: {"anything": "x"}}

    assert refusal(lambda: serialize.refuse_unknown_schemas(body, schemas)) == refused


def test_unknown_schema_merely_listed_is_not_refused():
    """Entra ID lists schemas it writes nothing into; only data counts."""
    body = {
        "schemas": [CORE_USER, "urn:ietf:params:scim:schemas:extension:enterprise:2.0User"],
        "userName": "bjensen",
    }

    assert refusal(lambda: serialize.refuse_unknown_schemas(body, serialize.USER_SCHEMAS)) is None


@pytest.mark.parametrize("value", [None, "", "x" * MAX_LENGTH, "Élodie"])
def test_text_kept(value):
    assert serialize.text(value, "displayName") == value


def test_text_refused_when_longer_than_a_column():
    with pytest.raises(SCIMException) as raised:
        serialize.text("x" * (MAX_LENGTH + 1), "displayName")

    assert raised.value.scim_type == "invalidValue"
    assert raised.value.detail.startswith("displayName is longer than 512")


@pytest.mark.parametrize(
    ("value", "pruned"),
    [
        ({"a": None}, {}),
        ({"a": []}, {}),
        ({"a": {}}, {}),
        ({"a": {"b": None}}, {}),  # an object left empty is unassigned too
        ({"a": {"b": [], "c": 1}}, {"a": {"c": 1}}),
        ({"a": False, "b": 0, "c": ""}, {"a": False, "b": 0, "c": ""}),  # values, not absences
        ({"a": [{"b": None, "c": "x"}]}, {"a": [{"c": "x"}]}),
        ("scalar", "scalar"),
    ],
)
def test_prune(value, pruned):
    assert serialize.prune(value) == pruned


@pytest.mark.parametrize(
    ("scim_id", "usable"),
    [
        ("2819c223-7f76-453a-919d-413861904646", True),
        ("u-1", True),
        ("2819c223-7f76-453a-919d-413861904646x", False),  # longer than any id we issue
    ],
)
def test_usable_id(scim_id, usable):
    assert serialize.usable_id(scim_id) is usable


# --- user_payload ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "live", "shown"),
    [
        ({"userName": "bjensen", "active": True}, False, False),  # the live value wins
        ({"userName": "bjensen", "active": False}, True, True),
        ({"userName": "bjensen", "active": True}, True, True),
        ({"userName": "bjensen"}, False, None),  # never written: not invented
        ({"userName": "bjensen"}, True, None),
    ],
)
def test_payload_active_is_live_when_the_document_has_it(document, live, shown):
    payload = serialize.user_payload(state(document, active=live), [], BASE)

    assert payload.get("active") == shown
    assert ("active" in payload) is (shown is not None)


@pytest.mark.parametrize(
    ("manager", "managers", "shown"),
    [
        ({"value": "m-1"}, {"m-1"}, {"value": "m-1", "$ref": f"{BASE}/Users/m-1"}),
        ({"value": "m-1"}, set(), {"value": "m-1"}),  # not a user we know: no $ref
        ({"value": "m-2"}, {"m-1"}, {"value": "m-2"}),
        (
            {"value": "m-1", "$ref": "https://hr.example.test/people/m-1"},
            {"m-1"},
            {"value": "m-1", "$ref": "https://hr.example.test/people/m-1"},  # as written
        ),
        (
            {"value": "m-1", "displayName": "Jim"},
            {"m-1"},
            {"value": "m-1", "displayName": "Jim", "$ref": f"{BASE}/Users/m-1"},
        ),
    ],
)
def test_payload_manager_ref_only_for_known_managers(manager, managers, shown):
    document = {"userName": "bjensen", ENTERPRISE: {"department": "Tour", "manager": manager}}

    payload = serialize.user_payload(state(document), [], BASE, frozenset(managers))

    assert payload[ENTERPRISE] == {"department": "Tour", "manager": shown}


def test_payload_leaves_the_stored_document_alone():
    """The `$ref` is added to the answer, never written back into the stored document."""
    document = {"userName": "bjensen", ENTERPRISE: {"manager": {"value": "m-1"}}}

    serialize.user_payload(state(document), [("g-1", "Tour")], BASE, frozenset({"m-1"}))

    assert document == {"userName": "bjensen", ENTERPRISE: {"manager": {"value": "m-1"}}}


@pytest.mark.parametrize(
    ("document", "schemas"),
    [
        ({"userName": "bjensen"}, [CORE_USER]),
        ({"userName": "bjensen", ENTERPRISE: {"department": "Tour"}}, [CORE_USER, ENTERPRISE]),
    ],
)
def test_payload_lists_the_schemas_it_uses(document, schemas):
    """RFC 7643 §3: `schemas` names the extensions the resource holds."""
    assert serialize.user_payload(state(document), [], BASE)["schemas"] == schemas


@pytest.mark.parametrize(
    ("groups", "shown"),
    [
        ([], None),
        (
            [("g-1", "Tour Guides")],
            [{"value": "g-1", "$ref": f"{BASE}/Groups/g-1", "display": "Tour Guides"}],
        ),
        (
            [("g-1", "Tour Guides"), ("g-2", "Sales")],
            [
                {"value": "g-1", "$ref": f"{BASE}/Groups/g-1", "display": "Tour Guides"},
                {"value": "g-2", "$ref": f"{BASE}/Groups/g-2", "display": "Sales"},
            ],
        ),
    ],
)
def test_payload_groups(groups, shown):
    """RFC 7643 §4.1.2: a user's groups, each with its id, location and name; ours are
    direct memberships (teams do not nest)."""
    payload = serialize.user_payload(state({"userName": "bjensen"}), groups, BASE)

    if shown is None:
        assert "groups" not in payload
    else:
        assert payload["groups"] == [dict(g, type="direct") for g in shown]


def test_payload_meta():
    payload = serialize.user_payload(state({"userName": "bjensen"}, version=42), [], BASE)

    meta = payload["meta"]
    assert payload["id"] == "u-1"
    assert meta["resourceType"] == "User"
    assert meta["location"] == f"{BASE}/Users/u-1"
    assert meta["version"] == 'W/"42"'
    assert meta["created"].endswith("Z") and meta["lastModified"].endswith("Z")
    assert datetime.fromisoformat(meta["created"]) == CREATED
    assert datetime.fromisoformat(meta["lastModified"]) == MODIFIED


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(0))),
    ],
)
def test_timestamp_is_rfc3339_utc(moment):
    written = serialize.timestamp(moment)

    assert written.endswith("Z") and "+" not in written
    assert datetime.fromisoformat(written) == moment


def test_user_state_of_a_row():
    row = SimpleNamespace(
        id=7,
        account_id=1,
        scim_id="u-1",
        scim_resource={"userName": "bjensen"},
        active=False,
        version=5,
        created_at=CREATED,
        updated_at=MODIFIED,
        user_name="not a stored attribute of the state",
    )

    found = serialize.UserState.of(row)

    assert found == (7, 1, "u-1", {"userName": "bjensen"}, False, 5, CREATED, MODIFIED, None)
    assert found.groups is None  # to be read


# --- groups ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "columns"),
    [
        (
            {"displayName": "Tour Guides"},
            {"display_name": "Tour Guides", "display_name_key": "tour guides", "external_id": None},
        ),
        (
            {"displayName": " ÉQUIPE ", "externalId": "Ext-9"},
            {"display_name": " ÉQUIPE ", "display_name_key": "équipe", "external_id": "Ext-9"},
        ),
    ],
)
def test_group_columns(attributes, columns):
    assert serialize.group_columns(group(**attributes)) == columns


@pytest.mark.parametrize(
    "attributes",
    [
        {"displayName": " "},
        {"displayName": "d" * (MAX_LENGTH + 1)},
        {"externalId": "e" * (MAX_LENGTH + 1)},
    ],
)
def test_group_columns_refused(attributes):
    assert refusal(lambda: serialize.group_columns(group(**attributes))) == (
        400,
        "invalidValue",
    )


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ([], []),
        ([{"value": "u-1"}], [("u-1", None, None)]),
        ([{"value": " u-1 ", "display": "Babs", "type": "User"}], [("u-1", "Babs", "User")]),
        ([{"value": "u-1"}, {"value": "u-2"}], [("u-1", None, None), ("u-2", None, None)]),
    ],
)
def test_group_members(members, expected):
    assert serialize.group_members(group(members=members)) == expected


@pytest.mark.parametrize(
    "members",
    [
        [{"display": "Babs"}],  # no value: nobody would ever see this member
        [{"value": "  "}],
        [{"value": "u-1"}, {"display": "Babs"}],
        [{"value": "u-1", "display": "d" * (MAX_LENGTH + 1)}],
    ],
)
def test_group_members_refused(members):
    assert refusal(lambda: serialize.group_members(group(members=members))) == (
        400,
        "invalidValue",
    )


@pytest.mark.parametrize(
    ("external_id", "members", "expected_external", "expected_members"),
    [
        (None, None, None, None),
        ("Ext-9", [], "Ext-9", None),
        (
            None,
            [("u-1", "Babs"), ("u-2", None)],
            None,
            [
                {"value": "u-1", "$ref": f"{BASE}/Users/u-1", "type": "User", "display": "Babs"},
                {"value": "u-2", "$ref": f"{BASE}/Users/u-2", "type": "User"},
            ],
        ),
    ],
)
def test_group_payload(external_id, members, expected_external, expected_members):
    payload = serialize.group_payload(team(external_id=external_id), members, BASE)

    assert payload["schemas"] == [CORE_GROUP]
    assert payload["id"] == "g-1" and payload["displayName"] == "Tour Guides"
    assert payload.get("externalId") == expected_external
    assert payload.get("members") == expected_members
    assert None not in payload.values()
    assert payload["meta"] == {
        "resourceType": "Group",
        "created": "2026-01-02T03:04:05Z",
        "lastModified": "2026-03-04T05:06:07.890000Z",
        "location": f"{BASE}/Groups/g-1",
        "version": 'W/"2"',
    }


# --- render ---------------------------------------------------------------------------------


def _full_user_payload() -> dict:
    document = {
        "userName": "bjensen",
        "displayName": "Babs",
        "title": "Tour Guide",
        "active": True,
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": True}],
        ENTERPRISE: {"department": "Tour"},
    }
    return serialize.user_payload(state(document), [("g-1", "Tour Guides")], BASE)


@pytest.mark.parametrize(
    ("values", "keys"),
    [
        ({"attributes": "userName"}, {"schemas", "id", "userName"}),
        ({"attributes": "emails.value"}, {"schemas", "id", "emails"}),
        ({"attributes": "password"}, {"schemas", "id"}),
        ({"attributes": "userName,password"}, {"schemas", "id", "userName"}),
        (
            {"excludedAttributes": "groups,emails"},
            {"schemas", "id", "userName", "displayName", "title", "active", ENTERPRISE, "meta"},
        ),
        (
            {"excludedAttributes": "id"},  # returned "always" (RFC 7643 §7)
            {"schemas", "id", "userName", "displayName", "title", "active", "emails", "groups"}
            | {ENTERPRISE, "meta"},
        ),
        ({"attributes": f"{ENTERPRISE}:department"}, {"schemas", "id", ENTERPRISE}),
    ],
)
def test_render_user_attributes(values, keys):
    """RFC 7644 §3.9: `attributes` replaces the default set, `excludedAttributes` takes
    from it; `id` and `schemas` are always returned, `password` never."""
    params = query.response_parameters(UserResource, values)

    rendered = serialize.render(UserResource, _full_user_payload(), params)

    assert set(rendered) == keys
    assert "password" not in rendered


def test_render_sub_attribute_only():
    params = query.response_parameters(UserResource, {"attributes": "emails.value"})

    rendered = serialize.render(UserResource, _full_user_payload(), params)

    assert rendered["emails"] == [{"value": "bjensen@example.com"}]


def test_render_without_parameters_is_the_payload():
    payload = _full_user_payload()

    assert serialize.render(UserResource, payload, None) == payload
    params = query.search_request(UserResource, {"count": "5"})  # a list, no shaping
    assert serialize.render(UserResource, payload, params) == payload


def test_render_excluding_nothing_shown_equals_the_payload():
    """Both paths (served directly, rendered through scim2-models) give one document."""
    payload = _full_user_payload()
    params = query.response_parameters(UserResource, {"excludedAttributes": "nickName"})

    assert serialize.render(UserResource, payload, params) == payload


@pytest.mark.parametrize(
    ("values", "keys", "member"),
    [
        ({"attributes": "displayName"}, {"schemas", "id", "displayName"}, None),
        ({"attributes": "members.value"}, {"schemas", "id", "members"}, {"value": "u-1"}),
        (
            {"excludedAttributes": "members.display"},
            {"schemas", "id", "displayName", "members", "meta"},
            {"value": "u-1", "$ref": f"{BASE}/Users/u-1", "type": "User"},
        ),
        ({"excludedAttributes": "members"}, {"schemas", "id", "displayName", "meta"}, None),
    ],
)
def test_render_group_attributes(values, keys, member):
    payload = serialize.group_payload(team(), [("u-1", "Babs")], BASE)
    params = query.response_parameters(Group, values)

    rendered = serialize.render(Group, payload, params)

    assert set(rendered) == keys
    assert rendered.get("members") == (None if member is None else [member])


# --- preconditions (RFC 7644 §3.14, RFC 7232) -------------------------------------------


@pytest.mark.parametrize(
    ("header", "names_version_3"),
    [
        ('W/"3"', True),  # the ETag we issue
        ('"3"', True),  # its strong form
        (' W/"3" ', True),
        ("*", True),  # any current representation (RFC 7232 §3.1)
        ('W/"2", W/"3"', True),  # a list of tags
        ('"1","3"', True),
        ('W/"3",', True),
        ('W/"2"', False),  # an older version
        ('"2"', False),
        ('W/"33"', False),
        ('W/"2", "4"', False),
        ("W/3", False),  # not an entity-tag: unquoted
        ('"W/3"', False),
        ('w/"3"', False),  # "W/" is case-sensitive (RFC 7232 §2.3)
        ("", False),
    ],
)
def test_preconditions(header, names_version_3):
    """If-Match passes (and If-None-Match answers 304) when the header names the
    resource's version; otherwise If-Match is a 412 and If-None-Match a 200."""
    assert serialize.not_modified(3, header) is names_version_3
    if names_version_3:
        serialize.check_if_match(3, header)
    else:
        with pytest.raises(PreconditionFailedException) as raised:
            serialize.check_if_match(3, header)
        assert raised.value.status == 412
        assert 'W/"3"' in raised.value.detail  # the version to read again


def test_no_precondition_without_a_header():
    serialize.check_if_match(3, None)

    assert serialize.not_modified(3, None) is False


def test_list_response():
    """RFC 7644 §3.4.2: itemsPerPage is what this page holds, not what was asked."""
    body = serialize.list_response(12, 11, [{"id": "a"}, {"id": "b"}])

    assert body == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 12,
        "startIndex": 11,
        "itemsPerPage": 2,
        "Resources": [{"id": "a"}, {"id": "b"}],
    }
