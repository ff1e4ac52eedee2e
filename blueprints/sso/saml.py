"""SAML 2.0 service provider (SPEC F3): our metadata, the AuthnRequest, and the checks
that turn an IdP's response into a signed-in email address.

pysaml2 parses the messages and verifies XML signatures (through xmlsec1). What makes a
response acceptable is decided here, against the `now` the caller passes rather than the
wall clock, so that tests and jobs control time; pysaml2's own response processing reads
the clock itself, hence it is not used for that part.

Everything the sign-in relies on is read from a part of the document whose signature was
verified with the certificate the owner configured, never with a key the message carries.
Before any of that, the document must have a shape that leaves no room for signature
wrapping: no DTD, unique IDs, exactly one assertion, as a child of the response, and
signatures only directly inside the response and the assertion.

Plain functions: no request or session access.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import ipaddress
import re
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeElementTree
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from defusedxml import DefusedXmlException
from flask import current_app
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, class_name, md, saml, samlp
from saml2.pack import http_redirect_message
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NAMEID_FORMAT_ENTITY, SCM_BEARER
from saml2.sigver import CryptoBackendXmlSec1, SecurityContext, get_xmlsec_binary
from saml2.xml.schema import XMLSchemaError
from saml2.xml.schema import validate as validate_doc_with_schema
from saml2.xmldsig import (
    DIGEST_SHA1,
    DIGEST_SHA256,
    DIGEST_SHA384,
    DIGEST_SHA512,
    SIG_ECDSA_SHA256,
    SIG_ECDSA_SHA384,
    SIG_ECDSA_SHA512,
    SIG_RSA_SHA1,
    SIG_RSA_SHA256,
    SIG_RSA_SHA384,
    SIG_RSA_SHA512,
)
from sqlalchemy import delete

from blueprints.common.sql import insert_or_ignore
from blueprints.common.urls import absolute_url
from blueprints.sso.errors import SsoConfigError, SsoSignInError
from models import UsedAssertion

NS_MD = md.NAMESPACE
NS_SAML = saml.NAMESPACE
NS_SAMLP = samlp.NAMESPACE
NS_DS = "http://www.w3.org/2000/09/xmldsig#"
STATUS_SUCCESS = samlp.STATUS_SUCCESS

MAX_RESPONSE_CHARS = 1_000_000  # base64; real responses are a few kB
MAX_METADATA_CHARS = 1_000_000
MAX_ENTITY_ID = 1024
MAX_URL = 2048
MAX_ASSERTION_ID = 256  # UsedAssertion.id
MAX_RELAY_STATE_BYTES = 80  # SAML bindings §3.4.3: "MUST NOT exceed 80 bytes"

# Where the email may come from when the NameID is not an email address. Matched
# case-insensitively on the attribute's Name (Okta admins often type "Email").
EMAIL_ATTRIBUTES = (
    "email",
    "mail",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",  # Entra ID, AD FS
    "urn:oid:0.9.2342.19200300.100.1.3",  # the LDAP `mail` OID: Shibboleth, pysaml2
)

# SHA-1 stays allowed: AD FS and older IdPs still sign with it, and forging a signature
# needs a second preimage, not the collisions known today. MD5 and friends do not.
SIGNATURE_ALGORITHMS = frozenset(
    {
        SIG_RSA_SHA1,
        SIG_RSA_SHA256,
        SIG_RSA_SHA384,
        SIG_RSA_SHA512,
        SIG_ECDSA_SHA256,
        SIG_ECDSA_SHA384,
        SIG_ECDSA_SHA512,
    }
)
DIGEST_ALGORITHMS = frozenset(
    {
        DIGEST_SHA1,
        DIGEST_SHA256,
        DIGEST_SHA384,
        DIGEST_SHA512,
        "http://www.w3.org/2001/04/xmldsig-more#sha384",  # the other common URI for it
    }
)


class SamlConfigError(SsoConfigError):
    """An IdP setting the owner entered is unusable (field: metadata_xml | entity_id |
    sso_url | certificate)."""


class SamlResponseError(SsoSignInError):
    """A SAML response that does not sign anyone in.

    `code` is a short machine word (malformed, bad_signature, wrong_audience,
    wrong_destination, wrong_recipient, expired, not_yet_valid, unsolicited,
    wrong_in_response_to, replayed, no_email, wrong_issuer, idp_error); str() is a
    message for the owner testing the connection.
    """


@dataclass
class IdpSettings:
    entity_id: str
    sso_url: str
    certificate_pem: str  # one or more PEM certificates (several during a key rollover)


@dataclass
class SamlIdentity:
    email: str
    name_id: str
    assertion_id: str
    not_on_or_after: datetime  # the assertion's own expiry, before the clock skew
    in_response_to: str | None
    attributes: dict[str, list[str]] = field(default_factory=dict)


# --- IdP settings -----------------------------------------------------------------------


def parse_idp_metadata(xml: str) -> IdpSettings:
    """The IdP's entity id, HTTP-Redirect SSO URL and signing certificates, from the
    metadata XML the owner pasted (an EntityDescriptor, or an EntitiesDescriptor holding
    exactly one IdP)."""
    fail = functools.partial(SamlConfigError, "metadata_xml")
    if not xml or not xml.strip():
        raise fail("Paste the IdP's SAML metadata XML.")
    if len(xml) > MAX_METADATA_CHARS:
        raise fail("This metadata is too large to be an IdP's SAML metadata.")
    try:
        root = _parse_xml(xml.strip().encode("utf-8"))
    except _XmlError as exc:
        raise fail(f"This is not usable XML: {exc}") from None

    if root.tag not in (f"{{{NS_MD}}}EntityDescriptor", f"{{{NS_MD}}}EntitiesDescriptor"):
        raise fail("This is not SAML 2.0 metadata (no md:EntityDescriptor).")
    entities = [root] if root.tag == f"{{{NS_MD}}}EntityDescriptor" else []
    entities += root.findall(f".//{{{NS_MD}}}EntityDescriptor")
    idps = [
        (entity, descriptor)
        for entity in entities
        for descriptor in entity.findall(f"{{{NS_MD}}}IDPSSODescriptor")
        if NS_SAMLP in descriptor.get("protocolSupportEnumeration", "").split()
    ]
    if not idps:
        raise fail(
            "This metadata describes no SAML 2.0 identity provider (no IDPSSODescriptor): "
            "paste the IdP's metadata, not a service provider's."
        )
    if len({id(entity) for entity, _ in idps}) > 1:
        raise fail("This metadata describes several IdPs: paste the one for this app only.")
    entity, descriptor = idps[0]

    sso_urls = [
        service.get("Location", "")
        for service in descriptor.findall(f"{{{NS_MD}}}SingleSignOnService")
        if service.get("Binding") == BINDING_HTTP_REDIRECT
    ]
    if not sso_urls:
        raise fail("The IdP offers no SingleSignOnService with the HTTP-Redirect binding.")

    certificates = [
        (cert.text or "").strip()
        for key in descriptor.findall(f"{{{NS_MD}}}KeyDescriptor")
        if key.get("use", "signing") == "signing"
        for cert in key.iter(f"{{{NS_DS}}}X509Certificate")
    ]
    if not any(certificates):
        raise fail("The IdP's metadata has no signing certificate (KeyDescriptor).")

    try:
        return check_idp_settings(
            entity.get("entityID", ""),
            sso_urls[0],
            "\n".join(_pem_from_base64(c) for c in dict.fromkeys(certificates) if c),
        )
    except SamlConfigError as exc:
        raise fail(f"In this metadata: {exc}") from None


def check_idp_settings(entity_id: str, sso_url: str, certificate_pem: str) -> IdpSettings:
    """The three IdP settings entered by hand, checked and normalised; the certificate
    may be PEM (one or more) or the bare base64 of a DER certificate."""
    entity_id = (entity_id or "").strip()
    if not entity_id:
        raise SamlConfigError("entity_id", "Enter the IdP's entity ID (its Issuer).")
    if len(entity_id) > MAX_ENTITY_ID:
        raise SamlConfigError("entity_id", f"An entity ID has at most {MAX_ENTITY_ID} characters.")
    if any(ch.isspace() or not ch.isprintable() for ch in entity_id):
        raise SamlConfigError("entity_id", "An entity ID contains no spaces or control characters.")
    return IdpSettings(
        entity_id=entity_id,
        sso_url=_check_url(sso_url),
        certificate_pem=_normalise_certificates(certificate_pem),
    )


def _check_url(url: str) -> str:
    url = (url or "").strip()
    if not url:
        raise SamlConfigError("sso_url", "Enter the IdP's single sign-on URL.")
    if len(url) > MAX_URL:
        raise SamlConfigError("sso_url", f"A URL has at most {MAX_URL} characters.")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        host = None
    if not host or any(ch.isspace() for ch in url) or parts.username or parts.password:
        raise SamlConfigError("sso_url", "This is not a valid URL.")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and _is_loopback(host):
        return url  # a local test IdP
    raise SamlConfigError("sso_url", "The single sign-on URL must start with https://.")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _normalise_certificates(text: str) -> str:
    fail = functools.partial(SamlConfigError, "certificate")
    text = (text or "").strip()
    if not text:
        raise fail("Paste the IdP's signing certificate.")
    if "PRIVATE KEY" in text:
        raise fail("This is a private key: paste the IdP's certificate only.")
    try:
        if "-----BEGIN" in text:
            certificates = x509.load_pem_x509_certificates(text.encode("ascii"))
        else:
            der = base64.b64decode("".join(text.split()), validate=True)
            certificates = [x509.load_der_x509_certificate(der)]
    except (ValueError, UnicodeEncodeError, binascii.Error):
        raise fail("This is not an X.509 certificate (PEM, or base64 DER).") from None
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates)


def _pem_from_base64(body: str) -> str:
    compact = "".join(body.split())
    lines = [compact[i : i + 64] for i in range(0, len(compact), 64)]
    return "\n".join(["-----BEGIN CERTIFICATE-----", *lines, "-----END CERTIFICATE-----"])


# --- our side: URLs, metadata, AuthnRequest ---------------------------------------------


def sp_entity_id(connection) -> str:
    """Our entity id for this connection: the URL of our metadata, as is customary."""
    return absolute_url("sso.saml_metadata", public_id=connection.public_id)


def acs_url(connection) -> str:
    """Where the IdP posts its responses (HTTP-POST binding)."""
    return absolute_url("sso.saml_acs", public_id=connection.public_id)


def sp_metadata_xml(connection) -> str:
    """Our SAML 2.0 SP metadata for this connection, for the owner to give the IdP."""
    descriptor = md.EntityDescriptor(
        entity_id=sp_entity_id(connection),
        spsso_descriptor=md.SPSSODescriptor(
            protocol_support_enumeration=NS_SAMLP,
            authn_requests_signed="false",
            want_assertions_signed="true",
            name_id_format=[md.NameIDFormat(text=NAMEID_FORMAT_EMAILADDRESS)],
            assertion_consumer_service=[
                md.AssertionConsumerService(
                    binding=BINDING_HTTP_POST,
                    location=acs_url(connection),
                    index="0",
                    is_default="true",
                )
            ],
        ),
    )
    # to_string(nspair) would register the prefix process-wide, in ElementTree.
    xml = descriptor.to_string_force_namespace({"md": NS_MD}).decode("utf-8")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{xml}'


def build_authn_request(
    connection, relay_state: str, request_id: str | None = None
) -> tuple[str, str]:
    """The URL that sends the browser to the IdP with an AuthnRequest (HTTP-Redirect
    binding), and that request's ID, which the response's InResponseTo must echo.
    Pass the `request_id` of a flow's earlier request to send the same one again (a
    reloaded page must not orphan the answer to the first)."""
    if len(relay_state.encode("utf-8")) > MAX_RELAY_STATE_BYTES:
        raise ValueError("RelayState must not exceed 80 bytes (SAML bindings §3.4.3)")
    # An xs:ID must not start with a digit.
    request_id = request_id or f"id-{secrets.token_hex(16)}"
    request = samlp.AuthnRequest(
        id=request_id,
        version="2.0",
        issue_instant=_xs_datetime(datetime.now(UTC)),
        destination=connection.saml_idp_sso_url,
        protocol_binding=BINDING_HTTP_POST,
        assertion_consumer_service_url=acs_url(connection),
        issuer=saml.Issuer(text=sp_entity_id(connection), format=NAMEID_FORMAT_ENTITY),
    )
    redirect = http_redirect_message(
        request.to_string().decode("utf-8"),
        connection.saml_idp_sso_url,
        relay_state=relay_state,
        typ="SAMLRequest",
    )
    return dict(redirect["headers"])["Location"], request_id


def _xs_datetime(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the response -----------------------------------------------------------------------


def parse_response(
    connection, saml_response_b64: str, expected_request_id: str | None, now: datetime
) -> SamlIdentity:
    """The identity in the IdP's response to our request `expected_request_id`, checked
    at `now`; SamlResponseError otherwise. It does not record the assertion as used:
    call mark_assertion_used next."""
    if now.tzinfo is None:
        raise ValueError("naive datetime given; use datetime.now(UTC)")
    skew = timedelta(seconds=current_app.config["SAML_CLOCK_SKEW_SECONDS"])
    xml = _decode(saml_response_b64)
    root = _parse_response_xml(xml)
    response = _load_response(xml)
    _check_status(response)
    assertion = _check_shape(root, response)
    _check_signatures(connection, xml, response, assertion)

    # From here on every value comes from signed content (the assertion, or a response
    # whose signature covers it), except the response's own Destination and InResponseTo,
    # which are only ever used to refuse.
    issuer = connection.saml_idp_entity_id or ""
    for who, element in (("assertion", assertion), ("response", response)):
        if element.issuer is not None and _text(element.issuer) != issuer:
            raise SamlResponseError(
                "wrong_issuer",
                f"The {who} was issued by {_show(_text(element.issuer))}, not by the IdP "
                f"configured here ({_show(issuer)}): check the IdP entity ID.",
            )
    if assertion.issuer is None:
        raise SamlResponseError("malformed", "The assertion has no Issuer.")

    expected_acs = acs_url(connection)
    if response.destination and response.destination != expected_acs:
        raise SamlResponseError(
            "wrong_destination",
            f"The response was sent to {_show(response.destination)}, not to our ACS URL "
            f"{_show(expected_acs)}: set the IdP's ACS (reply) URL to ours.",
        )
    if expected_request_id is None:
        raise SamlResponseError(
            "unsolicited",
            "This response answers no sign-in started here. IdP-initiated sign-in is not "
            "supported: start from our sign-in page.",
        )
    if response.in_response_to and response.in_response_to != expected_request_id:
        raise _wrong_in_response_to(response.in_response_to)

    _check_issue_instant(response.issue_instant, "response", now, skew)
    _check_issue_instant(assertion.issue_instant, "assertion", now, skew)
    conditions_expiry = _check_conditions(assertion, sp_entity_id(connection), now, skew)
    confirmation_expiry, in_response_to = _check_subject_confirmation(
        assertion, expected_acs, expected_request_id, now, skew
    )
    _check_authn_statement(assertion, now, skew)

    assertion_id = assertion.id or ""
    if not assertion_id or len(assertion_id) > MAX_ASSERTION_ID:
        raise SamlResponseError("malformed", "The assertion's ID is missing or too long.")
    attributes = _attributes(assertion)
    name_id = assertion.subject.name_id
    return SamlIdentity(
        email=_email(name_id, attributes),
        name_id=_text(name_id) if name_id is not None else "",
        assertion_id=assertion_id,
        not_on_or_after=min(filter(None, (conditions_expiry, confirmation_expiry))),
        in_response_to=in_response_to,
        attributes=attributes,
    )


def _decode(saml_response_b64: str) -> bytes:
    if not saml_response_b64 or len(saml_response_b64) > MAX_RESPONSE_CHARS:
        raise SamlResponseError("malformed", "The SAMLResponse is missing or too large.")
    try:
        return base64.b64decode("".join(saml_response_b64.split()), validate=True)
    except (ValueError, binascii.Error):
        raise SamlResponseError("malformed", "The SAMLResponse is not valid base64.") from None


class _XmlError(Exception):
    pass


_PROLOG_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def _parse_xml(data: bytes) -> Element:
    """XML without a DTD (so no entities, internal or external), in UTF-8."""
    declared = _PROLOG_ENCODING.match(data)
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8", b"us-ascii"):
        raise _XmlError("only UTF-8 documents are accepted")
    try:
        data.decode("utf-8")
        return SafeElementTree.fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except UnicodeDecodeError:
        raise _XmlError("not UTF-8") from None
    except DefusedXmlException:
        raise _XmlError("DTDs and entities are not allowed") from None
    except ParseError as exc:
        raise _XmlError(str(exc)) from None


def _parse_response_xml(xml: bytes) -> Element:
    try:
        root = _parse_xml(xml)
    except _XmlError as exc:
        raise SamlResponseError(
            "malformed", f"The SAMLResponse is not usable XML: {exc}."
        ) from None
    if root.tag != f"{{{NS_SAMLP}}}Response":
        raise SamlResponseError("malformed", "The SAMLResponse is not a samlp:Response.")
    return root


def _load_response(xml: bytes) -> samlp.Response:
    try:
        response = samlp.response_from_string(xml)
    except Exception:  # pysaml2 raises whatever its object mapping meets; all mean "malformed"
        response = None
    if response is None:
        raise SamlResponseError("malformed", "The SAMLResponse could not be read.")
    if response.version != "2.0":
        raise SamlResponseError("malformed", "Only SAML 2.0 responses are accepted.")
    return response


def _check_shape(root: Element, response: samlp.Response) -> saml.Assertion:
    """The one assertion, once the document's shape leaves its signed parts unambiguous
    (checked on the tree xmlsec1 will see, not on pysaml2's objects)."""
    # xmlsec1 finds the signed element by its ID: with two elements sharing an ID, the
    # signature checked could be another element's than the one read.
    ids = [element.get("ID") for element in root.iter() if element.get("ID") is not None]
    if len(ids) != len(set(ids)):
        raise SamlResponseError("malformed", "The response has duplicate ID attributes.")
    if root.find(f".//{{{NS_SAML}}}EncryptedAssertion") is not None:
        raise SamlResponseError(
            "malformed",
            "The assertion is encrypted; this service provider publishes no encryption key. "
            "Turn assertion encryption off in the IdP.",
        )
    assertions = list(root.iter(f"{{{NS_SAML}}}Assertion"))
    if len(assertions) != 1 or root.find(f"{{{NS_SAML}}}Assertion") is not assertions[0]:
        raise SamlResponseError(
            "malformed", "The response must carry exactly one assertion, directly inside it."
        )
    assertion = assertions[0]
    signature_tag = f"{{{NS_DS}}}Signature"
    signatures = list(root.iter(signature_tag))
    on_response, on_assertion = root.findall(signature_tag), assertion.findall(signature_tag)
    if (
        len(signatures) != len(on_response) + len(on_assertion)
        or len(on_response) > 1
        or len(on_assertion) > 1
        or not all(_signature_first(parent) for parent in (root, assertion))
    ):
        raise SamlResponseError(
            "malformed",
            "Signatures may only sit directly in the response and the assertion, after the Issuer.",
        )
    for signature in signatures:
        method = signature.find(f"{{{NS_DS}}}SignedInfo/{{{NS_DS}}}SignatureMethod")
        digests = signature.findall(f".//{{{NS_DS}}}Reference/{{{NS_DS}}}DigestMethod")
        if (
            method is None
            or method.get("Algorithm") not in SIGNATURE_ALGORITHMS
            or not digests
            or any(d.get("Algorithm") not in DIGEST_ALGORITHMS for d in digests)
        ):
            raise SamlResponseError(
                "bad_signature",
                "The response is signed with an algorithm we do not accept: use RSA or ECDSA "
                "with SHA-256.",
            )
    if (
        len(response.assertion) != 1
        or response.assertion[0].id != assertion.get("ID")
        or response.assertion[0].subject is None
    ):
        raise SamlResponseError("malformed", "The assertion could not be read.")
    return response.assertion[0]


def _signature_first(parent: Element) -> bool:
    """Where the schema puts it: nothing but the Issuer before the Signature. xmlsec1 takes
    the first Signature under the element it is given (depth first); placed later, the
    assertion's signature would be checked in place of the response's."""
    signature_tag = f"{{{NS_DS}}}Signature"
    for child in parent:
        if child.tag != f"{{{NS_SAML}}}Issuer":
            return child.tag == signature_tag or parent.find(signature_tag) is None
    return True


def _check_status(response: samlp.Response) -> None:
    """A non-success status is refused whether signed or not: nothing in it is trusted,
    its code and message only help the owner see what the IdP said."""
    code = response.status.status_code if response.status is not None else None
    if code is None or not code.value:
        raise SamlResponseError("malformed", "The response has no Status.")
    if code.value == STATUS_SUCCESS:
        return
    detail = code.status_code.value if code.status_code is not None else None
    message = response.status.status_message
    parts = [detail or code.value, _text(message) if message is not None else ""]
    reason = " — ".join(_show(part) for part in parts if part)
    raise SamlResponseError("idp_error", f"The IdP did not sign the user in: {reason}.")


def _check_signatures(connection, xml: bytes, response, assertion) -> None:
    """At least one of the response and the assertion signed, and every signature present
    valid for the configured certificate; the keys the message carries are never used."""
    present = [element for element in (response, assertion) if element.signature is not None]
    if not present:
        raise SamlResponseError(
            "bad_signature",
            "Neither the response nor the assertion is signed: have the IdP sign the assertion.",
        )
    # pysaml2 checks the schema again before each signature; a failure there would read
    # as a bad signature, so it is reported first, for what it is.
    try:
        validate_doc_with_schema(str(response))
    except XMLSchemaError:
        raise SamlResponseError(
            "malformed", "The response does not follow the SAML 2.0 schema."
        ) from None
    document = xml.decode("utf-8")
    with _security_context(connection.saml_idp_certificate or "") as context:
        for element in present:
            verified = False
            # Any exception (SignatureError, XmlsecError, MissingKey, a malformed
            # Signature…) means "not verified"; ours is raised outside the handler so as
            # not to carry pysaml2's, and the frames it holds, as its __context__.
            with contextlib.suppress(Exception):
                verified = bool(context.check_signature(element, class_name(element), document))
            if not verified:
                what = "response" if element is response else "assertion"
                raise SamlResponseError(
                    "bad_signature",
                    f"The {what}'s signature is not valid for the IdP certificate configured "
                    "here (altered in transit, or signed with another key: check the "
                    "certificate).",
                )


@dataclass(frozen=True)
class _CertificateFile:
    name: str  # what pysaml2 reads of the file objects it is given


class _ConfiguredCertificates:
    """Takes the place of pysaml2's MetadataStore for SecurityContext: whatever Issuer a
    message names, the only keys are those the owner configured for this connection.
    They are given as files (pysaml2 would otherwise write each to a temporary file of
    its own, closed only when garbage-collected)."""

    def __init__(self, files: list[_CertificateFile]):
        self._certs = [(None, file) for file in files]

    def certs(self, entity_id, descriptor, use="signing"):
        return list(self._certs)


class _XmlSec1(CryptoBackendXmlSec1):
    """pysaml2 runs `xmlsec1 --version` before every command; once is enough."""

    @functools.cached_property
    def version(self):
        return super().version


@functools.cache
def _crypto_backend(binary: str | None) -> _XmlSec1:
    return _XmlSec1(binary or get_xmlsec_binary())


@contextlib.contextmanager
def _security_context(certificate_pem: str) -> Iterator[SecurityContext]:
    blocks = re.findall(
        r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", certificate_pem, re.S
    )
    with tempfile.TemporaryDirectory(prefix="saml-idp-") as directory:
        files = []
        for index, block in enumerate(blocks):
            path = Path(directory) / f"certificate-{index}.pem"
            path.write_text(block + "\n")
            files.append(_CertificateFile(str(path)))
        yield SecurityContext(
            _crypto_backend(current_app.config.get("SAML_XMLSEC_BINARY")),
            metadata=_ConfiguredCertificates(files),
            only_use_keys_in_metadata=True,
        )


def _check_issue_instant(value, what: str, now: datetime, skew: timedelta) -> None:
    issued = _time(value, f"the {what}'s IssueInstant", required=True)
    if issued > now + skew:
        raise SamlResponseError(
            "not_yet_valid",
            f"The {what} was issued in the future ({_xs_datetime(issued)}); check the clocks.",
        )


def _check_conditions(assertion, audience: str, now: datetime, skew: timedelta) -> datetime | None:
    conditions = assertion.conditions
    if conditions is None:
        raise SamlResponseError(
            "wrong_audience", "The assertion names no audience (it has no Conditions)."
        )
    _check_window(conditions.not_before, conditions.not_on_or_after, "assertion", now, skew)
    restrictions = conditions.audience_restriction
    audiences = [_text(a) for r in restrictions for a in r.audience]
    # Several AudienceRestriction elements all apply (SAML core §2.5.1.4).
    if not restrictions or not all(
        audience in {_text(a) for a in r.audience} for r in restrictions
    ):
        raise SamlResponseError(
            "wrong_audience",
            f"The assertion is meant for {_show(', '.join(audiences) or 'nobody')}, not for "
            f"our entity ID {_show(audience)}: set the IdP's audience (SP entity ID) to ours.",
        )
    if conditions.condition:
        raise SamlResponseError("malformed", "The assertion has a condition we do not understand.")
    return _time(conditions.not_on_or_after, "Conditions NotOnOrAfter")


def _check_subject_confirmation(
    assertion, acs: str, expected_request_id: str, now: datetime, skew: timedelta
) -> tuple[datetime, str]:
    """The first bearer confirmation that holds (Web Browser SSO profile §4.1.4.2), or the
    reason the first one fails."""
    bearers = [c for c in assertion.subject.subject_confirmation if c.method == SCM_BEARER]
    if not bearers:
        raise SamlResponseError("malformed", "The assertion has no bearer SubjectConfirmation.")
    first_error = None
    for confirmation in bearers:
        try:
            return _check_bearer(
                confirmation.subject_confirmation_data, acs, expected_request_id, now, skew
            )
        except SamlResponseError as exc:
            first_error = first_error or exc
    raise first_error


def _check_bearer(data, acs: str, expected_request_id: str, now: datetime, skew: timedelta):
    if data is None:
        raise SamlResponseError("malformed", "The bearer confirmation has no data.")
    if data.recipient != acs:
        raise SamlResponseError(
            "wrong_recipient",
            f"The assertion's Recipient is {_show(data.recipient or 'missing')}, not our ACS URL "
            f"{_show(acs)}: set the IdP's ACS (reply) URL to ours.",
        )
    if not data.not_on_or_after:
        raise SamlResponseError("malformed", "The bearer confirmation has no NotOnOrAfter.")
    _check_window(data.not_before, data.not_on_or_after, "assertion", now, skew)
    if not data.in_response_to:
        raise SamlResponseError(
            "unsolicited",
            "The assertion answers no request (no InResponseTo). IdP-initiated sign-in is not "
            "supported: start from our sign-in page.",
        )
    if data.in_response_to != expected_request_id:
        raise _wrong_in_response_to(data.in_response_to)
    return _time(data.not_on_or_after, "NotOnOrAfter"), data.in_response_to


def _check_authn_statement(assertion, now: datetime, skew: timedelta) -> None:
    if not assertion.authn_statement:
        raise SamlResponseError("malformed", "The assertion has no AuthnStatement.")
    for statement in assertion.authn_statement:
        ends = _time(statement.session_not_on_or_after, "SessionNotOnOrAfter")
        if ends is not None and now - skew >= ends:
            raise SamlResponseError("expired", "The IdP session in the assertion has ended.")


def _check_window(not_before, not_on_or_after, what: str, now: datetime, skew: timedelta) -> None:
    start = _time(not_before, "NotBefore")
    end = _time(not_on_or_after, "NotOnOrAfter")
    if start is not None and now + skew < start:
        raise SamlResponseError(
            "not_yet_valid",
            f"The {what} is valid only from {_xs_datetime(start)}; check the clocks.",
        )
    if end is not None and now - skew >= end:
        raise SamlResponseError(
            "expired", f"The {what} expired at {_xs_datetime(end)}; sign in again."
        )


def _time(value: str | None, what: str, required: bool = False) -> datetime | None:
    """An xs:dateTime; SAML times are UTC, with or without the Z."""
    if not value:
        if required:
            raise SamlResponseError("malformed", f"The response lacks {what}.")
        return None
    try:
        if "T" not in value:
            raise ValueError
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise SamlResponseError("malformed", f"{what} is not a date and time.") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _wrong_in_response_to(value: str) -> SamlResponseError:
    return SamlResponseError(
        "wrong_in_response_to",
        f"The response answers another request ({_show(value)}), not the sign-in started "
        "here: start again from our sign-in page.",
    )


def _attributes(assertion) -> dict[str, list[str]]:
    attributes: dict[str, list[str]] = {}
    for statement in assertion.attribute_statement:
        for attribute in statement.attribute:
            if not attribute.name:
                continue
            values = [_text(v) for v in attribute.attribute_value if _text(v)]
            attributes.setdefault(attribute.name, []).extend(values)
    return attributes


def _email(name_id, attributes: dict[str, list[str]]) -> str:
    if (
        name_id is not None
        and name_id.format == NAMEID_FORMAT_EMAILADDRESS
        and _looks_like_email(_text(name_id))
    ):
        return _text(name_id)
    wanted = {name.lower() for name in EMAIL_ATTRIBUTES}
    for name, values in attributes.items():
        if name.lower() in wanted:
            for value in values:
                if _looks_like_email(value):
                    return value
    raise SamlResponseError(
        "no_email",
        "The assertion carries no email address: send the NameID in emailAddress format, or "
        f"an attribute named {' or '.join(EMAIL_ATTRIBUTES[:2])}.",
    )


def _looks_like_email(value: str) -> bool:
    local, at, domain = value.rpartition("@")
    return (
        bool(at and local and "." in domain.strip("."))
        and len(value) <= 320
        and not any(ch.isspace() for ch in value)
    )


def _text(element) -> str:
    return (element.text or "").strip()


def _show(value: str) -> str:
    value = value.replace("\n", " ")
    return f"“{value[:200]}…”" if len(value) > 200 else f"“{value}”"


# --- one-time use -----------------------------------------------------------------------


def mark_assertion_used(session, connection, assertion_id: str, expires_at: datetime) -> bool:
    """Record the assertion as used; False when it already was (a replay). The caller
    commits. Concurrent posts of one assertion: the database lets one insert through."""
    return insert_or_ignore(
        session,
        UsedAssertion.__table__,
        {"id": assertion_id, "connection_id": connection.id, "expires_at": expires_at},
        ["id"],
    )


def purge_used_assertions(session, now: datetime) -> int:
    """Forget assertions that can no longer be accepted (expired, skew included)."""
    skew = timedelta(seconds=current_app.config["SAML_CLOCK_SKEW_SECONDS"])
    result = session.execute(
        delete(UsedAssertion)
        .where(UsedAssertion.expires_at < now - skew)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount
