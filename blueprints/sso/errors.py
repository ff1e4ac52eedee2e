"""The two ways an SSO step fails, shared by the SAML and OIDC modules."""

from __future__ import annotations


class SsoConfigError(ValueError):
    """A setting the owner entered can't be used; the message goes next to form `field`."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class SsoSignInError(Exception):
    """A sign-in through the IdP that signs nobody in; `code` is a short machine word,
    str() the message for the owner testing the connection, or the member."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
