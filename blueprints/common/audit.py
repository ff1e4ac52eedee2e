"""Audit events: who did what in which account. Callers never pass secrets."""

from __future__ import annotations

from models import AuditEvent


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
