"""Operations and security (SPEC F9): CSRF, headers, cookies, health, request ids, htmx SRI,
and no 500 for bad input."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests import factories

ROOT = Path(__file__).resolve().parents[2]


def _signed_in(client) -> bool:
    return client.get("/").status_code == 200


# --- CSRF ---------------------------------------------------------------------------------


def test_sign_in_without_csrf_token_is_refused(client, owner):
    response = client.post(
        "/login", data={"email": owner.email, "passphrase": factories.PASSPHRASE}, csrf=False
    )
    assert response.status_code == 400
    assert "This page expired" in response.get_data(as_text=True)
    assert not _signed_in(client)


def test_sign_in_with_a_forged_csrf_token_is_refused(client, owner):
    response = client.post(
        "/login",
        data={"email": owner.email, "passphrase": factories.PASSPHRASE},
        headers={"X-CSRFToken": "forged"},
    )
    assert response.status_code == 400
    assert not _signed_in(client)


def test_csrf_token_of_another_session_is_refused(app, client, owner):
    stolen = app.test_client().csrf_token()
    response = client.post(
        "/login",
        data={"email": owner.email, "passphrase": factories.PASSPHRASE},
        headers={"X-CSRFToken": stolen},
    )
    assert response.status_code == 400
    assert not _signed_in(client)


def test_sign_out_without_csrf_token_does_not_sign_out(client, owner, login_as):
    login_as(owner)
    assert client.post("/logout", csrf=False).status_code == 400
    assert _signed_in(client)


def test_htmx_post_without_csrf_token_gets_the_page_expired_fragment(client, owner, htmx):
    response = client.post(
        "/login",
        data={"email": owner.email, "passphrase": factories.PASSPHRASE},
        headers=htmx,
        csrf=False,
    )
    assert response.status_code == 400
    assert response.headers["HX-Retarget"] == "#messages"
    assert response.headers["HX-Reswap"] == "innerHTML"
    body = response.get_data(as_text=True)
    assert 'id="page-expired"' in body
    assert "<html" not in body
    assert not _signed_in(client)


def test_pages_carry_the_csrf_token_for_htmx_requests(client):
    page = client.get("/login").get_data(as_text=True)
    match = re.search(r"<body hx-headers='\{\"X-CSRFToken\": \"([^\"]+)\"\}'>", page)
    assert match
    # The header token works for a POST, as htmx sends it.
    response = client.post(
        "/passphrase/forgot",
        data={"email": "someone@example.com"},
        headers={"X-CSRFToken": match.group(1)},
        csrf=False,
    )
    assert response.status_code == 200


# --- headers and cookies ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/healthz", "/nowhere"])
def test_security_headers_are_on_every_response(client, path):
    headers = client.get(path).headers
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp
    assert headers["Referrer-Policy"] == "same-origin"


def test_content_security_policy_allows_the_htmx_cdn_and_nothing_else(app, client):
    csp = client.get("/login").headers["Content-Security-Policy"]
    script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src")).split()
    cdn = urlsplit(app.config["HTMX_CDN_URL"])
    assert f"{cdn.scheme}://{cdn.netloc}" in script_src
    assert "'unsafe-inline'" not in script_src
    assert "'unsafe-eval'" not in script_src


def _session_cookie(response) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert cookies, response.headers
    return cookies[0]


def test_session_cookie_is_httponly_and_samesite_lax(client):
    cookie = _session_cookie(client.get("/login"))
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # BASE_URL is http in tests


class TestBehindHttps:
    """With an https BASE_URL (production), cookies are Secure and HSTS is on."""

    @pytest.fixture
    def config_overrides(self, monkeypatch):
        monkeypatch.setenv("BASE_URL", "https://identity.example.com")
        return {"BASE_URL": "https://identity.example.com"}

    def test_session_cookie_is_secure(self, client):
        cookie = _session_cookie(client.get("/login", base_url="https://identity.example.com"))
        assert "Secure" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie

    def test_strict_transport_security_is_sent(self, client):
        response = client.get("/login", base_url="https://identity.example.com")
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


# --- health and request ids ---------------------------------------------------------------


def test_healthz_reports_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_healthz_needs_no_sign_in_even_with_an_initial_passphrase(client, session, login_as):
    user = factories.make_user(session, must_change_passphrase=True)
    login_as(user)
    assert client.get("/healthz").status_code == 200


def test_request_id_is_echoed_when_valid(client):
    response = client.get("/healthz", headers={"X-Request-Id": "lb-7f3a.42_x"})
    assert response.headers["X-Request-Id"] == "lb-7f3a.42_x"


@pytest.mark.parametrize("junk", ["", "has space", "x" * 65, "<script>", "id;drop", "a/b"])
def test_request_id_is_replaced_when_junk(client, junk):
    response = client.get("/healthz", headers={"X-Request-Id": junk})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])


def test_each_request_gets_its_own_request_id(client):
    ids = {client.get("/healthz").headers["X-Request-Id"] for _ in range(3)}
    assert len(ids) == 3


# --- htmx from the CDN with SRI, and the local fallback ------------------------------------


def test_pages_load_htmx_from_the_cdn_with_integrity_and_a_local_fallback(app, client):
    page = client.get("/login").get_data(as_text=True)
    cdn = re.search(r'<script src="([^"]+)" integrity="([^"]+)" crossorigin="anonymous">', page)
    assert cdn
    assert cdn.group(1) == app.config["HTMX_CDN_URL"]
    assert cdn.group(1).startswith("https://")
    assert cdn.group(2) == app.config["HTMX_SRI"]
    fallback = '<script src="/static/vendor/htmx-fallback.js"></script>'
    assert fallback in page
    assert page.index(cdn.group(0)) < page.index(fallback)
    with client.get("/static/vendor/htmx-fallback.js") as response:
        script = response.get_data(as_text=True)
    assert "window.htmx" in script
    assert "htmx.min.js" in script
    with client.get("/static/vendor/htmx.min.js") as response:
        assert response.status_code == 200
        assert response.get_data() == (ROOT / "static/vendor/htmx.min.js").read_bytes()


def test_local_htmx_copy_matches_the_integrity_hash(app):
    """The fallback is the very file the CDN serves, so both behave the same."""
    algorithm, _, expected = app.config["HTMX_SRI"].partition("-")
    assert algorithm == "sha384"
    digest = hashlib.sha384((ROOT / "static/vendor/htmx.min.js").read_bytes()).digest()
    assert base64.b64encode(digest).decode() == expected


def test_local_htmx_copy_is_the_version_the_cdn_url_names(app):
    version = re.search(r"htmx\.org@([\d.]+)/", app.config["HTMX_CDN_URL"]).group(1)
    source = (ROOT / "static/vendor/htmx.min.js").read_text()
    assert f'version:"{version}"' in source


# --- bad input never gives a 500 -----------------------------------------------------------

HUGE = "p" * 100_000


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"email": "owner@example.com"},
        {"passphrase": "x"},
        {"email": "", "passphrase": ""},
        {"email": "owner@example.com", "passphrase": HUGE},
        {"email": "e" * 5000 + "@example.com", "passphrase": "x"},
        {"email": "owner@example.com", "passphrase": "x", "next": HUGE},
        {"email": "\x00\x01", "passphrase": "\x00"},
        {"email": "owner\x00@example.com", "passphrase": factories.PASSPHRASE},
        {"email": ["a@example.com", "b@example.com"], "passphrase": ["x", "y"]},
    ],
)
def test_garbage_sign_in_is_a_4xx_not_a_500(client, owner, data):
    response = client.post("/login", data=data)
    assert 400 <= response.status_code < 500
    assert "<form" in response.get_data(as_text=True)
    assert not _signed_in(client)


@pytest.mark.parametrize(
    "data", [{}, {"email": ""}, {"email": HUGE}, {"email": "\x00@example.com"}, {"x": "y"}]
)
def test_garbage_reset_request_is_a_4xx_not_a_500(client, data):
    response = client.post("/passphrase/forgot", data=data)
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize(
    "token", ["junk", "x" * 5000, "%00", "..%2F..%2Fetc", "' OR 1=1 --", "\u00e9\u00e8"]
)
@pytest.mark.parametrize(
    "data", [{}, {"passphrase": HUGE, "confirm": HUGE}, {"passphrase": "a long enough one!"}]
)
def test_garbage_reset_link_is_a_4xx_not_a_500(client, token, data):
    assert 400 <= client.get(f"/passphrase/reset/{token}").status_code < 500
    assert 400 <= client.post(f"/passphrase/reset/{token}", data=data).status_code < 500


def test_oversized_body_is_413(client):
    response = client.post("/login", data={"email": "a@example.com", "passphrase": "p" * 2_000_000})
    assert response.status_code == 413
    assert "Too large" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"current": HUGE, "passphrase": HUGE, "confirm": HUGE},
        {"current": factories.PASSPHRASE, "passphrase": HUGE, "confirm": HUGE},
    ],
)
def test_garbage_passphrase_change_is_a_4xx_not_a_500(client, owner, login_as, data):
    login_as(owner)
    response = client.post("/passphrase/change", data=data)
    assert 400 <= response.status_code < 500
    assert _signed_in(client)


# --- no secret in any log ------------------------------------------------------------------


def test_passphrases_and_reset_tokens_stay_out_of_the_logs(app, client, session, owner, caplog):
    import logging

    from sqlalchemy import select

    from blueprints.common.outbox import deliver_due
    from models import OutboxEmail, utcnow
    from tests.common.mail import closed_port, links_in, point_mail_at

    guess = "a-distinctive-wrong-guess-4711"
    with caplog.at_level(logging.DEBUG):
        for _ in range(app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"] + 1):
            client.post("/login", data={"email": owner.email, "passphrase": guess})
        client.post("/login", data={"email": owner.email, "passphrase": factories.PASSPHRASE})
        client.post("/passphrase/forgot", data={"email": owner.email})
        point_mail_at(app, closed_port())
        assert deliver_due(utcnow())["retried"] == 1  # logs a warning with the SMTP error
    token = links_in(session.scalar(select(OutboxEmail.body_text)))[0].rsplit("/", 1)[1]
    assert "not delivered, retrying" in caplog.text
    for secret in (guess, factories.PASSPHRASE, token):
        assert secret not in caplog.text
