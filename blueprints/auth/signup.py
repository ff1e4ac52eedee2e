"""Self sign-up (SPEC F13): email + passphrase, the email confirmed by a single-use link.

Nothing about the person exists until the link is opened: a `Signup` row keeps the
argon2id hash of the chosen passphrase and the SHA-256 of the link's token (as a
passphrase reset does), for SIGNUP_TOKEN_SECONDS. The answer to a sign-up never says
whether the address has an account already: the same "check your email" page, and the
email to someone who has one says so instead of carrying a link. A domain locked by an
account refuses sign-up unless that account invited the person (policy.may_sign_up).
Confirming makes the person and, when the email's domain is captured, their membership
(blueprints/domains/capture.py). Starting sign-ups is counted per client address on the
sign-in throttle's table (LoginThrottle), with its window.

Plain functions of an explicit session; never commit.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from blueprints.auth.services import (
    _token_hash,
    count_attempt,
    email_key,
    find_user,
    throttled_until,
)
from blueprints.common import audit, outbox
from blueprints.common.passphrases import hash_passphrase, verify_passphrase
from blueprints.common.urls import absolute_url
from blueprints.domains import capture, policy
from models import Account, Membership, Signup, User


class SignupRefused(ValueError):
    """The email may not sign up here (a locked domain); the message is for the form."""


def _address_key(remote_addr: str | None) -> list[str]:
    return [f"signup-address:{remote_addr}"] if remote_addr else []


def throttled(session, remote_addr: str | None, now: datetime) -> datetime | None:
    """When this address may start sign-ups again, if it started too many."""
    return throttled_until(session, _address_key(remote_addr), now)


def start(session, email: str, passphrase: str, remote_addr: str | None, now: datetime) -> None:
    """Email a confirmation link, or, to an address that has an account, an email saying
    so; SignupRefused for a locked domain. Counted toward the address's limit. At most
    RESET_EMAILS_PER_HOUR emails an address per hour, so nobody can flood an inbox."""
    email = email.strip()
    decision = policy.may_sign_up(session, email)
    if not decision:
        raise SignupRefused(decision.reason)
    cfg = current_app.config
    count_attempt(
        session, [(key, cfg["SIGNUP_MAX_PER_ADDRESS"]) for key in _address_key(remote_addr)], now
    )
    key = email_key(email)
    recent = session.scalar(
        select(func.count(Signup.id)).where(
            Signup.email_key == key, Signup.created_at > now - timedelta(hours=1)
        )
    )
    if recent >= cfg["RESET_EMAILS_PER_HOUR"]:
        return
    lifetime = timedelta(seconds=cfg["SIGNUP_TOKEN_SECONDS"])
    existing = find_user(session, email)
    hashed = hash_passphrase(passphrase)  # both cases: the time taken tells nothing
    token = secrets.token_urlsafe(32)
    # A row for an existing person too (no passphrase kept, a token nobody gets): it
    # counts toward the hourly limit, and the work done doesn't tell the cases apart.
    session.add(
        Signup(
            email=email,
            email_key=key,
            passphrase_hash="-" if existing else hashed,
            token_hash=_token_hash(token),
            expires_at=now + (timedelta(0) if existing else lifetime),
            created_at=now,
        )
    )
    if existing is not None:
        outbox.enqueue(
            session,
            existing.email,
            "You already have an account",
            "signup_exists",
            now=now,
            sign_in=absolute_url("auth.login"),
            reset=absolute_url("auth.forgot_passphrase"),
        )
        return
    outbox.enqueue(
        session,
        email,
        "Confirm your email address",
        "signup_confirm",
        now=now,
        link=absolute_url("auth.confirm_signup", token=token),
        hours=int(lifetime.total_seconds() // 3600),
    )


def for_token(session, token: str, now: datetime) -> Signup | None:
    """The unused, unexpired sign-up the token belongs to, or None."""
    if not token or len(token) > 200:
        return None
    signup = session.scalar(select(Signup).where(Signup.token_hash == _token_hash(token)))
    if signup is None or signup.used_at is not None or signup.expires_at <= now:
        return None
    return signup


def pending(session, email: str, passphrase: str, now: datetime) -> bool:
    """Whether `email` has an unconfirmed sign-up with this passphrase (the sign-in page
    then says to open the link, rather than "incorrect")."""
    rows = session.scalars(
        select(Signup.passphrase_hash)
        .where(
            Signup.email_key == email_key(email),
            Signup.used_at.is_(None),
            Signup.expires_at > now,
        )
        .order_by(Signup.id.desc())
        .limit(3)
    ).all()
    return any(verify_passphrase(h, passphrase) for h in rows if h != "-")


@dataclass
class Confirmed:
    """What opening the link did: the new person, the membership domain capture gave
    them, or the account that had no seat left for them; `problem` when nobody was made."""

    user: User | None = None
    member: Membership | None = None
    refused_by: Account | None = None
    problem: str | None = None


def confirm(session, signup: Signup, now: datetime, remote_addr: str | None = None) -> Confirmed:
    """Use the link once (a guarded UPDATE spends every open sign-up of the address, so
    of two concurrent uses only one goes on); make the person, and join them to the
    account capturing their domain. None-filled `Confirmed(problem=…)` when the link was
    spent meanwhile, the address got an account since, or its domain was locked since."""
    table = Signup.__table__
    spent = session.execute(
        update(table).where(table.c.id == signup.id, table.c.used_at.is_(None)).values(used_at=now)
    )
    if spent.rowcount != 1:
        return Confirmed(problem="spent")
    session.execute(
        update(table)
        .where(table.c.email_key == signup.email_key, table.c.used_at.is_(None))
        .values(used_at=now)
    )
    if find_user(session, signup.email) is not None:
        return Confirmed(problem="exists")
    decision = policy.may_sign_up(session, signup.email)
    if not decision:
        return Confirmed(problem=decision.reason)
    user = User(
        email=signup.email,
        email_key=signup.email_key,
        passphrase_hash=signup.passphrase_hash,
        session_generation=1,
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError:  # the address got an account meanwhile (an IdP, an invitation)
        return Confirmed(problem="exists")
    audit.record_for_person(session, "user.signed_up", user.id, remote_addr=remote_addr)
    account = policy.capturing_account(session, signup.email)
    if account is None:
        return Confirmed(user=user)
    member = capture.join(session, account, user, "signup", now, remote_addr)
    if member is None:
        return Confirmed(user=user, refused_by=account)
    return Confirmed(user=user, member=member)
