"""OpenID Connect relying party (SPEC F3): discovery, code flow with state, nonce and
PKCE (S256), ID token verification. Authlib drives OAuth 2.0; joserfc checks the JWT.

Plain functions of a connection and `now`; no Flask request or session access.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.requests_client import OAuth2Session
from flask import current_app
from joserfc import jwt
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwk import KeySet

from blueprints.common.crypto import decrypt
from blueprints.common.urls import absolute_url
from blueprints.sso.errors import SsoConfigError, SsoSignInError

SCOPE = "openid email profile"
LEEWAY_SECONDS = 120
# Asymmetric signatures only: never "none", never HS* (a client secret is no signing key).
SIGNING_ALGORITHMS = [
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
]


class OidcConfigError(SsoConfigError):
    """An OIDC setting we can't accept (field: issuer, client_id, client_secret)."""


class OidcSignInError(SsoSignInError):
    """An OIDC sign-in that failed."""


@dataclass
class OidcIdentity:
    subject: str
    email: str
    name: str | None


def _is_local(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_internal(host: str) -> bool:
    """An address of our own network: private, loopback, link-local or reserved."""
    if _is_local(host):
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False  # a name; it is public unless it resolves otherwise at fetch time


def check_url(url: str, field: str, label: str) -> str:
    """An https URL of a public host. Our server fetches these (discovery, token, keys),
    so an owner must not point them at our own network (server-side request forgery).
    SSO_ALLOW_LOCAL_IDP, for development and tests only, admits http on loopback."""
    url = (url or "").strip()
    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        # urlsplit would quietly drop tabs and newlines; we would store them.
        raise OidcConfigError(field, f"The {label} can't contain spaces or control characters.")
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        raise OidcConfigError(
            field, f"Enter the {label} as a full URL, like https://idp.example.com."
        )
    allow_local = current_app.config["SSO_ALLOW_LOCAL_IDP"]
    if allow_local and _is_local(parts.hostname):
        if parts.scheme not in ("http", "https"):
            raise OidcConfigError(field, f"The {label} must use https.")
    elif parts.scheme != "https":
        raise OidcConfigError(field, f"The {label} must use https.")
    elif _is_internal(parts.hostname):
        raise OidcConfigError(field, f"The {label} must be on a public host.")
    if parts.query or parts.fragment:
        raise OidcConfigError(field, f"The {label} can't have a query or fragment.")
    return url


def redirect_uri() -> str:
    """What the owner registers at the IdP as the redirect (callback) URI."""
    return absolute_url("sso.oidc_callback")


def _get_json(url: str, what: str, field: str = "issuer") -> dict:
    try:
        response = requests.get(
            url, timeout=current_app.config["HTTP_TIMEOUT"], headers={"Accept": "application/json"}
        )
    except requests.Timeout:
        raise OidcConfigError(field, f"The {what} at {url} did not answer in time.") from None
    except requests.RequestException as exc:
        raise OidcConfigError(
            field, f"The {what} at {url} can't be reached ({type(exc).__name__})."
        ) from None
    if response.status_code != 200:
        raise OidcConfigError(field, f"The {what} at {url} answered HTTP {response.status_code}.")
    try:
        data = response.json()
    except ValueError:
        raise OidcConfigError(field, f"The {what} at {url} is not JSON.") from None
    if not isinstance(data, dict):
        raise OidcConfigError(field, f"The {what} at {url} is not a JSON object.")
    return data


def discover(issuer: str) -> dict:
    """Fetch and check the discovery document (OpenID Connect Discovery 1.0 §4)."""
    issuer = check_url(issuer, "issuer", "issuer URL")
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    document = _get_json(url, "discovery document")
    # §4.3: "The issuer value returned MUST be identical to the Issuer URL".
    if document.get("issuer", "").rstrip("/") != issuer.rstrip("/"):
        raise OidcConfigError(
            "issuer",
            f"The discovery document names issuer {document.get('issuer')!r}, not {issuer!r}.",
        )
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(document.get(key), str):
            raise OidcConfigError("issuer", f"The discovery document has no {key}.")
        check_url(document[key], "issuer", key.replace("_", " "))
    if "code" not in document.get("response_types_supported", ["code"]):
        raise OidcConfigError(
            "issuer", "The provider does not support the authorization code flow."
        )
    return {
        key: document[key]
        for key in (
            "issuer",
            "authorization_endpoint",
            "token_endpoint",
            "jwks_uri",
            "token_endpoint_auth_methods_supported",
            "code_challenge_methods_supported",
        )
        if key in document
    }


def _client(connection) -> OAuth2Session:
    methods = connection.oidc_discovery.get(
        "token_endpoint_auth_methods_supported", ["client_secret_basic"]
    )
    auth_method = (
        "client_secret_basic" if "client_secret_basic" in methods else "client_secret_post"
    )
    return OAuth2Session(
        client_id=connection.oidc_client_id,
        client_secret=decrypt(connection.oidc_client_secret_encrypted),
        scope=SCOPE,
        redirect_uri=redirect_uri(),
        token_endpoint_auth_method=auth_method,
        code_challenge_method="S256",
    )


def authorization_url(connection, state: str, nonce: str, code_verifier: str) -> str:
    """Where to send the browser: the IdP's authorization endpoint with state, nonce, PKCE."""
    url, _state = _client(connection).create_authorization_url(
        connection.oidc_discovery["authorization_endpoint"],
        state=state,
        nonce=nonce,
        code_verifier=code_verifier,
    )
    return url


def finish(connection, code: str, nonce: str, code_verifier: str, now: datetime) -> OidcIdentity:
    """Exchange the code (with the PKCE verifier) and verify the ID token at `now`."""
    if not code or len(code) > 4096:
        raise OidcSignInError("malformed", "The provider sent no authorization code.")
    discovery = connection.oidc_discovery
    try:
        token = _client(connection).fetch_token(
            discovery["token_endpoint"],
            grant_type="authorization_code",
            code=code,
            code_verifier=code_verifier,
            timeout=current_app.config["HTTP_TIMEOUT"],
        )
    except AuthlibBaseError as exc:
        # Authlib raises its integration's OAuthError (not OAuth2Error) for an error body.
        raise _token_refusal(exc) from None
    except requests.RequestException as exc:
        raise OidcSignInError(
            "token_error", f"The token endpoint can't be reached ({type(exc).__name__})."
        ) from None
    except ValueError:  # a body that is not a JSON object (a gateway's error page)
        raise OidcSignInError(
            "token_error", "The token endpoint answered with something other than a token."
        ) from None
    id_token = token.get("id_token")
    if not id_token:
        raise OidcSignInError("no_id_token", "The provider returned no ID token.")
    try:
        keys = KeySet.import_key_set(_get_json(discovery["jwks_uri"], "key set", "jwks"))
    except (OidcConfigError, JoseError, ValueError, TypeError) as exc:
        raise OidcSignInError(
            "bad_keys", f"The provider's signing keys can't be read: {exc}"
        ) from None
    try:
        decoded = jwt.decode(id_token, keys, algorithms=SIGNING_ALGORITHMS)
    except (JoseError, ValueError) as exc:
        raise OidcSignInError(
            "bad_signature", f"The ID token's signature is not valid ({exc})."
        ) from None
    claims = decoded.claims
    registry = jwt.JWTClaimsRegistry(
        now=int(now.timestamp()),
        leeway=LEEWAY_SECONDS,
        iss={"essential": True, "value": discovery["issuer"]},
        aud={"essential": True, "value": connection.oidc_client_id},
        nonce={"essential": True, "value": nonce},
        exp={"essential": True},
        sub={"essential": True},
    )
    try:
        registry.validate(claims)
    except ClaimError as exc:
        raise _claim_refusal(exc, connection) from None
    except JoseError as exc:
        raise OidcSignInError(
            "bad_claims", f"The ID token is not for this sign-in: {exc}."
        ) from None
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise OidcSignInError(
            "no_email", "The provider sent no email address (ask for the email scope)."
        )
    if claims.get("email_verified") is False:
        raise OidcSignInError("email_unverified", f"The provider says {email} is not verified.")
    return OidcIdentity(subject=str(claims["sub"]), email=email, name=claims.get("name"))


def _token_refusal(exc: AuthlibBaseError) -> OidcSignInError:
    """What the token endpoint's error means for the owner (RFC 6749 §5.2)."""
    error = str(exc.error or "error")[:100]
    if error == "invalid_client":
        return OidcSignInError(
            "token_error",
            "The provider's token endpoint refused our client credentials "
            "(invalid_client): check the client ID and secret.",
        )
    detail = f": {str(exc.description)[:200]}" if exc.description else "."
    return OidcSignInError(
        "token_error", f"The provider refused the authorization code ({error}){detail}"
    )


def _claim_refusal(exc: ClaimError, connection) -> OidcSignInError:
    """An ID token claim that does not fit this sign-in (OIDC Core §3.1.3.7)."""
    messages = {
        "iss": "The ID token comes from another issuer, not "
        f"{connection.oidc_discovery['issuer']}.",
        "aud": f"The ID token is meant for another client, not {connection.oidc_client_id}.",
        "nonce": "The ID token's nonce does not match this sign-in "
        "(a replayed or mixed-up response).",
    }
    if isinstance(exc, ExpiredTokenError):
        message = "The ID token has expired (check the provider's clock)."
    elif isinstance(exc, MissingClaimError):
        message = f"The ID token has no {exc.claim!r} claim."
    else:
        message = messages.get(exc.claim, f"The ID token's {exc.claim!r} claim is not valid.")
    return OidcSignInError("bad_claims", message)
