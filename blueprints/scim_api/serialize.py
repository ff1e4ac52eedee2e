"""Rows ↔ SCIM resources (RFC 7643), with no database and no Flask: what a request body
becomes once validated (the columns and the stored document), what a row becomes on the
way out (the JSON body, `meta`, the ETag), and `attributes`/`excludedAttributes`.

Rendering goes through scim2-models only when the client shapes the answer: the payload
built from stored, already validated values is the answer otherwise (`render`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from scim2_models import (
    Context,
    InvalidPathException,
    InvalidValueException,
    PreconditionFailedException,
    SCIMException,
    SearchRequest,
)

from blueprints.common.sql import unstorable
from blueprints.scim_api import filters
from blueprints.scim_api.schemas import (
    CORE_GROUP,
    CORE_USER,
    ENTERPRISE,
    MAX_LENGTH,
    MAX_VALUES,
    PROVIDER,
    Group,
    UserResource,
)

USER_SCHEMAS = (CORE_USER, ENTERPRISE)
GROUP_SCHEMAS = (CORE_GROUP,)
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


# --- Request bodies -------------------------------------------------------------------------


def validate(model, body: dict, context: Context):
    """`model` from `body` in a SCIM `context`, under our policy (scim2-models)."""
    with PROVIDER:
        return model.model_validate(body, scim_ctx=context)


def _known(urn: str, schemas: tuple[str, ...]) -> bool:
    """Whether `urn` is one of `schemas`, or an attribute inside one (URN-qualified)."""
    lowered = urn.lower()
    return any(lowered == s.lower() or lowered.startswith(s.lower() + ":") for s in schemas)


def unknown_schema(urn: str, schemas: tuple[str, ...], scim_type: str) -> SCIMException:
    served = ", ".join(schemas)
    exception = InvalidPathException if scim_type == "invalidPath" else InvalidValueException
    return exception(
        detail=f"This service provider has no schema {urn[:200]!r}; it serves {served} "
        "(see /Schemas). Remove that extension's attributes from the identity provider's "
        "mapping."
    )


def unknown_urn(key: Any, schemas: tuple[str, ...]) -> bool:
    """Whether `key` is a URN outside `schemas` (an extension we don't serve)."""
    return isinstance(key, str) and key[:4].lower() == "urn:" and not _known(key, schemas)


def refuse_unknown_schemas(body: dict, schemas: tuple[str, ...]) -> None:
    """400 for attributes of an extension schema we don't serve (SPEC F5): they would
    otherwise be dropped without a word, and the IdP admin would never learn that their
    mapping writes nowhere. Only data counts: a URN merely listed in `schemas` drops
    nothing, and Entra ID's documented requests list some (its ADSCIM Group schema, and
    "…:enterprise:2.0User" without its colon)."""
    for key in body:
        if unknown_urn(key, schemas):
            raise unknown_schema(key, schemas, "invalidValue")


def usable_id(scim_id: str) -> bool:
    """Whether `scim_id` can name a resource: ids are UUIDs (36 characters), so a member
    id longer than that is unknown without a query."""
    return len(scim_id) <= 36


def check_input(value: Any, where: str = "The request") -> None:
    """400 invalidValue for a string no database can hold anywhere in `value` (a request
    body, or its query's values), its keys included: checked once, on the way in, so
    that everything after (the email matching and uniqueness queries, the stored
    document, member ids) only sees storable text. One walk without recursion, so a
    deeply nested body is not a RecursionError."""
    stack = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            problem = unstorable(item)
            if problem:
                raise InvalidValueException(detail=f"{path} {problem}.")
        elif isinstance(item, dict):
            for key, nested in item.items():
                problem = unstorable(key) if isinstance(key, str) else None
                if problem:
                    raise InvalidValueException(detail=f"A key of {path} {problem}.")
                stack.append((nested, key if path == where else f"{path}.{key}"))
        elif isinstance(item, list):
            stack.extend((nested, f"{path}[{i}]") for i, nested in enumerate(item))


def text(value: str | None, attribute: str) -> str | None:
    """A string fit for a column: at most MAX_LENGTH characters (storable already:
    `check_input`)."""
    if value is not None and len(value) > MAX_LENGTH:
        raise InvalidValueException(
            detail=f"{attribute} is longer than {MAX_LENGTH} characters ({len(value)})."
        )
    return value


# Longer than MAX_LENGTH by nature: a certificate (base64 DER), a URL.
LONG_VALUES = {"x509Certificates.value": 16384, "profileUrl": 2048, "photos.value": 2048}


def _sized(document: dict, prefix: str = "") -> None:
    """400 for a string longer than its attribute may be, or more than MAX_VALUES values
    of a multi-valued attribute: what a client may make us keep is bounded."""
    for key, value in document.items():
        name = f"{prefix}{key}" if key != ENTERPRISE else ""
        shown = name or ENTERPRISE
        if isinstance(value, dict):
            _sized(value, f"{name}." if name else f"{ENTERPRISE}:")
        elif isinstance(value, list):
            if len(value) > MAX_VALUES:
                raise InvalidValueException(
                    detail=f"{shown} has {len(value)} values; at most {MAX_VALUES} are kept."
                )
            for item in value:
                if isinstance(item, dict):
                    _sized(item, f"{name}.")
        elif isinstance(value, str):
            limit = LONG_VALUES.get(name, MAX_LENGTH)
            if len(value) > limit:
                raise InvalidValueException(
                    detail=f"{shown} is longer than {limit} characters ({len(value)})."
                )


def prune(value):
    """`value` without None, empty lists and empty objects (SCIM omits unassigned
    attributes, RFC 7643 §2.5). Stored documents are pruned when written, and payloads
    are built without empty values, so nothing is pruned on the way out."""
    if isinstance(value, dict):
        pruned = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v is not None and v != [] and v != {}}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


# --- Users: resource → columns --------------------------------------------------------------


def document(resource: UserResource) -> dict:
    """What `Membership.scim_resource` keeps of `resource`: every attribute the client
    wrote, as scim2-models normalises it, less the id, meta and groups (ours) and the
    password (never stored). 400 for what no limit admits."""
    with PROVIDER:
        dumped = resource.model_dump(exclude={"password", "id", "meta", "groups", "schemas"})
    # Empty values are unassigned (RFC 7643 §2.5): an empty extension object, `emails: []`.
    doc = prune(dumped)
    _sized(doc)
    return doc


def user_columns(resource: UserResource, active: bool | None = None) -> tuple[dict, list[dict]]:
    """The membership columns (the document, and the copies of what is looked up often)
    and the email rows for `resource` (PUT semantics: absent means cleared). `active`,
    when given, is written into the document (a create's default)."""
    user_name = resource.user_name or ""
    if not user_name.strip():
        raise InvalidValueException(detail="userName is required and cannot be empty.")
    doc = document(resource)
    if active is not None:
        doc["active"] = active
    name = resource.name
    display_name = text(resource.display_name, "displayName")
    columns = {
        "scim_resource": doc,
        "user_name": text(user_name, "userName"),
        # Unique and looked up without case and surrounding spaces; kept as written.
        "user_name_key": filters.key(user_name),
        "external_id": text(resource.external_id, "externalId"),
        "display_name": display_name,
        "display_name_key": filters.key(display_name) if display_name else None,
        "given_name": text(name.given_name, "name.givenName") if name else None,
        "family_name": text(name.family_name, "name.familyName") if name else None,
    }
    emails = []
    for position, e in enumerate(resource.emails or []):
        value = text(e.value, "emails.value")
        emails.append(
            {
                "position": position,
                "value": value,
                "value_key": filters.key(value) if value else None,
                "type": text(e.type, "emails.type"),
                "primary": bool(e.primary),
                "display": text(e.display, "emails.display"),
            }
        )
    if sum(1 for e in emails if e["primary"]) > 1:
        raise InvalidValueException(detail="Only one of the emails can be primary.")
    return columns, emails


class UserState(NamedTuple):
    """What rendering a user needs: a row read with `users.SHOWN`'s columns has these
    attributes (all but `groups`); a write returns one built from what it wrote. `groups`
    are the user's teams as (group id, displayName) when the writer knows them (a user
    just created is in none), None when they are to be read."""

    id: int
    account_id: int
    scim_id: str
    scim_resource: dict | None
    active: bool
    version: int
    created_at: datetime
    updated_at: datetime
    groups: tuple | None = None

    @classmethod
    def of(cls, row) -> UserState:
        """The state of an ORM Membership (or any row with the stored attributes)."""
        return cls(*(getattr(row, name) for name in STORED_USER))


STORED_USER = UserState._fields[:-1]  # the columns; `groups` is not one


def user_resource(state) -> UserResource:
    """The stored user as a model, for PATCH to apply its operations to: the document,
    with the live `active` and an (empty) enterprise extension to write into."""
    doc = state.scim_resource or {}
    body = {"schemas": [CORE_USER, ENTERPRISE], **doc}
    body.setdefault(ENTERPRISE, {})
    if "active" in doc:
        body["active"] = state.active
    return validate(UserResource, body, Context.RESOURCE_REPLACEMENT_REQUEST)


# --- Users: row → resource ------------------------------------------------------------------


def manager_of(document: dict | None) -> str | None:
    """The manager's id a stored document names, unless the client wrote its `$ref`."""
    manager = ((document or {}).get(ENTERPRISE) or {}).get("manager") or {}
    value = manager.get("value")
    return value if isinstance(value, str) and "$ref" not in manager else None


def user_payload(state, groups: list[tuple[str, str]], base: str, managers=frozenset()) -> dict:
    """The full User resource as JSON (before attributes/excludedAttributes): the
    document as written, with the live `active`, our `groups` and `meta`. `state` is a
    UserState or a row with its attributes; `managers` the managers known to be users of
    the account (their `$ref` is predictable, so it is added)."""
    document = state.scim_resource or {}
    body = {"schemas": [CORE_USER, ENTERPRISE] if ENTERPRISE in document else [CORE_USER]}
    body["id"] = state.scim_id
    body.update(document)
    if "active" in document:
        body["active"] = state.active
    manager = manager_of(document)
    if manager in managers:
        enterprise = document[ENTERPRISE]
        body[ENTERPRISE] = dict(
            enterprise, manager=dict(enterprise["manager"], **{"$ref": f"{base}/Users/{manager}"})
        )
    if groups:
        body["groups"] = [
            {"value": i, "$ref": f"{base}/Groups/{i}", "display": display, "type": "direct"}
            for i, display in groups
        ]
    body["meta"] = meta("User", state, f"{base}/Users/{state.scim_id}")
    return body


# --- Groups ---------------------------------------------------------------------------------


def group_columns(resource: Group) -> dict:
    """The team's columns for a validated Group (displayName kept as written, unique
    without case and surrounding spaces)."""
    name = resource.display_name or ""
    if not name.strip():
        raise InvalidValueException(detail="displayName is required and cannot be empty.")
    return {
        "display_name": text(name, "displayName"),
        "display_name_key": filters.key(name),
        "external_id": text(resource.external_id, "externalId"),
    }


def group_members(resource: Group) -> list[tuple[str, str | None, str | None]]:
    """The members of a validated Group as (id, display, type). A member without a
    value is a 400, as in a PATCH: dropped without a word, the IdP would believe it sent a
    member that nobody will ever see."""
    members = []
    for m in resource.members or []:
        if not m.value or not m.value.strip():
            raise InvalidValueException(
                detail="members: each member is an object with the user's id as 'value'."
            )
        members.append((m.value.strip(), text(m.display, "A member's 'display'"), m.type))
    return members


def group_resource(team) -> Group:
    """The stored team, member-less, as a model for PATCH to apply its other operations
    to. Validated outside any request context (which would drop the read-only id): Okta's
    rename sends {"op": "replace", "value": {"id": <this group's id>, "displayName": …}},
    and scim2-models refuses a read-only attribute only when its value changes."""
    with PROVIDER:
        return Group.model_validate(
            {
                "schemas": [CORE_GROUP],
                "id": team.scim_id,
                "displayName": team.display_name,
                "externalId": team.external_id,
            }
        )


def group_payload(team, members: list[tuple[str, str | None]] | None, base: str) -> dict:
    """The group as JSON (before attributes/excludedAttributes), without empty values."""
    body = {"schemas": [CORE_GROUP], "id": team.scim_id}
    if team.external_id is not None:
        body["externalId"] = team.external_id
    body["displayName"] = team.display_name
    if members:
        body["members"] = [
            {"value": scim_id, "$ref": f"{base}/Users/{scim_id}", "type": "User", "display": d}
            if d is not None
            else {"value": scim_id, "$ref": f"{base}/Users/{scim_id}", "type": "User"}
            for scim_id, d in members
        ]
    body["meta"] = meta("Group", team, f"{base}/Groups/{team.scim_id}")
    return body


# --- Responses ------------------------------------------------------------------------------


def render(model, payload: dict, params: SearchRequest | None) -> dict:
    """The resource as the client asked for it. Without attributes/excludedAttributes
    the payload (built from stored, already validated values, with the attributes the
    schema returns by default, no empty value: see `prune`) is the answer: the pydantic
    round trip cost more than the rest of a create. tests/scim_api/test_render.py holds
    both paths to the same output."""
    if params is None or not (params.attributes or params.excluded_attributes):
        return payload
    with PROVIDER:
        resource = model.model_validate(payload)
        return resource.model_dump(
            scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=params
        )


def meta(resource_type: str, row, location: str) -> dict:
    """A resource's `meta` (RFC 7643 §3.1) from its row's times and version."""
    return {
        "resourceType": resource_type,
        "created": timestamp(row.created_at),
        "lastModified": timestamp(row.updated_at),
        "location": location,
        "version": etag(row.version),
    }


def timestamp(moment) -> str:
    """RFC 3339 in UTC with a Z, as scim2-models writes meta dates."""
    return moment.isoformat().replace("+00:00", "Z")


def list_response(total: int, start: int, resources: list[dict]) -> dict:
    """RFC 7644 §3.4.2 ListResponse (written out: parametrising scim2-models' generic
    ListResponse for every answer cost more than a lookup)."""
    return {
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


# --- Versions (RFC 7644 §3.14) --------------------------------------------------------------


def etag(version: int) -> str:
    return f'W/"{version}"'


def _tags(header: str) -> list[str]:
    return [part.strip() for part in header.split(",") if part.strip()]


def _names(version: int, header: str) -> bool:
    tags = _tags(header)
    current = etag(version)
    return "*" in tags or current in tags or current.removeprefix("W/") in tags


def check_if_match(version: int, if_match: str | None) -> None:
    """If-Match on PUT/PATCH/DELETE: 412 when it names another version."""
    if if_match is None or _names(version, if_match):
        return
    raise PreconditionFailedException(
        detail=f"The resource is at version {etag(version)}, not {if_match.strip()}; read it again."
    )


def not_modified(version: int, if_none_match: str | None) -> bool:
    """If-None-Match on GET names the current version: answer 304."""
    return if_none_match is not None and _names(version, if_none_match)
