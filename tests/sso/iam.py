"""A real OpenID Connect provider for the SSO tests: pytest-iam runs Canaille on loopback.

`register_client(iam_server, redirect_uri)` registers our app as a client there and
`oidc_client` does it with the redirect URI the SSO page shows (BASE_URL + callback);
`idp_user(email)` makes a person there, signed in and consenting; `to_idp` follows our
way to the IdP (/sso/continue) and `idp_authorize(url)` plays the browser at the IdP: it
visits the authorization endpoint and returns where the IdP sends the browser back (our
callback URL with code and state).
`configure_oidc` saves a connection the way the SSO page does, through the real
discovery document, and can enable it without a round trip.

tests/conftest.py registers these fixtures (pytest_plugins); helpers are imported.
"""

from __future__ import annotations

import datetime
import html
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from blueprints.sso import oidc, services
from models import utcnow

CALLBACK_PATH = "/sso/oidc/callback"


def issuer_of(iam_server) -> str:
    return iam_server.url.rstrip("/")


def register_client(iam_server, redirect_uri: str, **overrides):
    """A confidential client of the IdP allowed to come back to `redirect_uri`."""
    values = {
        "client_id": secrets.token_hex(8),
        "client_secret": secrets.token_hex(16),
        "client_id_issued_at": datetime.datetime.now(datetime.UTC),
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "scope": ["openid", "email", "profile"],
        "token_endpoint_auth_method": "client_secret_basic",
        "client_name": "Enterprise identity (tests)",
    } | overrides
    client = iam_server.models.Client(**values)
    iam_server.backend.save(client)
    # Canaille puts a client's `audience` in the ID token's aud; it must name us.
    client.audience = [client]
    iam_server.backend.save(client)
    return client


@pytest.fixture
def oidc_client(app, iam_server):
    """Our app, registered at the IdP with the redirect URI the SSO page shows."""
    client = register_client(iam_server, app.config["BASE_URL"] + CALLBACK_PATH)
    yield client
    iam_server.backend.delete(client)


@pytest.fixture
def idp_user(iam_server):
    """Make a person at the IdP with the given email (signed in there, having consented).

    The IdP has one signed-in person at a time: the last one made.
    """
    made = []

    def make(email: str):
        user = iam_server.random_user(
            emails=[email], user_name=email.split("@")[0] + secrets.token_hex(3)
        )
        made.append(user)
        iam_server.login(user)
        iam_server.consent(user)
        return user

    yield make
    iam_server.logout()
    for user in made:
        iam_server.backend.delete(user)


def to_idp(client, response) -> str:
    """Follow our answer to a sign-in or test form: a 303 to /sso/continue, a page that
    sends the browser on to the IdP (Refresh header, and a link). Returns the IdP URL."""
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    assert response.headers["Location"] == "/sso/continue"
    page = client.get("/sso/continue")
    assert page.status_code == 200, page.get_data(as_text=True)[:2000]
    assert page.headers["Cache-Control"] == "no-store"
    delay, _, target = page.headers["Refresh"].partition("; url=")
    assert delay == "0"
    assert f'id="idp-link" class="button primary" href="{html.escape(target)}"' in (
        page.get_data(as_text=True)
    )
    return target


def idp_authorize(authorization_url: str) -> str:
    """Visit the IdP's authorization URL as the signed-in user; return the redirect back."""
    response = requests.get(authorization_url, allow_redirects=False, timeout=10)
    assert response.status_code in (302, 303), response.text[:500]
    location = response.headers["Location"]
    assert urlsplit(location).path == CALLBACK_PATH, location
    return location


def local_path(url: str) -> str:
    """The path and query of an absolute URL, for the Flask test client."""
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def state_of(url: str) -> str:
    """The `state` parameter of an authorization or callback URL."""
    return parse_qs(urlsplit(url).query)["state"][0]


def configure_oidc(
    session, account, owner, iam_server, client, *, secret=None, enabled=False, tested=None
):
    """Save `client` as the account's connection, as the SSO page does (real discovery).

    `tested` defaults to `enabled`: an enabled connection has passed a test.
    """
    connection = services.save_oidc(
        session,
        account.id,
        issuer_of(iam_server),
        oidc.discover(issuer_of(iam_server)),
        client.client_id,
        secret or client.client_secret,
        owner.id,
        utcnow(),
    )
    connection.test_ok = enabled if tested is None else tested
    connection.tested_at = utcnow() if connection.test_ok else None
    connection.test_message = f"Signed in as {owner.email}." if connection.test_ok else None
    connection.enabled, connection.enabled_at = enabled, utcnow() if enabled else None
    session.commit()
    return connection
