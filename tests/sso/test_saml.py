"""SAML 2.0 service provider (blueprints/sso/saml.py) against a real IdP: pysaml2's own
saml2.server, signing through xmlsec1 with a key made for the test session.

Responses are built by the IdP; the refused ones are what a misconfigured or hostile IdP,
or someone in between, would send: altered after signing, signed with another key,
unsigned, for another SP, late, early, unasked for, replayed, or shaped to smuggle a
second assertion past the signature check.
"""

from __future__ import annotations

import base64
import re
import zlib
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from saml2 import BINDING_HTTP_POST, md, saml, samlp
from saml2.attribute_converter import ac_factory
from saml2.config import SPConfig
from saml2.mdstore import MetadataStore
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NAMEID_FORMAT_PERSISTENT, NameID
from sqlalchemy import func, select
from sqlalchemy.orm import object_session
from werkzeug.routing import Rule

from blueprints.sso import saml as sp
from models import SsoConnection, UsedAssertion
from tests.sso.iam import to_idp
from tests.sso.saml_idp import IDP_ENTITY_ID, IDP_SSO_URL, SamlIdp, b64, make_key_pair

PUBLIC_ID = "samltest0001"
SP_ENTITY_ID = f"http://localhost/sso/saml/{PUBLIC_ID}/metadata"
ACS_URL = f"http://localhost/sso/saml/{PUBLIC_ID}/acs"
REQUEST_ID = "id-4f1c0a5e9b2d4c7e8a6f3b1d0c9e8f7a"


@pytest.fixture(scope="session")
def saml_keys(tmp_path_factory):
    """The IdP's key pair and a stranger's, made once per test session."""
    root = tmp_path_factory.mktemp("saml")
    return {
        "idp": make_key_pair(root / "idp", "idp.example.test"),
        "other": make_key_pair(root / "other", "attacker.example.test"),
    }


@pytest.fixture
def saml_urls(app):
    """The ACS and metadata endpoints; the sso blueprint provides them, and a bare URL
    rule stands in should it not (saml.py only needs to build the URLs)."""
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    for endpoint, path in (("sso.saml_metadata", "metadata"), ("sso.saml_acs", "acs")):
        if endpoint not in endpoints:
            app.url_map.add(Rule(f"/sso/saml/<public_id>/{path}", endpoint=endpoint))


@pytest.fixture
def connection(session, account, saml_keys, saml_urls):
    connection = SsoConnection(
        account_id=account.id,
        public_id=PUBLIC_ID,
        protocol="saml",
        saml_idp_entity_id=IDP_ENTITY_ID,
        saml_idp_sso_url=IDP_SSO_URL,
        saml_idp_certificate=saml_keys["idp"].cert_pem,
    )
    session.add(connection)
    session.commit()
    return connection


_idps: dict = {}


@pytest.fixture
def make_idp(connection, saml_keys):
    """An IdP (kept for the session) signing with the named key, knowing our SP."""

    def make(key: str = "idp", entity_id: str = IDP_ENTITY_ID) -> SamlIdp:
        metadata = sp.sp_metadata_xml(connection)
        cache_key = (key, entity_id, metadata)
        if cache_key not in _idps:
            _idps[cache_key] = SamlIdp(saml_keys[key], metadata, entity_id=entity_id)
        return _idps[cache_key]

    return make


@pytest.fixture
def idp(make_idp) -> SamlIdp:
    return make_idp()


def respond(idp: SamlIdp, **overrides) -> str:
    """The IdP's response to our request REQUEST_ID, as the browser posts it."""
    values = {"in_response_to": REQUEST_ID, "destination": ACS_URL, "audience": SP_ENTITY_ID}
    return b64(idp.response(**(values | overrides)))


def wall_clock() -> datetime:
    """The pysaml2 IdP stamps its responses with the real time, so tests start from it."""
    return datetime.now(UTC)


def refused(connection, saml_response: str, expected=REQUEST_ID, now=None) -> sp.SamlResponseError:
    with pytest.raises(sp.SamlResponseError) as caught:
        sp.parse_response(connection, saml_response, expected, now or wall_clock())
    assert str(caught.value)  # a message for the owner, always
    used = object_session(connection).scalar(select(func.count()).select_from(UsedAssertion))
    assert used == 0
    return caught.value


# --- our side ---------------------------------------------------------------------------


def test_sp_urls_are_absolute_and_stable(connection):
    """IdP administrators paste these once: they must not move."""
    assert sp.sp_entity_id(connection) == SP_ENTITY_ID
    assert sp.acs_url(connection) == ACS_URL


def test_sp_metadata_loads_in_pysaml2_metadata_store(connection):
    xml = sp.sp_metadata_xml(connection)
    config = SPConfig()
    config.load({"entityid": "https://reader.example.test"})
    store = MetadataStore(ac_factory(), config)
    store.load("inline", xml)

    assert list(store.keys()) == [SP_ENTITY_ID]
    assert store.assertion_consumer_service(SP_ENTITY_ID, BINDING_HTTP_POST)[0]["location"] == (
        ACS_URL
    )
    descriptor = md.entity_descriptor_from_string(xml).spsso_descriptor[0]
    assert descriptor.want_assertions_signed == "true"
    assert [f.text for f in descriptor.name_id_format] == [NAMEID_FORMAT_EMAILADDRESS]
    assert descriptor.protocol_support_enumeration == samlp.NAMESPACE


def test_build_authn_request_redirects_to_the_idp_with_request_and_relay_state(connection, idp):
    url, request_id = sp.build_authn_request(connection, relay_state="flow-123")

    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == IDP_SSO_URL
    query = parse_qs(parts.query)
    assert query["RelayState"] == ["flow-123"]
    xml = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15).decode()
    request = samlp.authn_request_from_string(xml)
    assert request.id == request_id
    assert request.destination == IDP_SSO_URL
    assert request.assertion_consumer_service_url == ACS_URL
    assert request.protocol_binding == BINDING_HTTP_POST
    assert request.issuer.text == SP_ENTITY_ID
    # and the IdP itself reads it as a request from us
    read = idp.parse_authn_request(query["SAMLRequest"][0])
    assert (read.id, read.issuer.text) == (request_id, SP_ENTITY_ID)


def test_build_authn_request_makes_a_new_id_each_time(connection):
    ids = {sp.build_authn_request(connection, relay_state="x")[1] for _ in range(3)}
    assert len(ids) == 3
    assert all(re.fullmatch(r"id-[0-9a-f]{32}", i) for i in ids)


def test_build_authn_request_keeps_the_sso_url_query(connection):
    """Google's SSO URL carries ?idpid=…; the request is appended, not substituted."""
    connection.saml_idp_sso_url = "https://accounts.google.example/o/saml2/idp?idpid=C01"
    url, _ = sp.build_authn_request(connection, relay_state="r")
    query = parse_qs(urlsplit(url).query)
    assert query["idpid"] == ["C01"]
    assert "SAMLRequest" in query


def test_build_authn_request_refuses_a_relay_state_over_80_bytes(connection):
    with pytest.raises(ValueError):
        sp.build_authn_request(connection, relay_state="x" * 81)


# --- accepted responses -----------------------------------------------------------------


def test_round_trip_signed_response_for_our_request_is_accepted(connection, idp):
    _, request_id = sp.build_authn_request(connection, relay_state="flow")
    now = wall_clock()
    saml_response = respond(idp, in_response_to=request_id, email="ann@example.com")

    identity = sp.parse_response(connection, saml_response, request_id, now)

    assert identity.email == "ann@example.com"
    assert identity.name_id == "ann@example.com"
    assert identity.in_response_to == request_id
    assert identity.assertion_id.startswith("id-")
    assert now < identity.not_on_or_after <= now + timedelta(minutes=5, seconds=2)
    assert identity.attributes["urn:oid:0.9.2342.19200300.100.1.3"] == ["ann@example.com"]


@pytest.mark.parametrize(
    ("sign_assertion", "sign_response"),
    [(True, False), (False, True), (True, True)],
    ids=["assertion-signed", "response-signed", "both-signed"],
)
def test_response_or_assertion_signature_is_enough(connection, idp, sign_assertion, sign_response):
    saml_response = respond(idp, sign_assertion=sign_assertion, sign_response=sign_response)
    assert sp.parse_response(connection, saml_response, REQUEST_ID, wall_clock()).email == (
        "ann@example.com"
    )


def test_response_without_destination_is_accepted(connection, idp):
    """Destination is optional on a signed-assertion response (SAML core §3.2.2)."""

    def drop_destination(response):
        response.destination = None

    saml_response = respond(idp, change=drop_destination)
    assert sp.parse_response(connection, saml_response, REQUEST_ID, wall_clock())


def test_certificate_bundle_accepts_either_key_during_a_rollover(connection, idp, saml_keys):
    connection.saml_idp_certificate = saml_keys["other"].cert_pem + saml_keys["idp"].cert_pem
    assert sp.parse_response(connection, respond(idp), REQUEST_ID, wall_clock())


def _attributes(*pairs):
    def change(response):
        response.assertion[0].attribute_statement = [
            saml.AttributeStatement(
                attribute=[
                    saml.Attribute(name=name, attribute_value=[saml.AttributeValue(text=value)])
                    for name, value in pairs
                ]
            )
        ]

    return change


PERSISTENT = NameID(format=NAMEID_FORMAT_PERSISTENT, text="00u1a2b3c4d5e6f7g8")


@pytest.mark.parametrize(
    "attribute",
    [
        "email",
        "mail",
        "Email",  # as Okta admins often name it
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        "urn:oid:0.9.2342.19200300.100.1.3",
    ],
)
def test_email_from_an_attribute_when_the_name_id_is_not_one(connection, idp, attribute):
    saml_response = respond(
        idp,
        name_id=PERSISTENT,
        change=_attributes(("displayName", "Ann"), (attribute, "ann@example.com")),
    )
    identity = sp.parse_response(connection, saml_response, REQUEST_ID, wall_clock())
    assert identity.email == "ann@example.com"
    assert identity.name_id == PERSISTENT.text
    assert identity.attributes[attribute] == ["ann@example.com"]


def test_response_declaring_utf8_is_accepted_and_other_encodings_are_not(connection, idp):
    """Okta and Entra ID start with <?xml version="1.0" encoding="UTF-8"?>."""
    xml = idp.response(in_response_to=REQUEST_ID, destination=ACS_URL, audience=SP_ENTITY_ID)
    body = xml.split("?>", 1)[1]
    utf8 = '<?xml version="1.0" encoding="UTF-8"?>' + body
    assert sp.parse_response(connection, b64(utf8), REQUEST_ID, wall_clock())
    latin1 = '<?xml version="1.0" encoding="ISO-8859-1"?>' + body
    assert refused(connection, b64(latin1.encode("latin-1"))).code == "malformed"


def test_comment_inside_the_name_id_does_not_truncate_the_email(connection, idp):
    """Exclusive C14N drops comments, so inserting one keeps the signature valid; a parser
    reading only the first text node would see ann@example.com (the 2018 SAML
    comment-truncation attack). The whole, signed address is what counts."""
    xml = idp.response(
        in_response_to=REQUEST_ID,
        destination=ACS_URL,
        audience=SP_ENTITY_ID,
        email="ann@example.com.evil.test",
    )
    tampered = xml.replace(
        ">ann@example.com.evil.test</ns1:NameID>", ">ann@example.com<!---->.evil.test</ns1:NameID>"
    )
    assert tampered != xml
    identity = sp.parse_response(connection, b64(tampered), REQUEST_ID, wall_clock())
    assert identity.email == "ann@example.com.evil.test"


# --- refused responses ------------------------------------------------------------------


def test_unsigned_response_is_refused(connection, idp):
    error = refused(connection, respond(idp, sign_assertion=False, sign_response=False))
    assert error.code == "bad_signature"


def test_response_signed_with_another_key_is_refused(connection, make_idp):
    impostor = make_idp("other")  # same entity id, its own key (and its cert in KeyInfo)
    for signing in ({"sign_assertion": True}, {"sign_assertion": False, "sign_response": True}):
        assert refused(connection, respond(impostor, **signing)).code == "bad_signature"


def test_response_is_refused_while_no_certificate_is_configured(connection, idp):
    """The certificate in the message's KeyInfo is never a fallback."""
    connection.saml_idp_certificate = None
    assert refused(connection, respond(idp)).code == "bad_signature"


@pytest.mark.parametrize(
    "signing",
    [{"sign_assertion": True}, {"sign_assertion": False, "sign_response": True}],
    ids=["assertion-signed", "response-signed"],
)
def test_response_altered_after_signing_is_refused(connection, idp, signing):
    xml = idp.response(
        in_response_to=REQUEST_ID, destination=ACS_URL, audience=SP_ENTITY_ID, **signing
    )
    tampered = xml.replace(">ann@example.com<", ">boss@example.com<")
    assert tampered != xml
    assert refused(connection, b64(tampered)).code == "bad_signature"


def test_wrong_audience_is_refused(connection, idp):
    def other_audience(response):
        restriction = response.assertion[0].conditions.audience_restriction[0]
        restriction.audience[0].text = "https://other-sp.example.test/metadata"

    error = refused(connection, respond(idp, change=other_audience))
    assert error.code == "wrong_audience"
    assert SP_ENTITY_ID in str(error)


def test_wrong_destination_is_refused(connection, idp):
    saml_response = respond(idp, destination="https://other-sp.example.test/acs")
    assert refused(connection, saml_response).code == "wrong_destination"


def test_wrong_recipient_is_refused(connection, idp):
    def other_recipient(response):
        confirmation = response.assertion[0].subject.subject_confirmation[0]
        confirmation.subject_confirmation_data.recipient = "https://other-sp.example.test/acs"

    assert refused(connection, respond(idp, change=other_recipient)).code == "wrong_recipient"


def test_wrong_issuer_is_refused(connection, idp):
    connection.saml_idp_entity_id = "https://another-idp.example.test/metadata"
    error = refused(connection, respond(idp))
    assert error.code == "wrong_issuer"
    assert IDP_ENTITY_ID in str(error)


def test_expired_response_is_refused_once_the_skew_has_passed(connection, idp):
    saml_response = respond(idp)
    expiry = sp.parse_response(connection, saml_response, REQUEST_ID, wall_clock()).not_on_or_after

    # Still accepted within the 120 s skew, refused from its end on.
    assert sp.parse_response(connection, saml_response, REQUEST_ID, expiry + timedelta(seconds=119))
    error = refused(connection, saml_response, now=expiry + timedelta(seconds=120))
    assert error.code == "expired"


def test_clock_skew_is_configurable(app, connection, idp):
    app.config["SAML_CLOCK_SKEW_SECONDS"] = 0
    saml_response = respond(idp)
    expiry = sp.parse_response(connection, saml_response, REQUEST_ID, wall_clock()).not_on_or_after
    assert refused(connection, saml_response, now=expiry).code == "expired"


def test_response_not_yet_valid_is_refused(connection, idp):
    issued = wall_clock().replace(microsecond=0)
    saml_response = respond(idp)  # NotBefore = IssueInstant = now, to the second
    assert sp.parse_response(connection, saml_response, REQUEST_ID, issued - timedelta(seconds=119))
    error = refused(connection, saml_response, now=issued - timedelta(seconds=122))
    assert error.code == "not_yet_valid"


def test_response_without_in_response_to_is_unsolicited(connection, idp):
    """IdP-initiated sign-in: no request of ours to answer."""
    saml_response = respond(idp, in_response_to=None)
    assert refused(connection, saml_response).code == "unsolicited"
    assert refused(connection, saml_response, expected=None).code == "unsolicited"


def test_response_when_no_request_is_expected_is_unsolicited(connection, idp):
    assert refused(connection, respond(idp), expected=None).code == "unsolicited"


def test_response_to_another_request_is_refused(connection, idp):
    saml_response = respond(idp, in_response_to="id-someone-elses-request")
    assert refused(connection, saml_response).code == "wrong_in_response_to"


def test_response_without_any_email_is_refused(connection, idp):
    saml_response = respond(idp, name_id=PERSISTENT, change=_attributes(("displayName", "Ann")))
    assert refused(connection, saml_response).code == "no_email"


def test_idp_error_status_is_reported(connection, idp):
    response = idp.server.create_error_response(
        REQUEST_ID, ACS_URL, (samlp.STATUS_AUTHN_FAILED, "User cancelled")
    )
    error = refused(connection, b64(str(response)))
    assert error.code == "idp_error"
    assert "User cancelled" in str(error)


@pytest.mark.parametrize(
    "saml_response",
    [
        "",
        "not base64 at all!",
        base64.b64encode(b"\x89PNG\r\n\x1a\n not xml").decode(),
        b64("<html><body>Sign-in failed</body></html>"),
        b64('<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="x"/>'),
    ],
    ids=["empty", "garbage", "binary", "html", "not-a-response"],
)
def test_garbage_is_malformed(connection, saml_response):
    assert refused(connection, saml_response).code == "malformed"


def _with_doctype(xml: str, doctype: str) -> str:
    body = xml.split("?>", 1)[1] if xml.startswith("<?xml") else xml
    return '<?xml version="1.0"?>\n' + doctype + body


def test_external_entity_is_refused_before_anything_reads_it(connection, idp):
    """XXE: an external entity would make the parser read a local file."""
    xml = idp.response(in_response_to=REQUEST_ID, destination=ACS_URL, audience=SP_ENTITY_ID)
    xxe = _with_doctype(
        xml.replace(">ann@example.com<", ">&leak;<", 1),
        '<!DOCTYPE foo [<!ENTITY leak SYSTEM "file:///etc/passwd">]>',
    )
    assert refused(connection, b64(xxe)).code == "malformed"


def test_entity_expansion_bomb_is_refused(connection, idp):
    xml = idp.response(in_response_to=REQUEST_ID, destination=ACS_URL, audience=SP_ENTITY_ID)
    bomb = _with_doctype(
        xml.replace(">ann@example.com<", ">&b;<", 1),
        '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>',
    )
    assert refused(connection, b64(bomb)).code == "malformed"


def test_any_dtd_is_refused_even_without_entities(connection, idp):
    xml = idp.response(in_response_to=REQUEST_ID, destination=ACS_URL, audience=SP_ENTITY_ID)
    assert refused(connection, b64(_with_doctype(xml, "<!DOCTYPE Response>"))).code == "malformed"


def _signed_assertion_and_forgery(idp):
    """A genuinely signed response for ann, and an unsigned assertion for boss made from
    it (another ID, no signature), as a signature-wrapping attacker would."""
    xml = idp.response(in_response_to=REQUEST_ID, destination=ACS_URL, audience=SP_ENTITY_ID)
    signed = re.search(r"<ns1:Assertion .*</ns1:Assertion>", xml, re.S).group(0)
    forged = re.sub(r"<ns2:Signature.*</ns2:Signature>", "", signed, flags=re.S)
    forged = forged.replace(">ann@example.com<", ">boss@example.com<")
    forged = re.sub(r' ID="[^"]+"', ' ID="id-forged"', forged, count=1)
    return xml, signed, forged


def test_signature_wrapping_with_a_second_assertion_is_refused(connection, idp):
    xml, signed, forged = _signed_assertion_and_forgery(idp)
    for wrapped in (xml.replace(signed, forged + signed), xml.replace(signed, signed + forged)):
        assert refused(connection, b64(wrapped)).code == "malformed"


def test_signature_wrapping_with_the_signed_assertion_hidden_is_refused(connection, idp):
    """The signed assertion moved into Extensions, the forged one in its place."""
    xml, signed, forged = _signed_assertion_and_forgery(idp)
    extensions = f"<ns0:Extensions>{signed}</ns0:Extensions>"
    wrapped = xml.replace(signed, forged).replace("<ns0:Status>", extensions + "<ns0:Status>")
    assert refused(connection, b64(wrapped)).code == "malformed"


def test_signature_wrapping_with_a_duplicate_id_is_refused(connection, idp):
    xml, signed, forged = _signed_assertion_and_forgery(idp)
    signed_id = re.search(r' ID="([^"]+)"', signed).group(1)
    same_id = forged.replace('ID="id-forged"', f'ID="{signed_id}"')
    extensions = f"<ns0:Extensions><ns1:Advice>{signed}</ns1:Advice></ns0:Extensions>"
    wrapped = xml.replace(signed, same_id).replace("<ns0:Status>", extensions + "<ns0:Status>")
    assert refused(connection, b64(wrapped)).code == "malformed"


def test_response_signature_moved_after_the_assertion_is_refused(connection, idp):
    """xmlsec1 verifies the first Signature below the node it is given: moved after the
    assertion, the response's signature would go unchecked, the assertion's checked twice."""
    xml = idp.response(
        in_response_to=REQUEST_ID,
        destination=ACS_URL,
        audience=SP_ENTITY_ID,
        sign_assertion=True,
        sign_response=True,
    )
    response_signature = re.search(r"<ns2:Signature.*?</ns2:Signature>", xml, re.S).group(0)
    assert "<ns0:Status>" in xml.split(response_signature)[1]  # it was the response's
    moved = xml.replace(response_signature, "", 1).replace(
        "</ns0:Response>", response_signature + "</ns0:Response>"
    )
    assert refused(connection, b64(moved)).code == "malformed"


def test_assertion_without_its_signature_in_a_signed_looking_response_is_refused(connection, idp):
    """Only the assertion was signed; stripping its signature leaves nothing signed."""
    xml, signed, forged = _signed_assertion_and_forgery(idp)
    assert refused(connection, b64(xml.replace(signed, forged))).code == "bad_signature"


# --- one-time use -----------------------------------------------------------------------


def test_second_use_of_an_assertion_is_a_replay(session, connection, idp):
    now = wall_clock()
    saml_response = respond(idp)
    identity = sp.parse_response(connection, saml_response, REQUEST_ID, now)
    assert sp.mark_assertion_used(
        session, connection, identity.assertion_id, identity.not_on_or_after
    )
    session.commit()

    again = sp.parse_response(connection, saml_response, REQUEST_ID, now)  # still valid…
    assert not sp.mark_assertion_used(
        session, connection, again.assertion_id, again.not_on_or_after
    )
    session.commit()
    assert session.scalar(select(func.count()).select_from(UsedAssertion)) == 1


def test_purge_forgets_assertions_only_once_they_cannot_be_replayed(session, connection):
    now = wall_clock()
    sp.mark_assertion_used(session, connection, "id-old", now - timedelta(seconds=121))
    sp.mark_assertion_used(session, connection, "id-in-skew", now - timedelta(seconds=60))
    sp.mark_assertion_used(session, connection, "id-live", now + timedelta(minutes=5))
    session.commit()

    assert sp.purge_used_assertions(session, now) == 1
    session.commit()
    assert set(session.scalars(select(UsedAssertion.id))) == {"id-in-skew", "id-live"}


# --- IdP settings -----------------------------------------------------------------------


def test_idp_metadata_from_pysaml2_is_accepted(idp, saml_keys):
    settings = sp.parse_idp_metadata(idp.metadata_xml())
    assert settings == sp.IdpSettings(
        entity_id=IDP_ENTITY_ID, sso_url=IDP_SSO_URL, certificate_pem=saml_keys["idp"].cert_pem
    )


def test_idp_metadata_inside_an_entities_descriptor_is_accepted(idp):
    wrapped = (
        f'<md:EntitiesDescriptor xmlns:md="{md.NAMESPACE}">'
        f"{idp.metadata_xml()}</md:EntitiesDescriptor>"
    )
    assert sp.parse_idp_metadata(wrapped).entity_id == IDP_ENTITY_ID


def test_okta_shaped_idp_metadata_is_accepted(saml_keys):
    """As Okta's "Identity Provider metadata" link serves it: POST and Redirect services,
    the certificate as one long base64 line."""
    body = "".join(saml_keys["idp"].cert_pem.splitlines()[1:-1])
    xml = f"""<?xml version="1.0" encoding="UTF-8"?><md:EntityDescriptor
        xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="http://www.okta.com/exk1a2b3">
      <md:IDPSSODescriptor WantAuthnRequestsSigned="false"
          protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
        <md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
          <ds:X509Data><ds:X509Certificate>{body}</ds:X509Certificate></ds:X509Data>
        </ds:KeyInfo></md:KeyDescriptor>
        <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
        <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
          Location="https://acme.okta.example/app/acme_app_1/exk1a2b3/sso/saml"/>
        <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
          Location="https://acme.okta.example/app/acme_app_1/exk1a2b3/sso/saml?redirect=1"/>
      </md:IDPSSODescriptor></md:EntityDescriptor>"""
    settings = sp.parse_idp_metadata(xml)
    assert settings == sp.IdpSettings(
        entity_id="http://www.okta.com/exk1a2b3",
        sso_url="https://acme.okta.example/app/acme_app_1/exk1a2b3/sso/saml?redirect=1",
        certificate_pem=saml_keys["idp"].cert_pem,
    )


def _without(xml: str, pattern: str) -> str:
    changed = re.sub(pattern, "", xml, flags=re.S)
    assert changed != xml
    return changed


@pytest.mark.parametrize(
    ("make_xml", "message"),
    [
        (lambda idp, conn: "", "Paste"),
        (lambda idp, conn: "this is not xml <", "not usable XML"),
        (lambda idp, conn: "<html><body>Okta</body></html>", "not SAML 2.0 metadata"),
        (lambda idp, conn: sp.sp_metadata_xml(conn), "no SAML 2.0 identity provider"),
        (
            lambda idp, conn: _without(
                idp.metadata_xml(), r"<(\w+:)?KeyDescriptor.*</(\w+:)?KeyDescriptor>"
            ),
            "no signing certificate",
        ),
        (
            lambda idp, conn: _without(
                idp.metadata_xml(), r'<(\w+:)?SingleSignOnService Binding="[^"]*Redirect"[^>]*/>'
            ),
            "HTTP-Redirect",
        ),
        (
            lambda idp, conn: (
                '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + idp.metadata_xml()
            ),
            "not usable XML",
        ),
    ],
    ids=["empty", "garbage", "not-metadata", "sp-metadata", "no-cert", "no-redirect", "xxe"],
)
def test_unusable_idp_metadata_is_refused(idp, connection, make_xml, message):
    with pytest.raises(sp.SamlConfigError) as caught:
        sp.parse_idp_metadata(make_xml(idp, connection))
    assert caught.value.field == "metadata_xml"
    assert message in str(caught.value)


def test_idp_metadata_with_a_plain_http_sso_url_is_refused(idp):
    xml = idp.metadata_xml().replace(IDP_SSO_URL, "http://idp.example.test/saml/sso")
    with pytest.raises(sp.SamlConfigError) as caught:
        sp.parse_idp_metadata(xml)
    assert caught.value.field == "metadata_xml"
    assert "https://" in str(caught.value)


def test_check_idp_settings_normalises(saml_keys):
    pem = saml_keys["idp"].cert_pem
    bare_der = "".join(line for line in pem.splitlines() if "-----" not in line)
    for certificate in (
        pem,
        f"\n  {pem}  \n",
        bare_der,
        "\n".join(re.findall(".{1,76}", bare_der)),
    ):
        settings = sp.check_idp_settings(f"  {IDP_ENTITY_ID} ", f" {IDP_SSO_URL} ", certificate)
        assert settings == sp.IdpSettings(IDP_ENTITY_ID, IDP_SSO_URL, pem)


@pytest.mark.parametrize(
    "url",
    [
        "https://idp.example.test/sso",
        "https://accounts.google.example/o/saml2/idp?idpid=C01",
        "http://localhost:8080/sso",
        "http://127.0.0.1/sso",
    ],
)
def test_check_idp_settings_accepts_https_and_loopback_urls(saml_keys, url):
    assert sp.check_idp_settings(IDP_ENTITY_ID, url, saml_keys["idp"].cert_pem).sso_url == url


@pytest.mark.parametrize(
    ("entity_id", "url", "certificate", "field"),
    [
        ("", IDP_SSO_URL, None, "entity_id"),
        ("x" * 1025, IDP_SSO_URL, None, "entity_id"),
        ("https://idp example", IDP_SSO_URL, None, "entity_id"),
        (IDP_ENTITY_ID, "", None, "sso_url"),
        (IDP_ENTITY_ID, "http://idp.example.test/sso", None, "sso_url"),
        (IDP_ENTITY_ID, "ftp://idp.example.test/sso", None, "sso_url"),
        (IDP_ENTITY_ID, "javascript:alert(1)", None, "sso_url"),
        (IDP_ENTITY_ID, "https://", None, "sso_url"),
        (IDP_ENTITY_ID, "https://user:pw@idp.example.test/sso", None, "sso_url"),
        (IDP_ENTITY_ID, "idp.example.test/sso", None, "sso_url"),
        (IDP_ENTITY_ID, IDP_SSO_URL, "", "certificate"),
        (IDP_ENTITY_ID, IDP_SSO_URL, "not a certificate", "certificate"),
        (IDP_ENTITY_ID, IDP_SSO_URL, base64.b64encode(b"garbage").decode(), "certificate"),
        (
            IDP_ENTITY_ID,
            IDP_SSO_URL,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
            "certificate",
        ),
    ],
)
def test_check_idp_settings_names_the_bad_field(saml_keys, entity_id, url, certificate, field):
    certificate = saml_keys["idp"].cert_pem if certificate is None else certificate
    with pytest.raises(sp.SamlConfigError) as caught:
        sp.check_idp_settings(entity_id, url, certificate)
    assert caught.value.field == field
    assert str(caught.value)


def test_check_idp_settings_refuses_a_private_key(saml_keys):
    key_pem = saml_keys["idp"].key_file.read_text()
    with pytest.raises(sp.SamlConfigError) as caught:
        sp.check_idp_settings(IDP_ENTITY_ID, IDP_SSO_URL, key_pem + saml_keys["idp"].cert_pem)
    assert caught.value.field == "certificate"
    assert "private key" in str(caught.value)


# --- through the SSO routes -------------------------------------------------------------


def _owner_tests_saml(client, session, owner, login_as, saml_keys, tamper=None):
    """The owner saves the IdP's metadata, clicks Test sign-in, and the IdP posts its
    response back to our ACS URL (optionally altered on the way)."""
    login_as(owner)
    assert client.get("/enterprise/sso").status_code == 200  # makes the connection row
    connection = session.scalar(select(SsoConnection))
    idp = SamlIdp(saml_keys["idp"], sp.sp_metadata_xml(connection))
    saved = client.post("/enterprise/sso/saml", data={"metadata_xml": idp.metadata_xml()})
    assert saved.status_code in (200, 302), saved.get_data(as_text=True)[:2000]

    query = parse_qs(urlsplit(to_idp(client, client.post("/enterprise/sso/test"))).query)
    request = idp.parse_authn_request(query["SAMLRequest"][0])
    xml = idp.response(
        in_response_to=request.id,
        destination=request.assertion_consumer_service_url,
        audience=request.issuer.text,
        email=owner.email,
    )
    form = {"SAMLResponse": b64(tamper(xml) if tamper else xml), "RelayState": query["RelayState"]}
    acs = urlsplit(request.assertion_consumer_service_url).path
    posted = client.post(acs, data=form, csrf=False)  # a cross-site post: no CSRF token
    assert posted.status_code == 303
    assert posted.headers["Location"] == "/sso/saml/finish"
    done = client.get(posted.headers["Location"])  # back in the browser that started
    session.expire_all()
    return done, session.get(SsoConnection, connection.id), acs, form


def test_owner_test_sign_in_passes_through_the_acs(client, session, owner, login_as, saml_keys):
    done, connection, acs, form = _owner_tests_saml(client, session, owner, login_as, saml_keys)

    assert done.status_code == 303
    assert connection.test_ok, connection.test_message
    assert owner.email in connection.test_message
    assert session.scalar(select(func.count()).select_from(UsedAssertion)) == 1
    # the same post again: its flow is spent, and its assertion used
    assert client.post(acs, data=form, csrf=False).status_code == 400
    # and its outcome can't be collected twice
    assert client.get("/sso/saml/finish").status_code == 400


def test_saml_outcome_is_collected_only_by_the_browser_that_started(
    app, client, session, owner, login_as, saml_keys
):
    """Login CSRF: an attacker who relays their own signed response to a victim's
    browser must not get the victim signed in, or a test recorded, through it."""
    login_as(owner)
    client.get("/enterprise/sso")
    connection = session.scalar(select(SsoConnection))
    idp = SamlIdp(saml_keys["idp"], sp.sp_metadata_xml(connection))
    client.post("/enterprise/sso/saml", data={"metadata_xml": idp.metadata_xml()})
    query = parse_qs(urlsplit(to_idp(client, client.post("/enterprise/sso/test"))).query)
    request = idp.parse_authn_request(query["SAMLRequest"][0])
    xml = idp.response(
        in_response_to=request.id,
        destination=request.assertion_consumer_service_url,
        audience=request.issuer.text,
        email=owner.email,
    )
    form = {"SAMLResponse": b64(xml), "RelayState": query["RelayState"]}
    victim = app.test_client()
    posted = victim.post(
        urlsplit(request.assertion_consumer_service_url).path, data=form, csrf=False
    )
    assert posted.status_code == 303
    assert victim.get("/sso/saml/finish").status_code == 400
    session.expire_all()
    assert not session.get(SsoConnection, connection.id).test_ok


def test_owner_test_sign_in_fails_with_the_reason_when_altered(
    client, session, owner, login_as, saml_keys
):
    def tamper(xml):
        return xml.replace(f">{owner.email}<", ">boss@example.com<")

    done, connection, _, _ = _owner_tests_saml(client, session, owner, login_as, saml_keys, tamper)

    assert done.status_code == 303
    assert not connection.test_ok
    assert "signature is not valid" in connection.test_message
    assert session.scalar(select(func.count()).select_from(UsedAssertion)) == 0
