"""SCIM Users (SPEC F5): a provisioned member of the account, in SQL.

A User resource is a Membership with `source == "scim"`; members added by hand stay
invisible here and untouched ("left alone") until the IdP creates a user with their email,
which adopts the membership instead of duplicating it.

The whole resource is kept as the IdP wrote it (`Membership.scim_resource`: every core and
enterprise attribute, as scim2-models validates and normalises it) and served back from
there, so a client reads back what it wrote; the membership's columns copy what is looked
up often (userName, externalId, displayName, the names, the emails' rows). Two things are
ours, not the document's: `active` (the membership's live state, whenever the client has
set it) and `groups`.

This module reads and writes; the conversions are serialize.py's, the PATCH rules
patch.py's, matching, seats and emails provisioning.py's. Every function returns what
rendering needs (`serialize.UserState`); none commits (the request's unit of work does).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import lru_cache

from scim2_models import Context, NotFoundException, UniquenessException
from sqlalchemy import (
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    column,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import selectinload

from blueprints.common import outbox, seats
from blueprints.common.accounts import bump_teams_of
from blueprints.common.sql import Prepared, execute, json_rows, json_value, several_writes
from blueprints.scim_api import filters, provisioning
from blueprints.scim_api import patch as patching
from blueprints.scim_api.query import descending, page, wants
from blueprints.scim_api.schemas import CORE_USER, UserResource
from blueprints.scim_api.serialize import (
    STORED_USER,
    USER_SCHEMAS,
    UserState,
    check_if_match,
    list_response,
    manager_of,
    refuse_unknown_schemas,
    render,
    text,
    usable_id,
    user_columns,
    user_payload,
    user_resource,
    validate,
)
from blueprints.scim_settings import connector as connectors
from models import (
    Account,
    Domain,
    MemberEmail,
    Membership,
    OutboxEmail,
    Team,
    TeamMember,
    User,
    search_columns,
)

# The statements of the create path, built once (blueprints.common.sql explains why).
_MEMBERS, _USERS, _DOMAINS = Membership.__table__, User.__table__, Domain.__table__
# userName and externalId in one query. `external_id = NULL` matches nothing, and no row
# has id 0, which a new member's check passes as the id to leave out.
_CLASH = Prepared(
    select(_MEMBERS.c.user_name_key)
    .where(
        _MEMBERS.c.account_id == bindparam("account_id"),
        or_(
            _MEMBERS.c.user_name_key == bindparam("key"),
            _MEMBERS.c.external_id == bindparam("external_id"),
        ),
        _MEMBERS.c.id != bindparam("exclude_id"),
    )
    .limit(2)
)
_INSERT_PERSON = Prepared(insert(_USERS).returning(_USERS.c.id))
_INSERT_MEMBER = Prepared(insert(_MEMBERS).returning(_MEMBERS.c.id))
_INSERT_EMAILS = Prepared(insert(MemberEmail.__table__))
_ACCOUNTS = Account.__table__


def _holder(name: str, column, parameter: str):
    """The membership here holding the value (userName key or externalId), joined to the
    account: at most one, as the unique constraints on (account, value) guarantee."""
    holder = _MEMBERS.alias(name)
    on = and_(holder.c.account_id == _ACCOUNTS.c.id, holder.c[column] == bindparam(parameter))
    return holder, on


def _taken(holder):
    """Whether the value is taken (a membership the IdP deleted and may restore doesn't
    count: `_suspended`)."""
    return and_(holder.c.id.is_not(None), holder.c.source != "suspended")


def _suspended(holder):
    """The suspended membership (deprovisioning policy, SPEC F12) holding the value."""
    return case((holder.c.source == "suspended", holder.c.id))


_PERSON_HERE = _MEMBERS.alias("person_here")
_BY_KEY, _BY_KEY_ON = _holder("by_key", "user_name_key", "key")
_BY_EXTERNAL_ID, _BY_EXTERNAL_ID_ON = _holder("by_external_id", "external_id", "external_id")
# Everything a create reads before it writes, in one statement (IdPs create thousands at
# once, and each statement costs more than its lookup): who holds the userName and the
# externalId (one join each: their index is unique, so the row stays one), the account's
# name (for the emails), whether the email's domain is one of its verified ones, and the
# person with that email and their membership here.
_READ = select(
    _taken(_BY_KEY).label("user_name_taken"),
    _taken(_BY_EXTERNAL_ID).label("external_id_taken"),
    _suspended(_BY_KEY).label("suspended_by_key"),
    _suspended(_BY_EXTERNAL_ID).label("suspended_by_external_id"),
    _ACCOUNTS.c.name.label("account_name"),
    _DOMAINS.c.id.label("domain_id"),
    _USERS.c.id.label("person_id"),
    _PERSON_HERE.c.id.label("member_id"),
    _PERSON_HERE.c.source,
    _PERSON_HERE.c.user_name,
).where(_ACCOUNTS.c.id == bindparam("account_id"))
_READ_FROM = (
    _ACCOUNTS.outerjoin(_BY_KEY, _BY_KEY_ON)
    .outerjoin(_BY_EXTERNAL_ID, _BY_EXTERNAL_ID_ON)
    .outerjoin(
        _DOMAINS,
        and_(
            _DOMAINS.c.account_id == _ACCOUNTS.c.id,
            _DOMAINS.c.status == "verified",
            _DOMAINS.c.name == bindparam("domain"),
        ),
    )
    .outerjoin(_USERS, _USERS.c.email_key == bindparam("email_key"))
    .outerjoin(
        _PERSON_HERE,
        and_(_PERSON_HERE.c.user_id == _USERS.c.id, _PERSON_HERE.c.account_id == _ACCOUNTS.c.id),
    )
)
_BEFORE_CREATE = Prepared(_READ.select_from(_READ_FROM))
# The same, with the connector and token the request came with, for a create that left
# its bearer check to this statement (blueprints.scim_api.auth: `confirm`).
_BEFORE_CREATE_CONFIRMING = Prepared(
    _READ.add_columns(*connectors.CALLER_COLUMNS).select_from(
        connectors.join_caller(_READ_FROM, _ACCOUNTS.c.id)
    )
)


# --- Reading ------------------------------------------------------------------------------

# What rendering a user needs (serialize.UserState), read as plain values (no ORM object
# per row).
SHOWN = tuple(getattr(Membership, name) for name in STORED_USER)


def _teams_of_member(membership_id):
    """A member's teams for `groups`, as one JSON value: [[team row id, group id,
    displayName], ...]."""
    return (
        select(json_rows(Team.id, Team.scim_id, Team.display_name))
        .select_from(TeamMember.__table__.join(Team.__table__, Team.id == TeamMember.team_id))
        .where(TeamMember.membership_id == membership_id)
    )


# In each user's own row, for a page (no second round trip); and for one user.
_TEAMS = _teams_of_member(Membership.id).scalar_subquery().label("teams")
_TEAMS_OF_ONE = Prepared(_teams_of_member(bindparam("membership_id")))


def shown(groups: bool) -> tuple:
    """The columns a page of users is read with; with their teams when `groups` is shown."""
    return (*SHOWN, _TEAMS) if groups else SHOWN


def teams_of(row) -> list[tuple[str, str]]:
    """(group id, displayName) of each team in a row read with `shown(True)`."""
    return _teams(getattr(row, "teams", None))


def _teams(value) -> list[tuple[str, str]]:
    if value is None or value == "[]":  # in no team (most users): nothing to parse
        return []
    return [(scim_id, display) for _, scim_id, display in sorted(json_value(value) or [])]


_ONE = Prepared(
    select(*SHOWN).where(
        Membership.scim_id == bindparam("scim_id"),
        Membership.account_id == bindparam("account_id"),
        Membership.source == "scim",
    )
)


def get(session, account_id: int, scim_id: str) -> UserState:
    """The account's provisioned user `scim_id`, or 404 (another account's id included).
    The id is one a URL can name (routes.ScimIdConverter)."""
    row = execute(session, _ONE, {"scim_id": scim_id, "account_id": account_id}).first()
    if row is None:
        raise NotFoundException(detail=f"There is no user {scim_id!r}.")
    return UserState.of(row)


def _member(session, account_id: int, scim_id: str, emails: bool = True) -> Membership:
    """The membership a write changes (with the email rows it compares against), or 404."""
    query = select(Membership).where(
        Membership.scim_id == scim_id,
        Membership.account_id == account_id,
        Membership.source == "scim",
    )
    if emails:
        query = query.options(selectinload(Membership.emails))
    member = session.scalar(query)
    if member is None:
        raise NotFoundException(detail=f"There is no user {scim_id!r}.")
    return member


def known_managers(session, account_id: int, documents) -> frozenset[str]:
    """Which of the managers the documents name are users of this account (their `$ref`
    is then predictable and added on the way out); one query for a whole page."""
    wanted = {m for m in map(manager_of, documents) if m and usable_id(m)}
    if not wanted:
        return frozenset()
    return frozenset(
        session.scalars(
            select(Membership.scim_id).where(
                Membership.account_id == account_id,
                Membership.source == "scim",
                Membership.scim_id.in_(wanted),
            )
        )
    )


def show(session, state: UserState, base: str, params) -> dict:
    """One user as the client asked for it; their teams are read only when shown and not
    known already (`UserState.groups`)."""
    groups = state.groups
    if groups is None:
        groups = []
        if wants(params, "groups"):
            found = execute(session, _TEAMS_OF_ONE, {"membership_id": state.id}).scalar()
            groups = _teams(found)
    managers = known_managers(session, state.account_id, [state.scim_resource])
    return render(UserResource, user_payload(state, groups, base, managers), params)


_CORE = CORE_USER.lower()
_LOOKUP_COLUMNS = {
    f"{_CORE}:username": (Membership.user_name_key, filters.key),
    f"{_CORE}:externalid": (Membership.external_id, lambda v: v),
}
_LOOKUPS = {
    (urn, groups): Prepared(
        select(*shown(groups)).where(
            Membership.account_id == bindparam("account_id"),
            Membership.source == "scim",
            column == bindparam("value"),
        )
    )
    for urn, (column, _) in _LOOKUP_COLUMNS.items()
    for groups in (True, False)
}


def _lookup(req) -> tuple[str, str] | None:
    """(urn, value) when the filter is one `userName eq "…"` or `externalId eq "…"`, the
    query an IdP sends before every create: answered by a statement built once, on the
    unique index, rather than compiled from the filter's tree each time."""
    found = filters.one_eq(req)
    if found is None or found[0] not in _LOOKUP_COLUMNS:
        return None
    urn, value = found
    return urn, _LOOKUP_COLUMNS[urn][1](filters.storable_operand(value, urn))


lookup = _lookup  # preview.py answers the same lookups from its rows too (SPEC F12)


def search(session, account_id: int, req, base: str) -> dict:
    """GET /Users and POST /Users/.search: filter, sort and page in SQL."""
    window = page(req)
    groups = wants(req, "groups")
    lookup = _lookup(req)
    if lookup is not None:
        urn, value = lookup
        statement = _LOOKUPS[urn, groups]
        rows = execute(session, statement, {"account_id": account_id, "value": value}).all()
        return _listed(session, account_id, req, base, rows[: window.count], len(rows), 1)
    where = None
    rows = []
    total = None
    if window.count:
        if req.filter is None and req.sort_by is None:
            # A plain page (an IdP walking every user): the statement built once.
            statement = _PAGES[groups]
            offset, limit = window.start - 1, window.count
            params = {"account_id": account_id, "offset": offset, "limit": limit}
        else:
            where = _where(account_id, req)
            order = filters.order_by("User", req.sort_by, descending(req))
            statement = _page_of(where, order, window.start - 1, window.count, groups)
            params = None
        rows = execute(session, statement, params).all()
        if rows:
            total = rows[0].total
        elif window.start == 1:
            total = 0  # nothing matched, in this statement's snapshot
    if total is None:  # a page past the end, or count=0: nothing shown to disagree with
        where = _where(account_id, req) if where is None else where
        total = session.scalar(select(func.count()).select_from(Membership).where(where))
    return _listed(session, account_id, req, base, rows, total, window.start)


def _where(account_id, req):
    """The account's provisioned users the request's filter matches."""
    return and_(
        Membership.account_id == account_id,
        Membership.source == "scim",
        filters.where_clause("User", req.filter),
    )


def _page_of(where, order: list, offset, limit, groups: bool):
    """A page of the users `where` matches, in `order`, with the count of all of them.

    One statement, so one snapshot: the page's ids are found by walking the index alone
    (cheap even deep into the list), their rows read and the matches counted in the same
    query (the count an uncorrelated subquery, evaluated once). Read in two, a user
    deleted in between was a KeyError (a 500); counted in a third, the total could
    disagree with the page. (A window count over the page's walk made it walk every
    match: a page of 5,000 users took twice as long on SQLite.)"""
    ids = (
        select(Membership.id)
        .where(where)
        .order_by(*order)
        .offset(offset)
        .limit(limit)
        .correlate(None)
    )
    counted = select(func.count()).select_from(Membership).where(where).correlate(None)
    return (
        select(*shown(groups), counted.scalar_subquery().label("total"))
        .where(Membership.id.in_(ids))
        .order_by(*order)
    )


# No filter, the default order (the account, offset and limit as parameters).
_PAGES = {
    groups: Prepared(
        _page_of(
            and_(Membership.account_id == bindparam("account_id"), Membership.source == "scim"),
            [Membership.id],
            bindparam("offset", type_=Integer),
            bindparam("limit", type_=Integer),
            groups,
        )
    )
    for groups in (True, False)
}


def _listed(session, account_id: int, req, base: str, rows, total: int, start: int) -> dict:
    """The ListResponse of a page of users (rows of `shown`)."""
    managers = known_managers(session, account_id, [r.scim_resource for r in rows])
    resources = [
        render(UserResource, user_payload(r, teams_of(r), base, managers), req) for r in rows
    ]
    return list_response(total, start, resources)


# --- Writing ------------------------------------------------------------------------------


def _write_attributes(member: Membership, columns: dict, emails: list[dict]) -> None:
    """What `serialize.user_columns` gives, onto `member` (PUT semantics: absent means cleared)."""
    for key, value in columns.items():
        if getattr(member, key) != value:
            setattr(member, key, value)
    wanted = [(e["value"], e["type"], e["primary"], e["display"]) for e in emails]
    if wanted != [(e.value, e.type, e.primary, e.display) for e in member.emails]:
        member.emails = [MemberEmail(**e) for e in emails]


def _check_unique(session, account_id: int, columns: dict, exclude_id: int | None = None) -> None:
    """A friendly 409 before the write (one query for userName and externalId); the
    unique constraints decide under races. `columns` as `serialize.user_columns` gives them."""
    params = {
        "account_id": account_id,
        "key": columns["user_name_key"],
        "external_id": columns["external_id"],
        "exclude_id": exclude_id or 0,
    }
    keys = execute(session, _CLASH, params).scalars().all()
    if columns["user_name_key"] in keys:
        raise UniquenessException(detail=f"A user with userName {columns['user_name']!r} exists.")
    if keys:
        raise UniquenessException(
            detail=f"A user with externalId {columns['external_id']!r} exists."
        )


def create(session, connector, body: dict, now: datetime, confirm=None) -> UserState:
    """POST /Users. Lean on purpose (IdPs create thousands at once): one statement reads
    what the checks need, then the inserts and the seat. `confirm`, if given, is called
    with that statement's row before anything is written (it then reads the connector
    and token too): the bearer check of a request that skipped its own (auth.py)."""
    refuse_unknown_schemas(body, USER_SCHEMAS)
    resource = validate(UserResource, body, Context.RESOURCE_CREATION_REQUEST)
    account_id = connector.account_id
    # `active` defaults to true, and the document says so (what GET shows is predictable).
    active = True if resource.active is None else resource.active
    columns, emails = user_columns(resource, active=active)
    email = provisioning.member_email(resource)
    parameters = {
        "account_id": account_id,
        "key": columns["user_name_key"],
        "external_id": columns["external_id"],
        **provisioning.lookup_values(email),
    }
    if confirm is None:
        before = execute(session, _BEFORE_CREATE, parameters).one()
    else:
        parameters |= {"connector_id": connector.id, "token_id": connector.token_id}
        before = execute(session, _BEFORE_CREATE_CONFIRMING, parameters).one()
        confirm(before)
    match = provisioning.match_new(before, columns, email)
    if match.restore_id is not None:
        several_writes(session)
        restored = _restore(
            session, account_id, match.restore_id, columns, emails, email, active, now
        )
        if restored is not None:
            return restored
        return create(session, connector, body, now)  # removed meanwhile: a plain create
    if match.member_id is None:
        ruled = provisioning.roles_changed(session, account_id, None, columns["scim_resource"])
        if ruled:
            several_writes(session)
        state = _insert_new(
            session, account_id, columns, emails, email, active, now, match, before.account_name
        )
        if ruled:
            provisioning.apply_rules(session, account_id, state.id)
        return state
    # The person is a (manual) member here already: the membership is adopted.
    several_writes(session)
    member = session.get(Membership, match.member_id)
    with session.no_autoflush:
        _write_attributes(member, columns, emails)
        member.email = email
        member.scim_id = str(uuid.uuid4())
        member.source = "scim"
        member.updated_at = now
        provisioning.set_active(session, member, active)
    session.flush()
    document = columns["scim_resource"]
    provisioning.audit(
        session,
        provisioning.user_event(account_id, member.scim_id, member.user_name, {}, document, now),
    )
    return UserState.of(member)


def _restore(
    session,
    account_id: int,
    member_id: int,
    columns: dict,
    emails: list[dict],
    email: str | None,
    active: bool,
    now: datetime,
) -> UserState | None:
    """POST /Users for a user the IdP deleted under the "suspend" policy, inside the
    window (SPEC F12): the same membership comes back (role, person, data) under a new id
    (the old one stays 404: RFC 7644 §3.6), written as a create writes it, in the teams it
    was taken out of that still exist, active with a licence (or the licence-limit 403,
    the request rolled back) and no longer scheduled for removal. None when the row has
    gone meanwhile (the removal job)."""
    member = session.get(
        Membership, member_id, options=[selectinload(Membership.emails)], populate_existing=True
    )
    if member is None or member.source != "suspended":
        return None
    previous_id = member.scim_id
    with session.no_autoflush:
        _write_attributes(member, columns, emails)
        pending = provisioning.change_email(session, member, email, now)
        stashed = member.suspended_team_ids
        member.suspended_team_ids = None
        member.scim_id = str(uuid.uuid4())
        member.source = "scim"
        member.updated_at = now
    session.flush()
    teams = provisioning.restore_teams(session, member, stashed, now)
    if active:
        # Rules (if any) see the restored teams: the role and licence they say.
        provisioning.set_active(session, member, True)
        member.removal_due_at = None
    session.flush()
    provisioning.queue(session, member, pending)
    detail = {"id": member.scim_id, "previous_id": previous_id, "teams": teams}
    if member.removal_due_at is not None:  # created inactive: still scheduled
        detail["removal_due_at"] = member.removal_due_at.isoformat()
    provisioning.audit(
        session,
        provisioning.audit_row(
            account_id, "member.restored", f"user:{member.user_name}", detail, now
        ),
    )
    return UserState.of(member)


def _insert_new(
    session,
    account_id: int,
    columns: dict,
    emails: list[dict],
    email: str | None,
    active: bool,
    now: datetime,
    match: provisioning.Match,
    account_name: str,
) -> UserState:
    """A new member, written with Core INSERTs: on this hot path (an IdP creating
    thousands of users) the ORM's unit of work cost more than the statements.

    Everything is read, checked and built before the first write, so the writes run back
    to back: SQLite's write lock is held from the first write to the commit, and every
    other create in every process waits for it."""
    row = {
        **columns,
        "account_id": account_id,
        "scim_id": str(uuid.uuid4()),
        "source": "scim",
        "role": "member",
        "email": text(email, "email"),
        "user_id": match.person_id,
        "invitation_token_hash": None,
        "invited_at": None,
        # The membership goes in holding a seat. SQLite takes it last, after the inserts
        # (no seat left rolls them back: 403); PostgreSQL's one statement takes it
        # first, as the gate of every insert (`_one_statement`).
        "active": active,
        "licensed": active,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    row.update(search_columns(row))  # no ORM event fires for a Core INSERT
    invitation = person = None
    if email is not None and not match.verified:
        provisioning.check_invite(session, account_id, email)
        token, row["invitation_token_hash"] = provisioning.invitation_token()
        row["invited_at"] = now
        invitation = outbox.message(**provisioning.invitation(row["email"], token, account_name))
    elif email is not None and match.person_id is None:
        person = provisioning.new_person(row["display_name"], email, now)

    event = provisioning.user_event(
        account_id, row["scim_id"], row["user_name"], {}, row["scim_resource"], now
    )

    # The writes.
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        return _insert_in_one_statement(
            session, account_id, row, emails, person, invitation, email, account_name, active, event
        )
    # SQLite: each statement's values are converted before the first write takes the write
    # lock (`Prepared.bind`), which every create in every process waits for; the ids the
    # INSERTs return go in at run time.
    late = ("user_id",) if person is not None else ()
    member = _INSERT_MEMBER.bind(dialect, row, late)
    addresses = None
    if emails:
        rows = [dict(e, membership_id=0) for e in emails]
        addresses = _INSERT_EMAILS.bind(dialect, rows, ("membership_id",))
    mail = None
    if person is not None:
        mail = outbox.bind_welcome(dialect, email, account_name, now)
    elif invitation is not None:
        mail = outbox.bind_add(dialect, invitation)
    audit = provisioning.bind_audit(dialect, event)
    seat = seats.bind_take_for_new(dialect, account_id) if active else None

    conn = session.connection()
    person_id = {}
    if person is not None:
        row["user_id"] = _INSERT_PERSON.run(conn, person).scalar_one()
        person_id = {"user_id": row["user_id"]}
    member_id = member.run(conn, **person_id).scalar_one()
    if addresses is not None:
        addresses.run(conn, membership_id=member_id)
    if person is not None:
        mail.run(conn, **outbox.welcome_of(row["user_id"]))
    elif mail is not None:
        mail.run(conn)
    audit.run(conn)
    if seat is not None and seat.run(conn).rowcount != 1:
        raise provisioning.licence_limit()
    return _new_state(member_id, row)


def _new_state(member_id: int, row: dict) -> UserState:
    """A user just inserted, as written (in no team yet: nothing to read for `groups`)."""
    return UserState(member_id, *(row[name] for name in STORED_USER[1:]), groups=())


_EMAIL_COLUMNS = ("position", "value", "value_key", "type", "primary", "display")
_OUTBOX = OutboxEmail.__table__


def _values(table, prefix: str, names) -> list:
    """Bind parameters typed as `table`'s columns `names` (for INSERT … SELECT, whose
    values SQLAlchemy cannot type from the target)."""
    return [bindparam(f"{prefix}{name}", type_=table.c[name].type) for name in names]


@lru_cache(maxsize=32)
def _one_statement(
    member_columns: tuple,
    person_columns: tuple | None,
    mail_columns: tuple | None,
    emails: bool,
    seat: bool,
    audit_columns: tuple = (),
):
    """PostgreSQL: a new member's writes as one statement of data-modifying CTEs (the
    seat, the person, the membership, its emails, the welcome or invitation email, the
    audit event), where SQLite takes six. Each statement is a round trip, a parse and an
    execution on both sides: a create made nine round trips to the thinnest server's
    three. One statement is atomic on its own, so a plain create runs it outside a
    transaction (`unit_of_work.begin`): no BEGIN and COMMIT round trips either.

    The seat is the gate: every row is inserted only if the account's seat counter was
    raised (a create with no seat left writes nothing and answers the licence-limit
    403), so the statement never has anything to roll back. A CTE that nothing references
    still runs (PostgreSQL runs every data-modifying CTE once), so emails and mail are
    added with `add_cte`; the foreign keys are checked at the end of the statement, when
    the rows they point to exist."""
    gate = None
    if seat:  # the account row stays locked from here to the commit, the statement's end
        taken = update(_ACCOUNTS).where(
            _ACCOUNTS.c.id == bindparam("account_id"),
            _ACCOUNTS.c.seats_used < _ACCOUNTS.c.seat_limit,
        )
        taken = taken.values(seats_used=_ACCOUNTS.c.seats_used + 1).returning(_ACCOUNTS.c.id)
        gate = exists(select(taken.cte("seat")))

    def gated(query):
        return query if gate is None else query.where(gate)

    new_person = None
    if person_columns:
        new_person = (
            insert(_USERS)
            .from_select(person_columns, gated(select(*_values(_USERS, "p_", person_columns))))
            .returning(_USERS.c.id)
            .cte("new_person")
        )
        user_id = select(new_person.c.id).scalar_subquery()
    else:
        user_id = bindparam("m_user_id", type_=_MEMBERS.c.user_id.type)
    names = [name for name in member_columns if name != "user_id"]
    member = (
        insert(_MEMBERS)
        .from_select([*names, "user_id"], gated(select(*_values(_MEMBERS, "m_", names), user_id)))
        .returning(_MEMBERS.c.id)
        .cte("new_member")
    )
    extra = []
    if emails:
        rows = (
            func.jsonb_to_recordset(bindparam("emails", type_=JSONB))
            .table_valued(*(column(n, MemberEmail.__table__.c[n].type) for n in _EMAIL_COLUMNS))
            .render_derived(name="e", with_types=True)
        )
        extra.append(
            insert(MemberEmail.__table__)
            .from_select(
                ["membership_id", *_EMAIL_COLUMNS],
                select(member.c.id, *(rows.c[n] for n in _EMAIL_COLUMNS)).select_from(
                    member.join(rows, true())
                ),
            )
            .cte("new_emails")
        )
    if mail_columns:
        names = [n for n in mail_columns if n not in ("dedupe_key", "user_id")]
        values = _values(_OUTBOX, "o_", names)
        if new_person is not None:  # a welcome: its key and person are the new person's id
            names += ["dedupe_key", "user_id"]
            values += [literal("welcome:") + cast(new_person.c.id, String), new_person.c.id]
            chosen = select(*values).select_from(new_person)
        else:
            chosen = gated(select(*values))
        extra.append(insert(_OUTBOX).from_select(names, chosen).cte("new_mail"))
    if audit_columns:  # the audit event of the create (SPEC F10)
        values = gated(select(*_values(provisioning.AUDIT, "a_", audit_columns)))
        extra.append(insert(provisioning.AUDIT).from_select(audit_columns, values).cte("audit"))
    # One row: the new membership's id, NULL when no seat was left.
    member_id = select(member.c.id).scalar_subquery().label("member_id")
    return Prepared(select(member_id).add_cte(*extra))


def _insert_in_one_statement(
    session, account_id, row, emails, person, invitation, email, account_name, active, event
) -> UserState:
    """`_insert_new`'s writes on PostgreSQL, in one statement (`_one_statement`), whose
    shape follows the rows written (their columns are the statement's cache key)."""
    letter = invitation or {}
    if person is not None:
        letter = outbox.welcome(None, email, account_name, row["created_at"])
    statement = _one_statement(
        tuple(row), tuple(person or ()), tuple(letter), bool(emails), active, tuple(event)
    )
    params = {f"m_{name}": value for name, value in row.items()}
    params.update({f"a_{name}": value for name, value in event.items()})
    params["account_id"] = account_id
    params.update({f"p_{name}": value for name, value in (person or {}).items()})
    params.update({f"o_{name}": value for name, value in letter.items()})
    if emails:
        params["emails"] = emails
    member_id = execute(session, statement, params).scalar_one()
    if member_id is None:
        raise provisioning.licence_limit()
    return _new_state(member_id, row)


def _apply(
    session, connector, member: Membership, resource: UserResource, now: datetime
) -> UserState:
    """Write a whole resource (PUT, or the result of a PATCH) onto `member`, and audit
    what changed. A change of `active` follows the deprovisioning policy (SPEC F12)."""
    columns, emails = user_columns(resource)
    before = _audited(member.scim_resource, member.active)
    with session.no_autoflush:
        _write_attributes(member, columns, emails)
        _check_unique(session, member.account_id, columns, member.id)
        email = provisioning.member_email(resource)
        pending = provisioning.change_email(session, member, email, now)
        if resource.active is not None and resource.active != member.active:
            provisioning.set_active(session, member, resource.active)
            provisioning.follow_policy(session, connector.id, member, now)
    if session.is_modified(member):
        member.updated_at = now
    session.flush()
    if member.role != "owner" and provisioning.roles_changed(
        session, member.account_id, before, columns["scim_resource"]
    ):
        provisioning.apply_rules(session, member.account_id, member.id)
        session.expire(member, ["role", "licensed"])
    provisioning.queue(session, member, pending)
    after = _audited(columns["scim_resource"], member.active)
    event = provisioning.user_event(
        member.account_id, member.scim_id, member.user_name, before, after, now
    )
    if event is not None:
        if not member.active and member.removal_due_at is not None:
            event["detail"]["removal_due_at"] = member.removal_due_at.isoformat()
        provisioning.audit(session, event)
    return UserState.of(member)


def _audited(document: dict | None, active: bool) -> dict:
    """A user as the audit compares it: the stored document with the live `active`."""
    return {**(document or {}), "active": active}


def replace(
    session, connector, scim_id: str, body: dict, now: datetime, if_match: str | None = None
) -> UserState:
    """PUT /Users/<id> (RFC 7644 §3.5.1): the resource becomes what was sent; what is
    absent is cleared. Leaving out `active` clears it from the resource but does not
    change whether the member is active (deactivation is always explicit)."""
    member = _member(session, connector.account_id, scim_id)
    check_if_match(member.version, if_match)
    refuse_unknown_schemas(body, USER_SCHEMAS)
    resource = validate(UserResource, body, Context.RESOURCE_REPLACEMENT_REQUEST)
    return _apply(session, connector, member, resource, now)


def patch(
    session, connector, scim_id: str, body: dict, now: datetime, if_match: str | None = None
) -> UserState:
    """PATCH /Users/<id> (RFC 7644 §3.5.2, with Okta's and Entra ID's forms): the
    operations are applied by scim2-models to the stored resource (patch.py), and the
    result is written as a PUT would write it."""
    member = _member(session, connector.account_id, scim_id)
    check_if_match(member.version, if_match)
    operations = patching.user_operations(body)
    resource = user_resource(member)
    if not patching.apply(operations, resource):
        return UserState.of(member)
    return _apply(session, connector, member, resource, now)


def delete(session, connector, scim_id: str, now: datetime, if_match: str | None = None) -> None:
    """DELETE /Users/<id>: the membership goes, its seat and sessions with it (its email
    rows by the database's cascade: not loaded). Under the "suspend" policy (SPEC F12) it
    is kept, deactivated and out of SCIM, until its removal date (provisioning.suspend)."""
    member = _member(session, connector.account_id, scim_id, emails=False)
    check_if_match(member.version, if_match)
    before = _audited(member.scim_resource, member.active)
    provisioning.set_active(session, member, False)
    chosen = provisioning.policy(session, connector.id)
    if chosen.suspends:
        due = provisioning.suspend(session, member, chosen, now)
        session.flush()
        event = provisioning.user_event(
            member.account_id, scim_id, member.user_name, before, {}, now
        )
        event["detail"]["suspended_until"] = due.isoformat()
        provisioning.audit(session, event)
        return
    bump_teams_of(session, member.id)
    session.delete(member)
    session.flush()
    provisioning.audit(
        session,
        provisioning.user_event(member.account_id, scim_id, member.user_name, before, {}, now),
    )
