"""Discovery (RFC 7644 §4): stated exactly. Users (with the enterprise extension) and
Groups are advertised; PATCH, filter, sort and ETags are supported, bulk and
changePassword are not; the schemas list only attributes we store."""

from __future__ import annotations

import pytest
from scim2_models import ListResponse, ResourceType, Schema, ServiceProviderConfig

from tests.scim_api.conftest import SCIM_JSON, assert_scim_error

SPC_URN = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


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


@pytest.mark.parametrize(
    ("feature", "supported"),
    [
        ("patch", True),
        ("filter", True),
        ("sort", True),
        ("etag", True),
        ("bulk", False),
        ("changePassword", False),
    ],
)
def test_service_provider_config_states_each_feature(scim, feature, supported):
    body = _ok(scim("GET", "/ServiceProviderConfig"))

    assert body[feature]["supported"] is supported


def test_filter_states_its_max_results(scim):
    body = _ok(scim("GET", "/ServiceProviderConfig"))

    assert body["filter"]["maxResults"] == 1000


def test_service_provider_config_is_served_at_the_pasted_url_with_trailing_slash(scim):
    assert _ok(scim("GET", "/ServiceProviderConfig/"))["schemas"] == [SPC_URN]


def test_service_provider_config_answers_head_without_body(scim):
    response = scim("HEAD", "/ServiceProviderConfig")

    assert response.status_code == 200
    assert response.mimetype == SCIM_JSON
    assert response.get_data() == b""


def test_resource_types_are_user_with_enterprise_extension_and_group(scim):
    body = _ok(scim("GET", "/ResourceTypes"))

    assert body["schemas"] == [LIST_URN]
    ListResponse[ResourceType].model_validate(body)
    by_name = {r["name"]: r for r in body["Resources"]}
    assert body["totalResults"] == 2 and set(by_name) == {"User", "Group"}
    assert by_name["User"]["endpoint"] == "/Users"
    assert by_name["User"]["schema"] == USER_URN
    assert by_name["User"]["schemaExtensions"] == [{"schema": ENTERPRISE_URN, "required": False}]
    assert by_name["Group"]["endpoint"] == "/Groups"
    assert by_name["User"]["meta"]["location"] == scim.base + "/ResourceTypes/User"


def test_schemas_list_every_attribute_of_rfc_7643_which_we_all_keep(scim):
    """SPEC F5: the whole core User (RFC 7643 §4.1) and enterprise extension (§4.3);
    strict clients and conformance tools run their checks against what is listed."""
    body = _ok(scim("GET", "/Schemas"))

    ListResponse[Schema].model_validate(body)
    by_id = {s["id"]: s for s in body["Resources"]}
    assert set(by_id) == {USER_URN, GROUP_URN, ENTERPRISE_URN}
    user = {a["name"]: a for a in by_id[USER_URN]["attributes"]}
    assert set(user) == {
        "userName",
        "name",
        "displayName",
        "nickName",
        "profileUrl",
        "title",
        "userType",
        "preferredLanguage",
        "locale",
        "timezone",
        "active",
        "password",
        "emails",
        "phoneNumbers",
        "ims",
        "photos",
        "addresses",
        "groups",
        "entitlements",
        "roles",
        "x509Certificates",
    }
    assert {a["name"] for a in user["name"]["subAttributes"]} == {
        "formatted",
        "familyName",
        "givenName",
        "middleName",
        "honorificPrefix",
        "honorificSuffix",
    }
    assert {a["name"] for a in user["addresses"]["subAttributes"]} >= {
        "streetAddress",
        "locality",
        "region",
        "postalCode",
        "country",
    }
    assert user["userName"]["uniqueness"] == "server" and user["userName"]["required"] is True
    assert user["userName"]["caseExact"] is False
    assert user["groups"]["mutability"] == "readOnly"
    assert user["password"]["returned"] == "never"
    group = {a["name"]: a for a in by_id[GROUP_URN]["attributes"]}
    assert set(group) == {"displayName", "members"}
    enterprise = {a["name"]: a for a in by_id[ENTERPRISE_URN]["attributes"]}
    assert set(enterprise) == {
        "employeeNumber",
        "costCenter",
        "organization",
        "division",
        "department",
        "manager",
    }
    manager = {a["name"]: a for a in enterprise["manager"]["subAttributes"]}
    assert manager["$ref"]["referenceTypes"] == ["User"]
    assert manager["displayName"]["mutability"] == "readOnly"


@pytest.mark.parametrize(
    ("path", "expected_id"),
    [
        ("/ResourceTypes/User", "User"),
        ("/ResourceTypes/group", "Group"),
        (f"/Schemas/{USER_URN}", USER_URN),
        (f"/Schemas/{GROUP_URN}", GROUP_URN),
        (f"/Schemas/{ENTERPRISE_URN}", ENTERPRISE_URN),
    ],
)
def test_single_resource_type_or_schema_is_served(scim, path, expected_id):
    assert _ok(scim("GET", path))["id"] == expected_id


@pytest.mark.parametrize("path", ["/ResourceTypes/Pet", "/Schemas/urn:example:Pet"])
def test_unknown_resource_type_or_schema_is_a_scim_404(scim, path):
    body = assert_scim_error(scim("GET", path), 404)

    assert path.rsplit("/", 1)[-1] in body["detail"]


@pytest.mark.parametrize("path", ["/ServiceProviderConfig", "/ResourceTypes", "/Schemas"])
def test_discovery_requires_the_bearer_token(scim, path):
    assert scim("GET", path, token=None).status_code == 401
