"""SCIM Users (SPEC F5): a provisioned member of the account.

A User resource is a Membership with `source == "scim"`; members added by hand stay
invisible here and untouched ("left alone") until the IdP creates a user with their email,
which adopts the membership instead of duplicating it.

The whole resource is kept as the IdP wrote it (`Membership.scim_resource`: every core and
enterprise attribute, as scim2-models validates and normalises it) and served back from
there, so a client reads back what it wrote; the membership's columns copy what is looked
up often (userName, externalId, displayName, the names, the emails' rows). Two things are
ours, not the document's: `active` (the membership's live state, whenever the client has
set it) and `groups`. A `manager.$ref` is added where the client can predict it: when the
manager's value is a user of the same account.

Email and matching, as SPEC F5 says:
- the member's email is the primary email, else the work one, else the first, else the
  userName when it is an email address; a user without any is kept ("no email");
- in the account's verified domains the email joins the existing person (no new
  passphrase), or creates them with a welcome email whose initial passphrase is made and
  hashed by the outbox job, never on this request path;
- elsewhere nobody is joined silently: the membership is "invited" until the person
  accepts from the invitation email.

Licences: an active member holds a seat (blueprints.common.seats); deactivation or
deletion frees it and ends the member's sessions; no seat left is 403.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import datetime
from functools import lru_cache
from types import SimpleNamespace

from scim2_models import (
    Context,
    ForbiddenException,
    InvalidValueException,
    NotFoundException,
    PatchOp,
    UniquenessException,
)
from scim2_models.path import CompareOperator, Comparison
from sqlalchemy import (
    String,
    and_,
    bindparam,
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

from blueprints.auth.services import email_key, find_user
from blueprints.common import outbox, seats
from blueprints.common.accounts import bump_teams_of, end_sessions, other_active_owner
from blueprints.common.sql import execute, json_rows, json_value
from blueprints.common.urls import absolute_url
from blueprints.domains.services import email_domain
from blueprints.scim_api import filters
from blueprints.scim_api.resources import (
    check_if_match,
    list_response,
    meta,
    page,
    prune,
    refuse_unknown_patch_schemas,
    refuse_unknown_schemas,
    render,
    storable,
    text,
    validate,
    wants,
)
from blueprints.scim_api.schemas import (
    CORE_USER,
    ENTERPRISE,
    MAX_LENGTH,
    MAX_VALUES,
    PROVIDER,
    UserResource,
)
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

USER_SCHEMAS = (CORE_USER, ENTERPRISE)
EMAIL_LIKE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_EMAIL = 320  # characters: RFC 5321's 64 + "@" + 255, and the size of user.email
PERSON_NAME = 200  # characters of user.display_name


def member_email(resource: UserResource) -> str | None:
    """Primary, else work, else first email; else the userName if it is an email."""
    emails = [e for e in resource.emails or [] if e.value and e.value.strip()]
    chosen = (
        next((e for e in emails if e.primary), None)
        or next((e for e in emails if (e.type or "").lower() == "work"), None)
        or (emails[0] if emails else None)
    )
    if chosen is not None:
        # The person's address (user.email, the outbox) holds MAX_EMAIL characters, the
        # most an address can have; a longer one reached PostgreSQL and was a 500.
        if len(chosen.value.strip()) > MAX_EMAIL:
            raise InvalidValueException(
                detail=f"The member's email is longer than {MAX_EMAIL} characters, "
                "the most an email address can have."
            )
        return chosen.value.strip()
    user_name = (resource.user_name or "").strip()
    if EMAIL_LIKE.fullmatch(user_name) and len(user_name) <= MAX_EMAIL:
        return user_name  # a longer userName is kept, but it cannot be an address
    return None


# The statements of the create path, built once (blueprints.common.sql explains why).
_MEMBERS, _USERS, _DOMAINS = Membership.__table__, User.__table__, Domain.__table__
_VERIFIED = select(_DOMAINS.c.id).where(
    _DOMAINS.c.account_id == bindparam("account_id"),
    _DOMAINS.c.status == "verified",
    _DOMAINS.c.name == bindparam("name"),
)
# userName and externalId in one query. `external_id = NULL` matches nothing, and no row
# has id 0, which a new member's check passes as the id to leave out.
_CLASH = (
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
_INSERT_PERSON = insert(_USERS).returning(_USERS.c.id)
_INSERT_MEMBER = insert(_MEMBERS).returning(_MEMBERS.c.id)
_INSERT_EMAILS = insert(MemberEmail.__table__)
_ACCOUNTS = Account.__table__
_ACCOUNT_NAME = select(_ACCOUNTS.c.name).where(_ACCOUNTS.c.id == bindparam("account_id"))


def _taken(column, parameter: str):
    return (
        select(_MEMBERS.c.id)
        .where(_MEMBERS.c.account_id == bindparam("account_id"), column == bindparam(parameter))
        .exists()
    )


_PERSON_HERE = _MEMBERS.alias("person_here")
# Everything a create reads before it writes, in one statement (IdPs create thousands at
# once, and each statement costs more than its lookup): whether the userName or the
# externalId is taken, the account's name (for the emails), whether the email's domain
# is one of its verified ones, and the person with that email and their membership here.
_BEFORE_CREATE = (
    select(
        _taken(_MEMBERS.c.user_name_key, "key").label("user_name_taken"),
        _taken(_MEMBERS.c.external_id, "external_id").label("external_id_taken"),
        _ACCOUNTS.c.name.label("account_name"),
        _DOMAINS.c.id.label("domain_id"),
        _USERS.c.id.label("person_id"),
        _PERSON_HERE.c.id.label("member_id"),
        _PERSON_HERE.c.source,
        _PERSON_HERE.c.user_name,
    )
    .select_from(
        _ACCOUNTS.outerjoin(
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
            and_(
                _PERSON_HERE.c.user_id == _USERS.c.id,
                _PERSON_HERE.c.account_id == _ACCOUNTS.c.id,
            ),
        )
    )
    .where(_ACCOUNTS.c.id == bindparam("account_id"))
)


def _account_name(session, account_id: int) -> str:
    """For the subject of a welcome or invitation email (a Core read: the ORM's lazy load
    of `connector.account` cost more than the rest of a create's reads)."""
    return execute(session, _ACCOUNT_NAME, {"account_id": account_id}).scalar_one()


def _verified(session, account_id: int, email: str) -> bool:
    found = execute(session, _VERIFIED, {"account_id": account_id, "name": email_domain(email)})
    return found.first() is not None


# --- Reading ------------------------------------------------------------------------------

# What rendering a user needs, read as plain values (no ORM object per row).
SHOWN = (
    Membership.id,
    Membership.account_id,
    Membership.scim_id,
    Membership.scim_resource,
    Membership.active,
    Membership.version,
    Membership.created_at,
    Membership.updated_at,
)


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
_TEAMS_OF_ONE = _teams_of_member(bindparam("membership_id"))


def shown(groups: bool) -> tuple:
    """The columns a page of users is read with; with their teams when `groups` is shown."""
    return (*SHOWN, _TEAMS) if groups else SHOWN


def teams_of(row) -> list[tuple[str, str]]:
    """(group id, displayName) of each team in a row read with `shown(True)`."""
    return _teams(getattr(row, "teams", None))


def _teams(value) -> list[tuple[str, str]]:
    return [(scim_id, display) for _, scim_id, display in sorted(json_value(value) or [])]


def get(session, account_id: int, scim_id: str, for_write: bool = False) -> Membership:
    """The account's provisioned user `scim_id`, or 404 (another account's id included).
    A write also loads the email rows it compares against."""
    if len(scim_id) > 36 or "\x00" in scim_id:
        # No id is longer than the column (truncating instead made "<id>x" name the user
        # <id>, so GET, PUT, PATCH and DELETE on that path reached them) and none holds a
        # NUL, which PostgreSQL refuses in a query: "/Users/%00" was a 500 there.
        raise NotFoundException(detail=f"There is no user {scim_id[:100]!r}.")
    query = select(Membership).where(
        Membership.scim_id == scim_id,
        Membership.account_id == account_id,
        Membership.source == "scim",
    )
    if for_write:
        query = query.options(selectinload(Membership.emails))
    member = session.scalar(query)
    if member is None:
        raise NotFoundException(detail=f"There is no user {scim_id!r}.")
    return member


def _manager_of(document: dict | None) -> str | None:
    manager = ((document or {}).get(ENTERPRISE) or {}).get("manager") or {}
    value = manager.get("value")
    return value if isinstance(value, str) and "$ref" not in manager else None


def known_managers(session, account_id: int, documents) -> frozenset[str]:
    """Which of the managers the documents name are users of this account (their `$ref`
    is then predictable and added on the way out); one query for a whole page."""
    wanted = {m for m in map(_manager_of, documents) if m and len(m) <= 36 and "\x00" not in m}
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


def payload(member, groups: list[tuple[str, str]], base: str, managers=frozenset()) -> dict:
    """The full User resource as JSON (before attributes/excludedAttributes): the
    document as written, with the live `active`, our `groups` and `meta`."""
    document = member.scim_resource or {}
    body = {"schemas": [CORE_USER, ENTERPRISE] if ENTERPRISE in document else [CORE_USER]}
    body["id"] = member.scim_id
    body.update(document)
    if "active" in document:
        body["active"] = member.active
    manager = _manager_of(document)
    if manager in managers:
        enterprise = document[ENTERPRISE]
        body[ENTERPRISE] = dict(
            enterprise, manager=dict(enterprise["manager"], **{"$ref": f"{base}/Users/{manager}"})
        )
    if groups:
        body["groups"] = [
            {"value": i, "$ref": f"{base}/Groups/{i}", "display": display, "type": "direct"}
            for i, display in groups
        ]
    body["meta"] = meta("User", member, f"{base}/Users/{member.scim_id}")
    return body


def show(session, member, base: str, params) -> dict:
    groups = []
    if wants(params, "groups") and not getattr(member, "created_now", False):
        groups = _teams(execute(session, _TEAMS_OF_ONE, {"membership_id": member.id}).scalar())
    managers = known_managers(session, member.account_id, [member.scim_resource])
    return render(UserResource, payload(member, groups, base, managers), params)


_CORE = CORE_USER.lower()
_LOOKUP_COLUMNS = {
    f"{_CORE}:username": (Membership.user_name_key, filters.key),
    f"{_CORE}:externalid": (Membership.external_id, lambda v: v),
}
_LOOKUPS = {
    (urn, groups): select(*shown(groups)).where(
        Membership.account_id == bindparam("account_id"),
        Membership.source == "scim",
        column == bindparam("value"),
    )
    for urn, (column, _) in _LOOKUP_COLUMNS.items()
    for groups in (True, False)
}


def _lookup(req) -> tuple[str, str] | None:
    """(urn, value) when the filter is one `userName eq "…"` or `externalId eq "…"`, the
    query an IdP sends before every create: answered by a statement built once, on the
    unique index, rather than compiled from the filter's tree each time."""
    if req.filter is None or (req.start_index or 1) > 1:
        return None
    node = req.filter.ast
    if not (isinstance(node, Comparison) and node.op == CompareOperator.eq):
        return None
    if not isinstance(node.value, str) or node.attr_path.sub_attr is not None:
        return None
    binding = req.filter.resolve_comparison(node.attr_path, strict=False)
    urn = binding.urn.lower() if binding is not None else None
    if urn not in _LOOKUP_COLUMNS:
        return None
    return urn, _LOOKUP_COLUMNS[urn][1](filters.storable_operand(node.value, urn))


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
    where = and_(
        Membership.account_id == account_id,
        Membership.source == "scim",
        filters.where_clause("User", req.filter),
    )
    descending = req.sort_order is not None and req.sort_order.value == "descending"
    order = filters.order_by("User", req.sort_by, descending)
    rows = []
    total = None
    if window.count:
        # One statement, so one snapshot: the page's ids are found by walking the index
        # alone (cheap even deep into the list), their rows read and the matches counted
        # in the same query (the count an uncorrelated subquery, evaluated once). Read in
        # two, a user deleted in between was a KeyError (a 500); counted in a third, the
        # total could disagree with the page. (A window count over the page's walk made
        # it walk every match: a page of 5,000 users took twice as long on SQLite.)
        ids = (
            select(Membership.id)
            .where(where)
            .order_by(*order)
            .offset(window.start - 1)
            .limit(window.count)
            .correlate(None)
        )
        counted = (
            select(func.count()).select_from(Membership).where(where).correlate(None)
        ).scalar_subquery()
        rows = execute(
            session,
            select(*shown(groups), counted.label("total"))
            .where(Membership.id.in_(ids))
            .order_by(*order),
        ).all()
        if rows:
            total = rows[0].total
        elif window.start == 1:
            total = 0  # nothing matched, in this statement's snapshot
    if total is None:  # a page past the end, or count=0: nothing shown to disagree with
        total = session.scalar(select(func.count()).select_from(Membership).where(where))
    return _listed(session, account_id, req, base, rows, total, window.start)


def _listed(session, account_id: int, req, base: str, rows, total: int, start: int) -> dict:
    """The ListResponse of a page of users (rows of `shown`)."""
    managers = known_managers(session, account_id, [r.scim_resource for r in rows])
    resources = [render(UserResource, payload(r, teams_of(r), base, managers), req) for r in rows]
    return list_response(total, start, resources)


# --- Writing ------------------------------------------------------------------------------


def _storable(value, where: str = "The request") -> None:
    """400 for a string no database can hold, anywhere in what we keep: a NUL byte
    (PostgreSQL refuses it in text and in JSON) or a lone surrogate (JSON may escape
    "\\ud800", which is not Unicode and not encodable). The email matching and the
    uniqueness check query with these values before resources.text sees them, so they
    were a 500."""
    if isinstance(value, str):
        storable(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(item, str(key))
    elif isinstance(value, list):
        for item in value:
            _storable(item, where)


# Longer than MAX_LENGTH by nature: a certificate (base64 DER), a URL.
LONG_VALUES = {"x509Certificates.value": 16384, "profileUrl": 2048, "photos.value": 2048}


def _sized(document: dict, prefix: str = "") -> None:
    """400 for a string longer than its attribute may be, or more than MAX_VALUES values
    of a multi-valued attribute: what a client may make us keep is bounded."""
    for key, value in document.items():
        name = f"{prefix}{key}" if key != ENTERPRISE else ""
        shown = name or ENTERPRISE
        if isinstance(value, dict):
            _sized(value, f"{name}." if name else f"{ENTERPRISE}:")
        elif isinstance(value, list):
            if len(value) > MAX_VALUES:
                raise InvalidValueException(
                    detail=f"{shown} has {len(value)} values; at most {MAX_VALUES} are kept."
                )
            for item in value:
                if isinstance(item, dict):
                    _sized(item, f"{name}.")
        elif isinstance(value, str):
            limit = LONG_VALUES.get(name, MAX_LENGTH)
            if len(value) > limit:
                raise InvalidValueException(
                    detail=f"{shown} is longer than {limit} characters ({len(value)})."
                )


def document(resource: UserResource) -> dict:
    """What `Membership.scim_resource` keeps of `resource`: every attribute the client
    wrote, as scim2-models normalises it, less the id, meta and groups (ours) and the
    password (never stored). 400 for what no database can hold or no limit admits."""
    with PROVIDER:
        dumped = resource.model_dump(exclude={"password", "id", "meta", "groups", "schemas"})
    # Empty values are unassigned (RFC 7643 §2.5): an empty extension object, `emails: []`.
    doc = prune(dumped)
    _storable(doc)
    _sized(doc)
    return doc


def _stored(resource: UserResource, active: bool | None = None) -> tuple[dict, list[dict]]:
    """The membership columns (the document, and the copies of what is looked up often)
    and the email rows for `resource` (PUT semantics: absent means cleared). `active`,
    when given, is written into the document (a create's default)."""
    user_name = resource.user_name or ""
    if not user_name.strip():
        raise InvalidValueException(detail="userName is required and cannot be empty.")
    doc = document(resource)
    if active is not None:
        doc["active"] = active
    name = resource.name
    display_name = text(resource.display_name, "displayName")
    columns = {
        "scim_resource": doc,
        "user_name": text(user_name, "userName"),
        # Unique and looked up without case and surrounding spaces; kept as written.
        "user_name_key": filters.key(user_name),
        "external_id": text(resource.external_id, "externalId"),
        "display_name": display_name,
        "display_name_key": filters.key(display_name) if display_name else None,
        "given_name": text(name.given_name, "name.givenName") if name else None,
        "family_name": text(name.family_name, "name.familyName") if name else None,
    }
    emails = []
    for position, e in enumerate(resource.emails or []):
        value = text(e.value, "emails.value")
        emails.append(
            {
                "position": position,
                "value": value,
                "value_key": filters.key(value) if value else None,
                "type": text(e.type, "emails.type"),
                "primary": bool(e.primary),
                "display": text(e.display, "emails.display"),
            }
        )
    if sum(1 for e in emails if e["primary"]) > 1:
        raise InvalidValueException(detail="Only one of the emails can be primary.")
    return columns, emails


def _write_attributes(member: Membership, columns: dict, emails: list[dict]) -> None:
    """What `_stored` gives, onto `member` (PUT semantics: absent means cleared)."""
    for key, value in columns.items():
        if getattr(member, key) != value:
            setattr(member, key, value)
    wanted = [(e["value"], e["type"], e["primary"], e["display"]) for e in emails]
    if wanted != [(e.value, e.type, e.primary, e.display) for e in member.emails]:
        member.emails = [MemberEmail(**e) for e in emails]


def _check_unique(session, account_id: int, columns: dict, exclude_id: int | None = None) -> None:
    """A friendly 409 before the write (one query for userName and externalId); the
    unique constraints decide under races. `columns` as `_stored` gives them."""
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


def _licence_limit() -> ForbiddenException:
    return ForbiddenException(
        detail="Licence limit reached: every seat of this account is in use. "
        "Deactivate a member or raise the seat limit, then retry."
    )


def set_active(session, member: Membership, active: bool) -> None:
    """Activate (takes a seat, or 403) or deactivate (frees it, ends sessions)."""
    if active:
        if not seats.take(session, member):
            raise _licence_limit()
        member.active = True
        return
    if member.active and member.role == "owner" and not other_active_owner(session, member):
        raise ForbiddenException(
            detail="This user is the account's only active owner; the IdP cannot "
            "deactivate or delete them. Make another member an owner first."
        )
    seats.release(session, member)
    if member.active:
        end_sessions(member)
    member.active = False


def _invitation_token() -> tuple[str, str]:
    """A new invitation token and the hash we keep of it."""
    token = secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).hexdigest()


def _invite(member: Membership, now: datetime) -> str:
    token, member.invitation_token_hash = _invitation_token()
    member.invited_at = now
    return token


def _new_person(display_name: str | None, email: str, now: datetime) -> dict:
    """The person a provisioned email creates: no passphrase until the welcome email's
    delivery makes one (SPEC F5)."""
    return {
        "email": email,
        "email_key": email_key(email),
        # The person's name is a convenience; the member keeps the full displayName
        # (512 characters), which PostgreSQL refused in user.display_name: a 500.
        "display_name": display_name[:PERSON_NAME] if display_name else None,
        "passphrase_hash": None,
        "must_change_passphrase": True,
        "session_generation": 1,
        "created_at": now,
    }


def _match_email(
    session,
    member: Membership,
    email: str | None,
    now: datetime,
    verified: bool | None = None,
    person: User | None = None,
) -> list:
    """Link `member` to the person `email` names, as SPEC F5 says; returns the emails to
    queue once the row has an id: ("welcome", user) or ("invite", token). A caller that
    already looked up the domain and the person passes `verified` (and `person`, None
    when nobody has that email)."""
    looked_up = verified is not None
    member.email = text(email, "email")
    if email is None:
        return []
    if verified is None:
        verified = _verified(session, member.account_id, email)
    if not verified:
        return [("invite", _invite(member, now))]
    member.invitation_token_hash = None
    user = person if looked_up else find_user(session, email)
    if user is not None:
        member.user = user
        return []
    user = User(**_new_person(member.display_name, email, now))
    session.add(user)
    member.user = user
    return [("welcome", user)]


def _change_email(session, member: Membership, email: str | None, now: datetime) -> list:
    """The IdP changed the member's email: match again while the member has nobody
    linked; a linked person keeps their sign-in (their email is theirs, possibly in other
    accounts) unless both addresses are in this account's verified domains and the new
    one is free, in which case it follows."""
    if (email or None) == member.email:
        return []
    if member.user is None:
        member.invitation_token_hash = None
        return _match_email(session, member, email, now)
    member.email = text(email, "email")
    user = member.user
    if (
        email
        and email_key(email) != user.email_key
        and _verified(session, member.account_id, email)
        and _verified(session, member.account_id, user.email)
        and session.scalar(select(User.id).where(User.email_key == email_key(email))) is None
    ):
        user.email, user.email_key = email, email_key(email)
    return []


def _invitation(email: str, token: str, account_name: str) -> dict:
    """The arguments of `outbox.message` for an invitation to join the account."""
    return {
        "to": email,
        "subject": f"You are invited to join {account_name}",
        "template": "invitation",
        "account_name": account_name,
        "accept_url": absolute_url("invitations.accept", token=token),
    }


def _queue(session, member: Membership, pending: list, account_name: str) -> None:
    for kind, value in pending:
        if kind == "welcome":
            session.flush()  # the person's id
            outbox.enqueue_welcome(session, value.id, value.email, account_name)
        else:
            outbox.add(session, outbox.message(**_invitation(member.email, value, account_name)))


def create(session, connector, body: dict, now: datetime) -> Membership | NewUser:
    """POST /Users. Lean on purpose (IdPs create thousands at once): one statement reads
    what the checks need, then the inserts and the seat."""
    refuse_unknown_schemas(body, USER_SCHEMAS)
    resource = validate(UserResource, body, Context.RESOURCE_CREATION_REQUEST)
    account_id = connector.account_id
    # `active` defaults to true, and the document says so (what GET shows is predictable).
    active = True if resource.active is None else resource.active
    columns, emails = _stored(resource, active=active)
    email = member_email(resource)
    before = execute(
        session,
        _BEFORE_CREATE,
        {
            "account_id": account_id,
            "key": columns["user_name_key"],
            "external_id": columns["external_id"],
            "domain": email_domain(email) if email is not None else None,
            "email_key": email_key(email) if email is not None else None,
        },
    ).one()
    # userName and externalId first: a repeated create is a 409 about the userName. The
    # unique constraints decide when two creates race past this check.
    if before.user_name_taken:
        raise UniquenessException(detail=f"A user with userName {columns['user_name']!r} exists.")
    if before.external_id_taken:
        raise UniquenessException(
            detail=f"A user with externalId {columns['external_id']!r} exists."
        )
    account_name = before.account_name
    verified = email is not None and before.domain_id is not None
    member = person_id = None
    if verified and before.person_id is not None:
        # The person exists; if they are already a (manual) member here, the membership
        # is adopted.
        person_id = before.person_id
        if before.source == "scim":
            raise UniquenessException(
                detail=f"The email {email} already belongs to the user {before.user_name!r}."
            )
        if before.member_id is not None:
            member = session.get(Membership, before.member_id)
    if member is None:
        return _insert_new(
            session,
            account_id,
            columns,
            emails,
            email,
            active,
            now,
            verified=verified,
            person_id=person_id,
            account_name=account_name,
        )
    with session.no_autoflush:
        _write_attributes(member, columns, emails)
        member.email = email
        member.scim_id = str(uuid.uuid4())
        member.source = "scim"
        member.updated_at = now
        set_active(session, member, active)
    session.flush()
    return member


class NewUser(SimpleNamespace):
    """A user just inserted with Core statements: the values written, read like a
    Membership by `payload`, `show` and the routes (in no team yet: no query for
    `groups`)."""

    created_now = True


def _insert_new(
    session,
    account_id: int,
    columns: dict,
    emails: list[dict],
    email: str | None,
    active: bool,
    now: datetime,
    *,
    verified: bool,
    person_id: int | None,
    account_name: str | None,
) -> NewUser:
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
        "user_id": person_id if verified else None,
        "invitation_token_hash": None,
        "invited_at": None,
        # The seat is taken last, after the inserts: on PostgreSQL its UPDATE locks the
        # account row until the commit, and every concurrent create queues on that row.
        # The membership goes in holding it; no seat left rolls it all back (403).
        "active": active,
        "licensed": active,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    row.update(search_columns(row))  # no ORM event fires for a Core INSERT
    invitation = person = None
    if email is not None and not verified:
        token, row["invitation_token_hash"] = _invitation_token()
        row["invited_at"] = now
        invitation = outbox.message(**_invitation(row["email"], token, account_name))
    elif email is not None and person_id is None:
        person = _new_person(row["display_name"], email, now)

    # The writes.
    if session.get_bind().dialect.name == "postgresql":
        return _insert_in_one_statement(
            session, account_id, row, emails, person, invitation, email, account_name, active
        )
    if person is not None:
        row["user_id"] = execute(session, _INSERT_PERSON, person).scalar_one()
    member_id = execute(session, _INSERT_MEMBER, row).scalar_one()
    if emails:
        execute(session, _INSERT_EMAILS, [dict(e, membership_id=member_id) for e in emails])
    if person is not None:
        outbox.enqueue_welcome(session, row["user_id"], email, account_name, now)
    elif invitation is not None:
        outbox.add(session, invitation)
    if active and not seats.take_for_new(session, account_id):
        raise _licence_limit()
    return NewUser(id=member_id, emails=[SimpleNamespace(**e) for e in emails], **row)


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
):
    """PostgreSQL: a new member's writes as one statement of data-modifying CTEs (the
    person, the membership, its emails, the welcome or invitation email, the seat), where
    SQLite takes five. Each statement is a round trip, a parse and an execution on both
    sides: a create made nine round trips to the thinnest server's three. A CTE that
    nothing references still runs (PostgreSQL runs every data-modifying CTE once), so
    emails and mail are added with `add_cte`; the foreign keys are checked at the end of
    the statement, when the rows they point to exist."""
    new_person = None
    if person_columns:
        new_person = (
            insert(_USERS)
            .from_select(person_columns, select(*_values(_USERS, "p_", person_columns)))
            .returning(_USERS.c.id)
            .cte("new_person")
        )
        user_id = select(new_person.c.id).scalar_subquery()
    else:
        user_id = bindparam("m_user_id", type_=_MEMBERS.c.user_id.type)
    names = [name for name in member_columns if name != "user_id"]
    member = (
        insert(_MEMBERS)
        .from_select([*names, "user_id"], select(*_values(_MEMBERS, "m_", names), user_id))
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
            chosen = select(*values)
        extra.append(insert(_OUTBOX).from_select(names, chosen).cte("new_mail"))
    seated = literal(True)
    if seat:  # last, as on SQLite: the account row is locked from here to the commit
        taken = update(_ACCOUNTS).where(
            _ACCOUNTS.c.id == bindparam("account_id"),
            _ACCOUNTS.c.seats_used < _ACCOUNTS.c.seat_limit,
        )
        taken = taken.values(seats_used=_ACCOUNTS.c.seats_used + 1).returning(_ACCOUNTS.c.id)
        seated = exists(select(taken.cte("seat")))
    found = [member.c.id.label("member_id"), seated.label("seated")]
    if new_person is not None:
        found.append(select(new_person.c.id).scalar_subquery().label("person_id"))
    return select(*found).add_cte(*extra)


def _insert_in_one_statement(
    session, account_id, row, emails, person, invitation, email, account_name, active
) -> NewUser:
    """`_insert_new`'s writes on PostgreSQL, in one statement (`_one_statement`), whose
    shape follows the rows written (their columns are the statement's cache key)."""
    letter = invitation or {}
    if person is not None:
        letter = outbox.welcome(None, email, account_name, row["created_at"])
    statement = _one_statement(tuple(row), tuple(person or ()), tuple(letter), bool(emails), active)
    params = {f"m_{name}": value for name, value in row.items()}
    params["account_id"] = account_id
    params.update({f"p_{name}": value for name, value in (person or {}).items()})
    params.update({f"o_{name}": value for name, value in letter.items()})
    if emails:
        params["emails"] = emails
    written = execute(session, statement, params).one()
    if not written.seated:
        raise _licence_limit()
    if person is not None:
        row["user_id"] = written.person_id
    return NewUser(id=written.member_id, emails=[SimpleNamespace(**e) for e in emails], **row)


def _apply(session, connector, member: Membership, resource, now: datetime) -> None:
    """Write a whole resource (PUT, or the result of a PATCH) onto `member`."""
    columns, emails = _stored(resource)
    with session.no_autoflush:
        _write_attributes(member, columns, emails)
        _check_unique(session, member.account_id, columns, member.id)
        pending = _change_email(session, member, member_email(resource), now)
        if resource.active is not None and resource.active != member.active:
            set_active(session, member, resource.active)
    if session.is_modified(member):
        member.updated_at = now
    session.flush()
    if pending:
        _queue(session, member, pending, _account_name(session, connector.account_id))


def replace(session, connector, scim_id: str, body: dict, now: datetime) -> Membership:
    """PUT /Users/<id> (RFC 7644 §3.5.1): the resource becomes what was sent; what is
    absent is cleared. Leaving out `active` clears it from the resource but does not
    change whether the member is active (deactivation is always explicit)."""
    member = get(session, connector.account_id, scim_id, for_write=True)
    check_if_match(member.version)
    refuse_unknown_schemas(body, USER_SCHEMAS)
    resource = validate(UserResource, body, Context.RESOURCE_REPLACEMENT_REQUEST)
    _apply(session, connector, member, resource, now)
    return member


def current_resource(member: Membership) -> UserResource:
    """The stored user as a model, for PATCH to apply its operations to: the document,
    with the live `active` and an (empty) enterprise extension to write into."""
    doc = member.scim_resource or {}
    body = {"schemas": [CORE_USER, ENTERPRISE], **doc}
    body.setdefault(ENTERPRISE, {})
    if "active" in doc:
        body["active"] = member.active
    return validate(UserResource, body, Context.RESOURCE_REPLACEMENT_REQUEST)


def _manager_path(body: dict) -> dict:
    """Microsoft Entra ID sets the manager with `"path": "manager"` (no URN) and a list
    holding one reference (its SCIM protocol page, "Example 5"). The core schema has no
    `manager`, so the operation was dropped as an unknown attribute: read it as the
    enterprise manager, with the reference's id as its value."""
    key = next((k for k in body if isinstance(k, str) and k.lower() == "operations"), None)
    operations = body.get(key) if key else None
    if not isinstance(operations, list):
        return body

    def manager_id(item):
        if isinstance(item, dict):
            return next((v for k, v in item.items() if str(k).lower() == "value"), None)
        return item

    rewritten = []
    for op in operations:
        path = op.get("path") if isinstance(op, dict) else None
        if isinstance(path, str) and path.strip().lower() == "manager":
            op = dict(op, path=f"{ENTERPRISE}:manager")
            value = op.get("value")
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            if "value" in op and not isinstance(value, list):
                op["value"] = manager_id(value)
        rewritten.append(op)
    return dict(body, **{key: rewritten})


def patch(session, connector, scim_id: str, body: dict, now: datetime) -> Membership:
    """PATCH /Users/<id> (RFC 7644 §3.5.2, with Okta's and Entra ID's forms): the
    operations are applied by scim2-models to the stored resource, and the result is
    written as a PUT would write it."""
    member = get(session, connector.account_id, scim_id, for_write=True)
    check_if_match(member.version)
    refuse_unknown_patch_schemas(body, USER_SCHEMAS)
    operations = validate(
        PatchOp[UserResource], _manager_path(body), Context.RESOURCE_PATCH_REQUEST
    )
    resource = current_resource(member)
    with PROVIDER:
        changed = operations.patch(resource)
    if changed:
        _apply(session, connector, member, resource, now)
    return member


def delete(session, connector, scim_id: str) -> None:
    """DELETE /Users/<id>: the membership goes, its seat and sessions with it (its email
    rows by the database's cascade: not loaded)."""
    member = get(session, connector.account_id, scim_id)
    check_if_match(member.version)
    set_active(session, member, False)
    bump_teams_of(session, member.id)
    session.delete(member)
    session.flush()
