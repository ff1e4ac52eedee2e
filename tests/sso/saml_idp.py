"""A real SAML 2.0 identity provider for the SSO tests: pysaml2's own IdP (saml2.server).

`make_key_pair` creates an RSA key and a self-signed certificate with `cryptography`;
`SamlIdp` is an IdP with that key whose metadata includes our SP metadata. It answers
AuthnRequests with signed responses the way pysaml2 builds them, and `response(...,
change=...)` lets a test alter the response before the IdP signs it, to forge what a
misconfigured or hostile IdP would send, still with a genuine signature.
"""

from __future__ import annotations

import base64
import datetime
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, class_name, saml, samlp
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID
from saml2.sigver import pre_signature_part
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

with warnings.catch_warnings():
    # saml2.server imports its symmetric-cipher helpers (unused here), which touch a
    # cipher mode `cryptography` has moved; only that warning is silenced.
    warnings.filterwarnings(
        "ignore", message="CFB has been moved", category=CryptographyDeprecationWarning
    )
    from saml2.server import Server

IDP_ENTITY_ID = "https://idp.example.test/saml/metadata"
IDP_SSO_URL = "https://idp.example.test/saml/sso"


@dataclass(frozen=True)
class KeyPair:
    key_file: Path
    cert_file: Path
    cert_pem: str


def make_key_pair(directory: Path, common_name: str) -> KeyPair:
    """An RSA-2048 key and a self-signed certificate for it, as PEM files."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    key_file, cert_file = directory / "key.pem", directory / "cert.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_file.write_text(cert_pem)
    return KeyPair(key_file, cert_file, cert_pem)


class SamlIdp:
    """pysaml2's IdP, signing with `keys`, knowing our SP from `sp_metadata`."""

    def __init__(
        self,
        keys: KeyPair,
        sp_metadata: str,
        entity_id: str = IDP_ENTITY_ID,
        sso_url: str = IDP_SSO_URL,
    ):
        self.keys = keys
        self.entity_id = entity_id
        self.sso_url = sso_url
        self.config = IdPConfig()
        self.config.load(
            {
                "entityid": entity_id,
                "service": {
                    "idp": {
                        "endpoints": {
                            "single_sign_on_service": [
                                (sso_url, BINDING_HTTP_REDIRECT),
                                (sso_url + "/post", BINDING_HTTP_POST),
                            ]
                        },
                        "policy": {"default": {"lifetime": {"minutes": 5}}},
                        "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                    }
                },
                "key_file": str(keys.key_file),
                "cert_file": str(keys.cert_file),
                "metadata": {"inline": [sp_metadata]},
            }
        )
        self.server = Server(config=self.config)

    def metadata_xml(self) -> str:
        return str(entity_descriptor(self.config))

    def parse_authn_request(self, saml_request: str):
        """The AuthnRequest our redirect carried, as the IdP reads it."""
        return self.server.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT).message

    def response(
        self,
        *,
        in_response_to: str | None,
        destination: str,
        audience: str,
        email: str = "ann@example.com",
        name_id: NameID | None = None,
        identity: dict | None = None,
        sign_assertion: bool = True,
        sign_response: bool = False,
        change=None,
    ) -> str:
        """A response to our AuthnRequest `in_response_to`, as XML.

        With `change`, the unsigned response is parsed, `change(response)` alters it, and
        the IdP then signs what was asked; otherwise pysaml2 signs it as it always does.
        """
        name_id = name_id or NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=email)
        common = {
            "identity": identity or {"mail": [email], "givenName": ["Ann"]},
            "in_response_to": in_response_to,
            "destination": destination,
            "sp_entity_id": audience,
            "name_id": name_id,
            "authn": {"class_ref": saml.AUTHN_PASSWORD_PROTECTED},
            "sign_alg": SIG_RSA_SHA256,
            "digest_alg": DIGEST_SHA256,
        }
        if change is None:
            return str(
                self.server.create_authn_response(
                    **common, sign_assertion=sign_assertion, sign_response=sign_response
                )
            )
        unsigned = self.server.create_authn_response(
            **common, sign_assertion=False, sign_response=False
        )
        response = samlp.response_from_string(str(unsigned))
        change(response)
        return self.sign(response, sign_assertion=sign_assertion, sign_response=sign_response)

    def sign(self, response, *, sign_assertion: bool, sign_response: bool) -> str:
        """Sign the (first) assertion and/or the response with the IdP's key, as pysaml2
        does: a signature template in place, then xmlsec1 over the serialised document."""
        sec = self.server.sec
        assertion = response.assertion[0] if response.assertion else None
        if sign_assertion:
            assertion.signature = _template(assertion.id, sec.my_cert)
        if sign_response:
            response.signature = _template(response.id, sec.my_cert)
        xml = str(response)
        if sign_assertion:
            xml = sec.sign_statement(xml, class_name(assertion), node_id=assertion.id)
        if sign_response:
            xml = sec.sign_statement(xml, class_name(response), node_id=response.id)
        return xml


def _template(element_id: str, cert: str):
    return pre_signature_part(
        element_id, cert, 1, digest_alg=DIGEST_SHA256, sign_alg=SIG_RSA_SHA256
    )


def b64(xml: str | bytes) -> str:
    """How the browser posts a response: base64 in the SAMLResponse form field."""
    return base64.b64encode(xml.encode() if isinstance(xml, str) else xml).decode()
