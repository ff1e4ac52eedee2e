"""Encryption at rest for secrets we must read back (OIDC client secrets, SCIM tokens).

Fernet (AES-128-CBC + HMAC-SHA256) from `cryptography`. Keys come from ENCRYPTION_KEYS
(comma-separated Fernet keys, newest first, so old ciphertexts still decrypt after a
rotation); without it, one key is derived from SECRET_KEY with HKDF, so a development
setup needs nothing more.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app


class DecryptionError(Exception):
    """A ciphertext no configured key opens (wrong key, or tampered)."""


def _derived_key(secret_key: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"identity-at-rest", info=b"fernet-v1")
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))


def _fernet() -> MultiFernet:
    configured = [k.strip() for k in current_app.config.get("ENCRYPTION_KEYS", "").split(",")]
    keys = [k for k in configured if k] or [_derived_key(current_app.config["SECRET_KEY"])]
    return MultiFernet([Fernet(k) for k in keys])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode("ascii")


def decrypt(ciphertext: str) -> str:
    try:
        return _fernet().decrypt(ciphertext.encode("ascii")).decode()
    except (InvalidToken, ValueError) as exc:
        raise DecryptionError("secret cannot be decrypted with the configured keys") from exc
