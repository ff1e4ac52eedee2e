"""Discovery (RFC 7644 §4): what this service provider supports, stated exactly.

Everything comes from scim2-models' ScimProvider built in schemas.py: the schemas are
generated from the very classes requests are validated with, so /Schemas cannot claim an
attribute we don't keep, and ServiceProviderConfig says what the endpoints do: PATCH,
filter (maxResults), sort and ETags supported; bulk and changePassword not.
"""

from __future__ import annotations

from scim2_models import Context, ListResponse, ResourceType, Schema

from blueprints.scim_api.schemas import PROVIDER


def _with_meta(resource, kind: str, base: str, name: str) -> dict:
    body = resource.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    body["meta"] = {"resourceType": kind, "location": f"{base}/{kind}s/{name}"}
    return body


def service_provider_config(base: str) -> dict:
    body = PROVIDER.config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    body["meta"] = {
        "resourceType": "ServiceProviderConfig",
        "location": f"{base}/ServiceProviderConfig",
    }
    return body


def _list(resources: list[dict]) -> dict:
    body = ListResponse[ResourceType | Schema](
        total_results=len(resources), start_index=1, items_per_page=len(resources)
    ).model_dump(scim_ctx=Context.SEARCH_RESPONSE)
    body["Resources"] = resources
    return body


def _resource_types(base: str) -> list[dict]:
    return [_with_meta(rt, "ResourceType", base, rt.name) for rt in PROVIDER.resource_types]


def _schemas(base: str) -> list[dict]:
    return [_with_meta(s, "Schema", base, s.id) for s in PROVIDER.schemas]


def resource_types(base: str) -> dict:
    return _list(_resource_types(base))


def resource_type(name: str, base: str) -> dict | None:
    return next((rt for rt in _resource_types(base) if rt["id"].lower() == name.lower()), None)


def schemas(base: str) -> dict:
    return _list(_schemas(base))


def schema(urn: str, base: str) -> dict | None:
    return next((s for s in _schemas(base) if s["id"].lower() == urn.lower()), None)
