"""SCIM Groups (SPEC F5): the account's teams.

Membership changes are INSERTs (one multi-row statement per operation) and DELETEs on
`team_member`, never a read-modify-write of the member list, so concurrent PATCHes adding
members (Entra ID sends them in parallel) lose none, and adding one member to a team of
50,000 costs what adding one to a team of 10 does. The team's version is bumped in SQL
(`version + 1`).

A member id the account doesn't know (a user not provisioned yet, another account's, a
nested group) never fails the write: the known members are applied, the unknown ones are
skipped and named in the SCIM request log (SPEC F5), so one stray id doesn't stop an IdP
from syncing the group for everyone else. `members[].display` is kept as the IdP wrote it.

PATCH operations on `members` (every path form: `members`, `members[value eq "…"]`, the
URN-prefixed one, path-less `{"members": [...]}`, removal by a value list) are turned into
those statements here; operations on the other attributes go through scim2-models on a
member-less copy of the team.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from scim2_models import (
    Context,
    InvalidPathException,
    InvalidValueException,
    MutabilityException,
    NotFoundException,
    PatchOp,
    UniquenessException,
)
from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.orm.attributes import set_committed_value

from blueprints.common.sql import upsert_rows
from blueprints.scim_api import filters
from blueprints.scim_api.resources import (
    check_if_match,
    list_response,
    meta,
    page,
    refuse_unknown_patch_schemas,
    refuse_unknown_schemas,
    render,
    storable,
    text,
    usable_id,
    validate,
    wants,
)
from blueprints.scim_api.schemas import CORE_GROUP, PROVIDER, Group
from models import Membership, Team, TeamMember

MEMBERS = "members"
GROUP_SCHEMAS = (CORE_GROUP,)


def get(session, account_id: int, scim_id: str) -> Team:
    # PostgreSQL refuses NUL in text (a 500 otherwise); no group id has one.
    team = None
    if usable_id(scim_id):
        team = session.scalar(
            select(Team).where(
                Team.scim_id == scim_id,
                Team.account_id == account_id,
                Team.source == "scim",
            )
        )
    if team is None:
        raise NotFoundException(detail=f"There is no group {scim_id!r}.")
    return team


def members_of(session, team_ids: list[int]) -> dict[int, list[tuple[str, str | None]]]:
    """Each team's members as (user id, display as written), streamed from one query."""
    found: dict[int, list[tuple[str, str | None]]] = {team_id: [] for team_id in team_ids}
    if not team_ids:
        return found
    rows = session.execute(
        select(TeamMember.team_id, Membership.scim_id, TeamMember.display)
        .join(Membership, Membership.id == TeamMember.membership_id)
        .where(TeamMember.team_id.in_(team_ids), Membership.scim_id.is_not(None))
        .order_by(TeamMember.team_id, Membership.id)
        .execution_options(yield_per=5000)
    )
    for team_id, scim_id, display in rows:
        found[team_id].append((scim_id, display))
    return found


def payload(team: Team, members: list[tuple[str, str | None]] | None, base: str) -> dict:
    """The group as JSON (before attributes/excludedAttributes), without empty values."""
    body = {"schemas": [CORE_GROUP], "id": team.scim_id}
    if team.external_id is not None:
        body["externalId"] = team.external_id
    body["displayName"] = team.display_name
    if members:
        body["members"] = [
            {"value": scim_id, "$ref": f"{base}/Users/{scim_id}", "type": "User", "display": d}
            if d is not None
            else {"value": scim_id, "$ref": f"{base}/Users/{scim_id}", "type": "User"}
            for scim_id, d in members
        ]
    body["meta"] = meta("Group", team, f"{base}/Groups/{team.scim_id}")
    return body


def show(session, team: Team, base: str, params) -> dict:
    """One group; its members are not even queried when the client leaves them out."""
    members = members_of(session, [team.id])[team.id] if wants(params, MEMBERS) else None
    return render(Group, payload(team, members, base), params)


def search(session, account_id: int, req, base: str) -> dict:
    where = and_(
        Team.account_id == account_id,
        Team.source == "scim",
        filters.where_clause("Group", req.filter),
    )
    descending = req.sort_order is not None and req.sort_order.value == "descending"
    order = filters.order_by("Group", req.sort_by, descending)
    window = page(req)
    total = session.scalar(select(func.count()).select_from(Team).where(where))
    resources: list[dict] = []
    if window.count and total >= window.start:
        teams = session.scalars(
            select(Team).where(where).order_by(*order).offset(window.start - 1).limit(window.count)
        ).all()
        members = members_of(session, [t.id for t in teams]) if wants(req, MEMBERS) else {}
        resources = [render(Group, payload(t, members.get(t.id), base), req) for t in teams]
    return list_response(total, window.start, resources)


# --- Writing ------------------------------------------------------------------------------


def _write_attributes(team: Team, resource: Group) -> None:
    name = resource.display_name or ""
    if not name.strip():
        raise InvalidValueException(detail="displayName is required and cannot be empty.")
    team.display_name = text(name, "displayName")  # kept as written
    team.display_name_key = filters.key(name)  # unique without case and surrounding spaces
    team.external_id = text(resource.external_id, "externalId")


def _check_unique(session, team: Team) -> None:
    clash = select(Team.id).where(Team.account_id == team.account_id)
    if team.id is not None:
        clash = clash.where(Team.id != team.id)
    if session.scalar(clash.where(Team.display_name_key == team.display_name_key)):
        raise UniquenessException(detail=f"A group named {team.display_name!r} exists.")
    if team.external_id is not None and session.scalar(
        clash.where(Team.external_id == team.external_id)
    ):
        raise UniquenessException(detail=f"A group with externalId {team.external_id!r} exists.")


def _member_values(value, where: str) -> list[tuple[str, str | None, str | None]]:
    """The members in a `members` value: a list of {"value": id, "display"?, "type"?}
    (or one of them), as (id, display, type)."""
    items = value if isinstance(value, list) else [value]
    members = []
    for item in items:
        lowered = {str(k).lower(): v for k, v in item.items()} if isinstance(item, dict) else {}
        member_id = lowered.get("value")
        if not isinstance(member_id, str) or not member_id.strip():
            raise InvalidValueException(
                detail=f"{where}: each member is an object with the user's id as 'value'."
            )
        display, kind = lowered.get("display"), lowered.get("type")
        if display is not None and not isinstance(display, str):
            raise InvalidValueException(detail=f"{where}: a member's 'display' is a string.")
        members.append(
            (
                storable(member_id.strip(), "A member's 'value'"),
                text(display, "A member's 'display'"),
                kind if isinstance(kind, str) else None,
            )
        )
    return members


def _resolve_members(session, account_id: int, members) -> tuple[list[dict], list[str]]:
    """The rows for the members that are users of this account, and the ids of those
    that are not (skipped: RFC 7644 allows no partial failure of one operation, but
    failing the whole group write over one stray id stops an IdP from syncing the group
    for everyone, which is worse). A member typed "Group" is skipped: teams don't nest."""
    wanted: dict[str, str | None] = {}
    skipped: list[str] = []
    for member_id, display, kind in members:
        if kind is not None and kind.lower() != "user":
            skipped.append(member_id)
        else:
            wanted[member_id] = display
    usable = [i for i in wanted if usable_id(i)]
    found = dict(
        session.execute(
            select(Membership.scim_id, Membership.id).where(
                Membership.account_id == account_id,
                Membership.source == "scim",
                Membership.scim_id.in_(usable),
            )
        ).all()
        if usable
        else []
    )
    skipped += [i for i in wanted if i not in found]
    rows = [{"membership_id": found[i], "display": d} for i, d in wanted.items() if i in found]
    return rows, list(dict.fromkeys(skipped))


def _add_members(session, team: Team, rows: list[dict], now: datetime, replace: bool) -> bool:
    """Insert the members not in the team yet, and write the display of those who are
    (on `add`, only a display that was sent); True when anything changed."""
    if not rows:
        return False
    table = TeamMember.__table__

    def changed_display(excluded):
        differs = table.c.display.is_distinct_from(excluded.display)
        return differs if replace else and_(excluded.display.is_not(None), differs)

    return (
        upsert_rows(
            session,
            table,
            [dict(r, team_id=team.id, created_at=now) for r in rows],
            ["team_id", "membership_id"],
            update=lambda excluded: {"display": excluded.display},
            where=changed_display,
        )
        > 0
    )


def _remove_members(session, team: Team, condition=None) -> bool:
    """True when someone was removed."""
    statement = delete(TeamMember).where(TeamMember.team_id == team.id)
    if condition is not None:
        statement = statement.where(condition)
    return session.execute(statement.execution_options(synchronize_session=False)).rowcount > 0


def _bump(session, team: Team, now: datetime) -> None:
    """`version + 1` in SQL; the new values are copied onto `team` (RETURNING), since the
    response is rendered from it before the request's commit would expire it: without
    this, a PATCH or PUT answered with the previous version and lastModified."""
    version, updated_at = session.execute(
        update(Team)
        .where(Team.id == team.id)
        .values(version=Team.version + 1, updated_at=now)
        .returning(Team.version, Team.updated_at)
        .execution_options(synchronize_session=False)
    ).one()
    set_committed_value(team, "version", version)
    set_committed_value(team, "updated_at", updated_at)


def _listed(resource: Group) -> list[tuple[str, str | None, str | None]]:
    """The members of a validated Group as (id, display, type). A member without a
    value is a 400, as in a PATCH: dropped without a word, the IdP would believe it sent a
    member that nobody will ever see."""
    members = []
    for m in resource.members or []:
        if not m.value or not m.value.strip():
            raise InvalidValueException(
                detail="members: each member is an object with the user's id as 'value'."
            )
        value = storable(m.value.strip(), "A member's 'value'")
        members.append((value, text(m.display, "A member's 'display'"), m.type))
    return members


def _set_members(session, team: Team, rows: list[dict], now: datetime) -> bool:
    """Make `rows` the team's whole member list (PUT, PATCH replace); True if it changed."""
    keep = [r["membership_id"] for r in rows]
    condition = TeamMember.membership_id.not_in(keep) if keep else None
    removed = _remove_members(session, team, condition)
    return _add_members(session, team, rows, now, replace=True) or removed


def create(session, connector, body: dict, now: datetime) -> tuple[Team, list[str]]:
    """POST /Groups: the team and its known members; returns it and the skipped ids."""
    refuse_unknown_schemas(body, GROUP_SCHEMAS)
    resource = validate(Group, body, Context.RESOURCE_CREATION_REQUEST)
    team = Team(
        account_id=connector.account_id,
        scim_id=str(uuid.uuid4()),
        source="scim",
        version=1,
        created_at=now,
        updated_at=now,
    )
    _write_attributes(team, resource)
    _check_unique(session, team)
    rows, skipped = _resolve_members(session, connector.account_id, _listed(resource))
    session.add(team)
    session.flush()
    _add_members(session, team, rows, now, replace=True)
    return team, skipped


def replace(session, connector, scim_id: str, body: dict, now: datetime) -> tuple[Team, list[str]]:
    """PUT /Groups/<id>: the name, externalId and the whole member list."""
    team = get(session, connector.account_id, scim_id)
    check_if_match(team.version)
    refuse_unknown_schemas(body, GROUP_SCHEMAS)
    resource = validate(Group, body, Context.RESOURCE_REPLACEMENT_REQUEST)
    _write_attributes(team, resource)
    _check_unique(session, team)
    rows, skipped = _resolve_members(session, connector.account_id, _listed(resource))
    session.flush()
    _set_members(session, team, rows, now)
    _bump(session, team, now)
    return team, skipped


def _targets_members(path) -> bool:
    return path is not None and path.parts and path.parts[0].lower() == MEMBERS


def _members_op(session, team: Team, op: str, path, value, now: datetime, skipped: list) -> bool:
    """One PATCH operation on `members`; True when it changed the member list (adding a
    member again or removing a non-member leaves the version as it is). Unknown ids
    are appended to `skipped`."""
    value_filter = path.value_filter if path is not None else None
    if path is not None and len(path.parts) > 1:
        raise MutabilityException(
            detail="A member's sub-attributes cannot be changed; add or remove the member."
        )
    if op == "remove":
        if value_filter is not None:
            multi = filters.mapping("Group").multi[MEMBERS]
            condition = filters.compile_values(multi, value_filter, MEMBERS)
            matched = (
                select(TeamMember.membership_id)
                .join(Membership, Membership.id == TeamMember.membership_id)
                .where(TeamMember.team_id == team.id, condition)
            )
            return _remove_members(session, team, TeamMember.membership_id.in_(matched))
        if value is not None:  # Entra ID: remove these members
            ids = [member_id for member_id, _, _ in _member_values(value, MEMBERS)]
            rows = select(Membership.id).where(
                Membership.account_id == team.account_id,
                Membership.scim_id.in_([i for i in ids if usable_id(i)]),
            )
            return _remove_members(session, team, TeamMember.membership_id.in_(rows))
        return _remove_members(session, team)
    if value_filter is not None:
        raise InvalidPathException(
            detail="Add or replace members with the path 'members' and a list of members."
        )
    listed = _member_values(value, MEMBERS) if value is not None else []
    rows, unknown = _resolve_members(session, team.account_id, listed)
    skipped += unknown
    if op == "replace":
        return _set_members(session, team, rows, now)
    return _add_members(session, team, rows, now, replace=False)


def patch(session, connector, scim_id: str, body: dict, now: datetime) -> tuple[Team, list[str]]:
    """PATCH /Groups/<id>: returns the team and the member ids skipped as unknown."""
    team = get(session, connector.account_id, scim_id)
    check_if_match(team.version)
    refuse_unknown_patch_schemas(body, GROUP_SCHEMAS)
    operations = validate(PatchOp[Group], body, Context.RESOURCE_PATCH_REQUEST)
    changed = False
    others = []
    skipped: list[str] = []
    for operation in operations.operations or []:
        op = operation.op.value
        if _targets_members(operation.path):
            changed |= _members_op(session, team, op, operation.path, operation.value, now, skipped)
        elif operation.path is None and isinstance(operation.value, dict):
            rest = {}
            for key, value in operation.value.items():
                if str(key).rsplit(":", 1)[-1].lower() == MEMBERS:
                    changed |= _members_op(session, team, op, None, value, now, skipped)
                else:
                    rest[key] = value
            if rest:
                others.append({"op": op, "value": rest})
        else:
            entry = {"op": op, "path": str(operation.path) if operation.path else None}
            if "value" in operation.model_fields_set:
                entry["value"] = operation.value
            others.append({k: v for k, v in entry.items() if v is not None or k == "value"})
    if others:
        # The stored state, id included and validated outside any request context (a
        # request context would drop the read-only id): Okta's rename sends
        # {"op": "replace", "value": {"id": <this group's id>, "displayName": ...}}, and
        # scim2-models refuses a read-only attribute only when its value changes.
        with PROVIDER:
            resource = Group.model_validate(
                {
                    "schemas": [CORE_GROUP],
                    "id": team.scim_id,
                    "displayName": team.display_name,
                    "externalId": team.external_id,
                }
            )
        rest_ops = validate(
            PatchOp[Group],
            {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": others},
            Context.RESOURCE_PATCH_REQUEST,
        )
        with PROVIDER:
            if rest_ops.patch(resource):
                _write_attributes(team, resource)
                _check_unique(session, team)
                changed = True
    session.flush()
    if changed:
        _bump(session, team, now)
    return team, list(dict.fromkeys(skipped))


def delete_group(session, connector, scim_id: str) -> None:
    """DELETE /Groups/<id>: the team goes (SPEC F5), its member rows with it."""
    team = get(session, connector.account_id, scim_id)
    check_if_match(team.version)
    session.delete(team)
    session.flush()
