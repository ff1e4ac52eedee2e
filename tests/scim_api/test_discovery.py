"""Discovery (RFC 7644 §4): stated exactly. Until Users and Groups are served, no resource
type or schema is advertised and every optional feature says `supported: false`."""

from __future__ import annotations

import pytest
from scim2_models import ListResponse, ResourceType, Schema, ServiceProviderConfig

from tests.scim_api.conftest import SCIM_JSON, assert_scim_error

SPC_URN = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
FEATURES = ["patch", "bulk", "filter", "sort", "etag", "changePassword"]


def _ok(response) -> dict:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == SCIM_JSON
    return response.get_json(force=True)


def test_service_provider_config_states_bearer_auth_and_schema(scim):
    body = _ok(scim("GET", "/ServiceProviderConfig"))

    assert body["schemas"] == [SPC_URN]
    schemes = body["authenticationSchemes"]
    assert [s["type"] for s in schemes] == ["oauthbearertoken"]
    assert schemes[0]["name"] and schemes[0]["description"]
    ServiceProviderConfig.model_validate(body)  # a valid RFC 7643 §5 resource


@pytest.mark.parametrize("feature", FEATURES)
def test_service_provider_config_says_unsupported_for_every_feature(scim, feature):
    """The honest state: none of them is implemented yet."""
    body = _ok(scim("GET", "/ServiceProviderConfig"))

    assert body[feature]["supported"] is False


def test_service_provider_config_is_served_at_the_pasted_url_with_trailing_slash(scim):
    assert _ok(scim("GET", "/ServiceProviderConfig/"))["schemas"] == [SPC_URN]


def test_service_provider_config_answers_head_without_body(scim):
    response = scim("HEAD", "/ServiceProviderConfig")

    assert response.status_code == 200
    assert response.mimetype == SCIM_JSON
    assert response.get_data() == b""


@pytest.mark.parametrize(("path", "item"), [("/ResourceTypes", ResourceType), ("/Schemas", Schema)])
def test_listing_is_empty_list_response_before_users_and_groups(scim, path, item):
    body = _ok(scim("GET", path))

    assert body["schemas"] == [LIST_URN]
    assert body["totalResults"] == 0
    assert body.get("Resources", []) == []
    ListResponse[item].model_validate(body)


@pytest.mark.parametrize(
    "path",
    [
        "/ResourceTypes/User",
        "/ResourceTypes/Group",
        "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
        "/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group",
        "/Schemas/urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
    ],
)
def test_single_resource_type_or_schema_is_not_found_while_none_is_served(scim, path):
    body = assert_scim_error(scim("GET", path), 404)

    assert path.rsplit("/", 1)[-1] in body["detail"]


@pytest.mark.parametrize("path", ["/ServiceProviderConfig", "/ResourceTypes", "/Schemas"])
def test_discovery_requires_the_bearer_token(scim, path):
    assert scim("GET", path, token=None).status_code == 401
