"""RFC 7644 §3.12 error bodies for every error the SCIM API gives: never an HTML page,
never a redirect, never a 500, whatever the input."""

from __future__ import annotations

import json

import pytest

from tests.scim_api.conftest import SCIM_JSON, assert_scim_error

DISCOVERY = ["/ServiceProviderConfig", "/ResourceTypes", "/Schemas"]
USER = "urn:ietf:params:scim:schemas:core:2.0:User"


@pytest.mark.parametrize(
    "path", ["/Users/123", "/Groups/123", "/Users/123/x", "/Bulk", "/Me", "/Pets", "/", ""]
)
def test_unknown_path_or_resource_gets_404_scim_error(scim, path):
    """No such endpoint or no such resource; an empty path must not redirect either."""
    assert_scim_error(scim("GET", path), 404)


@pytest.mark.parametrize("path", ["/scim/v2", "/scim/v2/", "/scim/other"])
def test_path_outside_any_connector_gets_404_scim_error(client, path):
    assert_scim_error(client.get(path), 404)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
@pytest.mark.parametrize("path", [*DISCOVERY, "/ResourceTypes/User"])
def test_writing_to_discovery_gets_405_allowing_get(scim, method, path):
    response = scim(method, path, json={"schemas": []})

    assert_scim_error(response, 405)
    assert response.headers["Allow"] == "GET"


def test_post_needs_no_csrf_token(scim):
    """Bearer-authenticated: the CSRF check (which would answer 400) does not apply."""
    response = scim("POST", "/Users", json={"schemas": [USER], "userName": "a@example.com"})

    assert response.status_code == 201, response.get_data(as_text=True)


@pytest.mark.parametrize("config_overrides", [{"MAX_CONTENT_LENGTH": 100}])
def test_body_over_max_content_length_gets_413(scim):
    body = assert_scim_error(scim("POST", "/Users", data="x" * 101), 413)

    assert "100 bytes" in body["detail"]
    # At the limit: read, and refused for what it is (not JSON).
    assert assert_scim_error(scim("POST", "/Users", data="x" * 100), 400)["scimType"] == (
        "invalidSyntax"
    )


@pytest.mark.parametrize("config_overrides", [{"MAX_CONTENT_LENGTH": 100}])
def test_body_over_max_content_length_without_token_gets_401(scim):
    """An unauthenticated client learns nothing but that it must authenticate."""
    assert scim("POST", "/Users", token=None, data="x" * 101).status_code == 401


LONG = "/a" * 3000
FUZZ = [
    ("GET", LONG, None),
    ("GET", "/" + "é" * 2000, None),
    ("GET", "/%00", None),
    ("GET", "/Users/%00", None),
    ("PUT", "/Users/%00%00", None),
    ("GET", "/Schemas/%00", None),
    ("GET", "/ResourceTypes/%00", None),
    ("GET", "/%ff%fe%fd", None),
    ("GET", "/Users/%ED%A0%80", None),
    ("GET", "/😀/☃", None),
    ("GET", "/..%2f..%2fetc%2fpasswd", None),
    ("GET", "/../../etc/passwd", None),
    ("GET", "//ServiceProviderConfig", None),
    ("GET", "/ServiceProviderConfig//", None),
    ("GET", "/Users?filter=userName%20eq%20%22%00%22&count=-1&startIndex=abc", None),
    ("GET", "/ServiceProviderConfig?attributes=%00&excludedAttributes=" + "x" * 3000, None),
    ("GET", "/Schemas/" + "urn:" * 500, None),
    ("TRACE", "/ServiceProviderConfig", None),
    ("FOO", "/Users", None),
    ("PROPFIND", "/", None),
    ("HEAD", "/Users/%00", None),
    ("OPTIONS", "/Users", None),
    ("DELETE", "/", None),
    ("POST", "/Users", {"Content-Type": "text/html"}),
    ("POST", "/Users", {"Content-Type": "application/scim+json; charset=\x7f"}),
    ("GET", "/ServiceProviderConfig", {"Authorization": "Bearer " + "a" * 10000}),
    ("GET", "/ServiceProviderConfig", {"Authorization": "Bearer scim_\u00e9\u00e8"}),
    ("GET", "/ServiceProviderConfig", {"Authorization": "Bearer \x00"}),
    ("GET", "/ServiceProviderConfig", {"Authorization": "Bearer\tscim_x"}),
    ("GET", "/ServiceProviderConfig", {"Authorization": "Bearer a b c"}),
    ("GET", "/ServiceProviderConfig", {"Authorization": "Negotiate YII="}),
    ("GET", "/ServiceProviderConfig", {"Authorization": " "}),
    ("GET", "/ServiceProviderConfig", {"Authorization": "Bearer " + "é" * 100}),
    ("GET", "/ServiceProviderConfig", {"Accept": "text/html"}),
    ("GET", "/ServiceProviderConfig", {"If-None-Match": "\x00", "If-Match": "*"}),
    ("POST", "/ServiceProviderConfig", {"Content-Length": "abc"}),
    ("POST", "/Users", {"Content-Length": "-5"}),
    ("POST", "/Users", {"Content-Length": "99999999999999999999999"}),
    ("POST", "/Users", {"Transfer-Encoding": "chunked"}),
]


@pytest.mark.parametrize("connector", ["own", "%00", "x" * 300, "é"])
@pytest.mark.parametrize(("method", "path", "headers"), FUZZ)
def test_garbage_gets_scim_error_never_html_or_500(scim, connector, method, path, headers):
    data = b"\x00\xff{not json" * 10 if method in {"POST", "PUT", "PATCH"} else None

    response = scim(
        method,
        path,
        connector_id=None if connector == "own" else connector,
        headers=headers,
        data=data,
    )

    text = response.get_data(as_text=True)
    assert response.status_code < 500, text[:300]
    assert response.status_code not in (301, 302, 307, 308)  # werkzeug's HTML redirects
    assert response.mimetype == SCIM_JSON
    assert "<html" not in text.lower()
    if method != "HEAD" and response.status_code >= 400:
        body = json.loads(text)
        assert body["status"] == str(response.status_code)
        assert "Traceback" not in body["detail"]
