"""The SSO page (SPEC F3): who sees it, the values to give the IdP, the protocol switch,
and enabling or disabling SSO with the passphrase (SPEC F1)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from models import AuditEvent, SsoConnection
from tests import factories
from tests.sso.iam import (
    configure_oidc,
    issuer_of,
)
from tests.sso.pages import HTMX, SSO_PAGE, field_error, section, status
from tests.sso.pages import text as page_text

BASE_URL = "https://identity.example.test"


@pytest.fixture
def signed_in(owner, login_as):
    login_as(owner)
    return owner


@pytest.fixture
def verified(session, account):
    return factories.make_domain(session, account, "example.com", verified=True)


def _connection(session) -> SsoConnection:
    session.expire_all()
    return session.scalar(select(SsoConnection))


def _copy_value(page: str, element_id: str) -> str:
    """The value shown in `<code id=…>`, asserting a Copy button for exactly it follows."""
    match = re.search(
        rf'<code id="{element_id}">([^<]*)</code>\s*'
        rf'<button type="button" class="copy" data-copy="#{element_id}">Copy</button>',
        page,
    )
    assert match, f"no #{element_id} value with its copy button"
    return match.group(1)


def _actions(session, action: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


# --- who sees the page -------------------------------------------------------------------


def test_sso_page_is_403_for_a_plain_member(client, session, account, login_as):
    member = factories.make_user(session, account=account, email="member@example.com")
    login_as(member)

    assert client.get(SSO_PAGE).status_code == 403
    assert client.get(SSO_PAGE + "?protocol=saml", headers=HTMX).status_code == 403
    assert client.post("/enterprise/sso/enable", data={"passphrase": "x"}).status_code == 403


def test_sso_page_opens_for_a_co_owner(client, session, account, login_as):
    co_owner = factories.make_user(session, account=account, role="co-owner")
    login_as(co_owner)

    response = client.get(SSO_PAGE)

    assert response.status_code == 200
    assert "Not configured" in status(page_text(response))


def test_sso_page_sends_to_sign_in_when_signed_out(client):
    response = client.get(SSO_PAGE)

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/enterprise/sso")


# --- the values to give the IdP ----------------------------------------------------------


def test_sso_page_shows_absolute_oidc_redirect_uri_with_copy_button(app, client, signed_in):
    app.config["BASE_URL"] = BASE_URL

    page = page_text(client.get(SSO_PAGE + "?protocol=oidc"))

    assert _copy_value(page, "oidc-redirect") == BASE_URL + "/sso/oidc/callback"
    assert "Save OIDC settings" in page and 'name="client_secret"' in page


def test_a_new_sso_page_asks_which_protocol_and_preselects_none(client, signed_in):
    """SAML 2.0 is listed first: opening on OpenID Connect chose for the owner."""
    page = page_text(client.get(SSO_PAGE))

    assert 'id="protocol-choice"' in page
    assert 'id="oidc-redirect"' not in page and 'id="sp-acs"' not in page
    assert 'aria-current="true"' not in page.split('id="sso-config"', 1)[1]


@pytest.mark.parametrize("protocol", ["saml", "oidc"])
def test_the_sso_page_opens_on_the_saved_connections_protocol(client, session, signed_in, protocol):
    client.get(SSO_PAGE)  # (the connection row is made on the first visit)
    connection = _connection(session)
    connection.protocol = protocol
    session.commit()

    page = page_text(client.get(SSO_PAGE))

    shown = {"saml": 'id="sp-acs"', "oidc": 'id="oidc-redirect"'}
    assert shown[protocol] in page
    assert shown["oidc" if protocol == "saml" else "saml"] not in page


def test_sso_page_shows_saml_service_provider_values_with_copy_buttons(
    app, client, session, signed_in
):
    app.config["BASE_URL"] = BASE_URL

    page = page_text(client.get(SSO_PAGE + "?protocol=saml"))

    public_id = _connection(session).public_id
    assert _copy_value(page, "sp-acs") == f"{BASE_URL}/sso/saml/{public_id}/acs"
    assert _copy_value(page, "sp-entity") == f"{BASE_URL}/sso/saml/{public_id}/metadata"
    assert _copy_value(page, "sp-metadata") == f"{BASE_URL}/sso/saml/{public_id}/metadata"
    assert (
        _copy_value(page, "sp-nameid") == "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
    )
    assert "Save SAML settings" in page
    assert 'id="oidc-redirect"' not in page


def test_protocol_switch_returns_panel_fragment_for_htmx(client, signed_in):
    response = client.get(SSO_PAGE + "?protocol=saml", headers=HTMX)

    page = page_text(response)
    assert response.status_code == 200
    assert page.lstrip().startswith('<div id="connection-panel">')
    assert "<html" not in page
    assert 'id="sp-acs"' in page
    assert "HX-Request" in response.headers["Vary"]


def test_protocol_switch_without_htmx_renders_whole_page(client, signed_in):
    response = client.get(SSO_PAGE + "?protocol=oidc")

    page = page_text(response)
    assert "<html" in page and 'id="connection-panel"' in page
    assert 'id="oidc-redirect"' in page
    assert "HX-Request" in response.headers["Vary"]


def test_sso_page_ignores_unknown_protocol(client, signed_in):
    page = page_text(client.get(SSO_PAGE + "?protocol=kerberos"))

    assert 'id="protocol-choice"' in page
    assert 'id="oidc-redirect"' not in page and 'id="sp-acs"' not in page


# --- what enabling needs -----------------------------------------------------------------


def test_enable_is_not_offered_until_tested_and_domain_verified(
    client, session, account, owner, signed_in, iam_server, oidc_client
):
    configure_oidc(session, account, owner, iam_server, oidc_client)

    page = page_text(client.get(SSO_PAGE))

    assert "To enable SSO: verify a domain and run a successful test sign-in." in status(page)
    assert "Enable SSO" not in page
    assert 'href="/enterprise/domains"' in page


def test_enable_is_not_offered_when_tested_but_no_domain_is_verified(
    client, session, account, owner, signed_in, iam_server, oidc_client
):
    configure_oidc(session, account, owner, iam_server, oidc_client, tested=True)

    page = page_text(client.get(SSO_PAGE))

    assert "To enable SSO: verify a domain." in status(page)
    assert "Enable SSO" not in page


def test_enable_is_not_offered_when_domain_is_verified_but_not_tested(
    client, session, account, owner, signed_in, verified, iam_server, oidc_client
):
    configure_oidc(session, account, owner, iam_server, oidc_client)

    page = page_text(client.get(SSO_PAGE))

    assert "To enable SSO: run a successful test sign-in." in status(page)
    assert "Enable SSO" not in page


def test_enable_is_offered_when_tested_and_domain_verified(
    client, session, account, owner, signed_in, verified, iam_server, oidc_client
):
    configure_oidc(session, account, owner, iam_server, oidc_client, tested=True)

    page = page_text(client.get(SSO_PAGE))

    assert 'hx-get="/enterprise/sso/enable" hx-target="#sso-action"' in page
    assert "To enable SSO" not in page


def test_enable_is_refused_when_posted_without_a_successful_test(
    client, session, account, owner, signed_in, verified, iam_server, oidc_client
):
    configure_oidc(session, account, owner, iam_server, oidc_client)

    response = client.post(
        "/enterprise/sso/enable", data={"passphrase": factories.PASSPHRASE}, headers=HTMX
    )

    assert response.status_code == 422
    assert "Run a successful test sign-in first." in page_text(response)
    assert not _connection(session).enabled


def test_enable_is_refused_when_posted_without_a_verified_domain(
    client, session, account, owner, signed_in, iam_server, oidc_client
):
    configure_oidc(session, account, owner, iam_server, oidc_client, tested=True)

    response = client.post(
        "/enterprise/sso/enable", data={"passphrase": factories.PASSPHRASE}, headers=HTMX
    )

    assert response.status_code == 422
    assert "Verify a domain first: SSO applies to members of verified domains." in page_text(
        response
    )
    assert not _connection(session).enabled


def test_any_config_change_resets_the_test(
    client, session, account, owner, signed_in, verified, iam_server, oidc_client
):
    configure_oidc(session, account, owner, iam_server, oidc_client, tested=True)

    response = client.post(
        "/enterprise/sso/oidc",
        data={"issuer": issuer_of(iam_server), "client_id": oidc_client.client_id},
        headers=HTMX,
    )

    assert response.status_code == 200
    page = page_text(response)
    assert "Not tested since the last change." in status(page)
    assert "To enable SSO: run a successful test sign-in." in status(page)
    assert not _connection(session).test_ok


# --- enabling and disabling with the passphrase ------------------------------------------


def test_enable_asks_for_passphrase_in_place(
    client, session, account, owner, signed_in, verified, iam_server, oidc_client
):
    configure_oidc(session, account, owner, iam_server, oidc_client, tested=True)

    response = client.get("/enterprise/sso/enable", headers=HTMX)

    page = page_text(response)
    assert response.status_code == 200
    assert page.lstrip().startswith('<form id="confirm-form"')
    assert "<html" not in page
    assert "Enable single sign-on? Enter your passphrase to confirm." in page
    assert 'name="passphrase"' in page and 'hx-target="#connection-panel"' in page
    assert not _connection(session).enabled


def test_enable_with_wrong_passphrase_is_422_in_the_action_slot(
    client, session, account, owner, signed_in, verified, iam_server, oidc_client
):
    configure_oidc(session, account, owner, iam_server, oidc_client, tested=True)

    response = client.post(
        "/enterprise/sso/enable", data={"passphrase": "not my passphrase"}, headers=HTMX
    )

    assert response.status_code == 422
    assert "HX-Retarget" not in response.headers  # the form posts to the whole panel
    page = page_text(response)
    assert page.lstrip().startswith('<div id="connection-panel">') and "<html" not in page
    action_slot = page[page.index('<div id="sso-action">') :]
    assert 'id="confirm-form"' in action_slot
    assert field_error(action_slot, "passphrase") == "That passphrase is incorrect."
    assert not _connection(session).enabled
    assert _actions(session, "sso.enabled") == []


def test_enable_with_passphrase_turns_sso_on_and_returns_panel(
    client, session, account, owner, signed_in, verified, iam_server, oidc_client
):
    configure_oidc(session, account, owner, iam_server, oidc_client, tested=True)

    response = client.post(
        "/enterprise/sso/enable", data={"passphrase": factories.PASSPHRASE}, headers=HTMX
    )

    assert response.status_code == 200
    assert "HX-Retarget" not in response.headers
    page = page_text(response)
    assert page.lstrip().startswith('<div id="connection-panel">')
    assert "OpenID Connect: Enabled" in status(page)
    assert "Disable SSO" in page
    assert 'id="sso-config"' not in page  # the configuration is locked while SSO is on
    assert _connection(session).enabled
    [event] = _actions(session, "sso.enabled")
    assert event.actor_user_id == owner.id


def test_enable_without_htmx_redirects_back_to_page(
    client, session, account, owner, signed_in, verified, iam_server, oidc_client
):
    configure_oidc(session, account, owner, iam_server, oidc_client, tested=True)

    form = client.get("/enterprise/sso/enable")
    response = client.post("/enterprise/sso/enable", data={"passphrase": factories.PASSPHRASE})

    assert form.status_code == 200 and "<html" in page_text(form)
    assert response.status_code == 302 and response.headers["Location"] == SSO_PAGE
    assert "OpenID Connect: Enabled" in status(page_text(client.get(SSO_PAGE)))


def test_disable_with_wrong_passphrase_leaves_sso_on(
    client, session, account, owner, signed_in, verified, iam_server, oidc_client
):
    configure_oidc(session, account, owner, iam_server, oidc_client, enabled=True)

    response = client.post(
        "/enterprise/sso/disable", data={"passphrase": "not my passphrase"}, headers=HTMX
    )

    assert response.status_code == 422
    assert page_text(response).lstrip().startswith('<div id="connection-panel">')
    assert field_error(page_text(response), "passphrase") == "That passphrase is incorrect."
    assert _connection(session).enabled


def test_disable_with_passphrase_turns_sso_off_and_unlocks_configuration(
    client, session, account, owner, signed_in, verified, iam_server, oidc_client
):
    configure_oidc(session, account, owner, iam_server, oidc_client, enabled=True)
    prompt = page_text(client.get("/enterprise/sso/disable", headers=HTMX))

    response = client.post(
        "/enterprise/sso/disable", data={"passphrase": factories.PASSPHRASE}, headers=HTMX
    )

    assert "Disable single sign-on? Enter your passphrase to confirm." in prompt
    assert response.status_code == 200
    page = page_text(response)
    assert "OpenID Connect: Not enabled" in status(page)
    assert 'id="sso-config"' in page and "Save OIDC settings" in page
    assert not _connection(session).enabled
    assert len(_actions(session, "sso.disabled")) == 1


def test_enable_with_empty_passphrase_asks_for_it(
    client, session, account, owner, signed_in, verified, iam_server, oidc_client
):
    configure_oidc(session, account, owner, iam_server, oidc_client, tested=True)

    response = client.post("/enterprise/sso/enable", data={"passphrase": ""}, headers=HTMX)

    assert response.status_code == 422
    assert 'id="confirm-form"' in page_text(response)
    assert section(page_text(response), "passphrase-error")
    assert not _connection(session).enabled
