"""Round trips as properties (hypothesis, SPEC F5 "what a client writes it reads back"):
any valid User or Group built from the schemas, POSTed, then PUT, then PATCHed with random
valid operations, reads back equal to what scim2-models makes of the same requests on its
own: the library validates the same bodies and applies the same PatchOp to the same
resource, and the server's answers and a fresh GET must match it.

What the server adds, and the expectation accounts for: `id`, `meta`, `groups` (users)
and `active: true` on a create that leaves it out; a member's `$ref` and `type` (groups).
"""

from __future__ import annotations

import base64
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scim2_models import Context, PatchOp

from blueprints.scim_api.schemas import PROVIDER, Group, UserResource

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SERVER_ADDED = ("id", "meta", "groups")

ROUND_TRIPS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_unique = itertools.count()

# --- Valid values, as the schemas describe them --------------------------------------------

# Any Unicode text a database can keep (no NUL, no lone surrogate), short.
text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=24
)
word = st.from_regex(r"[a-z][a-z0-9]{0,11}", fullmatch=True)
# Outside the account's verified domains: no person is matched or created.
email = st.builds(lambda a, b: f"{a}@{b}.test", word, word)
url = st.builds(lambda a, b: f"https://{a}.example.com/{b}", word, word)
kind = st.one_of(st.none(), st.sampled_from(["work", "home", "other", "mobile"]), word)
NAME_PARTS = [
    "formatted",
    "familyName",
    "givenName",
    "middleName",
    "honorificPrefix",
    "honorificSuffix",
]
ADDRESS_PARTS = ["formatted", "streetAddress", "locality", "region", "postalCode", "country"]
SINGLE = ["displayName", "nickName", "title", "userType", "preferredLanguage", "locale", "timezone"]
ENTERPRISE_PARTS = ["employeeNumber", "costCenter", "organization", "division", "department"]


def some_of(names: list[str], values=text, min_size: int = 1):
    """A dict holding some of `names`, each with a value."""
    return st.lists(st.sampled_from(names), min_size=min_size, unique=True).flatmap(
        lambda chosen: st.fixed_dictionaries({n: values for n in chosen})
    )


@st.composite
def entries(draw, value, extra: dict | None = None, max_size: int = 3):
    """A multi-valued attribute's values; at most one primary (RFC 7643 §2.4)."""
    found = []
    primary_at = draw(st.one_of(st.none(), st.integers(0, max_size - 1)))
    for i in range(draw(st.integers(1, max_size))):
        entry = {"value": draw(value)}
        if (t := draw(kind)) is not None:
            entry["type"] = t
        if draw(st.booleans()):
            entry["display"] = draw(text)
        if i == primary_at:
            entry["primary"] = True
        for key, strategy in (extra or {}).items():
            if draw(st.booleans()):
                entry[key] = draw(strategy)
        found.append(entry)
    return found


addresses = st.lists(
    st.tuples(some_of(ADDRESS_PARTS), kind).map(
        lambda pair: pair[0] | ({"type": pair[1]} if pair[1] else {})
    ),
    min_size=1,
    max_size=2,
)
certificate = st.binary(min_size=8, max_size=48).map(lambda b: base64.b64encode(b).decode())
MULTI = {
    "emails": entries(email),
    "phoneNumbers": entries(st.from_regex(r"\+?[0-9 -]{3,15}", fullmatch=True)),
    "ims": entries(word),
    "photos": entries(url),
    "addresses": addresses,
    "entitlements": entries(word),
    "roles": entries(text),
    "x509Certificates": entries(certificate),
}
enterprise = st.tuples(some_of(ENTERPRISE_PARTS, min_size=0), st.one_of(st.none(), text)).map(
    lambda pair: pair[0] | ({"manager": {"value": pair[1]}} if pair[1] else {})
)


@st.composite
def users(draw) -> dict:
    """A valid User resource as a client would write it."""
    body = {"schemas": [USER], "userName": f"{draw(word)}-{next(_unique)}"}
    if draw(st.booleans()):
        body["externalId"] = f"ext-{next(_unique)}"
    if draw(st.booleans()):
        body["name"] = draw(some_of(NAME_PARTS))
    body |= draw(some_of(SINGLE, min_size=0))
    if draw(st.booleans()):
        body["profileUrl"] = draw(url)
    if (active := draw(st.one_of(st.none(), st.booleans()))) is not None:
        body["active"] = active
    for attribute, strategy in MULTI.items():
        if draw(st.integers(0, 2)) == 0:
            body[attribute] = draw(strategy)
    extension = draw(st.one_of(st.none(), enterprise))
    if extension:
        body["schemas"] = [USER, ENTERPRISE]
        body[ENTERPRISE] = extension
    return body


PATHS_OF_TEXT = [*SINGLE, *(f"name.{p}" for p in NAME_PARTS)]
PATHS_OF_TEXT += [f"{ENTERPRISE}:{p}" for p in ENTERPRISE_PARTS]
REMOVABLE = [*PATHS_OF_TEXT, "name", "active", "profileUrl", *MULTI, ENTERPRISE]


@st.composite
def user_operations(draw) -> list[dict]:
    """One to three valid PATCH operations on a user, in the forms IdPs send."""
    found = []
    for _ in range(draw(st.integers(1, 3))):
        form = draw(st.integers(0, 7))
        if form == 0:
            op = {"op": draw(st.sampled_from(["add", "replace"])), "path": None}
            op["path"], op["value"] = draw(st.sampled_from(PATHS_OF_TEXT)), draw(text)
        elif form == 1:
            op = {"op": "remove", "path": draw(st.sampled_from(REMOVABLE))}
        elif form == 2:
            attribute = draw(st.sampled_from(list(MULTI)))
            value = draw(MULTI[attribute])
            op = {
                "op": draw(st.sampled_from(["add", "replace"])),
                "path": attribute,
                "value": value,
            }
        elif form == 3:
            attribute = draw(st.sampled_from(["emails", "phoneNumbers", "ims", "roles"]))
            op = {"op": "remove", "path": f'{attribute}[type eq "{draw(kind) or "work"}"]'}
        elif form == 4:  # Entra ID: created when no such email exists yet
            op = {"op": "replace", "path": 'emails[type eq "work"].value', "value": draw(email)}
        elif form == 5:  # path-less, with dotted and URN keys (Okta, Entra ID)
            keys = draw(
                st.lists(st.sampled_from(PATHS_OF_TEXT), min_size=1, max_size=3, unique=True)
            )
            op = {"op": "replace", "value": {k: draw(text) for k in keys}}
        elif form == 6:
            op = {"op": draw(st.sampled_from(["add", "replace"])), "path": "active"}
            op["value"] = draw(st.booleans())
        else:
            op = {"op": "add", "path": f"{ENTERPRISE}:manager", "value": {"value": draw(text)}}
        found.append(op)
    return found


# --- Expectations: what the library makes of the same requests -----------------------------


def validated(model, body: dict, context: Context):
    with PROVIDER:
        return model.model_validate(body, scim_ctx=context)


def shown(resource) -> dict:
    """A resource as a query response shows it, less what the server adds."""
    with PROVIDER:
        body = resource.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    return {k: v for k, v in body.items() if k not in SERVER_ADDED}


def served(response) -> dict:
    return {k: v for k, v in response.get_json().items() if k not in SERVER_ADDED}


def user_schemas(expected: dict) -> dict:
    """The extension's URN is listed exactly when the user has extension attributes."""
    expected["schemas"] = [USER, ENTERPRISE] if expected.get(ENTERPRISE) else [USER]
    expected.pop(ENTERPRISE, None) if not expected.get(ENTERPRISE) else None
    return expected


@given(body=users(), replacement=users(), operations=st.lists(user_operations(), max_size=3))
@ROUND_TRIPS
def test_any_user_reads_back_as_the_library_expects(scim, body, replacement, operations):
    created = scim("POST", "/Users", json=body)
    assert created.status_code == 201, created.get_data(as_text=True)
    user_id = created.get_json()["id"]
    try:
        expected = validated(UserResource, body, Context.RESOURCE_CREATION_REQUEST)
        if expected.active is None:
            expected.active = True  # the server's default, written into the resource
        for response in (created, scim("GET", f"/Users/{user_id}")):
            assert served(response) == user_schemas(shown(expected))

        replacement = dict(replacement, userName=body["userName"])
        replaced = scim("PUT", f"/Users/{user_id}", json=replacement)
        assert replaced.status_code == 200, replaced.get_data(as_text=True)
        expected = validated(UserResource, replacement, Context.RESOURCE_REPLACEMENT_REQUEST)
        for response in (replaced, scim("GET", f"/Users/{user_id}")):
            assert served(response) == user_schemas(shown(expected))

        for ops in operations:
            request = {"schemas": [PATCH_OP], "Operations": ops}
            patched = scim("PATCH", f"/Users/{user_id}", json=request)
            assert patched.status_code == 200, (ops, patched.get_data(as_text=True))
            operation = validated(PatchOp[UserResource], request, Context.RESOURCE_PATCH_REQUEST)
            with PROVIDER:
                operation.patch(expected)
            for response in (patched, scim("GET", f"/Users/{user_id}")):
                assert served(response) == user_schemas(shown(expected)), ops
    finally:
        assert scim("DELETE", f"/Users/{user_id}").status_code == 204


# --- Groups -------------------------------------------------------------------------------


@pytest.fixture
def pool(scim) -> list[str]:
    """Users a group's members are drawn from."""
    ids = []
    for n in range(4):
        body = {"schemas": [USER], "userName": f"pool-{n}", "active": False}
        response = scim("POST", "/Users", json=body)
        assert response.status_code == 201, response.get_data(as_text=True)
        ids.append(response.get_json()["id"])
    return ids


member_pick = st.tuples(st.integers(0, 3), st.one_of(st.none(), text))


@st.composite
def groups(draw) -> dict:
    body = {"schemas": [GROUP], "displayName": f"{draw(text)}-{next(_unique)}"}
    if draw(st.booleans()):
        body["externalId"] = f"gext-{next(_unique)}"
    picks = draw(st.lists(member_pick, max_size=4, unique_by=lambda p: p[0]))
    if picks:
        body["members"] = [("pick", i, d) for i, d in picks]
    return body


group_operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("add-members"),
            st.lists(member_pick, min_size=1, max_size=3, unique_by=lambda p: p[0]),
        ),
        st.tuples(st.just("remove-member"), st.integers(0, 3)),
        st.tuples(
            st.just("replace-members"), st.lists(member_pick, max_size=3, unique_by=lambda p: p[0])
        ),
        st.tuples(st.just("rename"), text),
    ),
    min_size=1,
    max_size=3,
)


def _members(picks, pool: list[str]) -> list[dict]:
    return [{"value": pool[i]} | ({"display": d} if d is not None else {}) for _, i, d in picks]


def _resolve(body: dict, pool: list[str]) -> dict:
    if "members" in body:
        body = dict(body, members=_members(body["members"], pool))
    return body


def _operation(step, pool: list[str]) -> dict:
    kind, value = step
    if kind == "add-members":
        return {
            "op": "add",
            "path": "members",
            "value": _members([(None, *p) for p in value], pool),
        }
    if kind == "remove-member":
        return {"op": "remove", "path": f'members[value eq "{pool[value]}"]'}
    if kind == "replace-members":
        return {
            "op": "replace",
            "path": "members",
            "value": _members([(None, *p) for p in value], pool),
        }
    return {"op": "replace", "path": "displayName", "value": f"{value}-{next(_unique)}"}


def one_entry_per_user(group) -> None:
    """A group holds a user once: where the library keeps two entries for one user added
    twice with different displays, the server keeps one, with the display last sent."""
    by_user: dict[str, object] = {}
    for member in group.members or []:
        kept = by_user.get(member.value)
        if kept is not None and member.display is None:
            member.display = kept.display
        by_user[member.value] = member
    group.members = list(by_user.values()) or None


def group_shown(group, base: str) -> dict:
    """The library's group, with what the server adds to each member ($ref, type);
    members compared in no particular order (RFC 7643 §2.4)."""
    body = shown(group)
    members = [
        m | {"$ref": f"{base}/Users/{m['value']}", "type": "User"} for m in body.get("members", [])
    ]
    if members:
        body["members"] = sorted(members, key=lambda m: m["value"])
    return body


def group_served(response) -> dict:
    body = served(response)
    if "members" in body:
        body["members"] = sorted(body["members"], key=lambda m: m["value"])
    return body


@given(body=groups(), replacement=groups(), steps=group_operations)
@ROUND_TRIPS
def test_any_group_reads_back_as_the_library_expects(scim, pool, body, replacement, steps):
    body = _resolve(body, pool)
    created = scim("POST", "/Groups", json=body)
    assert created.status_code == 201, created.get_data(as_text=True)
    group_id = created.get_json()["id"]
    try:
        expected = validated(Group, body, Context.RESOURCE_CREATION_REQUEST)
        for response in (created, scim("GET", f"/Groups/{group_id}")):
            assert group_served(response) == group_shown(expected, scim.base)

        replacement = _resolve(replacement, pool)
        replaced = scim("PUT", f"/Groups/{group_id}", json=replacement)
        assert replaced.status_code == 200, replaced.get_data(as_text=True)
        expected = validated(Group, replacement, Context.RESOURCE_REPLACEMENT_REQUEST)
        assert group_served(replaced) == group_shown(expected, scim.base)

        ops = [_operation(step, pool) for step in steps]
        request = {"schemas": [PATCH_OP], "Operations": ops}
        patched = scim("PATCH", f"/Groups/{group_id}", json=request)
        assert patched.status_code == 204, (ops, patched.get_data(as_text=True))
        for op in ops:  # one by one: a group holds each user once (see one_entry_per_user)
            single = {"schemas": [PATCH_OP], "Operations": [op]}
            operation = validated(PatchOp[Group], single, Context.RESOURCE_PATCH_REQUEST)
            with PROVIDER:
                operation.patch(expected)
            one_entry_per_user(expected)
        assert group_served(scim("GET", f"/Groups/{group_id}")) == group_shown(expected, scim.base)
    finally:
        assert scim("DELETE", f"/Groups/{group_id}").status_code == 204
