"""The SCIM API's security headers: those of a JSON API (OWASP REST Security Cheat
Sheet), not the pages'. Its answers carry people's names and addresses and are never a
document a browser renders: no cache keeps them, nothing in them may run or be framed."""

from __future__ import annotations

import pytest

from tests.scim_api.conftest import provision

API_CSP = "default-src 'none'; frame-ancestors 'none'"


def assert_api_headers(response) -> None:
    headers = response.headers
    assert headers["Cache-Control"] == "no-store"
    assert headers["Content-Security-Policy"] == API_CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Request-Id"]
    # The pages' document-only headers say nothing to an IdP.
    for name in ("Referrer-Policy", "Permissions-Policy", "Cross-Origin-Opener-Policy"):
        assert name not in headers


def test_every_kind_of_scim_answer_has_the_api_headers(scim):
    created = scim(
        "POST",
        "/Users",
        json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ada"},
    )
    assert created.status_code == 201
    assert_api_headers(created)
    user = created.get_json()
    answers = [
        scim("GET", f"/Users/{user['id']}"),  # a resource
        scim("GET", '/Users?filter=userName eq "ada"'),  # a list
        scim("GET", "/ServiceProviderConfig"),  # discovery
        scim("GET", "/Users/nobody"),  # a SCIM 404
        scim("GET", "/Users", token=None),  # a 401
        scim("GET", "/Nowhere"),  # a URL below the API that has no route
        scim("DELETE", f"/Users/{user['id']}"),  # 204, no body
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 404, 401, 404, 204]
    for answer in answers:
        assert_api_headers(answer)


def test_the_api_headers_keep_what_a_scim_answer_sets_itself(scim):
    user = provision(scim, "grace")
    response = scim("GET", f"/Users/{user['id']}")
    assert response.headers["ETag"] == user["meta"]["version"]
    assert response.headers["Content-Type"].startswith("application/scim+json")
    assert response.headers.getlist("Cache-Control") == ["no-store"]


@pytest.mark.parametrize("path", ["/login", "/healthz"])
def test_the_pages_keep_their_own_headers(client, path):
    headers = client.get(path).headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Content-Security-Policy"] != API_CSP


class TestBehindHttps:
    """With an https BASE_URL (production), the API is Strict-Transport-Security too."""

    @pytest.fixture
    def config_overrides(self, monkeypatch):
        monkeypatch.setenv("BASE_URL", "https://identity.example.com")
        return {"BASE_URL": "https://identity.example.com"}

    def test_strict_transport_security_is_sent(self, scim):
        response = scim("GET", "/ServiceProviderConfig", base_url="https://identity.example.com")
        assert response.status_code == 200
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
        assert_api_headers(response)
