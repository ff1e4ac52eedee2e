"""Audit events: who did what in which account. Callers never pass secrets."""

from __future__ import annotations

from sqlalchemy import select

from models import AuditEvent, Membership


def record(
    session,
    action: str,
    *,
    account_id: int | None = None,
    actor_user_id: int | None = None,
    target: str | None = None,
    detail: dict | None = None,
    remote_addr: str | None = None,
) -> AuditEvent:
    """Add an audit event to `session` (committed with the change it describes)."""
    event = AuditEvent(
        action=action,
        account_id=account_id,
        actor_user_id=actor_user_id,
        target=target,
        detail=detail,
        remote_addr=remote_addr,
    )
    session.add(event)
    return event


def record_for_person(
    session,
    action: str,
    user_id: int,
    *,
    detail: dict | None = None,
    remote_addr: str | None = None,
) -> None:
    """An event of a person rather than of an account (a sign-in, a passphrase change):
    one per account they belong to, so each account's log shows its own people's sign-
    ins and no other's; one without an account when they belong to none."""
    accounts = session.scalars(select(Membership.account_id).where(Membership.user_id == user_id))
    for account_id in list(accounts) or [None]:
        record(
            session,
            action,
            account_id=account_id,
            actor_user_id=user_id,
            detail=detail,
            remote_addr=remote_addr,
        )
