"""The request checks of a write (schemas.py `_enforce_scim_context`) decide exactly as
scim2-models' own walk does: read-only values dropped from a create or a replace, a
required attribute missing or empty refused, two primaries in one multi-valued attribute
refused, in the same order and with the same errors. Ours only skips the fields no check
can act on; these tests hold it to the library on the same bodies, hostile ones included.

The library's walk is reached through the same validator: with `_CHECKED_HERE` emptied,
every context goes to it.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scim2_models import Context, PatchOp

from blueprints.scim_api import schemas
from blueprints.scim_api.schemas import PROVIDER, Group, UserResource
from tests.scim_api.test_round_trip_properties import (
    ENTERPRISE,
    GROUP,
    MULTI,
    user_operations,
    users,
)

WRITES = [
    Context.RESOURCE_CREATION_REQUEST,
    Context.RESOURCE_REPLACEMENT_REQUEST,
]
CHECKS = settings(max_examples=150, deadline=None)


def outcome(model, body: dict, context: Context):
    """What validation makes of `body`: the resource as validated, or the errors."""
    try:
        with PROVIDER:
            resource = model.model_validate(copy.deepcopy(body), scim_ctx=context)
    except ValidationError as error:
        return "refused", [(e["type"], e["loc"], e["msg"]) for e in error.errors()]
    return "accepted", resource.model_dump(mode="json", by_alias=True, exclude_unset=True)


def both(model, body: dict, context: Context):
    """(ours, the library's) for the same body and context."""
    ours = outcome(model, body, context)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(schemas, "_CHECKED_HERE", ())
        library = outcome(model, body, context)
    return ours, library


# What a careless or hostile client adds to a valid body.
HOSTILE = {
    "id": st.just("2819c223-7f76-453a-919d-413861904646"),
    "meta": st.just({"resourceType": "User", "location": "https://elsewhere.test/Users/1"}),
    "groups": st.just([{"value": "g1", "display": "Admins"}]),
    "userName": st.sampled_from([None, "", "someone-else"]),
    "emails": st.just(
        [{"value": "a@x.test", "primary": True}, {"value": "b@x.test", "primary": True}]
    ),
    "phoneNumbers": st.just([{"value": "+1 555", "primary": True}] * 2),
    "manager": st.just({"value": "m1", "displayName": "Read Only"}),
}


@st.composite
def hostile_users(draw) -> dict:
    body = draw(users())
    for name in draw(st.lists(st.sampled_from(sorted(HOSTILE)), unique=True, max_size=3)):
        value = draw(HOSTILE[name])
        if name == "manager":
            body.setdefault(ENTERPRISE, {})["manager"] = value
            body["schemas"] = [*body["schemas"], ENTERPRISE]
        elif value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return body


@CHECKS
@given(body=hostile_users(), context=st.sampled_from(WRITES))
def test_a_user_write_is_checked_as_the_library_checks_it(body, context):
    ours, library = both(UserResource, body, context)
    assert ours == library


@CHECKS
@given(operations=user_operations(), primaries=st.sampled_from(sorted(MULTI)))
def test_a_patch_is_checked_as_the_library_checks_it(operations, primaries):
    # A second operation setting two primaries at once: the patch context's only check.
    twice = [{"value": "x", "primary": True}, {"value": "y", "primary": True}]
    body = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [*operations, {"op": "add", "path": primaries, "value": twice}],
    }
    ours, library = both(PatchOp[UserResource], body, Context.RESOURCE_PATCH_REQUEST)
    assert ours == library


@CHECKS
@given(
    name=st.sampled_from([None, "", "Engineering"]),
    members=st.lists(
        st.fixed_dictionaries(
            {"value": st.sampled_from(["u1", "u2", "u3"])},
            optional={"display": st.text(max_size=5), "type": st.just("User")},
        ),
        max_size=4,
    ),
    read_only=st.booleans(),
    context=st.sampled_from(WRITES),
)
def test_a_group_write_is_checked_as_the_library_checks_it(name, members, read_only, context):
    body = {"schemas": [GROUP], "members": members}
    if name is not None:
        body["displayName"] = name
    if read_only:
        body["id"] = "team-1"
        body["meta"] = {"resourceType": "Group"}
    ours, library = both(Group, body, context)
    assert ours == library


def test_what_the_checks_decide_on_a_create():
    """The checks do act (the equivalence above would also hold if neither did)."""
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "ada",
        "id": "chosen-by-the-client",
        "groups": [{"value": "g1"}],
    }
    state, resource = outcome(UserResource, body, Context.RESOURCE_CREATION_REQUEST)
    assert state == "accepted" and "id" not in resource and "groups" not in resource

    nameless = {"displayName": "Ada"}
    state, errors = outcome(UserResource, nameless, Context.RESOURCE_CREATION_REQUEST)
    assert state == "refused" and "required" in errors[0][2]

    twice = {"userName": "ada", "emails": [{"value": "a", "primary": True}] * 2}
    state, errors = outcome(UserResource, twice, Context.RESOURCE_REPLACEMENT_REQUEST)
    assert state == "refused" and "primary" in errors[0][2]

    state, errors = outcome(Group, {"members": []}, Context.RESOURCE_CREATION_REQUEST)
    assert state == "refused" and "displayName" in errors[0][2]
