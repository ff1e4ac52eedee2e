"""Licences (SPEC F5 "Licences"): `Account.seats_used` counts the memberships holding
one. Taking a seat is a guarded UPDATE, so two concurrent creates cannot both take the
last seat; the caller's transaction commits or rolls it back with the membership."""

from __future__ import annotations

from sqlalchemy import bindparam, update

from blueprints.common.sql import Bound, Prepared, execute
from models import Account, Membership

_accounts = Account.__table__
_TAKE = Prepared(
    update(_accounts)
    .where(
        _accounts.c.id == bindparam("account_id"), _accounts.c.seats_used < _accounts.c.seat_limit
    )
    .values(seats_used=_accounts.c.seats_used + 1)
)


def take(session, membership: Membership) -> bool:
    """Give `membership` a seat; False (nothing changed) when none is left."""
    if membership.licensed:
        return True
    if not take_for_new(session, membership.account_id):
        return False
    membership.licensed = True
    return True


def take_for_new(session, account_id: int) -> bool:
    """Count one more seat in use for a membership inserted already holding it; False
    when none is left (the caller rolls its insert back)."""
    return execute(session, _TAKE, {"account_id": account_id}).rowcount == 1


def bind_take_for_new(dialect, account_id: int) -> Bound:
    """`take_for_new`'s statement, bound ahead (`sql.Prepared.bind`): the seat was taken
    when its rowcount is 1."""
    return _TAKE.bind(dialect, {"account_id": account_id})


def release(session, membership: Membership) -> None:
    """Take `membership`'s seat back (deactivation, removal)."""
    if not membership.licensed:
        return
    session.execute(
        update(Account)
        .where(Account.id == membership.account_id, Account.seats_used > 0)
        .values(seats_used=Account.seats_used - 1)
        .execution_options(synchronize_session=False)
    )
    membership.licensed = False
