"""Dry run before go-live (SPEC F12): a connector in "preview" answers the IdP's writes as
if they were applied, applies none of them, and keeps what each would have done for the
SCIM page's forecast (`ScimPreview` rows).

A write in preview runs the live code path (users.py, groups.py: the same validation,
matching and errors) inside a SAVEPOINT, reads what it did (a new person, an existing
person or member matched, an invitation, a seat taken or freed), renders the answer, and
rolls the savepoint back: no member, person, team, seat, email or audit event is written.
Its forecast row is then written in the request's own transaction, which commits as usual.
Within the savepoint the account's seat limit is lifted, so that the IdP's first sync
completes (201) even past the seats free: the forecast says who would be refused, the
ones needing a seat beyond those free, in arrival order.

Each write sees the live state only (the earlier preview writes were rolled back), so
what live checks against the members (userName, externalId, the email's person), preview
also checks against the earlier preview rows: the same 409, recorded as a collision.

Reads: GET by id falls back to the preview row when the id is not live; the lookups an
IdP sends before each create (`userName eq`, `externalId eq`; groups `displayName eq`)
answer the live matches and the preview ones. Any other list answers live only. A write
to a live resource is answered as live would answer it and forecast (update, deactivate,
remove); a later GET still shows the live resource.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace

from scim2_models import InvalidFilterException, NotFoundException, UniquenessException
from scim2_models.path import CompareOperator, Comparison
from sqlalchemy import and_, bindparam, case, func, select, update

from blueprints.auth.services import email_key
from blueprints.common.sql import execute
from blueprints.scim_api import filters, groups, users
from blueprints.scim_api import patch as patching
from blueprints.scim_api.query import page
from blueprints.scim_api.schemas import CORE_GROUP, CORE_USER, ENTERPRISE
from blueprints.scim_api.serialize import (
    UserState,
    check_if_match,
    document,
    group_payload,
    group_resource,
    list_response,
    render,
    usable_id,
    user_resource,
)
from models import Account, Membership, ScimConnector, ScimPreview, User

# What a preview row that is a resource of its own (GET and the lookups serve it) may be.
USER_OUTCOMES = ("created", "matched", "invited")
GROUP_OUTCOME = "group"
COLLISION = "collision"
_ACCOUNTS = Account.__table__
_CONNECTORS = ScimConnector.__table__

# The preview's writes for one connector queue on its row (PostgreSQL: a row lock until
# the commit; SQLite: the write lock taken before the savepoint), so two preview creates
# of one userName cannot both pass the check against the preview rows.
_HOLD = (
    update(_CONNECTORS)
    .where(_CONNECTORS.c.id == bindparam("connector_id"))
    .values(mode=_CONNECTORS.c.mode)
)
# Inside the savepoint: no licence-limit 403 (the forecast counts the seats instead).
_UNBOUND = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("account_id"))
    .values(seat_limit=_ACCOUNTS.c.seats_used + 1_000_000)
    .returning(_ACCOUNTS.c.seats_used)
)
_SEATS_USED = select(_ACCOUNTS.c.seats_used).where(_ACCOUNTS.c.id == bindparam("account_id"))
_M, _U = Membership.__table__, User.__table__
# What a create did, read inside its savepoint.
_FACTS = (
    select(
        _M.c.created_at,
        _M.c.user_id,
        _M.c.invitation_token_hash.is_not(None).label("invited"),
        _M.c.email,
        _U.c.email.label("person_email"),
        _U.c.created_at.label("person_created_at"),
    )
    .select_from(_M.outerjoin(_U, _U.c.id == _M.c.user_id))
    .where(_M.c.id == bindparam("member_id"))
)


@dataclass
class Answer:
    """What the IdP is answered: the resource (before attributes/excludedAttributes) and
    its version (the ETag), or nothing (a DELETE)."""

    payload: dict | None
    version: int
    scim_id: str | None = None


def named(answer: Answer) -> SimpleNamespace:
    """A preview group as the request log's note names it (routes._written)."""
    return SimpleNamespace(
        scim_id=answer.scim_id, display_name=(answer.payload or {}).get("displayName")
    )


def _dry_run(session, connector, run):
    """`run()` inside a savepoint, with the seat limit lifted; returns (what it returned,
    the change in seats used) and rolls everything it wrote back, errors included."""
    execute(session, _HOLD, {"connector_id": connector.id})
    nested = session.begin_nested()
    try:
        before = execute(session, _UNBOUND, {"account_id": connector.account_id}).scalar_one()
        result = run()
        session.flush()
        after = execute(session, _SEATS_USED, {"account_id": connector.account_id}).scalar_one()
        return result, after - before
    finally:
        nested.rollback()


def _find(session, connector_id: int, kind: str, scim_id: str) -> ScimPreview | None:
    return session.scalar(
        select(ScimPreview).where(
            ScimPreview.connector_id == connector_id,
            ScimPreview.kind == kind,
            ScimPreview.scim_id == scim_id,
            ScimPreview.outcome.in_((*USER_OUTCOMES, GROUP_OUTCOME)),
        )
    )


def find(session, connector_id: int, kind: str, scim_id: str) -> ScimPreview:
    """The preview resource `scim_id` (User or Group), or the 404 live gives."""
    row = _find(session, connector_id, kind, scim_id)
    if row is None:
        noun = "user" if kind == "User" else "group"
        raise NotFoundException(detail=f"There is no {noun} {scim_id!r}.")
    return row


# --- Users: writes ----------------------------------------------------------------------------


def _check_preview_unique(
    session, connector_id: int, payload: dict, email: str | None, verified: bool, exclude
) -> None:
    """The 409 live would give were the earlier preview users written: the userName, the
    externalId, or (in a verified domain) the email's person taken by another user."""
    key = filters.key(payload.get("userName") or "")
    external_id = payload.get("externalId")
    email_match = (
        ScimPreview.email_key == email_key(email) if email and verified else ScimPreview.id < 0
    )
    rows = session.execute(
        select(ScimPreview.user_name_key, ScimPreview.external_id, ScimPreview.detail)
        .where(
            ScimPreview.connector_id == connector_id,
            ScimPreview.kind == "User",
            ScimPreview.outcome.in_(USER_OUTCOMES),
            ScimPreview.id != (exclude or 0),
            (ScimPreview.user_name_key == key)
            | (ScimPreview.external_id == external_id if external_id else ScimPreview.id < 0)
            | email_match,
        )
        .limit(3)
    ).all()
    if any(r.user_name_key == key for r in rows):
        raise UniquenessException(detail=f"A user with userName {payload['userName']!r} exists.")
    if external_id and any(r.external_id == external_id for r in rows):
        raise UniquenessException(detail=f"A user with externalId {external_id!r} exists.")
    if rows:
        other = (rows[0].detail or {}).get("userName")
        raise UniquenessException(
            detail=f"The email {email} already belongs to the user {other!r}."
        )


def _outcome(facts, now: datetime) -> tuple[str, dict]:
    """created | matched | invited, and what the page shows of it."""
    if facts.created_at != now:  # an existing (manual) member adopted
        return "matched", {"email": facts.person_email or facts.email, "already_member": True}
    if facts.invited:
        return "invited", {"email": facts.email}
    if facts.user_id is None:
        return "created", {"email": None}
    if facts.person_created_at == now:
        return "created", {"email": facts.person_email}
    return "matched", {"email": facts.person_email, "already_member": False}


def _write_user(session, connector, body: dict, now: datetime, base: str, row: ScimPreview | None):
    """Run the live create of `body` in a savepoint; the answer and the forecast row
    (`row`, the preview user being rewritten, keeps its id, creation time and version)."""

    def run():
        state = users.create(session, connector, body, now)
        facts = execute(session, _FACTS, {"member_id": state.id}).one()
        if row is not None:
            state = state._replace(
                scim_id=row.scim_id,
                version=row.version + 1,
                created_at=row.created_at,
                updated_at=now,
            )
        return users.show(session, state, base, None), facts

    (payload, facts), seats = _dry_run(session, connector, run)
    outcome, detail = _outcome(facts, now)
    email = facts.email
    _check_preview_unique(
        session, connector.id, payload, email, outcome != "invited", row and row.id
    )
    if row is None:
        row = ScimPreview(
            connector_id=connector.id, kind="User", scim_id=payload["id"], created_at=now
        )
        session.add(row)
    else:
        row.version += 1
    row.user_name_key = filters.key(payload.get("userName") or "")
    row.external_id = payload.get("externalId")
    row.email_key = email_key(email) if email and outcome != "invited" else None
    row.document, row.outcome, row.updated_at = payload, outcome, now
    row.detail = detail | {"userName": payload.get("userName")}
    row.needs_seat = seats > 0
    session.flush()
    return Answer(payload, row.version, row.scim_id)


def record_collision(session, connector, kind: str, body, detail: str, now: datetime) -> None:
    """A write refused as a collision (409): kept for the forecast, once per key."""
    name = (
        body.get("userName" if kind == "User" else "displayName")
        if isinstance(body, dict)
        else None
    )
    name = name if isinstance(name, str) else None
    key = filters.key(name) if name else None
    column = ScimPreview.user_name_key if kind == "User" else ScimPreview.display_name_key
    row = session.scalar(
        select(ScimPreview).where(
            ScimPreview.connector_id == connector.id,
            ScimPreview.kind == kind,
            ScimPreview.outcome == COLLISION,
            column == key,
        )
    )
    if row is None:
        row = ScimPreview(
            connector_id=connector.id, kind=kind, outcome=COLLISION, created_at=now, version=1
        )
        session.add(row)
    if kind == "User":
        row.user_name_key = key
    else:
        row.display_name_key = key
    row.detail = {"name": name, "error": detail[:300]}
    row.needs_seat, row.updated_at = False, now
    session.flush()


def create_user(session, connector, body: dict, now: datetime, base: str) -> Answer:
    """POST /Users in preview."""
    return _write_user(session, connector, body, now, base, None)


def _state(row: ScimPreview) -> UserState:
    doc = {
        k: v
        for k, v in (row.document or {}).items()
        if k not in ("schemas", "id", "meta", "groups")
    }
    return UserState(
        0,
        0,
        row.scim_id,
        doc,
        bool(doc.get("active", True)),
        row.version,
        row.created_at,
        row.updated_at,
    )


def _body(resource) -> dict:
    doc = document(resource)
    return {"schemas": [CORE_USER, ENTERPRISE] if ENTERPRISE in doc else [CORE_USER], **doc}


def _live_write(session, connector, scim_id: str, run, base: str, now: datetime) -> Answer:
    """A write to a live user, answered as live would answer it, and forecast."""

    def dry():
        before = users.get(session, connector.account_id, scim_id)
        state = run()
        payload = users.show(session, state, base, None) if state is not None else None
        return before, state, payload

    (before, state, payload), seats = _dry_run(session, connector, dry)
    if state is None:
        outcome = "remove"
    elif state.version == before.version:
        return Answer(payload, state.version, scim_id)  # nothing changed: nothing to forecast
    elif before.active and not state.active:
        outcome = "deactivate"
    else:
        outcome = "update"
    user_name = (before.scim_resource or {}).get("userName")
    detail = {"userName": user_name, "frees_seat": seats < 0}
    _forecast_live(session, connector, "User", scim_id, outcome, detail, now, seats)
    return Answer(payload, state.version if state is not None else before.version, scim_id)


def _on_live(session, connector, kind: str, scim_id: str, write, base: str, now: datetime):
    """A write to the live resource `scim_id`, dry-run, answered and forecast (users:
    `_live_write`, groups: `_live_group_write`); None when no live resource has that id
    (the write is then to a preview resource)."""
    service, dry = (users, _live_write) if kind == "User" else (groups, _live_group_write)
    try:
        service.get(session, connector.account_id, scim_id)
    except NotFoundException:
        return None
    return dry(session, connector, scim_id, write, base, now)


def replace_user(session, connector, scim_id, body, now, base, if_match=None) -> Answer:
    """PUT /Users/<id> in preview."""
    live = _on_live(
        session,
        connector,
        "User",
        scim_id,
        lambda: users.replace(session, connector, scim_id, body, now, if_match),
        base,
        now,
    )
    if live is not None:
        return live
    row = find(session, connector.id, "User", scim_id)
    check_if_match(row.version, if_match)
    return _write_user(session, connector, body, now, base, row)


def patch_user(session, connector, scim_id, body, now, base, if_match=None) -> Answer:
    """PATCH /Users/<id> in preview: the operations applied to the stored document by
    patch.py, then written as a create would write it."""
    live = _on_live(
        session,
        connector,
        "User",
        scim_id,
        lambda: users.patch(session, connector, scim_id, body, now, if_match),
        base,
        now,
    )
    if live is not None:
        return live
    row = find(session, connector.id, "User", scim_id)
    check_if_match(row.version, if_match)
    operations = patching.user_operations(body)
    resource = user_resource(_state(row))
    if not patching.apply(operations, resource):
        return Answer(row.document, row.version, row.scim_id)
    return _write_user(session, connector, _body(resource), now, base, row)


def delete_user(session, connector, scim_id, now, base, if_match=None) -> None:
    """DELETE /Users/<id> in preview: a preview user's row goes (then GET is 404)."""
    if (
        _on_live(
            session,
            connector,
            "User",
            scim_id,
            lambda: users.delete(session, connector, scim_id, now, if_match),
            base,
            now,
        )
        is not None
    ):
        return
    row = find(session, connector.id, "User", scim_id)
    check_if_match(row.version, if_match)
    session.delete(row)
    session.flush()


# --- Groups: writes ---------------------------------------------------------------------------


def _preview_users(session, connector_id: int, ids) -> set[str]:
    """Which of `ids` are preview users of this connector (members a group may name)."""
    wanted = [i for i in ids if usable_id(i)]
    if not wanted:
        return set()
    return set(
        session.scalars(
            select(ScimPreview.scim_id).where(
                ScimPreview.connector_id == connector_id,
                ScimPreview.kind == "User",
                ScimPreview.outcome.in_(USER_OUTCOMES),
                ScimPreview.scim_id.in_(wanted),
            )
        )
    )


def _check_preview_group_unique(session, connector_id: int, payload: dict, exclude) -> None:
    """The 409 live would give were the earlier preview groups written."""
    key = filters.key(payload.get("displayName") or "")
    external_id = payload.get("externalId")
    rows = session.execute(
        select(ScimPreview.display_name_key, ScimPreview.external_id).where(
            ScimPreview.connector_id == connector_id,
            ScimPreview.kind == "Group",
            ScimPreview.outcome == GROUP_OUTCOME,
            ScimPreview.id != (exclude or 0),
            (ScimPreview.display_name_key == key)
            | (ScimPreview.external_id == external_id if external_id else ScimPreview.id < 0),
        )
    ).all()
    if any(r.display_name_key == key for r in rows):
        raise UniquenessException(detail=f"A group named {payload['displayName']!r} exists.")
    if rows:
        raise UniquenessException(detail=f"A group with externalId {external_id!r} exists.")


def _write_group(session, connector, body: dict, now: datetime, base: str, row):
    """Run the live create of the group `body` in a savepoint; members that are preview
    users of this connector count as members (live skips them as unknown: they don't
    exist there). Returns the answer, and the ids skipped as unknown."""

    def run():
        team, skipped = groups.create(session, connector, body, now)
        if row is not None:
            team.scim_id, team.version, team.created_at = (
                row.scim_id,
                row.version + 1,
                row.created_at,
            )
        live = groups.members_of(session, [team.id])[team.id]
        return group_payload(team, live, base), skipped

    (payload, skipped), _ = _dry_run(session, connector, run)
    known = _preview_users(session, connector.id, skipped)
    sent = {
        m.get("value"): m.get("display") for m in body.get("members") or [] if isinstance(m, dict)
    }
    listed = [(m["value"], m.get("display")) for m in payload.get("members", [])]
    listed += [(i, sent.get(i)) for i in dict.fromkeys(skipped) if i in known]
    meta = payload.pop("meta")
    payload.pop("members", None)
    if listed:
        payload["members"] = [
            {"value": i, "$ref": f"{base}/Users/{i}", "type": "User"}
            | ({"display": d} if d else {})
            for i, d in listed
        ]
    payload["meta"] = meta
    _check_preview_group_unique(session, connector.id, payload, row and row.id)
    if row is None:
        row = ScimPreview(
            connector_id=connector.id, kind="Group", scim_id=payload["id"], created_at=now
        )
        session.add(row)
    else:
        row.version += 1
    row.display_name_key = filters.key(payload.get("displayName") or "")
    row.external_id = payload.get("externalId")
    row.document, row.outcome, row.updated_at, row.needs_seat = payload, GROUP_OUTCOME, now, False
    unknown = [i for i in skipped if i not in known]
    row.detail = {
        "name": payload.get("displayName"),
        "members": len(listed),
        "unknown": len(unknown),
    }
    session.flush()
    return Answer(payload, row.version, row.scim_id), unknown


def _group_body(document: dict, members) -> dict:
    body = {"schemas": [CORE_GROUP], "displayName": document.get("displayName")}
    if document.get("externalId") is not None:
        body["externalId"] = document["externalId"]
    body["members"] = [{"value": i} | ({"display": d} if d else {}) for i, d in members]
    return body


def _filtered_values(node) -> set[str] | None:
    """The member ids a `members[value eq "…" or …]` filter names; None for another
    filter (not evaluated on a preview group)."""
    if isinstance(node, Comparison):
        if node.op == CompareOperator.eq and str(node.attr_path).lower().endswith("value"):
            return {str(node.value)}
        return None
    children = getattr(node, "sub_filters", None) or [
        getattr(node, "left", None),
        getattr(node, "right", None),
    ]
    found: set[str] = set()
    for child in children:
        if child is None:
            return None
        values = _filtered_values(child)
        if values is None:
            return None
        found |= values
    return found


def _patched_group(row: ScimPreview, body: dict) -> dict | None:
    """A PATCH applied to a preview group's document (patch.py's operations, the member
    list kept in order): the group's new body, or None when nothing changed."""
    operations = patching.group_operations(body)
    doc = row.document or {}
    members = [(m["value"], m.get("display")) for m in doc.get("members") or []]
    before = list(members)
    for operation in operations.members:
        if operation.op == "remove":
            if operation.value_filter is not None:
                gone = _filtered_values(
                    getattr(operation.value_filter, "ast", operation.value_filter)
                )
                if gone is None:
                    raise InvalidFilterException(
                        detail="In preview, remove members of a previewed group by "
                        'members[value eq "…"] or a list of values.'
                    )
            elif operation.members is not None:
                gone = {i for i, _, _ in operation.members}
            else:
                gone = {i for i, _ in members}
            members = [(i, d) for i, d in members if i not in gone]
            continue
        added = [(i, d) for i, d, _ in operation.members or []]
        if operation.op == "replace":
            members = []
        present = {i for i, _ in members}
        members += [(i, d) for i, d in added if i not in present]
    renamed = False
    document = doc
    if operations.others is not None:
        resource = _group_model(row)
        if patching.apply(operations.others, resource):
            document = {"displayName": resource.display_name, "externalId": resource.external_id}
            renamed = True
    if not renamed and members == before:
        return None
    return _group_body(document, members)


def _group_model(row: ScimPreview):
    """A preview group, member-less, as patch.py applies the other operations to."""
    doc = row.document or {}
    return group_resource(
        SimpleNamespace(
            scim_id=row.scim_id,
            display_name=doc.get("displayName"),
            external_id=doc.get("externalId"),
        )
    )


def create_group(session, connector, body: dict, now: datetime, base: str):
    """POST /Groups in preview."""
    return _write_group(session, connector, body, now, base, None)


def _live_group_write(session, connector, scim_id: str, run, base: str, now: datetime):
    """A write to a live group, answered as live would answer it, and forecast."""

    def dry():
        before = groups.get(session, connector.account_id, scim_id).version
        result = run()
        if result is None:
            return before, None, []
        team, skipped = result
        return before, (groups.show(session, team, base, None), team.version), skipped

    (before, written, skipped), _ = _dry_run(session, connector, dry)
    if written is not None and written[1] == before:
        return Answer(written[0], before, scim_id), skipped
    _forecast_live(
        session, connector, "Group", scim_id, "remove" if written is None else "update", {}, now
    )
    if written is None:
        return None, []
    return Answer(written[0], written[1], scim_id), skipped


def _forecast_live(session, connector, kind, scim_id, outcome, detail, now, seats=0) -> None:
    row = session.scalar(
        select(ScimPreview).where(
            ScimPreview.connector_id == connector.id, ScimPreview.scim_id == scim_id
        )
    )
    if row is None:
        row = ScimPreview(connector_id=connector.id, kind=kind, scim_id=scim_id, created_at=now)
        session.add(row)
    row.outcome, row.updated_at, row.version = outcome, now, 1
    row.detail = detail
    row.needs_seat = seats > 0
    row.user_name_key = row.display_name_key = None  # the lookups serve the live resource
    session.flush()


def replace_group(session, connector, scim_id, body, now, base, if_match=None):
    """PUT /Groups/<id> in preview."""
    live = _on_live(
        session,
        connector,
        "Group",
        scim_id,
        lambda: groups.replace(session, connector, scim_id, body, now, if_match),
        base,
        now,
    )
    if live is not None:
        return live
    row = find(session, connector.id, "Group", scim_id)
    check_if_match(row.version, if_match)
    return _write_group(session, connector, body, now, base, row)


def patch_group(session, connector, scim_id, body, now, base, if_match=None):
    """PATCH /Groups/<id> in preview."""
    live = _on_live(
        session,
        connector,
        "Group",
        scim_id,
        lambda: groups.patch(session, connector, scim_id, body, now, if_match),
        base,
        now,
    )
    if live is not None:
        return live
    row = find(session, connector.id, "Group", scim_id)
    check_if_match(row.version, if_match)
    patched = _patched_group(row, body)
    if patched is None:
        return Answer(row.document, row.version, row.scim_id), []
    return _write_group(session, connector, patched, now, base, row)


def delete_group(session, connector, scim_id, now, base, if_match=None):
    """DELETE /Groups/<id> in preview."""
    live = _on_live(
        session,
        connector,
        "Group",
        scim_id,
        lambda: groups.delete_group(session, connector, scim_id, now, if_match),
        base,
        now,
    )
    if live is not None:
        return live
    row = find(session, connector.id, "Group", scim_id)
    check_if_match(row.version, if_match)
    session.delete(row)
    session.flush()
    return None, []


def group_lookup(req) -> tuple[str, str] | None:
    """("displayname", key) when the filter is one `displayName eq "…"` (the query Okta
    and Entra ID send before creating a group)."""
    found = filters.one_eq(req)
    if found is None or found[0] != _GROUP_NAME:
        return None
    urn, value = found
    return urn, filters.key(filters.storable_operand(value, urn))


_GROUP_NAME = f"{CORE_GROUP.lower()}:displayname"


# --- Reads ----------------------------------------------------------------------------------


def _lookup_column(kind: str, urn: str):
    if kind == "Group":
        return ScimPreview.display_name_key
    return ScimPreview.user_name_key if urn.endswith(":username") else ScimPreview.external_id


def add_lookups(session, connector_id: int, kind: str, lookup, answer: dict, model, req) -> dict:
    """A lookup's ListResponse (`answer`, live) with the preview resources it matches,
    shaped by the request's attributes like the live ones."""
    if lookup is None:
        return answer
    urn, value = lookup
    outcomes = USER_OUTCOMES if kind == "User" else (GROUP_OUTCOME,)
    documents = session.scalars(
        select(ScimPreview.document)
        .where(
            ScimPreview.connector_id == connector_id,
            ScimPreview.kind == kind,
            ScimPreview.outcome.in_(outcomes),
            _lookup_column(kind, urn) == value,
        )
        .order_by(ScimPreview.id)
    ).all()
    if not documents:
        return answer
    room = max(page(req).count - len(answer["Resources"]), 0)
    resources = answer["Resources"] + [render(model, d, req) for d in documents[:room]]
    return list_response(answer["totalResults"] + len(documents), 1, resources)


# --- The forecast (the SCIM page) -------------------------------------------------------------


@dataclass
class Forecast:
    counts: dict[str, int]
    seats_needed: int
    seats_free: int
    refused: int
    lists: dict[str, list] = field(default_factory=dict)
    total: int = 0


# The forecast's lists, in the page's order, with their headings.
LABELS = {
    "created": "Would be created (a new person)",
    "matched": "Matched to an existing person",
    "invited": "Invited (email outside your verified domains)",
    "refused": "Refused for lack of seats",
    COLLISION: "Refused: userName, externalId or email collisions",
    GROUP_OUTCOME: "Groups that would be created",
    "update": "Existing users that would be updated",
    "deactivate": "Existing users that would be deactivated",
    "remove": "Existing users that would be removed",
}
LISTED = tuple(LABELS)


def forecast(session, connector_id: int, account_id: int, limit: int = 20) -> Forecast:
    """What the preview's writes would do, in a few SQL aggregates: counts by outcome (the
    users needing a seat beyond those free, in arrival order, counted as refused), the
    seats needed against those free, and the first `limit` of each list."""
    free = session.execute(
        select(Account.seat_limit - Account.seats_used).where(Account.id == account_id)
    ).scalar_one()
    free = max(free, 0)
    mine = and_(ScimPreview.connector_id == connector_id)
    needing = and_(mine, ScimPreview.needs_seat.is_(True))
    # The id of the last user the free seats cover: those needing one after it are refused.
    cutoff = session.scalar(
        select(ScimPreview.id).where(needing).order_by(ScimPreview.id).offset(free).limit(1)
    )
    refused = and_(ScimPreview.needs_seat.is_(True), ScimPreview.id >= cutoff) if cutoff else None
    shown = (
        case((refused, "refused"), else_=ScimPreview.outcome)
        if refused is not None
        else ScimPreview.outcome
    ).label("shown")
    counts = dict(session.execute(select(shown, func.count()).where(mine).group_by(shown)).all())
    seats_needed = session.scalar(select(func.count()).where(needing)) or 0
    lists = {}
    for name in LISTED:
        if not counts.get(name):
            continue
        rows = session.execute(
            select(ScimPreview.scim_id, ScimPreview.detail, ScimPreview.document)
            .where(mine, shown == name)
            .order_by(ScimPreview.id)
            .limit(limit)
        ).all()
        lists[name] = rows
    return Forecast(
        counts=counts,
        seats_needed=seats_needed,
        seats_free=free,
        refused=counts.get("refused", 0),
        lists=lists,
        total=sum(counts.values()),
    )
