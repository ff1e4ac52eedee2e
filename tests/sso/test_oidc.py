"""OpenID Connect on the SSO page (SPEC F3), against a real provider (Canaille, pytest-iam):
saving a client through its discovery document, and the owner's test sign-in."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, text

from blueprints.common.crypto import decrypt
from blueprints.sso import services
from models import AuditEvent, SsoConnection, SsoFlow, utcnow
from tests import factories
from tests.conftest import free_port
from tests.sso.iam import (
    configure_oidc,
    idp_authorize,
    issuer_of,
    local_path,
    register_client,
    state_of,
    to_idp,
)
from tests.sso.pages import FLOW_GONE, HTMX, SSO_PAGE, field_error, status
from tests.sso.pages import text as page_text

SAVE = "/enterprise/sso/oidc"


@pytest.fixture
def signed_in(owner, login_as):
    login_as(owner)
    return owner


@pytest.fixture
def verified(session, account):
    return factories.make_domain(session, account, "example.com", verified=True)


def _connection(session) -> SsoConnection | None:
    session.expire_all()
    return session.scalar(select(SsoConnection))


def _save(client, iam_server, oidc_client, **overrides):
    data = {
        "issuer": issuer_of(iam_server),
        "client_id": oidc_client.client_id,
        "client_secret": oidc_client.client_secret,
    } | overrides
    return client.post(SAVE, data=data, headers=HTMX)


def _start_test(client) -> str:
    """Click Test sign-in; returns the IdP URL the browser is sent on to."""
    return to_idp(client, client.post("/enterprise/sso/test"))


def _test_sign_in(client) -> str:
    """Click Test sign-in and let the IdP answer; returns the callback URL it sends back."""
    return idp_authorize(_start_test(client))


def _finish(client, callback_url: str):
    """Follow the IdP's redirect back; returns the SSO page the owner lands on."""
    done = client.get(local_path(callback_url))
    assert done.status_code == 303, done.get_data(as_text=True)
    assert done.headers["Location"] == SSO_PAGE
    return page_text(client.get(SSO_PAGE))


# --- saving the client -------------------------------------------------------------------


def test_save_oidc_stores_checked_discovery_when_issuer_answers(
    client, session, signed_in, iam_server, oidc_client
):
    response = _save(client, iam_server, oidc_client)

    assert response.status_code == 200
    page = page_text(response)
    assert 'id="connection-panel"' in page and "<html" not in page
    assert "OpenID Connect: Not enabled" in status(page)
    assert "Not tested since the last change." in status(page)
    connection = _connection(session)
    assert connection.protocol == "oidc"
    assert connection.oidc_issuer == issuer_of(iam_server)
    assert connection.oidc_client_id == oidc_client.client_id
    assert connection.oidc_discovery["issuer"] == issuer_of(iam_server)
    assert connection.oidc_discovery["token_endpoint"] == issuer_of(iam_server) + "/oauth/token"
    assert not connection.enabled


def test_save_oidc_without_htmx_redirects_to_page_with_next_step(
    client, session, signed_in, iam_server, oidc_client
):
    response = client.post(
        SAVE,
        data={
            "issuer": issuer_of(iam_server) + "/",
            "client_id": oidc_client.client_id,
            "client_secret": oidc_client.client_secret,
        },
    )

    assert response.status_code == 302
    assert response.headers["Location"] == SSO_PAGE
    assert "SSO settings saved. Run a test sign-in next." in page_text(client.get(SSO_PAGE))
    assert _connection(session).oidc_client_id == oidc_client.client_id


def test_save_oidc_shows_error_when_issuer_is_unreachable(
    client, session, signed_in, iam_server, oidc_client
):
    closed = f"http://127.0.0.1:{free_port()}"

    response = _save(client, iam_server, oidc_client, issuer=closed)

    assert response.status_code == 422
    assert field_error(page_text(response), "issuer") == (
        f"The discovery document at {closed}/.well-known/openid-configuration "
        "can't be reached (ConnectionError)."
    )
    assert _connection(session).protocol is None


def test_save_oidc_shows_error_when_discovery_names_another_issuer(
    client, session, signed_in, iam_server, oidc_client
):
    """The same provider reached as 127.0.0.1 still calls itself localhost (Discovery §4.3)."""
    other_name = f"http://127.0.0.1:{iam_server.port}"

    response = _save(client, iam_server, oidc_client, issuer=other_name)

    assert response.status_code == 422
    assert field_error(page_text(response), "issuer") == (
        f"The discovery document names issuer '{issuer_of(iam_server)}', not '{other_name}'."
    )
    assert _connection(session).protocol is None


@pytest.mark.parametrize(
    ("issuer", "message"),
    [
        ("http://idp.example.com", "The issuer URL must use https."),
        ("idp.example.com", "Enter the issuer URL as a full URL, like https://idp.example.com."),
        ("https://idp.example.com/?tenant=1", "The issuer URL can't have a query or fragment."),
        (
            "https://idp.example.com/\tenant",
            "The issuer URL can't contain spaces or control characters.",
        ),
    ],
)
def test_save_oidc_refuses_issuer_url_before_fetching_when_malformed(
    client, session, signed_in, iam_server, oidc_client, issuer, message
):
    response = _save(client, iam_server, oidc_client, issuer=issuer)

    assert response.status_code == 422
    assert field_error(page_text(response), "issuer") == message
    assert _connection(session).protocol is None


def test_save_oidc_shows_error_when_client_id_is_empty(
    client, session, signed_in, iam_server, oidc_client
):
    response = _save(client, iam_server, oidc_client, client_id="  ")

    assert response.status_code == 422
    page = page_text(response)
    assert field_error(page, "client_id") == "Enter the client ID."
    assert 'id="connection-panel"' in page
    assert _connection(session).protocol is None


def test_save_oidc_asks_for_secret_when_none_is_stored(
    client, session, signed_in, iam_server, oidc_client
):
    response = _save(client, iam_server, oidc_client, client_secret="")

    assert response.status_code == 422
    assert field_error(page_text(response), "client_secret") == "Enter the client secret."
    assert _connection(session).protocol is None


def test_client_secret_is_stored_encrypted_and_never_rendered(
    app, client, session, signed_in, iam_server, oidc_client
):
    secret = oidc_client.client_secret

    saved = _save(client, iam_server, oidc_client)
    refused = _save(client, iam_server, oidc_client, client_id="", client_secret=secret)

    stored = session.execute(text("SELECT oidc_client_secret_encrypted FROM sso_connection"))
    [ciphertext] = stored.scalars().all()
    assert secret not in ciphertext
    assert decrypt(ciphertext) == secret
    pages = [saved, refused, client.get(SSO_PAGE), client.get(SSO_PAGE + "?protocol=oidc")]
    for response in pages:
        assert secret not in response.get_data(as_text=True)
    assert "Stored encrypted; leave empty to keep the saved one" in page_text(pages[-1])
    for event in session.scalars(select(AuditEvent)):
        assert secret not in repr((event.target, event.detail))


def test_save_oidc_keeps_stored_secret_when_secret_is_left_empty(
    client, session, signed_in, iam_server, oidc_client
):
    _save(client, iam_server, oidc_client)
    new_id = oidc_client.client_id + "-renamed"

    response = _save(client, iam_server, oidc_client, client_id=new_id, client_secret="")

    assert response.status_code == 200
    connection = _connection(session)
    assert connection.oidc_client_id == new_id
    assert decrypt(connection.oidc_client_secret_encrypted) == oidc_client.client_secret


def test_save_oidc_is_refused_while_sso_is_enabled(
    client, session, account, owner, signed_in, verified, iam_server, oidc_client
):
    configure_oidc(session, account, owner, iam_server, oidc_client, enabled=True)

    response = _save(client, iam_server, oidc_client, client_id="another-client")

    assert response.status_code == 422
    assert "Disable SSO before changing its configuration." in page_text(response)
    connection = _connection(session)
    assert connection.enabled and connection.test_ok
    assert connection.oidc_client_id == oidc_client.client_id


def test_save_oidc_is_refused_while_enabled_even_when_issuer_is_unreachable(
    client, session, account, owner, signed_in, verified, iam_server, oidc_client
):
    configure_oidc(session, account, owner, iam_server, oidc_client, enabled=True)

    response = _save(client, iam_server, oidc_client, issuer=f"http://127.0.0.1:{free_port()}")

    assert response.status_code == 422
    assert "Disable SSO before changing its configuration." in page_text(response)
    assert _connection(session).oidc_issuer == issuer_of(iam_server)


# --- the test sign-in --------------------------------------------------------------------


def test_test_sign_in_sends_owner_to_idp_with_state_nonce_and_pkce(
    client, session, account, owner, signed_in, iam_server, oidc_client
):
    configure_oidc(session, account, owner, iam_server, oidc_client)

    start = client.post("/enterprise/sso/test")

    url = urlsplit(to_idp(client, start))
    query = {key: values[0] for key, values in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}{url.path}" == issuer_of(iam_server) + "/oauth/authorize"
    assert query["client_id"] == oidc_client.client_id
    assert query["redirect_uri"] == "http://localhost/sso/oidc/callback"
    assert query["response_type"] == "code"
    assert set(query["scope"].split()) == {"openid", "email", "profile"}
    assert query["code_challenge_method"] == "S256"
    flow = session.get(SsoFlow, query["state"])
    assert flow.purpose == "test" and flow.user_id == owner.id
    assert query["nonce"] == flow.oidc_nonce
    assert query["code_challenge"] != flow.oidc_code_verifier


def test_test_sign_in_passes_and_names_who_signed_in(
    client, session, account, owner, signed_in, iam_server, oidc_client, idp_user
):
    configure_oidc(session, account, owner, iam_server, oidc_client)
    idp_user("owner@example.com")

    page = _finish(client, _test_sign_in(client))

    assert "Test passed Signed in as owner@example.com." in status(page)
    connection = _connection(session)
    assert connection.test_ok and connection.tested_by_user_id == owner.id
    assert not connection.enabled


def test_test_sign_in_fails_with_reason_when_provider_refuses(
    client, session, account, owner, signed_in, iam_server, oidc_client
):
    configure_oidc(session, account, owner, iam_server, oidc_client)
    state = state_of(_start_test(client))

    page = _finish(client, f"/sso/oidc/callback?error=access_denied&state={state}")

    assert "Test failed The provider refused the sign-in: access_denied." in status(page)
    connection = _connection(session)
    assert not connection.test_ok and not connection.enabled


def test_test_sign_in_fails_with_reason_when_client_secret_is_wrong(
    client, session, account, owner, signed_in, iam_server, oidc_client, idp_user
):
    configure_oidc(session, account, owner, iam_server, oidc_client, secret="not-the-secret")
    idp_user("owner@example.com")

    page = _finish(client, _test_sign_in(client))

    assert (
        "Test failed The provider's token endpoint refused our client credentials "
        "(invalid_client): check the client ID and secret." in status(page)
    )
    assert not _connection(session).test_ok


def test_test_sign_in_fails_with_reason_when_id_token_is_for_another_client(
    client, session, account, owner, signed_in, iam_server, oidc_client, idp_user
):
    other = register_client(iam_server, "http://localhost/elsewhere")
    oidc_client.audience = [other]
    iam_server.backend.save(oidc_client)
    configure_oidc(session, account, owner, iam_server, oidc_client)
    idp_user("owner@example.com")
    try:
        page = _finish(client, _test_sign_in(client))
    finally:
        iam_server.backend.delete(other)

    assert (
        f"Test failed The ID token is meant for another client, not {oidc_client.client_id}."
        in status(page)
    )
    assert not _connection(session).test_ok


def test_test_sign_in_fails_with_reason_when_nonce_does_not_match(
    client, session, account, owner, signed_in, iam_server, oidc_client, idp_user
):
    configure_oidc(session, account, owner, iam_server, oidc_client)
    idp_user("owner@example.com")
    start = _start_test(client)
    flow = session.get(SsoFlow, state_of(start))
    flow.oidc_nonce = "a-nonce-of-another-sign-in"
    session.commit()

    page = _finish(client, idp_authorize(start))

    assert (
        "Test failed The ID token's nonce does not match this sign-in "
        "(a replayed or mixed-up response)." in status(page)
    )
    assert not _connection(session).test_ok


def test_test_sign_in_fails_when_pkce_verifier_does_not_match(
    client, session, account, owner, signed_in, iam_server, oidc_client, idp_user
):
    """The provider checks PKCE: a code is useless without the verifier of its flow."""
    configure_oidc(session, account, owner, iam_server, oidc_client)
    idp_user("owner@example.com")
    start = _start_test(client)
    flow = session.get(SsoFlow, state_of(start))
    flow.oidc_code_verifier = "x" * 64
    session.commit()

    page = _finish(client, idp_authorize(start))

    assert "Test failed The provider refused the authorization code (invalid_grant)" in status(page)
    assert not _connection(session).test_ok


def test_callback_refuses_replayed_state_with_400(
    client, session, account, owner, signed_in, iam_server, oidc_client, idp_user
):
    configure_oidc(session, account, owner, iam_server, oidc_client)
    idp_user("owner@example.com")
    callback = _test_sign_in(client)
    _finish(client, callback)

    replay = client.get(local_path(callback))

    assert replay.status_code == 400
    assert FLOW_GONE in page_text(replay)
    assert _connection(session).test_ok


def test_callback_refuses_unknown_state_with_400(
    client, session, account, owner, signed_in, iam_server, oidc_client
):
    configure_oidc(session, account, owner, iam_server, oidc_client)

    response = client.get("/sso/oidc/callback?code=abc&state=made-up-state")

    assert response.status_code == 400
    assert FLOW_GONE in page_text(response)
    assert _connection(session).tested_at is None


def test_callback_refuses_expired_state_with_400(
    app, client, session, account, owner, signed_in, iam_server, oidc_client
):
    connection = configure_oidc(session, account, owner, iam_server, oidc_client)
    started = utcnow() - timedelta(seconds=app.config["SSO_FLOW_SECONDS"] + 1)
    flow = services.start_flow(session, connection, "test", started, user_id=owner.id)
    session.commit()
    with client.session_transaction() as browser:  # started in this browser, long ago
        browser["sso_flow"] = flow.id

    response = client.get(f"/sso/oidc/callback?code=abc&state={flow.id}")

    assert response.status_code == 400
    assert FLOW_GONE in page_text(response)
    assert _connection(session).tested_at is None


def test_test_result_is_dropped_when_settings_change_during_the_test(
    client, session, account, owner, signed_in, iam_server, oidc_client, idp_user
):
    """A test started before a change says nothing about the new settings."""
    configure_oidc(session, account, owner, iam_server, oidc_client)
    idp_user("owner@example.com")
    callback = _test_sign_in(client)
    _save(client, iam_server, oidc_client, client_secret="")

    page = _finish(client, callback)

    assert "Test passed" not in status(page)
    assert "The settings changed while this test was running. Run it again." in status(page)
    assert not _connection(session).test_ok


def test_test_sign_in_is_404_when_nothing_is_configured(client, signed_in):
    assert client.post("/enterprise/sso/test").status_code == 404


@pytest.mark.parametrize(
    ("issuer", "message"),
    [
        ("http://localhost:8080", "The issuer URL must use https."),
        ("https://127.0.0.1", "The issuer URL must be on a public host."),
        ("https://10.1.2.3/realms/x", "The issuer URL must be on a public host."),
        ("https://169.254.169.254", "The issuer URL must be on a public host."),
        ("https://[::1]", "The issuer URL must be on a public host."),
        ("https://admin.localhost", "The issuer URL must be on a public host."),
    ],
)
def test_save_oidc_refuses_internal_addresses_in_production(
    app, client, session, signed_in, iam_server, oidc_client, issuer, message
):
    """Our server fetches the issuer: an owner must not aim it at our own network."""
    app.config["SSO_ALLOW_LOCAL_IDP"] = False
    response = _save(client, iam_server, oidc_client, issuer=issuer)

    assert response.status_code == 422
    assert field_error(page_text(response), "issuer") == message
    assert _connection(session).protocol is None
