"""argon2id passphrase hashing (SPEC F1): the only place a passphrase is hashed."""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

MIN_LENGTH = 12
MAX_LENGTH = 1024


def _hasher() -> PasswordHasher:
    cfg = current_app.config
    return PasswordHasher(
        time_cost=cfg["ARGON2_TIME_COST"], memory_cost=cfg["ARGON2_MEMORY_COST"], type=Type.ID
    )


def hash_passphrase(passphrase: str) -> str:
    return _hasher().hash(passphrase)


def verify_passphrase(stored_hash: str | None, passphrase: str) -> bool:
    """True when `passphrase` matches; a missing hash never matches."""
    if not stored_hash or not passphrase or len(passphrase) > MAX_LENGTH:
        return False
    try:
        return _hasher().verify(stored_hash, passphrase)
    except (VerificationError, InvalidHashError):
        return False


def passphrase_problem(passphrase: str, email: str | None = None) -> str | None:
    """Why a new passphrase is not acceptable, or None (NIST 800-63B style: length)."""
    if len(passphrase) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters; a few words make a good passphrase."
    if len(passphrase) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    if email and passphrase.strip().lower() == email.strip().lower():
        return "Your passphrase can't be your email address."
    return None
