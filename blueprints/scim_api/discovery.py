"""Discovery (RFC 7644 §4): what this service provider supports, stated exactly.

Users and Groups are not served yet (issue #5), so no resource type or schema is
advertised and every feature says `supported: false`; an IdP's connection test then
fails for a clear reason instead of trusting endpoints that aren't there.
"""

from __future__ import annotations

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    ETag,
    Filter,
    ListResponse,
    Patch,
    ResourceType,
    Schema,
    ServiceProviderConfig,
    Sort,
)

RESOURCE_TYPES: list[ResourceType] = []
SCHEMAS: list[Schema] = []


def service_provider_config(documentation_uri: str | None = None) -> dict:
    config = ServiceProviderConfig(
        documentation_uri=documentation_uri,
        patch=Patch(supported=False),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=False, max_results=0),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=False),
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
    return config.model_dump(exclude_none=True)


def _list(resources: list) -> dict:
    response = ListResponse[ResourceType | Schema](
        total_results=len(resources),
        start_index=1,
        items_per_page=len(resources),
        resources=resources or None,
    )
    return response.model_dump(exclude_none=True)


def resource_types() -> dict:
    return _list(RESOURCE_TYPES)


def schemas() -> dict:
    return _list(SCHEMAS)
