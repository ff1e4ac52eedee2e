"""The resources this service provider serves, as scim2-models classes (RFC 7643).

The whole User resource is kept (SPEC F5): every attribute of the core User schema
(§4.1: name and its parts, displayName, nickName, profileUrl, title, userType,
preferredLanguage, locale, timezone, active, emails, phoneNumbers, ims, photos, addresses,
entitlements, roles, x509Certificates) and of the enterprise extension (§4.3), plus
externalId, `groups` (read-only) and `password` (write-only, accepted and never stored).
They are scim2-models' own RFC classes; ours differ only where an IdP needs it (below).
/Schemas is generated from these classes, so it publishes exactly what is kept.

Attributes no schema declares are dropped (`ScimPolicy.Unknown.ignore`: the robustness
principle for a stray core attribute), but an extension schema we don't serve is refused
with a 400 before validation (`unknown_extensions`), not silently dropped.

The policy also admits what Microsoft Entra ID sends: `remove` with a value selecting
what to remove, and `add`/`replace` on `emails[type eq "work"].value` when no such entry
exists yet (the entry is created).
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, ClassVar

import scim2_models
from pydantic import Field, ValidationInfo, field_validator, model_validator
from scim2_models import (
    URN,
    AuthenticationScheme,
    Bulk,
    CaseExact,
    ChangePassword,
    ComplexAttribute,
    Context,
    ETag,
    Extension,
    Filter,
    Mutability,
    Patch,
    Reference,
    Required,
    ResourceType,
    ScimPolicy,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    Uniqueness,
)

MAX_RESULTS = 1000  # the most resources one page holds (filter.maxResults)
DEFAULT_COUNT = 100
MAX_LENGTH = 512  # characters, for a string we store (the columns' size); see users.py
MAX_VALUES = 100  # values of one multi-valued attribute (emails, phoneNumbers, …)

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


# --- The request contexts' checks, per class --------------------------------------------------

_LIBRARY_CHECKS = scim2_models.base.BaseModel.__dict__["_enforce_scim_context"]
_CREATE_OR_REPLACE = (Context.RESOURCE_CREATION_REQUEST, Context.RESOURCE_REPLACEMENT_REQUEST)
_CHECKED_HERE = (*_CREATE_OR_REPLACE, Context.RESOURCE_PATCH_REQUEST)


@cache
def _checked_fields(cls) -> tuple[tuple[str, bool, bool, bool], ...]:
    """The fields of `cls` that scim2-models' request checks can act on, in its order:
    (name, read-only, required, multi-valued). The others pass every check whatever
    they hold."""
    fields = []
    for name in cls.model_fields:
        read_only = cls.get_field_annotation(name, Mutability) == Mutability.read_only
        required = cls.get_field_annotation(name, Required) == Required.true
        multiple = cls.get_field_multiplicity(name)
        if read_only or required or multiple:
            fields.append((name, read_only, required, multiple))
    return tuple(fields)


def _enforce_scim_context(self, info: ValidationInfo):
    """scim2-models' checks of a write request (RFC 7643 §7: read-only values dropped,
    required ones present, one primary per multi-valued attribute), run through its own
    check methods but only on the fields they can act on (`_checked_fields`). The
    library walks every field of every model through all three checks: validating a
    create took 200 µs, 62 µs this way (bench/README.md, sixth pass). Other contexts,
    and a bulk operation's references, go to the library's own walk. Declared on each
    of our classes below; tests/scim_api/test_request_checks.py holds it to the
    library's results."""
    context = info.context.get("scim") if info.context else None
    if context not in _CHECKED_HERE or info.context.get("scim_bulk"):
        return _LIBRARY_CHECKS(self, info)
    create_or_replace = context in _CREATE_OR_REPLACE
    fields_set = self.model_fields_set
    for name, read_only, required, multiple in _checked_fields(type(self)):
        value = getattr(self, name)
        if create_or_replace:
            if read_only and name in fields_set:
                self._check_mutability(name, context)
            if required:
                self._check_necessity(name, value)
        if multiple and value is not None:
            self._check_primary_uniqueness(name, value)
    return self


_enforce_scim_context = model_validator(mode="after")(_enforce_scim_context)


def _described(model, name: str) -> str | None:
    """The RFC's description of `model`'s field, for a field redeclared with our class
    (/Schemas publishes it)."""
    return model.model_fields[name].description


# A reference to a User resource (`$ref` with referenceTypes ["User"]), built at import:
# in an annotation the name "User" would be taken for the class defined below.
UserReference = Reference["User"]


class Email(scim2_models.Email):
    """`emails`: the value is any string. RFC 7643 §4.1.2 asks for RFC 5321 form but
    names no validation; a stricter check (pydantic's EmailStr refuses `.test` and
    other special-use domains) would refuse users an IdP legitimately holds."""

    value: str | None = None

    _enforce_scim_context = _enforce_scim_context


class Name(scim2_models.Name):
    """`name`, as the RFC has it (its own class only for the request checks above)."""

    _enforce_scim_context = _enforce_scim_context


class GroupMember(scim2_models.GroupMember):
    """`members[]`, as the RFC has it (its own class only for the request checks above:
    a group of 50,000 members validates each of them)."""

    _enforce_scim_context = _enforce_scim_context


class Manager(ComplexAttribute):
    """The enterprise `manager` (RFC 7643 §4.3). Entra ID sends its value as a bare id
    string in PATCH, and no IdP sends `$ref`, so neither is required (the RFC's own
    schema marks both "required" inside an optional attribute, which no IdP honours).
    What the client writes is kept; a `$ref` is added on the way out only when the value
    names a user of the same account (the client can predict it: that user's location)."""

    value: Annotated[str | None, CaseExact.true] = None
    ref: Annotated[UserReference | None, CaseExact.true] = Field(
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    display_name: Annotated[str | None, Mutability.read_only] = None

    _enforce_scim_context = _enforce_scim_context


class EnterpriseUser(Extension):
    __schema__ = URN(ENTERPRISE)

    employee_number: str | None = None
    cost_center: str | None = None
    organization: str | None = None
    division: str | None = None
    department: str | None = None
    manager: Manager | None = None

    _enforce_scim_context = _enforce_scim_context

    @field_validator("manager", mode="before")
    @classmethod
    def _manager_id(cls, value: Any) -> Any:
        """`"manager": "<id>"` (Entra ID) means `{"value": "<id>"}`; "" clears it."""
        if isinstance(value, str):
            return {"value": value} if value else None
        return value


class User(scim2_models.User):
    """A member of the account, as the IdP provisions it: the RFC's User, with any
    string as an email address."""

    __schema__ = URN(CORE_USER)

    name: Name | None = Field(None, description=_described(scim2_models.User, "name"))
    Name: ClassVar[type[ComplexAttribute]] = Name
    emails: list[Email] | None = None
    Emails: ClassVar[type[ComplexAttribute]] = Email

    _enforce_scim_context = _enforce_scim_context


class Group(scim2_models.Group):
    """A team. Its members are users (teams do not nest); `members[].display` is kept as
    the IdP wrote it."""

    __schema__ = URN(CORE_GROUP)

    display_name: Annotated[str | None, Required.true, Uniqueness.server] = None
    members: list[GroupMember] | None = Field(
        None, description=_described(scim2_models.Group, "members")
    )
    Members: ClassVar[type[ComplexAttribute]] = GroupMember

    _enforce_scim_context = _enforce_scim_context


UserResource = User[EnterpriseUser]

POLICY = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)

CONFIG = ServiceProviderConfig(
    documentation_uri=None,
    patch=Patch(supported=True),
    bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
    filter=Filter(supported=True, max_results=MAX_RESULTS),
    change_password=ChangePassword(supported=False),
    sort=Sort(supported=True),
    etag=ETag(supported=True),
    authentication_schemes=[
        AuthenticationScheme(
            type="oauthbearertoken",
            name="Bearer token",
            description="The connector token from the SCIM page, as "
            "'Authorization: Bearer <token>'.",
            primary=True,
        )
    ],
)

PROVIDER = ScimProvider(
    models=[User, EnterpriseUser, Group],
    resource_types=[
        ResourceType.from_resource(UserResource),
        ResourceType.from_resource(Group),
    ],
    config=CONFIG,
    policy=POLICY,
)
