"""PATCH (RFC 7644 §3.5.2), with no database and no Flask: the IdPs' quirks are
normalised first, then the operations are applied — by scim2-models to a stored User, and,
for a Group, split into operations on `members` (which groups.py turns into row inserts
and deletes, never a load-and-rewrite of the member list) and operations on the other
attributes (applied by scim2-models to a member-less copy of the team).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scim2_models import (
    Context,
    InvalidPathException,
    InvalidValueException,
    MutabilityException,
    PatchOp,
)

from blueprints.scim_api.schemas import ENTERPRISE, PROVIDER, Group, UserResource
from blueprints.scim_api.serialize import (
    GROUP_SCHEMAS,
    USER_SCHEMAS,
    refuse_unknown_schemas,
    text,
    unknown_schema,
    unknown_urn,
    validate,
)

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MEMBERS = "members"


def _get(mapping: dict, name: str, default: Any = None) -> Any:
    """`mapping[name]`, the name matched without case (IdPs send "Operations", "op"…)."""
    return next((v for k, v in mapping.items() if str(k).lower() == name), default)


def refuse_unknown_schemas_in(body: dict, schemas: tuple[str, ...]) -> None:
    """400 for an operation's path, or a key of a path-less operation's value, in a
    schema we don't serve (invalidPath, invalidValue): otherwise dropped without a word."""
    operations = _get(body, "operations")
    for op in operations if isinstance(operations, list) else []:
        if not isinstance(op, dict):
            continue
        path = _get(op, "path")
        if unknown_urn(path, schemas):
            raise unknown_schema(path, schemas, "invalidPath")
        value = _get(op, "value")
        if path is None and isinstance(value, dict):
            refuse_unknown_schemas({k: v for k, v in value.items() if k != "schemas"}, schemas)


# --- Users ----------------------------------------------------------------------------------


def _manager_path(body: dict) -> dict:
    """Microsoft Entra ID sets the manager with `"path": "manager"` (no URN) and a list
    holding one reference (its SCIM protocol page, "Example 5"). The core schema has no
    `manager`, so the operation was dropped as an unknown attribute: read it as the
    enterprise manager, with the reference's id as its value."""
    key = next((k for k in body if isinstance(k, str) and k.lower() == "operations"), None)
    operations = body.get(key) if key else None
    if not isinstance(operations, list):
        return body

    def manager_id(item):
        return _get(item, "value") if isinstance(item, dict) else item

    rewritten = []
    for op in operations:
        path = op.get("path") if isinstance(op, dict) else None
        if isinstance(path, str) and path.strip().lower() == "manager":
            op = dict(op, path=f"{ENTERPRISE}:manager")
            value = op.get("value")
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            if "value" in op and not isinstance(value, list):
                op["value"] = manager_id(value)
        rewritten.append(op)
    return dict(body, **{key: rewritten})


def user_operations(body: dict) -> PatchOp[UserResource]:
    """A PATCH body for a User, its quirks normalised, validated (400 otherwise)."""
    refuse_unknown_schemas_in(body, USER_SCHEMAS)
    return validate(PatchOp[UserResource], _manager_path(body), Context.RESOURCE_PATCH_REQUEST)


def apply(operations: PatchOp, resource) -> bool:
    """Apply `operations` to `resource` in place; True when it changed."""
    with PROVIDER:
        return bool(operations.patch(resource))


# --- Groups ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MembersOp:
    """One operation on a group's `members`: `op` is add, replace or remove; a removal
    names its members by `value_filter` (`members[value eq "…"]`), by `members` (Entra
    ID's value list), or by neither (everyone)."""

    op: str
    members: list[tuple[str, str | None, str | None]] | None = None
    value_filter: Any = None


@dataclass(frozen=True)
class GroupPatch:
    """A Group PATCH split in two: the `members` operations, in order, and a PatchOp of
    the operations on the other attributes (None when there are none)."""

    members: list[MembersOp]
    others: PatchOp | None


def member_values(value, where: str) -> list[tuple[str, str | None, str | None]]:
    """The members in a `members` value: a list of {"value": id, "display"?, "type"?}
    (or one of them), as (id, display, type)."""
    items = value if isinstance(value, list) else [value]
    members = []
    for item in items:
        lowered = {str(k).lower(): v for k, v in item.items()} if isinstance(item, dict) else {}
        member_id = lowered.get("value")
        if not isinstance(member_id, str) or not member_id.strip():
            raise InvalidValueException(
                detail=f"{where}: each member is an object with the user's id as 'value'."
            )
        display, kind = lowered.get("display"), lowered.get("type")
        if display is not None and not isinstance(display, str):
            raise InvalidValueException(detail=f"{where}: a member's 'display' is a string.")
        members.append(
            (
                member_id.strip(),
                text(display, "A member's 'display'"),
                kind if isinstance(kind, str) else None,
            )
        )
    return members


def _targets_members(path) -> bool:
    return path is not None and path.parts and path.parts[0].lower() == MEMBERS


def _members_op(op: str, path, value) -> MembersOp:
    value_filter = path.value_filter if path is not None else None
    if path is not None and len(path.parts) > 1:
        raise MutabilityException(
            detail="A member's sub-attributes cannot be changed; add or remove the member."
        )
    if op == "remove":
        if value_filter is not None:
            return MembersOp(op, value_filter=value_filter)
        if value is not None:  # Entra ID: remove these members
            return MembersOp(op, members=member_values(value, MEMBERS))
        return MembersOp(op)
    if value_filter is not None:
        raise InvalidPathException(
            detail="Add or replace members with the path 'members' and a list of members."
        )
    return MembersOp(op, members=member_values(value, MEMBERS) if value is not None else [])


def group_operations(body: dict) -> GroupPatch:
    """A PATCH body for a Group, validated and split. Every path form of `members` is
    one: `members`, `members[value eq "…"]`, the URN-prefixed one, path-less
    `{"members": [...]}`, removal by a value list (Entra ID)."""
    refuse_unknown_schemas_in(body, GROUP_SCHEMAS)
    operations = validate(PatchOp[Group], body, Context.RESOURCE_PATCH_REQUEST)
    members: list[MembersOp] = []
    others = []
    for operation in operations.operations or []:
        op = operation.op.value
        if _targets_members(operation.path):
            members.append(_members_op(op, operation.path, operation.value))
        elif operation.path is None and isinstance(operation.value, dict):
            rest = {}
            for key, value in operation.value.items():
                if str(key).rsplit(":", 1)[-1].lower() == MEMBERS:
                    members.append(_members_op(op, None, value))
                else:
                    rest[key] = value
            if rest:
                others.append({"op": op, "value": rest})
        else:
            entry = {"op": op, "path": str(operation.path) if operation.path else None}
            if "value" in operation.model_fields_set:
                entry["value"] = operation.value
            others.append({k: v for k, v in entry.items() if v is not None or k == "value"})
    rest_ops = None
    if others:
        rest_ops = validate(
            PatchOp[Group],
            {"schemas": [PATCH_OP], "Operations": others},
            Context.RESOURCE_PATCH_REQUEST,
        )
    return GroupPatch(members, rest_ops)
