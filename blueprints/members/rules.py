"""Team rules (SPEC F12): an owner maps SCIM-managed teams to a role and to licence use.

A rule says what the members of one SCIM team get: role "co-owner" or "member", and a
licence or not. Rules are ordered (`TeamRule.position`); a member's role and licence come
from the first rule whose team they are in, and a member in no ruled team gets the default
(member, licensed). They apply only while the account has a rule, and only to SCIM
memberships that are not owners: an owner is never demoted or unlicensed by a rule, and
manual members are the owner's to manage by hand. Only active memberships hold a licence.

Two ways in, one SQL (`apply`):
- An IdP's group write re-evaluates the members it added or removed, in its own
  transaction, strictly: a licence the seats can't cover refuses the whole request
  (`NoSeats`, which the SCIM API turns into its 403 "Licence limit reached").
- A rule change bumps the account's `TeamRuleRun.generation`; the `apply-team-rules` job
  (jobs.py) re-applies the rules to every SCIM member in batches, leniently: members the
  seats can't cover stay unlicensed and are counted.

Everything is a few UPDATEs over a set of memberships (a correlated subquery picks each
member's first rule), never a loop over members in Python. Seats go through the guarded
counter: the seats a batch needs are taken from `Account.seats_used` with
`seats_used + n <= seat_limit`, so `seats_used` always counts the licensed memberships.
Nothing here commits: the caller does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, delete, false, func, or_, select, true, update
from sqlalchemy.orm import aliased

from blueprints.common import audit
from blueprints.common.sql import insert_or_ignore, json_elements, json_field
from models import Account, Membership, Team, TeamMember, TeamRule, TeamRuleRun

ROLES = ("member", "co-owner")
DEFAULT_ROLE = "member"
DEFAULT_LICENSED = True
IN_CHUNK = 5000  # membership ids per IN list (SQLite binds at most 32,766 parameters)


class NoSeats(Exception):
    """A strict `apply` needs more licences than the account has left."""


class RuleRefused(Exception):
    """Why an owner's rule change was refused, shown next to the field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class Applied:
    roles: int = 0  # memberships whose role changed
    gained: int = 0  # licences given
    lost: int = 0  # licences taken back
    unlicensed: int = 0  # wanted a licence, none left (lenient only)


# --- What a member gets ---------------------------------------------------------------------


def _first_rule(column, member):
    """`column` of the first rule (by position) that matches `member`; NULL if none.

    A rule matches a member of its team, and a member whose SCIM `roles` name its team:
    an IdP that sends `roles[].value` equal to a ruled team's displayName (compared as the
    team's key: trimmed, without case) puts the user under that rule as if they were in
    the team. Either way, the first rule in the owner's order wins. Most users carry no
    roles: for them the document is tested once and only their teams are looked at."""
    by_team = (
        select(column)
        .join(TeamMember, TeamMember.team_id == TeamRule.team_id)
        .where(TeamMember.membership_id == member.id)
        .order_by(TeamRule.position, TeamRule.id)
        .limit(1)
        .correlate(member)
        .scalar_subquery()
    )
    in_team = (
        select(TeamMember.membership_id)
        .where(TeamMember.team_id == TeamRule.team_id, TeamMember.membership_id == member.id)
        .correlate_except(TeamMember)
        .exists()
    )
    roles = json_elements(member.scim_resource, "roles").table_valued("value").alias("role")
    has_role = (
        select(1)
        .select_from(roles)
        .where(func.lower(func.trim(json_field(roles.c.value, "value"))) == Team.display_name_key)
        .correlate_except(roles)
        .exists()
    )
    by_team_or_role = (
        select(column)
        .join(Team, Team.id == TeamRule.team_id)
        .where(TeamRule.account_id == member.account_id, or_(in_team, has_role))
        .order_by(TeamRule.position, TeamRule.id)
        .limit(1)
        .correlate(member)
        .scalar_subquery()
    )
    sent = json_field(member.scim_resource, "roles").is_not(None)
    return case((sent, by_team_or_role), else_=by_team)


def _wanted(member):
    """(role, licensed) the rules give `member`, as SQL expressions."""
    role = func.coalesce(_first_rule(TeamRule.role, member), DEFAULT_ROLE)
    licensed = func.coalesce(_first_rule(TeamRule.licensed, member), true())
    return role, licensed


def _ruled(member, account_id: int, scope):
    """The memberships rules apply to, within `scope`."""
    return and_(
        member.account_id == account_id,
        member.source == "scim",
        member.role != "owner",
        scope,
    )


def _count_seats(session, account_id: int, delta: int) -> bool:
    """Add `delta` to the seats in use: one guarded UPDATE, which a positive `delta`
    passes only if the limit allows it (False: nothing changed)."""
    if delta == 0:
        return True
    guard = (
        Account.seats_used + delta <= Account.seat_limit
        if delta > 0
        else Account.seats_used + delta >= 0
    )
    statement = (
        update(Account)
        .where(Account.id == account_id, guard)
        .values(seats_used=Account.seats_used + delta)
        .execution_options(synchronize_session=False)
    )
    return session.execute(statement).rowcount == 1


def _free_seats(session, account_id: int) -> int:
    used, limit = session.execute(
        select(Account.seats_used, Account.seat_limit).where(Account.id == account_id)
    ).one()
    return max(limit - used, 0)


def apply(session, account_id: int, scope, strict: bool) -> Applied:
    """Give the ruled memberships in `scope(member)` (a condition on a Membership entity)
    the role and licence their first rule says, and count the seats.

    The memberships are written first and the account's seat counter last, in one guarded
    UPDATE of the net change (licences taken back free seats for those given), so every
    writer locks membership rows before the account row, as a SCIM create does (no
    deadlock between them on PostgreSQL). `strict`: a licence for everyone who needs one,
    or NoSeats (the caller rolls back). Otherwise as many as the seats left allow, in id
    order, the rest counted in `unlicensed`; NoSeats then means a concurrent writer took
    seats in between (roll back and try again)."""
    m = Membership
    where = _ruled(m, account_id, scope(m))
    role, licensed = _wanted(m)
    done = Applied()
    done.roles = session.execute(
        update(m)
        .where(where, m.role != role)
        .values(role=role)
        .execution_options(synchronize_session=False)
    ).rowcount
    done.lost = session.execute(
        update(m)
        .where(where, m.licensed.is_(True), or_(m.active.is_(False), licensed == false()))
        .values(licensed=False)
        .execution_options(synchronize_session=False)
    ).rowcount

    # Who should hold a licence and doesn't: an alias, since the UPDATE below picks them
    # by a subquery on its own table.
    other = aliased(Membership)
    _, wants_licence = _wanted(other)
    needy = select(other.id).where(
        _ruled(other, account_id, scope(other)),
        other.active.is_(True),
        other.licensed.is_(False),
        wants_licence == true(),
    )
    if strict:
        licensing = needy
        need = None
    else:
        need = session.scalar(select(func.count()).select_from(needy.subquery()))
        seats = min(need, _free_seats(session, account_id) + done.lost)
        licensing = needy.order_by(other.id).limit(seats) if seats < need else needy
    if need != 0:
        done.gained = session.execute(
            update(m)
            .where(m.id.in_(licensing.scalar_subquery()), m.licensed.is_(False))
            .values(licensed=True)
            .execution_options(synchronize_session=False)
        ).rowcount
    done.unlicensed = (need or 0) - done.gained if need is not None else 0
    if not _count_seats(session, account_id, done.gained - done.lost):
        raise NoSeats()
    return done


def apply_to_ids(session, account_id: int, ids, strict: bool = True) -> Applied:
    """`apply` to the memberships `ids` (a group write's added and removed members), in
    chunks of IN_CHUNK ids."""
    total = Applied()
    ids = list(dict.fromkeys(ids))
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start : start + IN_CHUNK]
        part = apply(session, account_id, lambda member, chunk=chunk: member.id.in_(chunk), strict)
        total.roles += part.roles
        total.gained += part.gained
        total.lost += part.lost
        total.unlicensed += part.unlicensed
    return total


def has_rules(session, account_id: int) -> bool:
    return (
        session.scalar(select(TeamRule.id).where(TeamRule.account_id == account_id).limit(1))
        is not None
    )


def team_ruled(session, team_id: int) -> bool:
    """Whether a rule names team `team_id`: only then can a write to it change a role or
    a licence (a member's rule comes from ruled teams alone)."""
    return session.scalar(select(TeamRule.id).where(TeamRule.team_id == team_id)) is not None


def team_deleted(session, team: Team, now: datetime) -> None:
    """The IdP deletes a ruled team: its rule goes, and its members get what their other
    teams say, strictly (in the DELETE's transaction)."""
    rule = session.scalar(select(TeamRule).where(TeamRule.team_id == team.id))
    if rule is None:
        return
    audit.record(
        session,
        "team_rule.removed",
        account_id=team.account_id,
        target=team.display_name,
        detail={"via": "scim", "reason": "group deleted", **_describe(rule)},
    )
    session.execute(
        delete(TeamRule).where(TeamRule.id == rule.id).execution_options(synchronize_session=False)
    )
    session.expunge(rule)
    members = select(TeamMember.membership_id).where(TeamMember.team_id == team.id)
    apply(session, team.account_id, lambda member: member.id.in_(members), strict=True)
    # Users whose SCIM roles named the team matched its rule too: the job re-applies.
    request_run(session, team.account_id, now)


# --- The owner's rules ------------------------------------------------------------------------


def _describe(rule: TeamRule) -> dict:
    return {"position": rule.position, "role": rule.role, "licensed": rule.licensed}


def list_rules(session, account_id: int) -> list[TeamRule]:
    """The account's rules in order, each with its team."""
    return list(
        session.scalars(
            select(TeamRule)
            .join(Team, Team.id == TeamRule.team_id)
            .where(TeamRule.account_id == account_id)
            .order_by(TeamRule.position, TeamRule.id)
        )
    )


def team_choices(session, account_id: int) -> list[tuple[int, str]]:
    """(id, name) of the SCIM teams that have no rule yet: what a new rule can name."""
    ruled = select(TeamRule.team_id).where(TeamRule.account_id == account_id)
    return [
        (team_id, name)
        for team_id, name in session.execute(
            select(Team.id, Team.display_name)
            .where(Team.account_id == account_id, Team.source == "scim", Team.id.not_in(ruled))
            .order_by(Team.display_name_key)
        )
    ]


def get_rule(session, account_id: int, rule_id: int) -> TeamRule | None:
    return session.scalar(
        select(TeamRule).where(TeamRule.id == rule_id, TeamRule.account_id == account_id)
    )


def _check(role: str) -> None:
    if role not in ROLES:
        raise RuleRefused("role", "Choose co-owner or member.")


def request_run(session, account_id: int, now: datetime) -> None:
    """The rules changed: the job re-applies them to every SCIM member (a new generation;
    a pass under way starts again from the first member)."""
    insert_or_ignore(
        session,
        TeamRuleRun.__table__,
        {
            "account_id": account_id,
            "generation": 0,
            "running_generation": 0,
            "applied_generation": 0,
            "last_id": 0,
            "done": 0,
            "total": 0,
            "unlicensed": 0,
        },
        ["account_id"],
    )
    session.execute(
        update(TeamRuleRun)
        .where(TeamRuleRun.account_id == account_id)
        .values(generation=TeamRuleRun.generation + 1, requested_at=now)
        .execution_options(synchronize_session=False)
    )


def _audit(session, action: str, rule: TeamRule, actor, remote_addr, **detail) -> None:
    audit.record(
        session,
        action,
        account_id=rule.account_id,
        actor_user_id=actor.user_id,
        target=rule.team.display_name,
        detail={**_describe(rule), **detail},
        remote_addr=remote_addr,
    )


def add_rule(
    session, actor, team_id: int | None, role: str, licensed: bool, now: datetime, remote_addr=None
) -> TeamRule:
    """A new rule, last in the list, for one of the account's SCIM teams without a rule."""
    account_id = actor.account_id
    _check(role)
    team = session.scalar(
        select(Team).where(Team.id == team_id, Team.account_id == account_id, Team.source == "scim")
    )
    if team is None:
        raise RuleRefused("team", "Choose one of your identity provider's teams.")
    if session.scalar(select(TeamRule.id).where(TeamRule.team_id == team.id)) is not None:
        raise RuleRefused("team", f"“{team.display_name}” has a rule already: change that one.")
    last = session.scalar(
        select(func.max(TeamRule.position)).where(TeamRule.account_id == account_id)
    )
    rule = TeamRule(
        account_id=account_id,
        team=team,
        team_id=team.id,
        position=(last or 0) + 1,
        role=role,
        licensed=licensed,
        created_at=now,
        updated_at=now,
    )
    session.add(rule)
    session.flush()
    _audit(session, "team_rule.added", rule, actor, remote_addr)
    request_run(session, account_id, now)
    return rule


def change_rule(
    session, actor, rule: TeamRule, role: str, licensed: bool, now: datetime, remote_addr=None
) -> bool:
    """A rule's role and licence use; False when nothing changed (no run, no event)."""
    _check(role)
    before = _describe(rule)
    if rule.role == role and rule.licensed == licensed:
        return False
    rule.role, rule.licensed, rule.updated_at = role, licensed, now
    session.flush()
    _audit(session, "team_rule.changed", rule, actor, remote_addr, before=before)
    request_run(session, actor.account_id, now)
    return True


def move_rule(session, actor, rule: TeamRule, up: bool, now: datetime, remote_addr=None) -> bool:
    """Swap a rule with its neighbour above (`up`) or below; False at either end."""
    rules = list_rules(session, actor.account_id)
    at = next(i for i, r in enumerate(rules) if r.id == rule.id)
    to = at - 1 if up else at + 1
    if not 0 <= to < len(rules):
        return False
    other = rules[to]
    # Positions renumbered 1..n, the two swapped: gaps left by removed rules close.
    rules[at], rules[to] = other, rule
    for position, each in enumerate(rules, start=1):
        each.position = position
    rule.updated_at = other.updated_at = now
    session.flush()
    _audit(session, "team_rule.moved", rule, actor, remote_addr, direction="up" if up else "down")
    request_run(session, actor.account_id, now)
    return True


def remove_rule(session, actor, rule: TeamRule, now: datetime, remote_addr=None) -> None:
    """The rule goes; the job re-applies the others (with none left, the defaults)."""
    _audit(session, "team_rule.removed", rule, actor, remote_addr)
    session.delete(rule)
    session.flush()
    request_run(session, actor.account_id, now)


# --- Progress ---------------------------------------------------------------------------------


@dataclass
class Progress:
    pending: bool  # a change not applied to everyone yet
    done: int
    total: int
    unlicensed: int
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def percent(self) -> int:
        return min(round(100 * self.done / self.total), 100) if self.total else 0


def progress(session, account_id: int) -> Progress | None:
    """Where re-applying the rules stands; None if the rules never changed."""
    run = session.get(TeamRuleRun, account_id, populate_existing=True)
    if run is None:
        return None
    pending = run.applied_generation < run.generation
    running = pending and run.running_generation == run.generation
    if pending and not running:
        total = session.scalar(select(func.count()).where(_ruled(Membership, account_id, true())))
        return Progress(True, 0, total, 0, None, None)
    return Progress(
        pending,
        min(run.done, run.total),
        run.total,
        run.unlicensed,
        run.started_at,
        None if pending else run.finished_at,
    )
