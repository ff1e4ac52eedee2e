"""Property-based tests (hypothesis): whatever an IdP, or something pretending to be one,
sends as a filter, a PATCH or a new user, the answer is never a 500, and a refused write
leaves nothing behind (SPEC F5 "no input ever produces a 500")."""

from __future__ import annotations

import json
from datetime import UTC, timedelta, timezone
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from models import Membership, User
from tests.scim_api.conftest import SCIM_JSON, assert_scim_error

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # the users and groups are shared on purpose
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


# --- Strategies ----------------------------------------------------------------------------

# Characters that have broken parsers, LIKE patterns, drivers or databases before.
SPECIAL = ["\x00", '"', "\\", "%", "_", "\ud800", "\udfff", "é", "É", "ß", "İ", "\u0301"]
SPECIAL += ["😀", "'", "[", "]", "(", ")", " ", "\n", "\t", ".", ":", "$", "\u2028", "\ufeff"]
chars = st.one_of(st.characters(), st.sampled_from(SPECIAL))
short_text = st.text(chars, max_size=20)
long_text = st.text(chars, min_size=500, max_size=1500)
any_text = st.one_of(short_text, short_text, short_text, long_text)

ATTRIBUTES = [
    "userName",
    "displayName",
    "title",
    "active",
    "externalId",
    "id",
    "name",
    "name.givenName",
    "name.familyName",
    "name.formatted",
    "emails",
    "emails.value",
    "emails.type",
    "emails.primary",
    "emails.display",
    "groups",
    "groups.value",
    "groups.display",
    "groups.type",
    "groups.$ref",
    "members",
    "members.value",
    "members.display",
    "members.type",
    "meta.created",
    "meta.lastModified",
    "meta.resourceType",
    "meta.version",
    "meta.location",
    "schemas",
    "password",
    f"{USER}:userName",
    f"{USER}:emails.value",
    f"{USER}:name.familyName",
    f"{GROUP}:displayName",
    f"{GROUP}:members.value",
    f"{ENTERPRISE}:department",
    f"{ENTERPRISE}:employeeNumber",
    f"{ENTERPRISE}:manager",
    f"{ENTERPRISE}:manager.value",
    f"{ENTERPRISE}:manager.displayName",
]
JUNK_ATTRIBUTES = [
    "foo",
    "department",
    "emails.foo",
    "name.foo.bar",
    "urn:foo:bar",
    "urn:ietf:params:scim:schemas:core:2.0:User:foo",
    "$ref",
    "0abc",
]
real_attribute = st.sampled_from(ATTRIBUTES)
attribute = st.one_of(
    real_attribute,
    real_attribute,
    real_attribute,
    real_attribute.map(str.upper),
    st.sampled_from(JUNK_ATTRIBUTES),
    st.from_regex(r"[A-Za-z$_0-9][\w$.:\-]{0,15}", fullmatch=True),
)
operator = st.sampled_from(["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "EQ", "Sw"])
offset = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
date = st.one_of(
    st.datetimes(timezones=st.one_of(st.none(), st.just(UTC), offset)).map(
        lambda d: f'"{d.isoformat()}"'
    ),
    st.sampled_from(['"2020-01-01T00:00:00Z"', '"2020-13-45T99:00:00Z"', '"2020"', '"Z"']),
)
operand = st.one_of(
    short_text.map(json.dumps),  # valid escapes, including \u0000 and \ud800
    short_text.map(json.dumps),
    st.sampled_from(['"alice@example.com"', '"Engineer"', '"work"', '"%"', '"_"', '"É"']),
    st.text(chars, max_size=20).map(lambda s: f'"{s}"'),  # raw: stray quotes, backslashes
    long_text.map(json.dumps),
    date,
    st.sampled_from(["true", "false", "null", "True", "NULL", "1e400", "-0", "0x1", '""']),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(chars, max_size=5),  # no value, or junk
)
comparison = st.one_of(
    st.tuples(attribute, operator, operand).map(" ".join),
    attribute.map(lambda a: f"{a} pr"),
)
filter_expression = st.recursive(
    comparison,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or", "AND", "Or"]), inner).map(" ".join),
        inner.map(lambda f: f"not ({f})"),
        inner.map(lambda f: f"({f})"),
        st.tuples(attribute, inner).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(attribute, inner, attribute).map(lambda t: f"{t[0]}[{t[1]}].{t[2]}"),
    ),
    max_leaves=8,
)


@st.composite
def damaged(draw, strategy):
    """A mostly well-formed string with a character inserted or removed somewhere."""
    text = draw(strategy)
    at = draw(st.integers(0, len(text)))
    if draw(st.booleans()) and text:
        return text[: max(at - 1, 0)] + text[at:]
    return text[:at] + draw(st.sampled_from(["(", ")", "[", "]", '"', " ", "\\", "."])) + text[at:]


any_filter = st.one_of(
    filter_expression,
    filter_expression,
    damaged(filter_expression),
    st.text(chars, max_size=200),  # fully random
)

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    any_text,
    st.sampled_from(["True", "False", "true", "", "null", "@", "a@example.com"]),
)
KEYS = ["value", "type", "primary", "display", "givenName", "familyName", "formatted"]
KEYS += ["$ref", "Value", "members", "title", "userName", "displayName", "active", "manager"]
keys = st.one_of(st.sampled_from(KEYS), short_text)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=8,
)
op_name = st.one_of(
    st.sampled_from(["add", "replace", "remove", "Add", "Replace", "REMOVE", "rEpLaCe"]),
    st.sampled_from(["move", "copy", "test", "", "delete", "ADD "]),
    short_text,
    st.integers(),
    st.none(),
)


def value_filter_path(heads: list[str]):
    """`head[filter]` and `head[filter].sub`, the filter from the grammar above."""
    return st.one_of(
        st.tuples(st.sampled_from(heads), filter_expression).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(st.sampled_from(heads), filter_expression, attribute).map(
            lambda t: f"{t[0]}[{t[1]}].{t[2]}"
        ),
    )


USER_PATHS = [
    "userName",
    "title",
    "displayName",
    "active",
    "externalId",
    "name",
    "name.givenName",
    "name.familyName",
    "emails",
    "emails.value",
    "emails.type",
    'emails[type eq "work"]',
    'emails[type eq "work"].value',
    "emails[primary eq true].value",
    'emails[value co "@"]',
    'emails[type eq "work" and value ew ".com"].display',
    ENTERPRISE,
    f"{ENTERPRISE}:department",
    f"{ENTERPRISE}:manager",
    f"{ENTERPRISE}:manager.value",
    f"{USER}:title",
    f"{USER}:name.familyName",
    "groups",
    'groups[value eq "x"]',
    "id",
    "meta",
    "meta.created",
    "schemas",
    "password",
    "members",
    "foo",
    "name.foo",
    "emails[",
    "emails[type eq]",
    "emails[foo eq 1]",
    "",
    "urn:foo:bar",
    "x" * 600,
]
GROUP_PATHS = [
    "displayName",
    "externalId",
    "members",
    "members.value",
    'members[value eq "x"]',
    'members[type eq "User"]',
    "members[display pr]",
    f"{GROUP}:members",
    f"{GROUP}:displayName",
    "id",
    "meta",
    "schemas",
    "userName",
    "foo",
    "members[",
    "",
]


printable = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=20)
any_op = st.sampled_from(["add", "replace", "Add", "Replace", "REPLACE"])
remove = st.sampled_from(["remove", "Remove", "REMOVE"])


def op(name, path, value=None):
    """One PATCH operation; no path or no value when given None."""
    parts = {"op": name}
    if path is not None:
        parts["path"] = path
    if value is not None:
        parts["value"] = value
    return st.fixed_dictionaries(parts)


def user_operations(user_ids: list[str]):
    """Operations Okta and Entra ID really send, so that many PATCHes change something."""
    email = st.from_regex(r"[a-z]{1,8}@(example\.com|example\.org)", fullmatch=True)
    text_path = st.sampled_from(
        ["title", "displayName", "name.givenName", "externalId", f"{ENTERPRISE}:department"]
    )
    return st.one_of(
        op(any_op, text_path, st.one_of(printable, st.sampled_from(["Engineer", "Ünïcödé"]))),
        op(any_op, st.just("active"), st.sampled_from([True, False, "True", "False"])),
        op(any_op, st.just('emails[type eq "work"].value'), email),
        op(
            any_op, st.just("emails"), st.lists(st.fixed_dictionaries({"value": email}), max_size=2)
        ),
        op(any_op, st.just("userName"), st.one_of(printable, email)),
        op(any_op, st.just(f"{ENTERPRISE}:manager"), st.sampled_from(user_ids)),
        op(
            any_op,
            None,
            st.fixed_dictionaries(
                {},
                optional={
                    "title": printable,
                    "name.familyName": printable,
                    f"{ENTERPRISE}:department": printable,
                    f"{USER}:displayName": printable,
                    "active": st.sampled_from(["True", "False"]),
                },
            ),
        ),
        op(
            remove,
            st.sampled_from(
                ["title", 'emails[type eq "work"]', "name.givenName", f"{ENTERPRISE}:manager"]
            ),
        ),
    )


def group_operations(user_ids: list[str]):
    members = st.lists(st.sampled_from(user_ids).map(lambda i: {"value": i}), max_size=2)
    member_path = st.sampled_from(user_ids).map(lambda i: f'members[value eq "{i}"]')
    return st.one_of(
        op(any_op, st.just("members"), members),
        op(remove, member_path),
        op(remove, st.just("members"), st.one_of(members, st.none())),
        op(any_op, st.sampled_from(["displayName", "externalId"]), printable),
        op(any_op, None, st.fixed_dictionaries({"displayName": printable, "members": members})),
        op(any_op, None, st.fixed_dictionaries({"externalId": printable})),
    )


def patch_bodies(paths: list[str], heads: list[str], realistic):
    path = st.one_of(
        st.sampled_from(paths),
        value_filter_path(heads),
        attribute,
        st.integers(),
    )
    random_operation = st.fixed_dictionaries(
        {"op": op_name}, optional={"path": st.one_of(path, path, st.none()), "value": json_value}
    )
    operation = st.one_of(realistic, realistic, realistic, random_operation)
    envelope = st.fixed_dictionaries(
        {"schemas": st.just([PATCH_OP]), "Operations": st.lists(operation, max_size=4)}
    )
    return st.one_of(
        envelope,
        envelope,
        envelope,
        envelope,
        st.fixed_dictionaries(
            {"Operations": st.one_of(st.lists(random_operation, max_size=2), json_value)},
            optional={"schemas": json_value},
        ),
        st.dictionaries(keys, json_value, max_size=3),
    )


def mostly(valid, junk):
    """`valid` three times in four."""
    return st.one_of(valid, valid, valid, junk)


email_value = mostly(
    st.one_of(
        st.from_regex(
            r"[a-z0-9.+_-]{1,12}@(example\.com|example\.org|other\.test)", fullmatch=True
        ),
        st.emails().map(str),
    ),
    st.one_of(any_text, json_value),
)


new_user = st.fixed_dictionaries(
    {
        "schemas": mostly(st.sampled_from([[USER], [USER, ENTERPRISE]]), json_value),
        "userName": mostly(st.one_of(email_value, printable), json_value),
    },
    optional={
        "name": mostly(
            st.fixed_dictionaries(
                {},
                optional={"givenName": mostly(printable, json_scalar), "familyName": any_text},
            ),
            json_value,
        ),
        "displayName": mostly(printable, st.one_of(any_text, json_scalar)),
        "title": mostly(printable, json_scalar),
        "externalId": mostly(printable, json_scalar),
        "active": mostly(st.sampled_from([True, False, "True", "False"]), json_scalar),
        "emails": mostly(
            st.lists(
                st.fixed_dictionaries(
                    {"value": email_value},
                    optional={
                        "type": mostly(st.sampled_from(["work", "home"]), json_scalar),
                        "primary": mostly(st.booleans(), json_scalar),
                    },
                ),
                max_size=3,
            ),
            json_value,
        ),
        ENTERPRISE: mostly(
            st.fixed_dictionaries(
                {},
                optional={
                    "department": mostly(printable, json_scalar),
                    "manager": st.one_of(printable, st.just({"value": "x"}), json_value),
                },
            ),
            json_value,
        ),
        "password": json_scalar,
        "groups": json_value,
        "id": json_scalar,
        "meta": json_value,
    },
).flatmap(
    lambda body: st.dictionaries(keys, json_value, max_size=2).map(lambda extra: extra | body)
)


# --- Helpers -------------------------------------------------------------------------------


def assert_no_server_error(response) -> None:
    """Below 500, and an error is a SCIM Error body with its status."""
    text = response.get_data(as_text=True)
    assert response.status_code < 500, text[:500]
    assert response.mimetype == SCIM_JSON
    if response.status_code >= 400:
        assert_scim_error(response, response.status_code)


def read(scim, path: str) -> dict:
    response = scim("GET", path)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def create(scim, kind: str, body: dict) -> dict:
    response = scim("POST", f"/{kind}", json=body)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


@pytest.fixture
def resources(scim) -> dict:
    """Two users (one with emails and the enterprise extension) and a group of both."""
    alice = create(
        scim,
        "Users",
        {
            "schemas": [USER, ENTERPRISE],
            "userName": "alice@example.com",
            "name": {"givenName": "Alice", "familyName": "Smith"},
            "title": "Engineer",
            "emails": [{"value": "alice@example.com", "type": "work", "primary": True}],
            ENTERPRISE: {"department": "Sales"},
        },
    )
    bob = create(scim, "Users", {"schemas": [USER], "userName": "bob", "externalId": "b-1"})
    group = create(
        scim,
        "Groups",
        {
            "schemas": [GROUP],
            "displayName": "Engineers",
            "members": [{"value": alice["id"]}, {"value": bob["id"]}],
        },
    )
    return {"alice": alice, "bob": bob, "group": group}


# --- Properties ----------------------------------------------------------------------------


@PROPERTY
@given(
    scim_filter=any_filter,
    kind=st.sampled_from(["Users", "Groups"]),
    how=st.sampled_from(["GET", ".search"]),
)
def test_any_filter_gets_a_list_or_invalid_filter(scim, resources, scim_filter, kind, how):
    """200, or 400 invalidFilter/invalidValue: never a 500 (GET sends raw surrogates as the
    invalid UTF-8 they encode to; .search sends them JSON-escaped)."""
    if how == "GET":
        encoded = quote(scim_filter, safe="", errors="surrogatepass")
        response = scim("GET", f"/{kind}?filter={encoded}")
    else:
        response = scim(
            "POST", f"/{kind}/.search", json={"schemas": [SEARCH], "filter": scim_filter}
        )

    assert_no_server_error(response)
    if response.status_code != 200:
        body = assert_scim_error(response, 400)
        assert body.get("scimType") in ("invalidFilter", "invalidValue"), body
    else:
        assert response.get_json()["totalResults"] >= 0


@PROPERTY
@given(data=st.data())
def test_any_patch_of_a_user_succeeds_or_changes_nothing(scim, resources, data):
    """An error leaves the user exactly as it was (same data, same meta.version); a success
    answers with the user as a GET then shows it."""
    ids = [resources["alice"]["id"], resources["bob"]["id"]]
    path = f"/Users/{resources['alice']['id']}"
    heads = ["emails", "groups", "name", "foo"]
    body = data.draw(patch_bodies(USER_PATHS, heads, user_operations(ids)))
    before = read(scim, path)

    response = scim("PATCH", path, json=body)

    assert_no_server_error(response)
    after = read(scim, path)
    if response.status_code >= 400:
        assert after == before
    else:
        assert response.get_json() == after


GROUP_QUERIES = ["", "", "?excludedAttributes=members", "?attributes=displayName,members"]


def without_meta(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k != "meta"}


@PROPERTY
@given(data=st.data(), query=st.sampled_from(GROUP_QUERIES))
def test_any_patch_of_a_group_succeeds_or_changes_nothing(scim, resources, data, query):
    """An error leaves the group exactly as it was (same data, same meta.version); a success
    is 204 with the new version as ETag, or, asked for attributes, 200 with the group as a
    GET with the same query then shows it; a change of data always changes the version."""
    ids = [resources["alice"]["id"], resources["bob"]["id"]]
    path = f"/Groups/{resources['group']['id']}"
    heads = ["members", "displayName", "foo"]
    body = data.draw(patch_bodies(GROUP_PATHS, heads, group_operations(ids)))
    before = read(scim, path)

    response = scim("PATCH", path + query, json=body)

    assert_no_server_error(response)
    after = read(scim, path)
    if response.status_code >= 400:
        assert after == before
        return
    if query:
        assert response.status_code == 200
        assert response.get_json() == read(scim, path + query)
    else:
        assert response.status_code == 204
        assert response.get_data() == b""
    assert response.headers["ETag"] == after["meta"]["version"]
    if without_meta(after) != without_meta(before):
        assert after["meta"]["version"] != before["meta"]["version"]


def counts(session) -> tuple[int, int]:
    """Memberships (SCIM users among them) and people, as the requests committed them."""
    session.rollback()  # end the test's own transaction: see the latest commits
    return (
        session.scalar(select(func.count()).select_from(Membership)),
        session.scalar(select(func.count()).select_from(User)),
    )


@PROPERTY
@given(body=new_user)
def test_any_new_user_is_created_or_leaves_nothing(scim, session, resources, body):
    """A refused POST /Users creates no user, membership or person; an accepted one is
    deleted again so that seats do not run out."""
    before = counts(session)

    response = scim("POST", "/Users", json=body)

    assert_no_server_error(response)
    if response.status_code == 201:
        deleted = scim("DELETE", f"/Users/{response.get_json()['id']}")
        assert deleted.status_code == 204, deleted.get_data(as_text=True)
    else:
        assert counts(session) == before


# --- What the properties found -------------------------------------------------------------
# Failures the properties found once, kept as plain examples.


def test_long_display_name_of_a_new_person_is_not_a_500(scim):
    """A verified-domain user becomes a person named after the displayName, whose column
    is shorter than ours (a 500 on PostgreSQL once)."""
    response = scim(
        "POST",
        "/Users",
        json={"schemas": [USER], "userName": "long@example.com", "displayName": "d" * 300},
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["displayName"] == "d" * 300


@pytest.mark.parametrize("domain", ["example.com", "example.org"])  # verified, invited
def test_email_longer_than_320_characters_is_not_a_500(scim, domain):
    """Longer than any email address can be, and than the person's column (a 500 on
    PostgreSQL once)."""
    user_name = f"{'a' * 400}@{domain}"
    response = scim("POST", "/Users", json={"schemas": [USER], "userName": user_name})
    assert_no_server_error(response)
    if response.status_code == 201:  # kept, as a user without a usable email
        assert response.get_json()["userName"] == user_name
