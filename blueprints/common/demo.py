"""`flask --app app seed-demo`: idempotent demo data for a newcomer (SPEC "Stable names")."""

from __future__ import annotations

import secrets

from sqlalchemy import select

from app import db
from blueprints.auth.services import email_key, set_passphrase
from models import Account, Membership, User

DEMO_ACCOUNT = "Acme (demo)"
DEMO_OWNER = "owner@acme.test"
DEMO_MEMBER = "member@acme.test"


def _user(email: str) -> User:
    user = db.session.scalar(select(User).where(User.email_key == email_key(email)))
    if user is None:
        user = User(email=email, email_key=email_key(email), session_generation=1)
        db.session.add(user)
        db.session.flush()
    return user


def _membership(account: Account, user: User, role: str) -> None:
    found = db.session.scalar(
        select(Membership).where(Membership.account_id == account.id, Membership.user_id == user.id)
    )
    if found is None:
        db.session.add(
            Membership(
                account_id=account.id,
                user_id=user.id,
                role=role,
                source="manual",
                active=True,
                licensed=True,
            )
        )


def seed_demo() -> dict[str, str]:
    """Create the demo account once; each run gives the owner a fresh passphrase to print."""
    account = db.session.scalar(select(Account).where(Account.name == DEMO_ACCOUNT))
    if account is None:
        account = Account(name=DEMO_ACCOUNT, seat_limit=50)
        db.session.add(account)
        db.session.flush()
    owner = _user(DEMO_OWNER)
    member = _user(DEMO_MEMBER)
    _membership(account, owner, "owner")
    _membership(account, member, "member")
    passphrase = "-".join(secrets.token_urlsafe(4) for _ in range(4))
    set_passphrase(db.session, owner, passphrase)
    if member.passphrase_hash is None:
        set_passphrase(db.session, member, secrets.token_urlsafe(24))
    db.session.commit()
    return {"OWNER_EMAIL": DEMO_OWNER, "OWNER_PASSPHRASE": passphrase}
