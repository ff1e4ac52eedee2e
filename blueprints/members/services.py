"""Members, teams and licences (SPEC F6): the queries behind the Members page and the
rules of what an owner or co-owner may do to a member.

The list is filtered, sorted and paged in SQL (one page of rows, one count, one query for
those rows' teams), so it costs the same on the first and the 2,000th page of 100,000
members. Searching is a case-insensitive substring match on email and name.

Who may do what:
- SCIM-managed members (source "scim" while the account's SCIM connector is on) are
  read-only here: the IdP activates, deactivates and removes them. Their role is ours,
  not the IdP's, so an owner can still make them a co-owner.
- Manual members can be deactivated (seat freed, sessions ended), reactivated (needs a
  free seat) or removed; nobody acts on themselves, and a co-owner cannot touch an owner.
- Only an owner makes a member a co-owner or takes the role back; owners are never
  changed here, so the account always keeps its owner.
- A member scheduled for removal by the deprovisioning policy (SPEC F12: deactivated or
  deleted by the IdP under "suspend") has two actions, owners only: Remove now, and Keep
  (no removal; one the IdP deleted becomes a manual member, deactivated). The others wait
  until one of them is taken (reactivating a deleted member here would leave it due).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import contains_eager

from blueprints.common import audit, seats
from blueprints.common.accounts import bump_teams_of, end_sessions, other_active_owner
from blueprints.members import rules
from models import Account, Membership, ScimConnector, Team, TeamMember, User, search_fold

PAGE_SIZE = 50
SOURCES = ("scim", "manual")
STATUSES = ("active", "deactivated", "invited", "scheduled")
SORTS = ("email", "name", "last_sign_in", "joined")
SEAT_WARNING = 0.9  # the seat meter warns from 90 % of the limit
MAX_QUERY = 200  # characters of a search
MAX_ID = 2**31 - 1  # the largest integer key (a larger team id was a PostgreSQL error)


def _number(text: str) -> bool:
    """ASCII digits only, and few enough to convert ("²" is a digit to isdigit())."""
    return text.isascii() and text.isdigit() and len(text) <= 10


class ActionRefused(Exception):
    """What the owner sees next to the member when an action is not allowed."""


@dataclass(frozen=True)
class Filters:
    """The list's state, as in the URL (so a filtered page can be bookmarked)."""

    q: str = ""
    source: str = ""
    status: str = ""
    team: int | None = None
    sort: str = "email"
    order: str = "asc"
    page: int = 1

    @classmethod
    def from_args(cls, args) -> Filters:
        """Unknown values fall back to the defaults rather than failing the page."""
        team = args.get("team", "")
        page = args.get("page", "1")
        # What no database can compare: NUL (PostgreSQL refuses it), lone surrogates.
        q = args.get("q", "").replace("\x00", "").encode("utf-8", "ignore").decode("utf-8")
        return cls(
            q=" ".join(q.split())[:MAX_QUERY],
            source=args.get("source", "") if args.get("source") in SOURCES else "",
            status=args.get("status", "") if args.get("status") in STATUSES else "",
            team=int(team) if _number(team) and int(team) <= MAX_ID else None,
            sort=args.get("sort") if args.get("sort") in SORTS else "email",
            order="desc" if args.get("order") == "desc" else "asc",
            page=max(int(page), 1) if _number(page) and len(page) < 9 else 1,
        )

    def args(self, **changes) -> dict:
        """URL parameters for this state with `changes`, defaults left out."""
        values = {
            "q": self.q,
            "source": self.source,
            "status": self.status,
            "team": self.team,
            "sort": self.sort,
            "order": self.order,
            "page": self.page,
        } | changes
        defaults = {"sort": "email", "order": "asc", "page": 1}
        return {k: v for k, v in values.items() if v not in (None, "") and defaults.get(k) != v}


@dataclass
class Row:
    membership: Membership
    email: str | None
    name: str | None
    last_sign_in_at: datetime | None
    teams: list[str] = field(default_factory=list)
    managed: bool = False  # by the IdP: read-only here


@dataclass
class Page:
    rows: list[Row]
    total: int
    filters: Filters

    @property
    def pages(self) -> int:
        return max((self.total + PAGE_SIZE - 1) // PAGE_SIZE, 1)

    @property
    def first(self) -> int:
        return min((self.filters.page - 1) * PAGE_SIZE + 1, self.total)

    @property
    def last(self) -> int:
        return min(self.filters.page * PAGE_SIZE, self.total)


@dataclass
class SeatMeter:
    used: int
    limit: int

    @property
    def percent(self) -> int:
        return min(round(100 * self.used / self.limit), 100) if self.limit else 100

    @property
    def level(self) -> str:
        """ "full", "warning" (from 90 %) or "ok"."""
        if self.used >= self.limit:
            return "full"
        return "warning" if self.used >= SEAT_WARNING * self.limit else "ok"


def seat_meter(account: Account) -> SeatMeter:
    return SeatMeter(account.seats_used, account.seat_limit)


def scim_on(session, account_id: int) -> bool:
    """While SCIM is off, provisioned members are managed here like manual ones."""
    return bool(
        session.scalar(select(ScimConnector.enabled).where(ScimConnector.account_id == account_id))
    )


def is_managed(membership: Membership, scim_enabled: bool) -> bool:
    return scim_enabled and membership.source == "scim"


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _where(account_id: int, f: Filters):
    conditions = [Membership.account_id == account_id]
    if f.source:
        conditions.append(Membership.source == f.source)
    if f.status == "invited":
        conditions.append(Membership.invitation_token_hash.is_not(None))
    elif f.status == "scheduled":  # for removal (SPEC F12)
        conditions.append(Membership.removal_due_at.is_not(None))
    elif f.status:
        conditions.append(Membership.invitation_token_hash.is_(None))
        conditions.append(Membership.active.is_(f.status == "active"))
    if f.team is not None:
        conditions.append(
            exists().where(TeamMember.team_id == f.team, TeamMember.membership_id == Membership.id)
        )
    if f.q:
        # One folded string per member (email, name, userName; models.refresh_search).
        conditions.append(Membership.search_key.like(_like(search_fold(f.q)), escape="\\"))
    return and_(*conditions)


def _order(f: Filters):
    """ORDER BY for `f`, ending with the id so pages are stable. Email and "joined" walk
    an index ((account_id, email), which carries the row id, and the primary key) in each
    database's own NULL order (no member lacks both). Name and last sign-in put the empty
    ones last, as people expect; (account_id, sort_name) serves the direction whose NULL
    order is the database's own (ascending on PostgreSQL, descending on SQLite), the
    other sorts the stored keys (no per-row function)."""
    descending = f.order == "desc"
    if f.sort in ("name", "last_sign_in"):
        column = Membership.sort_name if f.sort == "name" else User.last_sign_in_at
        column = column.desc() if descending else column.asc()
        tie = Membership.id.desc() if descending else Membership.id.asc()
        return [column.nulls_last(), tie]
    columns = [Membership.email, Membership.id] if f.sort == "email" else [Membership.id]
    return [c.desc() if descending else c.asc() for c in columns]


def _base(account_id: int, f: Filters):
    return (
        select(Membership, User.last_sign_in_at, User.email, User.display_name)
        .outerjoin(User, User.id == Membership.user_id)
        .where(_where(account_id, f))
    )


def _rows(session, results, scim_enabled: bool) -> list[Row]:
    rows = [
        Row(m, m.email or email, m.shown_name or name, last, managed=is_managed(m, scim_enabled))
        for m, last, email, name in results
    ]
    teams = teams_of(session, [row.membership.id for row in rows])
    for row in rows:
        row.teams = teams.get(row.membership.id, [])
    return rows


def _page_ids(session, where, f: Filters, with_total: bool) -> list[tuple[int, int | None]]:
    """(id, total or None) of the page's members, from the membership table alone."""
    columns = [Membership.id, func.count().over()] if with_total else [Membership.id]
    ids = select(*columns).where(where)
    if f.sort == "last_sign_in":
        ids = ids.outerjoin(User, User.id == Membership.user_id)
    ids = ids.order_by(*_order(f)).offset((f.page - 1) * PAGE_SIZE).limit(PAGE_SIZE)
    return [(row[0], row[1] if with_total else None) for row in session.execute(ids)]


def list_members(session, account_id: int, f: Filters, scim_enabled: bool) -> Page:
    """One page of the account's members under `f`, with the total.

    The page's ids first, from the membership table alone (an index walk for the email
    and joined orders, however deep the page), then those 50 rows with their person: the
    join never runs for the rows an OFFSET skips. The count needs no join either. A
    search scans the members once, the total counted in the same pass (a window count);
    the other lists count separately, which an index answers."""
    where = _where(account_id, f)
    page = _page_ids(session, where, f, with_total=True) if f.q else None
    if page:
        total = page[0][1]
    elif page is not None and f.page == 1:
        total = 0  # the search's one scan found nothing
    else:
        total = session.scalar(select(func.count()).select_from(Membership).where(where))
        pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        if f.page > pages:  # a page past the end (a bookmark, fewer members now): the last
            f = Filters(**(f.__dict__ | {"page": pages}))
        page = _page_ids(session, where, f, with_total=False) if total else []
    ids = [i for i, _ in page]
    found = {
        row[0].id: row
        for row in session.execute(_base(account_id, f).where(Membership.id.in_(ids)))
    }
    results = [found[i] for i in ids if i in found]
    return Page(_rows(session, results, scim_enabled), total, f)


def export_rows(
    session, account_id: int, f: Filters, scim_enabled: bool, batch: int = 1000
) -> Iterator[Row]:
    """Every member under `f` in the list's order, `batch` rows at a time (keyset by id
    would change the order; the ordered walk uses the same indexes as the page)."""
    statement = _base(account_id, f).order_by(*_order(f))
    result = session.execute(statement.execution_options(yield_per=batch))
    # The session's identity map holds loaded rows weakly: a written-out batch is freed
    # once the caller drops it (expunging here broke the rows still to come).
    for chunk in result.partitions(batch):
        yield from _rows(session, chunk, scim_enabled)


def teams_of(session, membership_ids: list[int]) -> dict[int, list[str]]:
    """Each member's team names, for the rows on screen."""
    found: dict[int, list[str]] = {}
    if not membership_ids:
        return found
    rows = session.execute(
        select(TeamMember.membership_id, Team.display_name)
        .join(Team, Team.id == TeamMember.team_id)
        .where(TeamMember.membership_id.in_(membership_ids))
        .order_by(Team.display_name_key)
    )
    for membership_id, name in rows:
        found.setdefault(membership_id, []).append(name)
    return found


# --- teams ----------------------------------------------------------------------------------


@dataclass
class TeamRow:
    team: Team
    members: int


def list_teams(session, account_id: int) -> list[TeamRow]:
    """The account's teams by name, each with its member count."""
    counts = (
        select(TeamMember.team_id, func.count().label("members"))
        .group_by(TeamMember.team_id)
        .subquery()
    )
    rows = session.execute(
        select(Team, func.coalesce(counts.c.members, 0))
        .outerjoin(counts, counts.c.team_id == Team.id)
        .where(Team.account_id == account_id)
        .order_by(Team.display_name_key)
    ).all()
    return [TeamRow(team, members) for team, members in rows]


def get_team(session, account_id: int, team_id: int) -> Team | None:
    return session.scalar(select(Team).where(Team.id == team_id, Team.account_id == account_id))


# --- actions --------------------------------------------------------------------------------


def get_member(session, account_id: int, membership_id: int) -> Membership | None:
    """The account's member with the person loaded; another account's id is None."""
    return session.scalar(
        select(Membership)
        .outerjoin(User, User.id == Membership.user_id)
        .options(contains_eager(Membership.user))
        .where(Membership.id == membership_id, Membership.account_id == account_id)
    )


def member_row(session, member: Membership, scim_enabled: bool) -> Row:
    """The list's row for one member (after an action)."""
    result = session.execute(
        _base(member.account_id, Filters()).where(Membership.id == member.id)
    ).all()
    return _rows(session, result, scim_enabled)[0]


ACTIONS = (
    "deactivate",
    "reactivate",
    "remove",
    "make-co-owner",
    "revoke-co-owner",
    "remove-now",
    "keep",
)
SCHEDULED_ACTIONS = ("remove-now", "keep")


def allowed(
    actor: Membership, member: Membership, action: str, scim_enabled: bool, ruled: bool = False
) -> str | None:
    """None when `actor` may do `action` to `member`; else why not (shown to them).
    `ruled`: the account has team rules, which decide its SCIM members' roles (SPEC F12)."""
    if member.id == actor.id:
        return "You can't change your own membership; ask another owner."
    if member.role == "owner" and actor.role != "owner":
        return "Only an owner can change an owner."
    if action in SCHEDULED_ACTIONS:
        if actor.role != "owner":
            return "Only an owner can remove or keep a member scheduled for removal."
        if member.removal_due_at is None:
            return "This member is not scheduled for removal."
        return None
    if member.removal_due_at is not None:
        return "Scheduled for removal: Remove now or Keep first."
    if action in ("make-co-owner", "revoke-co-owner"):
        if actor.role != "owner":
            return "Only an owner can make or take back co-owners."
        if member.role == "owner":
            return "Owners keep their role."
        if ruled and member.source == "scim":
            return (
                "Team rules decide the roles of your identity provider's members: "
                "change them on the Teams tab."
            )
        if action == "make-co-owner" and (member.role != "member" or member.status != "active"):
            return "Only an active member can be made a co-owner."
        if action == "revoke-co-owner" and member.role != "co-owner":
            return "This member is not a co-owner."
        return None
    if is_managed(member, scim_enabled):
        return "Managed by your identity provider: change this member there."
    if action == "deactivate" and member.status != "active":
        return "This member is not active."
    if action == "reactivate" and member.status != "deactivated":
        return "This member is not deactivated."
    return None


def actions(
    actor: Membership, row: Row, scim_enabled: bool, ruled: bool = False
) -> list[tuple[str, str | None]]:
    """The buttons of a member's row: (action, None) or (action, why it is disabled)."""
    member = row.membership
    if member.id == actor.id:
        return []
    if member.removal_due_at is not None:
        return [
            (action, allowed(actor, member, action, scim_enabled, ruled))
            for action in SCHEDULED_ACTIONS
        ]
    wanted = {"active": ["deactivate"], "deactivated": ["reactivate"]}.get(member.status, [])
    wanted.append("remove")
    if actor.role == "owner" and member.role == "member" and member.status == "active":
        wanted.append("make-co-owner")
    elif actor.role == "owner" and member.role == "co-owner":
        wanted.append("revoke-co-owner")
    return [(action, allowed(actor, member, action, scim_enabled, ruled)) for action in wanted]


def team_choices(session, account_id: int) -> list[tuple[int, str]]:
    """(id, name) of every team, for the team filter."""
    return session.execute(
        select(Team.id, Team.display_name)
        .where(Team.account_id == account_id)
        .order_by(Team.display_name_key)
    ).all()


def perform(
    session,
    actor: Membership,
    member: Membership,
    action: str,
    scim_enabled: bool,
    remote_addr: str | None,
) -> None:
    """Do `action` to `member` (the caller checked the passphrase), or ActionRefused.
    Written with its audit event, for the caller to commit."""
    problem = allowed(
        actor, member, action, scim_enabled, rules.has_rules(session, member.account_id)
    )
    last_owner = member.role == "owner" and not other_active_owner(session, member)
    if problem is None and action in ("deactivate", "remove", "remove-now") and last_owner:
        problem = "The account needs an owner: make another member an owner first."
    if problem:
        raise ActionRefused(problem)
    target = member.email or (member.user.email if member.user else None)
    detail = None
    if action in SCHEDULED_ACTIONS:
        detail = {"removal_due_at": member.removal_due_at.isoformat(), "source": member.source}
    if action == "deactivate":
        seats.release(session, member)
        end_sessions(member)
        member.active = False
    elif action == "reactivate":
        if not seats.take(session, member):
            account = session.get(Account, member.account_id)
            raise ActionRefused(
                f"No licence left: all {account.seat_limit} seats are in use. "
                "Deactivate a member or raise the seat limit first."
            )
        member.active = True
    elif action == "keep":
        keep(member)
    elif action in ("remove", "remove-now"):
        seats.release(session, member)
        end_sessions(member)
        bump_teams_of(session, member.id)
        session.delete(member)
    else:
        member.role = "co-owner" if action == "make-co-owner" else "member"
    audit.record(
        session,
        f"member.{action.replace('-', '_')}",
        account_id=actor.account_id,
        actor_user_id=actor.user_id,
        target=target,
        detail=detail,
        remote_addr=remote_addr,
    )


def keep(member: Membership) -> None:
    """Keep a member scheduled for removal (SPEC F12): no removal. One the IdP only
    deactivated stays deactivated and its IdP can still reactivate it; one the IdP deleted
    becomes a manual member, deactivated, no longer managed by the IdP (its SCIM id and
    lookup values go, so the IdP creating the user again adopts it by email as any manual
    member, and its stashed teams are dropped)."""
    member.removal_due_at = None
    if member.source == "suspended":
        member.source = "manual"
        member.scim_id = None
        member.user_name = member.user_name_key = member.external_id = None
        member.suspended_team_ids = None
