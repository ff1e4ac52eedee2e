"""Secrets at rest: encrypted, readable back, and rotatable (blueprints.common.crypto)."""

import pytest
from cryptography.fernet import Fernet

from blueprints.common import crypto


def test_encrypted_secret_reads_back_and_does_not_contain_the_plaintext(app):
    ciphertext = crypto.encrypt("client-secret-value")
    assert "client-secret-value" not in ciphertext
    assert crypto.decrypt(ciphertext) == "client-secret-value"
    assert crypto.encrypt("client-secret-value") != ciphertext  # random IV each time


def test_tampered_ciphertext_is_refused(app):
    ciphertext = crypto.encrypt("s3cret")
    tampered = ciphertext[:-6] + ("A" if ciphertext[-6] != "A" else "B") + ciphertext[-5:]
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(tampered)


def test_another_secret_key_cannot_read_it(app):
    ciphertext = crypto.encrypt("s3cret")
    app.config["SECRET_KEY"] = "a-different-secret-key"
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(ciphertext)


def test_rotated_keys_still_read_old_ciphertexts(app):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    app.config["ENCRYPTION_KEYS"] = old_key
    old = crypto.encrypt("kept across rotation")
    app.config["ENCRYPTION_KEYS"] = f"{new_key},{old_key}"
    assert crypto.decrypt(old) == "kept across rotation"
    new = crypto.encrypt("new")
    app.config["ENCRYPTION_KEYS"] = new_key
    assert crypto.decrypt(new) == "new"
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(old)
