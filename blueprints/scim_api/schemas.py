"""The resources this service provider serves, as scim2-models classes (RFC 7643).

The User model declares exactly the attributes we store (SPEC F5): userName, name,
displayName, title, active, emails, externalId, the enterprise extension, `groups`
(read-only) and `password` (write-only, accepted and never stored). /Schemas is generated
from these classes, so what we publish is what we keep. Anything else an IdP sends
(phoneNumbers, addresses, locale, a vendor extension) is accepted and dropped, under
`ScimPolicy.Unknown.ignore`, and a PATCH on it changes nothing.

The policy also admits what Microsoft Entra ID sends: `remove` with a value selecting
what to remove, and `add`/`replace` on `emails[type eq "work"].value` when no such entry
exists yet (the entry is created).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from scim2_models import (
    URN,
    AnyExtension,
    AuthenticationScheme,
    Bulk,
    CaseExact,
    ChangePassword,
    ComplexAttribute,
    ETag,
    Extension,
    Filter,
    GroupMembership,
    Mutability,
    Name,
    Patch,
    Reference,
    Required,
    Resource,
    ResourceType,
    Returned,
    ScimPolicy,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    Uniqueness,
)

MAX_RESULTS = 1000  # the most resources one page holds (filter.maxResults)
DEFAULT_COUNT = 100
MAX_LENGTH = 512  # characters, for every string we store (the columns' size)

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


class Email(ComplexAttribute):
    """`emails`: the value is any string. RFC 7643 §4.1.2 asks for RFC 5321 form but
    names no validation; a stricter check (pydantic's EmailStr refuses `.test` and
    other special-use domains) would refuse users an IdP legitimately holds."""

    value: str | None = None
    display: str | None = None
    type: str | None = None
    primary: bool | None = None


class Manager(ComplexAttribute):
    """The enterprise `manager`. Entra ID sends its value as a bare id string in PATCH,
    and no IdP sends `$ref`, so neither is required (RFC 7643 §4.3 calls $ref optional
    in practice; the schema's `required` flags are contradictory)."""

    value: Annotated[str | None, CaseExact.true] = None
    ref: Annotated[Reference[Any] | None, Mutability.read_only] = Field(
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    display_name: Annotated[str | None, Mutability.read_only] = None


class EnterpriseUser(Extension):
    __schema__ = URN(ENTERPRISE)

    employee_number: str | None = None
    cost_center: str | None = None
    organization: str | None = None
    division: str | None = None
    department: str | None = None
    manager: Manager | None = None

    @field_validator("manager", mode="before")
    @classmethod
    def _manager_id(cls, value: Any) -> Any:
        """`"manager": "<id>"` (Entra ID) means `{"value": "<id>"}`; "" clears it."""
        if isinstance(value, str):
            return {"value": value} if value else None
        return value


class User(Resource[AnyExtension]):
    """A member of the account, as the IdP provisions it."""

    __schema__ = URN(CORE_USER)

    user_name: Annotated[str | None, Uniqueness.server, Required.true] = None
    name: Name | None = None
    display_name: str | None = None
    title: str | None = None
    active: bool | None = None
    password: Annotated[str | None, Mutability.write_only, Returned.never] = None
    emails: list[Email] | None = None
    groups: Annotated[list[GroupMembership] | None, Mutability.read_only] = None


class GroupMember(ComplexAttribute):
    """A member of a team: users only (teams do not nest)."""

    value: Annotated[str | None, Mutability.immutable, CaseExact.true] = None
    ref: Annotated[Reference[Any] | None, Mutability.immutable] = Field(
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    type: Annotated[str | None, Mutability.immutable] = None
    display: Annotated[str | None, Mutability.read_only] = None


class Group(Resource[Any]):
    """A team."""

    __schema__ = URN(CORE_GROUP)

    display_name: Annotated[str | None, Required.true, Uniqueness.server] = None
    members: list[GroupMember] | None = None


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
