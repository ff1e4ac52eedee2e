"""SAML 2.0 through the app's routes (SPEC F3): saving the IdP on the SSO page, our SP
metadata endpoint, and the ACS endpoint, with responses signed by a real SAML IdP
(pysaml2's own, tests/sso/saml_idp.py). The protocol checks themselves are in
test_saml.py; here it is what the owner and members see."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from blueprints.sso import saml as sp
from blueprints.sso import services
from models import SsoConnection, SsoFlow, User, utcnow
from tests import factories
from tests.sso.iam import to_idp
from tests.sso.pages import HTMX, SSO_PAGE, field_error, section, status
from tests.sso.pages import text as page_text
from tests.sso.saml_idp import IDP_ENTITY_ID, IDP_SSO_URL, SamlIdp, b64, make_key_pair

SAVE = "/enterprise/sso/saml"


@pytest.fixture(scope="session")
def idp_keys(tmp_path_factory):
    """The IdP's key pair and a stranger's, made once per test session."""
    root = tmp_path_factory.mktemp("saml-routes")
    return {
        "idp": make_key_pair(root / "idp", "idp.example.test"),
        "other": make_key_pair(root / "other", "attacker.example.test"),
    }


@pytest.fixture
def signed_in(owner, login_as):
    login_as(owner)
    return owner


@pytest.fixture
def connection(session, account, owner, idp_keys):
    """The account's connection, saved as the page saves it (the three fields)."""
    settings = sp.check_idp_settings(IDP_ENTITY_ID, IDP_SSO_URL, idp_keys["idp"].cert_pem)
    return services.save_saml(session, account.id, settings, None, owner.id, utcnow())


@pytest.fixture
def idp(connection, idp_keys) -> SamlIdp:
    """The IdP, signing with its key, knowing our SP from the metadata we publish."""
    return SamlIdp(idp_keys["idp"], sp.sp_metadata_xml(connection))


@pytest.fixture
def sso_on(session, account, connection):
    factories.make_domain(session, account, "example.com", verified=True)
    connection.test_ok, connection.enabled = True, True
    session.commit()
    return connection


def _connection(session) -> SsoConnection:
    session.expire_all()
    return session.scalar(select(SsoConnection))


def _to_idp(client, response, idp: SamlIdp) -> tuple[str, str]:
    """Follow us to the IdP; returns the AuthnRequest's ID and the RelayState it carries."""
    url = to_idp(client, response)
    assert url.startswith(IDP_SSO_URL + "?")
    query = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
    request = idp.parse_authn_request(query["SAMLRequest"])
    return request.id, query["RelayState"]


def _post_response(app, client, connection, idp, request_id, relay_state, email, **overrides):
    """The IdP's signed answer, posted by the browser to our ACS. It is a cross-site POST:
    no CSRF token, and the SameSite=Lax session cookie does not come along (hence a
    client without cookies); a refusal there is final, otherwise the ACS sends the
    browser on to /sso/saml/finish, which `client` (the browser that started, with its
    cookie) opens. Returns `client` and the last answer."""
    xml = idp.response(
        in_response_to=request_id,
        destination=sp.acs_url(connection),
        audience=sp.sp_entity_id(connection),
        email=email,
        **overrides,
    )
    response = app.test_client().post(
        f"/sso/saml/{connection.public_id}/acs",
        data={"SAMLResponse": b64(xml), "RelayState": relay_state},
        csrf=False,
    )
    if response.status_code == 303 and response.headers["Location"] == "/sso/saml/finish":
        response = client.get("/sso/saml/finish")
    return client, response


def _signed_in_as(client) -> str | None:
    response = client.get("/account")  # every signed-in user has it
    if response.status_code != 200:
        return None
    page = page_text(response)
    start = page.index('<span class="who">') + len('<span class="who">')
    return page[start : page.index("</span>", start)]


# --- saving the IdP on the page ----------------------------------------------------------


def test_save_saml_stores_idp_from_the_three_fields(client, session, signed_in, idp_keys):
    response = client.post(
        SAVE,
        data={
            "entity_id": IDP_ENTITY_ID,
            "sso_url": IDP_SSO_URL,
            "certificate": idp_keys["idp"].cert_pem,
        },
        headers=HTMX,
    )

    assert response.status_code == 200
    page = page_text(response)
    assert "<html" not in page and 'id="connection-panel"' in page
    assert "SAML 2.0: Not enabled" in status(page)
    assert f"Saved: {IDP_ENTITY_ID}, signing in at {IDP_SSO_URL}." in page
    connection = _connection(session)
    assert (connection.protocol, connection.saml_idp_entity_id) == ("saml", IDP_ENTITY_ID)
    assert connection.saml_idp_certificate.strip() == idp_keys["idp"].cert_pem.strip()


def test_save_saml_stores_idp_from_pasted_metadata(client, session, account, signed_in, idp_keys):
    public_id = services.ensure_connection(session, account.id, utcnow()).public_id
    metadata = SamlIdp(idp_keys["idp"], sp.sp_metadata_xml(_connection(session))).metadata_xml()

    response = client.post(SAVE, data={"metadata_xml": metadata}, headers=HTMX)

    assert response.status_code == 200
    connection = _connection(session)
    assert connection.public_id == public_id  # the URLs given to the IdP don't move
    assert (connection.saml_idp_entity_id, connection.saml_idp_sso_url) == (
        IDP_ENTITY_ID,
        IDP_SSO_URL,
    )
    assert connection.saml_idp_metadata_xml == metadata


def test_save_saml_shows_error_next_to_certificate_when_it_is_not_one(client, session, signed_in):
    response = client.post(
        SAVE,
        data={"entity_id": IDP_ENTITY_ID, "sso_url": IDP_SSO_URL, "certificate": "not a cert"},
        headers=HTMX,
    )

    assert response.status_code == 422
    assert field_error(page_text(response), "certificate")
    assert _connection(session).protocol is None


def test_save_saml_shows_error_next_to_metadata_when_it_is_not_metadata(client, session, signed_in):
    response = client.post(SAVE, data={"metadata_xml": "<html>Okta</html>"}, headers=HTMX)

    assert response.status_code == 422
    assert "not SAML 2.0 metadata" in field_error(page_text(response), "metadata_xml")
    assert _connection(session).protocol is None


def test_save_saml_is_refused_while_sso_is_enabled(client, session, signed_in, sso_on, idp_keys):
    response = client.post(
        SAVE,
        data={
            "entity_id": "https://another.example.test/saml",
            "sso_url": IDP_SSO_URL,
            "certificate": idp_keys["other"].cert_pem,
        },
        headers=HTMX,
    )

    assert response.status_code == 422
    assert "Disable SSO before changing its configuration." in page_text(response)
    assert _connection(session).saml_idp_entity_id == IDP_ENTITY_ID


# --- our SP metadata ---------------------------------------------------------------------


def test_sp_metadata_is_public_and_names_our_acs(client, connection):
    response = client.get(f"/sso/saml/{connection.public_id}/metadata")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/samlmetadata+xml"
    xml = response.get_data(as_text=True)
    assert f'entityID="http://localhost/sso/saml/{connection.public_id}/metadata"' in xml
    assert f'Location="http://localhost/sso/saml/{connection.public_id}/acs"' in xml
    assert "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress" in xml


def test_sp_metadata_is_404_for_an_unknown_connection(client, connection):
    assert client.get("/sso/saml/not-a-connection/metadata").status_code == 404


# --- the test sign-in and member sign-in through the ACS ---------------------------------


def test_saml_test_sign_in_passes_through_acs(app, client, session, signed_in, connection, idp):
    request_id, relay_state = _to_idp(client, client.post("/enterprise/sso/test"), idp)

    _, done = _post_response(
        app, client, connection, idp, request_id, relay_state, "owner@example.com"
    )

    assert done.status_code == 303 and done.headers["Location"] == SSO_PAGE
    page = page_text(client.get(SSO_PAGE))
    assert "Test passed Signed in as owner@example.com." in status(page)
    assert _connection(session).test_ok


def test_saml_test_sign_in_fails_with_reason_when_signed_by_another_key(
    app, client, session, signed_in, connection, idp_keys
):
    stranger = SamlIdp(idp_keys["other"], sp.sp_metadata_xml(connection))
    request_id, relay_state = _to_idp(client, client.post("/enterprise/sso/test"), stranger)

    _, done = _post_response(
        app, client, connection, stranger, request_id, relay_state, "owner@example.com"
    )

    assert done.status_code == 303
    page = page_text(client.get(SSO_PAGE))
    connection = _connection(session)
    assert f"Test failed {connection.test_message}" in status(page)
    assert "signature" in connection.test_message
    assert not connection.test_ok and not connection.enabled


def test_member_signs_in_through_acs(app, client, session, account, sso_on, idp):
    factories.make_user(session, account=account, email="member@example.com")
    request_id, relay_state = _to_idp(
        client, client.post("/login", data={"email": "member@example.com"}), idp
    )

    browser, done = _post_response(
        app, client, sso_on, idp, request_id, relay_state, "Member@Example.com"
    )

    assert done.status_code == 303 and done.headers["Location"] == "/"
    assert _signed_in_as(browser) == "member@example.com"


def test_acs_refuses_same_response_twice(app, client, session, account, sso_on, idp):
    factories.make_user(session, account=account, email="member@example.com")
    request_id, relay_state = _to_idp(
        client, client.post("/login", data={"email": "member@example.com"}), idp
    )
    _post_response(app, client, sso_on, idp, request_id, relay_state, "member@example.com")

    browser, replay = _post_response(
        app, app.test_client(), sso_on, idp, request_id, relay_state, "member@example.com"
    )

    assert replay.status_code == 400
    assert "already used" in section(page_text(replay), "sso-error")
    assert _signed_in_as(browser) is None


def test_acs_refuses_idp_initiated_response(app, client, session, account, sso_on, idp):
    factories.make_user(session, account=account, email="member@example.com")

    browser, response = _post_response(app, client, sso_on, idp, None, "", "member@example.com")

    assert response.status_code == 400
    assert "IdP-initiated sign-in is not supported" in section(page_text(response), "sso-error")
    assert _signed_in_as(browser) is None


def test_acs_refuses_unknown_member_and_creates_nobody(app, client, session, sso_on, idp):
    request_id, relay_state = _to_idp(
        client, client.post("/login", data={"email": "newcomer@example.com"}), idp
    )
    before = session.scalar(select(func.count(User.id)))

    browser, response = _post_response(
        app, client, sso_on, idp, request_id, relay_state, "newcomer@example.com"
    )

    assert response.status_code == 403
    assert section(page_text(response), "sso-error") == (
        "There is no account for newcomer@example.com. Ask your administrator."
    )
    assert session.scalar(select(func.count(User.id))) == before
    assert _signed_in_as(browser) is None


def test_refused_member_leaves_the_sign_in_spent_and_collected(app, client, session, sso_on, idp):
    """The 403 keeps what the refusal rests on (unit_of_work.keep_on_error): the flow is
    spent and its outcome collected, so neither can be used again."""
    request_id, relay_state = _to_idp(
        client, client.post("/login", data={"email": "newcomer@example.com"}), idp
    )

    _, response = _post_response(
        app, client, sso_on, idp, request_id, relay_state, "newcomer@example.com"
    )

    assert response.status_code == 403
    session.expire_all()
    flow = session.get(SsoFlow, relay_state)
    assert flow.used_at is not None and flow.finished_at is not None


def test_reloading_the_continue_page_resends_the_same_saml_request(
    app, client, session, account, sso_on, idp
):
    """A reload must not orphan the IdP's answer to the first request."""
    factories.make_user(session, account=account, email="member@example.com")
    first_id, relay_state = _to_idp(
        client, client.post("/login", data={"email": "member@example.com"}), idp
    )
    again = client.get("/sso/continue").headers["Refresh"].partition("; url=")[2]
    query = {key: values[0] for key, values in parse_qs(urlsplit(again).query).items()}
    assert idp.parse_authn_request(query["SAMLRequest"]).id == first_id

    browser, done = _post_response(
        app, client, sso_on, idp, first_id, relay_state, "member@example.com"
    )
    assert done.status_code == 303 and done.headers["Location"] == "/"
    assert _signed_in_as(browser) == "member@example.com"
