"""blueprints.scim_api.patch without HTTP, an app or a database: PATCH bodies (RFC 7644
§3.5.2) as Okta, Microsoft Entra ID and the RFC's own examples send them, applied to a
stored User, and a Group PatchOp split into member operations and the rest."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from scim2_models import Context, SCIMException

from blueprints.scim_api import patch, serialize
from blueprints.scim_api.patch import MembersOp
from blueprints.scim_api.schemas import CORE_GROUP, CORE_USER, ENTERPRISE, MAX_LENGTH, UserResource
from blueprints.scim_api.serialize import UserState
from tests.scim_api.conftest import refusal

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ACME = "urn:example:params:scim:schemas:extension:acme:2.0:User"


def body(*operations: dict) -> dict:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def patched(document: dict, *operations: dict, active: bool = True) -> tuple[bool, dict]:
    """Whether the PATCH changed the stored user, and the document it stores after."""
    resource = serialize.user_resource(UserState(1, 1, "u-1", document, active, 3, NOW, NOW))
    changed = patch.apply(patch.user_operations(body(*operations)), resource)
    return changed, serialize.document(resource)


# --- Users ----------------------------------------------------------------------------------

BJENSEN = {"userName": "bjensen"}


@pytest.mark.parametrize(
    ("document", "operation", "after"),
    [
        pytest.param(
            BJENSEN,
            {"op": "Add", "path": "manager", "value": [{"$ref": None, "value": "m-1"}]},
            {**BJENSEN, ENTERPRISE: {"manager": {"value": "m-1"}}},
            id="entra-manager-reference-list",
        ),
        pytest.param(
            BJENSEN,
            {"op": "Replace", "path": "manager", "value": "m-2"},
            {**BJENSEN, ENTERPRISE: {"manager": {"value": "m-2"}}},
            id="entra-manager-bare-id",
        ),
        pytest.param(
            BJENSEN,
            {"op": "replace", "path": " Manager ", "value": {"value": "m-3"}},
            {**BJENSEN, ENTERPRISE: {"manager": {"value": "m-3"}}},
            id="manager-path-any-case",
        ),
        pytest.param(
            BJENSEN,
            {"op": "replace", "path": f"{ENTERPRISE}:manager", "value": {"value": "m-4"}},
            {**BJENSEN, ENTERPRISE: {"manager": {"value": "m-4"}}},
            id="rfc-manager-urn-path",
        ),
        pytest.param(
            {**BJENSEN, ENTERPRISE: {"department": "Tour", "manager": {"value": "m-1"}}},
            {"op": "Remove", "path": "manager"},
            {**BJENSEN, ENTERPRISE: {"department": "Tour"}},
            id="entra-manager-removed",
        ),
        pytest.param(
            {**BJENSEN, "active": True},
            {"op": "Replace", "path": "active", "value": "False"},
            {**BJENSEN, "active": False},
            id="entra-active-as-a-string",
        ),
        pytest.param(
            {**BJENSEN, "active": True},
            {"op": "replace", "value": {"active": False}},
            {**BJENSEN, "active": False},
            id="okta-deactivation-pathless",
        ),
        pytest.param(
            BJENSEN,
            {"op": "replace", "value": {"displayName": "Babs", "name": {"givenName": "Barb"}}},
            {**BJENSEN, "displayName": "Babs", "name": {"givenName": "Barb"}},
            id="pathless-several",
        ),
        pytest.param(
            BJENSEN,
            {"op": "add", "path": "title", "value": "Tour Guide"},
            {**BJENSEN, "title": "Tour Guide"},
            id="add-single-valued",
        ),
        pytest.param(
            {**BJENSEN, "name": {"givenName": "Barbara", "familyName": "Jensen"}},
            {"op": "replace", "path": "name.givenName", "value": "Babs"},
            {**BJENSEN, "name": {"givenName": "Babs", "familyName": "Jensen"}},
            id="replace-sub-attribute",
        ),
        pytest.param(
            {**BJENSEN, "emails": [{"value": "b@home.test", "type": "home"}]},
            {"op": "add", "path": "emails", "value": [{"value": "b@work.test", "type": "work"}]},
            {
                **BJENSEN,
                "emails": [
                    {"value": "b@home.test", "type": "home"},
                    {"value": "b@work.test", "type": "work"},
                ],
            },
            id="add-to-multi-valued-appends",  # RFC 7644 §3.5.2.1
        ),
        pytest.param(
            BJENSEN,
            {"op": "Add", "path": 'emails[type eq "work"].value', "value": "b@work.test"},
            {**BJENSEN, "emails": [{"value": "b@work.test", "type": "work"}]},
            id="entra-work-email-created",
        ),
        pytest.param(
            {**BJENSEN, "emails": [{"value": "old@work.test", "type": "work"}]},
            {"op": "replace", "path": 'emails[type eq "work"].value', "value": "new@work.test"},
            {**BJENSEN, "emails": [{"value": "new@work.test", "type": "work"}]},
            id="replace-selected-value",
        ),
        pytest.param(
            {**BJENSEN, "emails": [{"value": "a@x.test"}, {"value": "b@x.test"}]},
            {"op": "remove", "path": 'emails[value eq "A@X.TEST"]'},
            {**BJENSEN, "emails": [{"value": "b@x.test"}]},
            id="remove-selected-caseExact-false",
        ),
        pytest.param(
            {**BJENSEN, "emails": [{"value": "a@x.test"}, {"value": "b@x.test"}]},
            {"op": "Remove", "path": "emails", "value": [{"value": "a@x.test"}]},
            {**BJENSEN, "emails": [{"value": "b@x.test"}]},
            id="entra-remove-with-value",
        ),
        pytest.param(
            {**BJENSEN, "title": "Tour Guide", "nickName": "Babs"},
            {"op": "remove", "path": "title"},
            {**BJENSEN, "nickName": "Babs"},
            id="remove-single-valued",
        ),
        pytest.param(
            BJENSEN,
            {"op": "add", "path": f"{ENTERPRISE}:department", "value": "Tour"},
            {**BJENSEN, ENTERPRISE: {"department": "Tour"}},
            id="enterprise-urn-path",
        ),
        pytest.param(
            BJENSEN,
            {"op": "add", "value": {ENTERPRISE: {"costCenter": "4130"}}},
            {**BJENSEN, ENTERPRISE: {"costCenter": "4130"}},
            id="enterprise-pathless",
        ),
        pytest.param(
            BJENSEN,
            {"op": "add", "value": {"schemas": [ACME], "title": "Tour Guide"}},
            {**BJENSEN, "title": "Tour Guide"},
            id="unknown-urn-only-listed-in-schemas",
        ),
    ],
)
def test_user_patch_changes_the_document(document, operation, after):
    changed, stored = patched(document, operation)

    assert changed is True
    assert stored == after


@pytest.mark.parametrize(
    ("document", "operation"),
    [
        (BJENSEN, {"op": "replace", "path": "userName", "value": "bjensen"}),
        ({**BJENSEN, "title": "Guide"}, {"op": "replace", "path": "title", "value": "Guide"}),
        ({**BJENSEN, "active": True}, {"op": "replace", "path": "active", "value": True}),
        ({**BJENSEN, "active": True}, {"op": "Replace", "path": "active", "value": "True"}),
        (BJENSEN, {"op": "remove", "path": "title"}),  # nothing to remove
    ],
)
def test_user_patch_reports_no_change(document, operation):
    """A PATCH that changes nothing is reported unchanged: the ETag stays the same."""
    changed, stored = patched(document, operation)

    assert changed is False
    assert stored == document


def test_user_patch_active_is_the_live_value():
    """The stored user's `active` is the live column, not the copy in the document."""
    changed, stored = patched(
        {**BJENSEN, "active": True},
        {"op": "replace", "path": "active", "value": True},
        active=False,
    )

    assert changed is True and stored["active"] is True


def test_user_patch_cannot_blank_the_user_name():
    _, stored = patched(BJENSEN, {"op": "replace", "path": "userName", "value": " "})
    resource = serialize.validate(
        UserResource, {"schemas": [CORE_USER], **stored}, Context.RESOURCE_REPLACEMENT_REQUEST
    )

    assert refusal(lambda: serialize.user_columns(resource)) == (400, "invalidValue")


@pytest.mark.parametrize(
    ("operation", "error"),
    [
        pytest.param(
            {"op": "add", "path": f"{ACME}:badge", "value": "x"},
            (400, "invalidPath"),
            id="unknown-extension-path",
        ),
        pytest.param(
            {"op": "add", "path": ACME.upper(), "value": {"badge": "x"}},
            (400, "invalidPath"),
            id="unknown-extension-path-any-case",
        ),
        pytest.param(
            {"op": "add", "value": {ACME: {"badge": "x"}}},
            (400, "invalidValue"),
            id="unknown-extension-pathless",
        ),
        pytest.param(
            {"op": "add", "value": {f"{ACME}:badge": "x"}},
            (400, "invalidValue"),
            id="unknown-extension-attribute-pathless",
        ),
        pytest.param(
            {"op": "replace", "path": "id", "value": "mine"},
            (400, "mutability"),
            id="read-only-id",
        ),
        pytest.param(
            {"op": "add", "path": "groups", "value": [{"value": "g-1"}]},
            (400, "mutability"),
            id="read-only-groups",  # RFC 7643 §4.1.2: changed through the Group
        ),
        pytest.param(
            {"op": "frobnicate", "path": "title", "value": "x"},
            (400, "invalidValue"),
            id="unknown-op",
        ),
        pytest.param({"op": "add", "path": "title"}, (400, "invalidValue"), id="add-without-value"),
        pytest.param({"op": "remove"}, (400, "noTarget"), id="remove-without-path"),
        pytest.param(
            {"op": "add", "path": "emails[type eq]", "value": "x"},
            (400, "invalidPath"),
            id="malformed-path",
        ),
        pytest.param(
            {"op": "add", "path": "manager", "value": [{"value": "m-1"}, {"value": "m-2"}]},
            (400, "invalidValue"),
            id="two-managers",
        ),
    ],
)
def test_user_patch_refused(operation, error):
    """RFC 7644 §3.5.2 errors: the path (invalidPath), the value (invalidValue), a
    read-only attribute (mutability). An extension we don't serve is refused, never
    dropped without a word."""

    def run():
        patched(BJENSEN, operation)

    assert refusal(run) == error


def test_user_operations_keep_their_order():
    """RFC 7644 §3.5.2: operations are applied in sequence; the last write wins."""
    changed, stored = patched(
        BJENSEN,
        {"op": "add", "path": "title", "value": "First"},
        {"op": "replace", "path": "title", "value": "Second"},
        {"op": "add", "path": "nickName", "value": "Babs"},
        {"op": "remove", "path": "nickName"},
    )

    assert changed is True and stored == {**BJENSEN, "title": "Second"}


# --- Groups ---------------------------------------------------------------------------------

MEMBERS_URN = f"{CORE_GROUP}:members"


def split(*operations: dict) -> patch.GroupPatch:
    return patch.group_operations(body(*operations))


def _filter(op: MembersOp) -> str | None:
    return None if op.value_filter is None else str(op.value_filter)


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        pytest.param(
            {"op": "add", "path": "members", "value": [{"value": "u-1", "display": "Babs"}]},
            ("add", [("u-1", "Babs", None)], None),
            id="rfc-add",  # RFC 7644 §3.5.2.1
        ),
        pytest.param(
            {"op": "Add", "path": "members", "value": [{"value": "u-1"}, {"value": "u-2"}]},
            ("add", [("u-1", None, None), ("u-2", None, None)], None),
            id="entra-Add",
        ),
        pytest.param(
            {"op": "add", "path": "MEMBERS", "value": [{"value": "u-1"}]},
            ("add", [("u-1", None, None)], None),
            id="path-any-case",
        ),
        pytest.param(
            {"op": "add", "path": MEMBERS_URN, "value": [{"value": "u-1"}]},
            ("add", [("u-1", None, None)], None),
            id="urn-qualified",
        ),
        pytest.param(
            {"op": "add", "value": {"members": [{"value": "u-1"}]}},
            ("add", [("u-1", None, None)], None),
            id="pathless",
        ),
        pytest.param(
            {"op": "add", "value": {MEMBERS_URN: [{"value": "u-1"}]}},
            ("add", [("u-1", None, None)], None),
            id="pathless-urn-qualified",
        ),
        pytest.param(
            {"op": "add", "path": "members", "value": {"value": "u-1"}},
            ("add", [("u-1", None, None)], None),
            id="one-member-not-in-a-list",
        ),
        pytest.param(
            {"op": "add", "path": "members", "value": [{"Value": " u-1 ", "Type": "User"}]},
            ("add", [("u-1", None, "User")], None),
            id="keys-any-case-value-trimmed",
        ),
        pytest.param(
            {"op": "Replace", "path": "members", "value": [{"value": "u-3"}]},
            ("replace", [("u-3", None, None)], None),
            id="entra-Replace",  # RFC 7644 §3.5.2.3
        ),
        pytest.param(
            {"op": "replace", "path": "members", "value": []},
            ("replace", [], None),
            id="replace-with-none",
        ),
        pytest.param(
            {"op": "remove", "path": 'members[value eq "u-1"]'},
            ("remove", None, 'value eq "u-1"'),
            id="rfc-remove-one",  # RFC 7644 §3.5.2.2
        ),
        pytest.param(
            {"op": "remove", "path": f'{MEMBERS_URN}[value eq "u-1"]'},
            ("remove", None, 'value eq "u-1"'),
            id="urn-qualified-remove-one",
        ),
        pytest.param(
            {"op": "Remove", "path": "members", "value": [{"value": "u-1"}, {"value": "u-2"}]},
            ("remove", [("u-1", None, None), ("u-2", None, None)], None),
            id="entra-remove-value-list",
        ),
        pytest.param(
            {"op": "remove", "path": "members"},
            ("remove", None, None),
            id="rfc-remove-all",
        ),
        pytest.param(
            {"op": "Remove", "path": "members", "value": []},
            ("remove", [], None),
            id="remove-an-empty-list-is-not-remove-all",
        ),
    ],
)
def test_group_members_operation(operation, expected):
    """Every form of an operation on `members` becomes one MembersOp; nothing else is
    left to apply."""
    found = split(operation)

    assert [(m.op, m.members, _filter(m)) for m in found.members] == [expected]
    assert found.others is None


def test_group_members_operations_keep_their_order():
    found = split(
        {"op": "add", "path": "members", "value": [{"value": "u-1"}]},
        {"op": "remove", "path": 'members[value eq "u-1"]'},
        {"op": "add", "path": "members", "value": [{"value": "u-2"}]},
    )

    assert [(m.op, m.members, _filter(m)) for m in found.members] == [
        ("add", [("u-1", None, None)], None),
        ("remove", None, 'value eq "u-1"'),
        ("add", [("u-2", None, None)], None),
    ]


def group_team() -> SimpleNamespace:
    return SimpleNamespace(scim_id="g-1", display_name="Tour Guides", external_id=None)


@pytest.mark.parametrize(
    ("operations", "members", "display_name", "external_id"),
    [
        pytest.param(
            [{"op": "replace", "path": "displayName", "value": "Guides"}],
            [],
            "Guides",
            None,
            id="rename",
        ),
        pytest.param(
            [{"op": "replace", "value": {"id": "g-1", "displayName": "Guides"}}],
            [],
            "Guides",
            None,
            id="okta-rename-with-own-id",
        ),
        pytest.param(
            [{"op": "add", "value": {"members": [{"value": "u-1"}], "displayName": "Guides"}}],
            [("add", [("u-1", None, None)], None)],
            "Guides",
            None,
            id="pathless-members-and-rename",
        ),
        pytest.param(
            [
                {"op": "Replace", "path": "externalId", "value": "ext-9"},
                {"op": "Add", "path": "members", "value": [{"value": "u-1"}]},
            ],
            [("add", [("u-1", None, None)], None)],
            "Tour Guides",
            "ext-9",
            id="entra-mixed",
        ),
        pytest.param(
            [{"op": "remove", "path": "externalId"}],
            [],
            "Tour Guides",
            None,
            id="remove-external-id",
        ),
    ],
)
def test_group_other_operations_apply_to_the_team(operations, members, display_name, external_id):
    found = split(*operations)
    resource = serialize.group_resource(group_team())

    assert [(m.op, m.members, _filter(m)) for m in found.members] == members
    assert found.others is not None
    patch.apply(found.others, resource)
    assert (resource.display_name, resource.external_id) == (display_name, external_id)
    assert resource.members is None  # members never go through the team's copy


def test_group_rename_with_another_id_is_refused():
    found = split({"op": "replace", "value": {"id": "g-2", "displayName": "Guides"}})
    resource = serialize.group_resource(group_team())

    assert refusal(lambda: patch.apply(found.others, resource)) == (400, "mutability")


@pytest.mark.parametrize(
    ("operation", "error"),
    [
        pytest.param(
            {"op": "replace", "path": "members.display", "value": "Babs"},
            (400, "mutability"),
            id="sub-attribute",
        ),
        pytest.param(
            {"op": "replace", "path": 'members[value eq "u-1"].display', "value": "Babs"},
            (400, "mutability"),
            id="selected-sub-attribute",
        ),
        pytest.param(
            {"op": "replace", "path": "members.value", "value": "u-2"},
            (400, "mutability"),
            id="member-value",
        ),
        pytest.param(
            {"op": "add", "path": 'members[value eq "u-1"]', "value": [{"value": "u-1"}]},
            (400, "invalidPath"),
            id="add-with-value-filter",
        ),
        pytest.param(
            {"op": "replace", "path": 'members[value eq "u-1"]', "value": [{"value": "u-2"}]},
            (400, "invalidPath"),
            id="replace-with-value-filter",
        ),
        pytest.param(
            {"op": "add", "path": "members", "value": [{"display": "Babs"}]},
            (400, "invalidValue"),
            id="member-without-value",
        ),
        pytest.param(
            {"op": "add", "path": "members", "value": [{"value": "  "}]},
            (400, "invalidValue"),
            id="blank-value",
        ),
        pytest.param(
            {"op": "add", "path": "members", "value": [{"value": 42}]},
            (400, "invalidValue"),
            id="value-not-a-string",
        ),
        pytest.param(
            {"op": "add", "path": "members", "value": ["u-1"]},
            (400, "invalidValue"),
            id="bare-id",
        ),
        pytest.param(
            {"op": "add", "path": "members", "value": [{"value": "u-1", "display": 7}]},
            (400, "invalidValue"),
            id="display-not-a-string",
        ),
        pytest.param(
            {
                "op": "add",
                "path": "members",
                "value": [{"value": "u-1", "display": "d" * (MAX_LENGTH + 1)}],
            },
            (400, "invalidValue"),
            id="display-too-long",
        ),
        pytest.param(
            {"op": "Remove", "path": "members", "value": [{"display": "Babs"}]},
            (400, "invalidValue"),
            id="entra-remove-without-value",
        ),
        pytest.param(
            {"op": "add", "path": f"{ENTERPRISE}:department", "value": "Tour"},
            (400, "invalidPath"),
            id="user-extension-path",
        ),
        pytest.param(
            {"op": "add", "value": {ACME: {"badge": "x"}}},
            (400, "invalidValue"),
            id="unknown-extension-pathless",
        ),
        pytest.param(
            {"op": "add", "path": "members"},
            (400, "invalidValue"),
            id="add-without-value",
        ),
        pytest.param(
            {"op": "merge", "path": "members", "value": [{"value": "u-1"}]},
            (400, "invalidValue"),
            id="unknown-op",
        ),
        pytest.param(
            {"op": "replace", "path": "id", "value": "g-2"},
            (400, "mutability"),
            id="read-only-id",
        ),
        pytest.param({"op": "remove"}, (400, "noTarget"), id="remove-without-path"),
        pytest.param(
            {"op": "remove", "value": {"members": [{"value": "u-1"}]}},
            (400, "noTarget"),
            id="remove-members-without-path",  # RFC 7644 §3.5.2.2
        ),
    ],
)
def test_group_patch_refused(operation, error):
    def run():
        found = split(operation)
        if found.others is not None:
            patch.apply(found.others, serialize.group_resource(group_team()))

    assert refusal(run) == error


@pytest.mark.parametrize(
    ("value", "members"),
    [
        ({"value": "u-1"}, [("u-1", None, None)]),
        ([{"value": "u-1"}], [("u-1", None, None)]),
        ([{"VALUE": "u-1", "DISPLAY": "Babs", "TYPE": "User"}], [("u-1", "Babs", "User")]),
        ([{"value": "u-1", "type": 3}], [("u-1", None, None)]),  # a type that is no string
        ([{"value": "u-1", "display": None}], [("u-1", None, None)]),
        ([{"value": "u-1"}, {"value": "u-1"}], [("u-1", None, None), ("u-1", None, None)]),
        ([], []),
    ],
)
def test_member_values(value, members):
    assert patch.member_values(value, "members") == members


@pytest.mark.parametrize("value", [None, "u-1", [None], [{"value": None}], [{"value": ""}]])
def test_member_values_refused(value):
    with pytest.raises(SCIMException) as raised:
        patch.member_values(value, "members")

    assert raised.value.scim_type == "invalidValue"
    assert raised.value.detail.startswith("members:")  # where the IdP sent it
