"""Plain factory functions (CTFd `gen_*` style) taking keyword overrides."""

from __future__ import annotations

import secrets

from blueprints.auth.services import email_key
from blueprints.common.passphrases import hash_passphrase
from models import Account, Domain, Membership, User, utcnow

PASSPHRASE = "correct horse battery staple"


def make_account(session, **overrides) -> Account:
    values = {"name": "Example Inc", "seat_limit": 50} | overrides
    account = Account(**values)
    session.add(account)
    session.commit()
    return account


def make_user(
    session,
    account: Account | None = None,
    email: str | None = None,
    role: str = "member",
    passphrase: str | None = PASSPHRASE,
    active: bool = True,
    source: str = "manual",
    **overrides,
) -> User:
    """A user, and (given `account`) their membership with `role`."""
    email = email or f"user-{secrets.token_hex(4)}@example.com"
    user = User(
        email=email,
        email_key=email_key(email),
        passphrase_hash=hash_passphrase(passphrase) if passphrase else None,
        session_generation=1,
        **overrides,
    )
    session.add(user)
    session.flush()
    if account is not None:
        session.add(
            Membership(
                account_id=account.id,
                user_id=user.id,
                email=email,
                display_name=user.display_name,
                role=role,
                active=active,
                source=source,
                licensed=active,
            )
        )
        account.seats_used += 1 if active else 0
    session.commit()
    return user


def make_domain(
    session, account: Account, name: str = "example.com", verified: bool = False, **overrides
) -> Domain:
    values = {
        "account_id": account.id,
        "name": name,
        "token": secrets.token_urlsafe(24),
        "status": "verified" if verified else "pending",
        "verified_at": utcnow() if verified else None,
    } | overrides
    domain = Domain(**values)
    session.add(domain)
    session.commit()
    return domain
