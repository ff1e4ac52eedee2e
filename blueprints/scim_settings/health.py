"""Provisioning health on the SCIM page (SPEC F10): the last successful request, the
requests and errors of the last 24 hours, and the open problems, aggregated.

Problems are recorded off the SCIM request path: a refused or partly applied request's
log row carries its problem (kind, key, detail; blueprints/scim_api/request_log.py
classifies it) and the request log's batch writer calls `record` in the transaction that
writes the rows. A successful request carries none, so it costs nothing here.

One problem is one row per (connector, kind, key): the IdP retrying the same conflicting
user 500 times is one row counted 500 times, linked to the latest request that hit it.
"Mark resolved" closes it; the next occurrence after that reopens it with its count
started again (first seen, count) so the panel says how often it happened since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, select, update

from blueprints.common import audit
from blueprints.common.sql import upsert
from models import ScimConnector, ScimProblem, ScimRequestLog

UNIQUENESS = "uniqueness"
SEATS = "seats"
UNKNOWN_MEMBERS = "unknown_members"
REJECTED = "rejected"
ACCESS = "access"
INVITES = "invites"
LOCKED = "domain_locked"

# What the panel says of each kind: its title, and what an Okta or Entra ID admin does.
KINDS = {
    UNIQUENESS: (
        "Uniqueness conflict",
        "Your IdP tried to create or rename a user or group with a userName, externalId, "
        "email or group name that another one here already has, and was refused (409). It "
        "usually means the IdP lost track of one it created before (the app was unassigned "
        "and assigned again, or the matching attribute changed). Make the value unique in "
        "the IdP, or remove the stale user or group on the side that is wrong, then retry "
        "(Okta: Retry on the failed task; Entra ID: Provision on demand).",
    ),
    SEATS: (
        "Seats refused",
        "Every licence seat is in use, so new or reactivated users were refused (403) and "
        "can't sign in. Raise the seat limit, or deactivate members who no longer need a "
        "seat, then let the IdP retry (Okta: Retry on the failed tasks; Entra ID: Restart "
        "provisioning).",
    ),
    UNKNOWN_MEMBERS: (
        "Unknown group members skipped",
        "Your IdP put members in a group who are not users of this account, so the team "
        "was updated without them. Usually they aren't assigned to the app in the IdP, or "
        "the group was pushed before their users were. Assign them to the application "
        "(Okta: Assignments; Entra ID: Users and groups) and push the group again.",
    ),
    REJECTED: (
        "Rejected request bodies",
        "Your IdP sent users or groups we could not accept (not valid JSON, a value of the "
        "wrong type, an unknown schema or attribute); nothing of them was applied. Check "
        "the attribute named in the detail in the IdP's mappings (Okta: Profile Editor "
        "mappings; Entra ID: Attribute mappings).",
    ),
    ACCESS: (
        "Refused by a token's restrictions",
        "Requests came with a valid token but from an address outside its IP allow-list "
        "(401), or tried to change something with a read-only token (403); nothing was "
        "applied. If the address is your IdP's (Okta and Entra ID publish their egress "
        "ranges), add it to the token's allow-list with Change access; if the IdP must "
        "write, give it a token that is not read-only. An address you don't know may be "
        "someone else holding the token: revoke it.",
    ),
    INVITES: (
        "Invitations refused by the invite controls",
        "Your IdP created users (or changed their email) outside this account's verified "
        "domains, where they would be invited, and the account's invite controls don't "
        "allow that domain, so they were refused (403) and nothing was written. If they "
        "should join, add the domain to the invite controls' list or verify it (Account "
        "settings, Domains), then let the IdP retry (Okta: Retry on the failed tasks; "
        "Entra ID: Provision on demand); otherwise unassign them from the application.",
    ),
    LOCKED: (
        "Refused: domain locked by another organisation",
        "Your IdP created users (or changed their email) in a domain another account has "
        "verified and locked (domain lock), so they were refused (403) and nothing was "
        "written. People of that domain join only the account that owns it; unassign them "
        "from the application here, or ask that organisation's owners.",
    ),
}

OPEN_LIST_SIZE = 50
WINDOW = timedelta(hours=24)


# --- recording (the request log's batch writer) -------------------------------------------


def record(conn, occurrences: list[dict]) -> None:
    """Fold a batch's problem occurrences into their rows, on the batch writer's
    connection (its transaction). Each occurrence: connector_id, kind, key, detail, at,
    log_id. Aggregated per key first, then one upsert per key:

    - an open problem counts up, and points at its latest request;
    - a resolved one reopens when it happens after it was resolved (count and first
      seen start again: "since you marked it resolved");
    - an occurrence from before the resolution (a batch written late) changes nothing.
    """
    merged: dict[tuple, dict] = {}
    for item in occurrences:
        ident = (item["connector_id"], item["kind"], item["key"])
        row = merged.get(ident)
        if row is None:
            merged[ident] = {
                "connector_id": item["connector_id"],
                "kind": item["kind"],
                "key": item["key"],
                "detail": item["detail"],
                "count": 1,
                "first_seen_at": item["at"],
                "last_seen_at": item["at"],
                "last_request_log_id": item["log_id"],
                "resolved_at": None,
                "resolved_by_user_id": None,
            }
            continue
        row["count"] += 1
        row["first_seen_at"] = min(row["first_seen_at"], item["at"])
        if item["at"] >= row["last_seen_at"]:
            row["last_seen_at"] = item["at"]
            row["detail"] = item["detail"]
            row["last_request_log_id"] = item["log_id"]
    if not merged:
        return
    table = ScimProblem.__table__
    c = table.c

    def update_(new):
        still_open = c.resolved_at.is_(None)
        newer = new.last_seen_at >= c.last_seen_at
        return {
            "count": case((still_open, c.count + new.count), else_=new.count),
            "first_seen_at": case((still_open, c.first_seen_at), else_=new.first_seen_at),
            "last_seen_at": case((newer, new.last_seen_at), else_=c.last_seen_at),
            "detail": case((newer, new.detail), else_=c.detail),
            "last_request_log_id": case(
                (newer, new.last_request_log_id), else_=c.last_request_log_id
            ),
            "resolved_at": None,
            "resolved_by_user_id": None,
        }

    def reopens_or_open(new):
        return c.resolved_at.is_(None) | (new.last_seen_at > c.resolved_at)

    upsert(
        conn,
        table,
        [merged[ident] for ident in sorted(merged)],
        ["connector_id", "kind", "key"],
        update_,
        reopens_or_open,
    )


# --- the panel ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """An open problem as the panel shows it; `log_id` is None once its request is purged."""

    id: int
    kind: str
    key: str
    detail: str | None
    count: int
    first_seen_at: datetime
    last_seen_at: datetime
    log_id: int | None

    @property
    def title(self) -> str:
        return KINDS[self.kind][0]

    @property
    def advice(self) -> str:
        return KINDS[self.kind][1]


@dataclass(frozen=True)
class Health:
    last_success_at: datetime | None
    requests: int  # in the last 24 hours
    errors: int
    problems: list[Problem]


def _count(connector_id: int, outcome: str, since: datetime):
    """Requests of one outcome since `since`: a range of ix_scim_request_log_health."""
    log = ScimRequestLog.__table__.c
    return (
        select(func.count())
        .where(log.connector_id == connector_id, log.outcome == outcome, log.created_at >= since)
        .scalar_subquery()
    )


def health(session, connector: ScimConnector, now: datetime) -> Health:
    """What the health panel shows, in two statements whatever the size of the log: the
    last success and the 24-hour counts (index ranges of ix_scim_request_log_health),
    and the newest open problems (ix_scim_problem_open)."""
    log = ScimRequestLog.__table__.c
    since = now - WINDOW
    last_success = (
        select(log.created_at)
        .where(log.connector_id == connector.id, log.outcome == "success")
        .order_by(log.created_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    successes, failures, last = session.execute(
        select(
            _count(connector.id, "success", since),
            _count(connector.id, "failure", since),
            last_success,
        )
    ).one()
    return Health(
        last_success_at=last,
        requests=successes + failures,
        errors=failures,
        problems=open_problems(session, connector.id),
    )


def open_problems(session, connector_id: int, limit: int = OPEN_LIST_SIZE) -> list[Problem]:
    """The open problems, latest first; each with its request if the log still has it."""
    p = ScimProblem.__table__.c
    log = ScimRequestLog.__table__.c
    rows = session.execute(
        select(
            p.id,
            p.kind,
            p.key,
            p.detail,
            p.count,
            p.first_seen_at,
            p.last_seen_at,
            log.id.label("log_id"),
        )
        .select_from(
            ScimProblem.__table__.outerjoin(
                ScimRequestLog.__table__,
                and_(log.id == p.last_request_log_id, log.connector_id == p.connector_id),
            )
        )
        .where(p.connector_id == connector_id, p.resolved_at.is_(None))
        .order_by(p.last_seen_at.desc(), p.id.desc())
        .limit(limit)
    ).all()
    return [Problem(**row._mapping) for row in rows]


def find_problem(session, account_id: int, problem_id: int) -> ScimProblem | None:
    """The problem `problem_id` if it is one of this account's connector's (else None:
    another account's problem is not found, not forbidden)."""
    return session.scalar(
        select(ScimProblem)
        .join(ScimConnector, ScimConnector.id == ScimProblem.connector_id)
        .where(ScimProblem.id == problem_id, ScimConnector.account_id == account_id)
    )


def resolve(session, problem: ScimProblem, actor_id: int, account_id: int, now: datetime) -> bool:
    """Mark resolved: the problem leaves the open list until it happens again; audited.
    Guarded (`resolved_at IS NULL`), so two owners clicking at once audit it once.
    Returns whether this call resolved it."""
    table = ScimProblem.__table__
    done = session.execute(
        update(table)
        .where(table.c.id == problem.id, table.c.resolved_at.is_(None))
        .values(resolved_at=now, resolved_by_user_id=actor_id)
    )
    if done.rowcount != 1:
        return False
    audit.record(
        session,
        "scim.problem_resolved",
        account_id=account_id,
        actor_user_id=actor_id,
        target=f"{problem.kind}: {problem.key}"[:400],
        detail={
            "kind": problem.kind,
            "key": problem.key,
            "detail": problem.detail,
            "count": problem.count,
            "first_seen_at": problem.first_seen_at.isoformat(),
            "last_seen_at": problem.last_seen_at.isoformat(),
        },
    )
    return True


def log_entry(session, account_id: int, entry_id: int) -> ScimRequestLog | None:
    """One request-log row of this account's connector (the problems link to it)."""
    return session.scalar(
        select(ScimRequestLog)
        .join(ScimConnector, ScimConnector.id == ScimRequestLog.connector_id)
        .where(ScimRequestLog.id == entry_id, ScimConnector.account_id == account_id)
    )


def ago(then: datetime | None, now: datetime) -> str:
    """ "3 minutes ago", for the panel (the exact UTC time goes in its title)."""
    if then is None:
        return "never"
    seconds = max(int((now - then).total_seconds()), 0)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


# --- the email sweep (jobs.py) -----------------------------------------------------------


def silent_connectors_where(now: datetime, silence: timedelta) -> list:
    """Enabled connectors whose IdP has sent no (authenticated) request for `silence`.

    Counted from the later of the last request and the enabling: a connector enabled an
    hour ago that has had no request yet is an IdP still being set up, not a silent one;
    one enabled longer than `silence` ago that never had a request is (the owner is told
    the IdP never connected). Re-enabling SCIM starts the count again."""
    cutoff = now - silence
    return [
        ScimConnector.enabled.is_(True),
        ScimConnector.enabled_at <= cutoff,
        (ScimConnector.last_used_at.is_(None)) | (ScimConnector.last_used_at <= cutoff),
    ]


def seats_refused(session, connector_id: int, now: datetime) -> ScimProblem | None:
    """The connector's open seats-refused problem, if a refusal happened in the last 24
    hours (an old one nobody resolved is not "seats are being refused")."""
    return session.scalar(
        select(ScimProblem).where(
            ScimProblem.connector_id == connector_id,
            ScimProblem.kind == SEATS,
            ScimProblem.resolved_at.is_(None),
            ScimProblem.last_seen_at >= now - WINDOW,
        )
    )
