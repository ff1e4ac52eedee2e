"""Sign-in, throttling and passphrase resets (SPEC F1). Plain functions of a session;
the caller commits (blueprints/common/unit_of_work.py)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, select, update

from blueprints.common import audit, outbox
from blueprints.common.passphrases import hash_passphrase, verify_passphrase
from blueprints.common.sql import insert_or_ignore
from blueprints.common.urls import absolute_url
from models import LoginThrottle, Membership, PassphraseReset, User

ROLE_ORDER = {"owner": 0, "co-owner": 1, "member": 2}


def email_key(email: str) -> str:
    """The case-insensitive identity of an email address."""
    return email.strip().lower()


def find_user(session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email_key == email_key(email)))


# --- throttling ---------------------------------------------------------------------------


def _throttle_keys(email: str, remote_addr: str | None) -> list[tuple[str, int]]:
    cfg = current_app.config
    keys = [(f"account:{email_key(email)}"[:400], cfg["LOGIN_MAX_FAILURES_PER_ACCOUNT"])]
    if remote_addr:
        keys.append((f"address:{remote_addr}", cfg["LOGIN_MAX_FAILURES_PER_ADDRESS"]))
    return keys


def locked_until(session, email: str, remote_addr: str | None, now: datetime) -> datetime | None:
    """When the sign-in lock for this account or address ends, if one is in force."""
    ends = [
        row.locked_until
        for key, _limit in _throttle_keys(email, remote_addr)
        if (row := session.get(LoginThrottle, key)) and row.locked_until and row.locked_until > now
    ]
    return max(ends) if ends else None


def _record_failure(session, email: str, remote_addr: str | None, now: datetime) -> None:
    """Count one failure on each key, locking a key that reaches its limit."""
    count_attempt(session, _throttle_keys(email, remote_addr), now)


def throttled_until(session, keys: list[str], now: datetime) -> datetime | None:
    """When the lock on any of `keys` (LoginThrottle) ends, if one is in force."""
    ends = [
        row.locked_until
        for key in keys
        if (row := session.get(LoginThrottle, key)) and row.locked_until and row.locked_until > now
    ]
    return max(ends) if ends else None


def count_attempt(session, keys: list[tuple[str, int]], now: datetime) -> None:
    """Count one attempt on each (key, limit), locking a key that reaches its limit for
    LOGIN_LOCKOUT_SECONDS (sign-in failures; self sign-ups per address).

    Parallel failures (a guessing run sends many at once) must all count: the row is
    created with INSERT … ON CONFLICT DO NOTHING and counted with UPDATEs the database
    serialises, never read in Python and written back."""
    window = timedelta(seconds=current_app.config["LOGIN_LOCKOUT_SECONDS"])
    table = LoginThrottle.__table__
    for key, limit in keys:
        insert_or_ignore(session, table, {"key": key, "failures": 0, "window_start": now}, ["key"])
        # A window that is over starts again from zero.
        session.execute(
            update(table)
            .where(table.c.key == key, table.c.window_start <= now - window)
            .values(failures=0, window_start=now)
        )
        session.execute(
            update(table).where(table.c.key == key).values(failures=table.c.failures + 1)
        )
        session.execute(
            update(table)
            .where(table.c.key == key, table.c.failures >= limit)
            .values(locked_until=now + window, failures=0, window_start=now)
        )


def _clear_account_failures(session, email: str) -> None:
    table = LoginThrottle.__table__
    session.execute(delete(table).where(table.c.key == f"account:{email_key(email)}"[:400]))


@dataclass
class SignInResult:
    user: User | None = None
    error: str | None = None
    locked_until: datetime | None = None


# Verified against when the email is unknown, so both paths cost one argon2 verification.
_DUMMY_HASH: dict[str, str] = {}


def _dummy_hash() -> str:
    key = f"{current_app.config['ARGON2_TIME_COST']}:{current_app.config['ARGON2_MEMORY_COST']}"
    if key not in _DUMMY_HASH:
        _DUMMY_HASH[key] = hash_passphrase(secrets.token_urlsafe(16))
    return _DUMMY_HASH[key]


def sign_in(
    session, email: str, passphrase: str, remote_addr: str | None, now: datetime
) -> SignInResult:
    """Check a sign-in attempt, counting failures per account and per client address.
    A failure is written for the caller to keep although it answers with an error."""
    until = locked_until(session, email, remote_addr, now)
    if until:
        return SignInResult(error="locked", locked_until=until)
    user = find_user(session, email)
    ok = verify_passphrase(user.passphrase_hash if user else _dummy_hash(), passphrase)
    if not (user and ok):
        _record_failure(session, email, remote_addr, now)
        if user is not None:  # an unknown address belongs to no account's log
            audit.record_for_person(
                session, "user.sign_in_failed", user.id, remote_addr=remote_addr
            )
        return SignInResult(error="Email or passphrase is incorrect.")
    _clear_account_failures(session, email)
    audit.record_for_person(session, "user.sign_in", user.id, remote_addr=remote_addr)
    return SignInResult(user=user)


def confirm_passphrase(
    session, user: User, passphrase: str, remote_addr: str | None, now: datetime
) -> str | None:
    """Re-authentication for sensitive actions; returns an error message or None. A wrong
    passphrase is counted, for the caller to keep although it answers with an error."""
    if locked_until(session, user.email, remote_addr, now):
        return "Too many wrong passphrases. Try again later."
    if verify_passphrase(user.passphrase_hash, passphrase):
        _clear_account_failures(session, user.email)
        return None
    _record_failure(session, user.email, remote_addr, now)
    audit.record_for_person(session, "user.passphrase_refused", user.id, remote_addr=remote_addr)
    return "That passphrase is incorrect."


# --- memberships --------------------------------------------------------------------------


def current_membership(session, user: User, account_id: int | None) -> Membership | None:
    """The membership the user acts through: the chosen account, else the highest role."""
    rows = session.scalars(
        select(Membership).where(Membership.user_id == user.id, Membership.active.is_(True))
    ).all()
    if account_id is not None:
        for row in rows:
            if row.account_id == account_id:
                return row
    return min(rows, key=lambda m: (ROLE_ORDER.get(m.role, 9), m.id), default=None)


# --- passphrases --------------------------------------------------------------------------


def set_passphrase(session, user: User, new_passphrase: str) -> None:
    """Store a new passphrase and end every existing session of the user."""
    user.passphrase_hash = hash_passphrase(new_passphrase)
    user.must_change_passphrase = False
    user.session_generation += 1


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_reset(session, email: str, now: datetime) -> None:
    """Email a single-use reset link if the address is known; say nothing either way.

    At most RESET_EMAILS_PER_HOUR links a user per hour, so nobody can flood an inbox."""
    user = find_user(session, email)
    if user is None:
        return
    lifetime = timedelta(seconds=current_app.config["RESET_TOKEN_SECONDS"])
    recent = session.scalar(
        select(func.count(PassphraseReset.id)).where(
            PassphraseReset.user_id == user.id,
            PassphraseReset.created_at > now - timedelta(hours=1),
        )
    )
    if recent >= current_app.config["RESET_EMAILS_PER_HOUR"]:
        return
    token = secrets.token_urlsafe(32)
    session.add(
        PassphraseReset(
            user_id=user.id,
            token_hash=_token_hash(token),
            expires_at=now + lifetime,
            created_at=now,
        )
    )
    outbox.enqueue(
        session,
        user.email,
        "Reset your passphrase",
        "passphrase_reset",
        now=now,
        link=absolute_url("auth.reset_passphrase", token=token),
        minutes=int(lifetime.total_seconds() // 60),
    )
    audit.record_for_person(session, "user.reset_requested", user.id)


def reset_for_token(session, token: str, now: datetime) -> PassphraseReset | None:
    """The unused, unexpired reset the token belongs to, or None."""
    if not token or len(token) > 200:
        return None
    reset = session.scalar(
        select(PassphraseReset).where(PassphraseReset.token_hash == _token_hash(token))
    )
    if reset is None or reset.used_at is not None or reset.expires_at <= now:
        return None
    return reset


def complete_reset(
    session, reset: PassphraseReset, new_passphrase: str, now: datetime
) -> User | None:
    """Use the reset once: a guarded UPDATE spends every open link of the user, so of two
    concurrent uses only one sets the passphrase. None if the link was already spent."""
    table = PassphraseReset.__table__
    spent = session.execute(
        update(table).where(table.c.id == reset.id, table.c.used_at.is_(None)).values(used_at=now)
    )
    if spent.rowcount != 1:
        return None
    session.execute(
        update(table)
        .where(table.c.user_id == reset.user_id, table.c.used_at.is_(None))
        .values(used_at=now)
    )
    user = reset.user
    set_passphrase(session, user, new_passphrase)
    # Whoever reads the mailbox is the owner: lift the lock the sign-in page pointed here.
    _clear_account_failures(session, user.email)
    audit.record_for_person(session, "user.passphrase_reset", user.id)
    return user
