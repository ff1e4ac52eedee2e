"""Unclaimed accounts (SPEC F13): the people of a verified domain who have an identity
here but no membership in the account — neither active, deactivated, suspended nor
invited. Another account's members are unclaimed for this one.

A domain's people are one range of `ix_user_email_domain_key` (`User.email_domain`, kept
on every write; exact domain, as SSO and SCIM match: `email_domain(email) == Domain.name`,
so a subdomain is not covered). The list walks that range in `email_key` order and pages
by keyset (the last key shown, or the first for Previous), so the first page, the last and
any in between cost one index walk of 51 rows; each row's "not a member" is two probes of
the membership's unique (account_id, user_id) and (account_id, email) indexes. The CSV is
the same walk in batches of keys, a query each, so memory stays flat.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, func, or_, select

from blueprints.invitations import services as invitations
from models import Membership, User

PAGE_SIZE = 50
EXPORT_BATCH = 1000
MAX_QUERY = 200  # characters of a search
MAX_KEY = 320  # an email_key's length: a longer cursor is no key of ours


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: after `after`, before `before`, the last page (`last`), or
    the first (none). Keys are `User.email_key` values (unique)."""

    q: str = ""
    after: str | None = None
    before: str | None = None
    last: bool = False

    @classmethod
    def from_args(cls, args) -> Cursor:
        """Unknown or malformed values fall back to the first page, never an error."""

        def clean(value: str | None, limit: int) -> str:
            # What no database compares: NUL (PostgreSQL refuses it), lone surrogates.
            text = (value or "").replace("\x00", "").encode("utf-8", "ignore").decode("utf-8")
            return text[:limit] if len(text) <= limit else ""

        q = " ".join(clean(args.get("q"), 10 * MAX_QUERY).split())[:MAX_QUERY]
        after, before = clean(args.get("after"), MAX_KEY), clean(args.get("before"), MAX_KEY)
        if args.get("last") == "1":
            return cls(q=q, last=True)
        if after:
            return cls(q=q, after=after)
        if before:
            return cls(q=q, before=before)
        return cls(q=q)


@dataclass(frozen=True)
class Person:
    id: int
    email: str
    name: str | None
    created_at: datetime | None
    last_sign_in_at: datetime | None
    key: str


@dataclass
class Page:
    people: list[Person]
    cursor: Cursor
    has_previous: bool
    has_next: bool

    @property
    def previous_args(self) -> dict:
        return _args(self.cursor.q, before=self.people[0].key) if self.people else {}

    @property
    def next_args(self) -> dict:
        return _args(self.cursor.q, after=self.people[-1].key) if self.people else {}


def _args(q: str, **cursor) -> dict:
    return ({"q": q} if q else {}) | cursor


def _not_a_member(account_id: int, sqlite: bool):
    """No membership of the account holds the person: by link (active, deactivated,
    suspended, or an accepted invitation), or by the email a pending invitation was sent
    to (`user_id` is empty until it is accepted; matched as written or folded)."""
    linked = exists().where(Membership.account_id == account_id, Membership.user_id == User.id)

    # SQLite given `user_id IS NULL` probes (account_id, user_id) and reads every pending
    # invitation of the account for each person; the expression leaves it the (account_id,
    # email) index. PostgreSQL misjudges the expression (a 0.5 % guess) and would do the
    # same scan; its statistics of `IS NULL` make it probe (account_id, email).
    pending = func.coalesce(Membership.user_id, 0) == 0 if sqlite else Membership.user_id.is_(None)

    def invited(email):
        return exists().where(
            Membership.account_id == account_id, Membership.email == email, pending
        )

    # Two probes rather than one OR: an OR of two columns is a filter over every pending
    # invitation on PostgreSQL, each equality an index probe (or a hash anti-join).
    return and_(~linked, ~invited(User.email), ~invited(User.email_key))


def _like(text: str, prefix: bool) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%" if prefix else f"%{escaped}%"


def _where(session, account_id: int, domain_name: str, q: str):
    sqlite = session.get_bind().dialect.name == "sqlite"
    conditions = [User.email_domain == domain_name, _not_a_member(account_id, sqlite)]
    if q:
        folded = q.lower()
        # The email from its start (the domain is the page's), or the name anywhere.
        email = User.email_key.like(_like(folded, prefix=True), escape="\\")
        if "@" in folded:
            conditions.append(email)
        else:
            conditions.append(or_(email, User.display_name.ilike(_like(q, False), escape="\\")))
    return and_(*conditions)


_COLUMNS = (
    User.id,
    User.email,
    User.display_name,
    User.created_at,
    User.last_sign_in_at,
    User.email_key,
)


def _people(session, statement) -> list[Person]:
    return [Person(*row) for row in session.execute(statement)]


def list_unclaimed(session, account_id: int, domain_name: str, cursor: Cursor) -> Page:
    """One page (50) of the domain's unclaimed people in email order, from `cursor`."""
    base = select(*_COLUMNS).where(_where(session, account_id, domain_name, cursor.q))
    backwards = cursor.last or cursor.before is not None
    if cursor.after is not None:
        base = base.where(User.email_key > cursor.after)
    elif cursor.before is not None:
        base = base.where(User.email_key < cursor.before)
    order = User.email_key.desc() if backwards else User.email_key.asc()
    # The index's leading column repeated in ORDER BY lets each database walk it in order.
    direction = User.email_domain.desc() if backwards else User.email_domain.asc()
    people = _people(session, base.order_by(direction, order).limit(PAGE_SIZE + 1))
    more = len(people) > PAGE_SIZE
    people = people[:PAGE_SIZE]
    if backwards:
        people.reverse()
        return Page(people, cursor, has_previous=more, has_next=not cursor.last)
    return Page(people, cursor, has_previous=cursor.after is not None, has_next=more)


def export_unclaimed(
    session, account_id: int, domain_name: str, q: str = "", batch: int = EXPORT_BATCH
) -> Iterator[Person]:
    """Every unclaimed person of the domain (under the search `q`) in email order, a
    keyset batch per query: nothing but one batch is ever held."""
    where = _where(session, account_id, domain_name, q)
    after = None
    while True:
        statement = select(*_COLUMNS).where(where)
        if after is not None:
            statement = statement.where(User.email_key > after)
        statement = statement.order_by(User.email_domain, User.email_key).limit(batch)
        people = _people(session, statement)
        yield from people
        if len(people) < batch:
            return
        after = people[-1].key


class NothingChosen(ValueError):
    """An invite with nobody selected (or more than one page): said next to the list."""


@dataclass
class Invited:
    """What inviting from the tab did: the invitation service's result, and how many of
    the people chosen were no longer unclaimed (invited or joined meanwhile, or not of
    this domain)."""

    result: invitations.InviteResult
    gone: int


def invite_unclaimed(
    session,
    account_id: int,
    domain_name: str,
    actor: Membership,
    user_ids: list[int],
    now: datetime,
    remote_addr: str | None = None,
) -> Invited:
    """Invite the chosen people (by id) who are still unclaimed people of the domain,
    through the invitation service (invite controls, seats, outbox, audit). Never
    commits; NothingChosen for an empty or oversized choice, nothing changed."""
    chosen = list(dict.fromkeys(user_ids))
    if not chosen:
        raise NothingChosen("Select the people to invite first.")
    if len(chosen) > invitations.MAX_INVITES:
        raise NothingChosen(f"Invite at most {invitations.MAX_INVITES} people at a time.")
    emails = list(
        session.scalars(
            select(User.email)
            .where(User.id.in_(chosen), _where(session, account_id, domain_name, ""))
            .order_by(User.email_key)
        )
    )
    result = invitations.invite(session, account_id, actor, emails, now, remote_addr)
    return Invited(result, gone=len(chosen) - len(emails))
