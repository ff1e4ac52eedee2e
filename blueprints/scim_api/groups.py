"""SCIM Groups (SPEC F5): the account's teams.

Membership changes are single-row INSERTs and DELETEs on `team_member`, never a
read-modify-write of the member list, so concurrent PATCHes adding members (Entra ID sends
them in parallel) lose none, and adding one member to a team of 50,000 costs what adding
one to a team of 10 does. The team's version is bumped in SQL (`version + 1`).

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

from blueprints.common.sql import insert_or_ignore
from blueprints.scim_api import filters
from blueprints.scim_api.resources import (
    check_if_match,
    etag,
    list_response,
    page,
    render,
    storable,
    text,
    timestamp,
    usable_id,
    validate,
    wants,
)
from blueprints.scim_api.schemas import CORE_GROUP, PROVIDER, Group
from models import Membership, Team, TeamMember

MEMBERS = "members"


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
    """Each team's members as (user id, display), streamed from one query."""
    found: dict[int, list[tuple[str, str | None]]] = {team_id: [] for team_id in team_ids}
    if not team_ids:
        return found
    rows = session.execute(
        select(
            TeamMember.team_id,
            Membership.scim_id,
            func.coalesce(Membership.display_name, Membership.user_name),
        )
        .join(Membership, Membership.id == TeamMember.membership_id)
        .where(TeamMember.team_id.in_(team_ids), Membership.scim_id.is_not(None))
        .order_by(TeamMember.team_id, Membership.id)
        .execution_options(yield_per=5000)
    )
    for team_id, scim_id, display in rows:
        found[team_id].append((scim_id, display))
    return found


def payload(team: Team, members: list[tuple[str, str | None]] | None, base: str) -> dict:
    return {
        "schemas": [CORE_GROUP],
        "id": team.scim_id,
        "externalId": team.external_id,
        "displayName": team.display_name,
        "members": [
            {"value": scim_id, "$ref": f"{base}/Users/{scim_id}", "type": "User", "display": d}
            for scim_id, d in members or ()
        ]
        or None,
        "meta": {
            "resourceType": "Group",
            "created": timestamp(team.created_at),
            "lastModified": timestamp(team.updated_at),
            "location": f"{base}/Groups/{team.scim_id}",
            "version": etag(team.version),
        },
    }


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
    return list_response(Group, total, window.start, resources)


# --- Writing ------------------------------------------------------------------------------


def _write_attributes(team: Team, resource: Group) -> None:
    name = (resource.display_name or "").strip()
    if not name:
        raise InvalidValueException(detail="displayName is required and cannot be empty.")
    team.display_name = text(name, "displayName")
    team.display_name_key = filters.fold(name)
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


def _member_values(value, where: str) -> list[str]:
    """The user ids in a `members` value: a list of {"value": id} (or one of them)."""
    items = value if isinstance(value, list) else [value]
    ids = []
    for item in items:
        if isinstance(item, dict):
            lowered = {str(k).lower(): v for k, v in item.items()}
            member_id = lowered.get("value")
        else:
            member_id = None
        if not isinstance(member_id, str) or not member_id.strip():
            raise InvalidValueException(
                detail=f"{where}: each member is an object with the user's id as 'value'."
            )
        ids.append(storable(member_id.strip(), "A member's 'value'"))
    return ids


def _resolve_members(session, account_id: int, ids: list[str]) -> list[int]:
    """Membership row ids for user ids of this account; an unknown id is a 400."""
    if not ids:
        return []
    wanted = list(dict.fromkeys(storable(i, "A member's 'value'") for i in ids))
    found = dict(
        session.execute(
            select(Membership.scim_id, Membership.id).where(
                Membership.account_id == account_id,
                Membership.source == "scim",
                Membership.scim_id.in_(wanted),
            )
        ).all()
    )
    missing = [i for i in wanted if i not in found]
    if missing:
        raise InvalidValueException(
            detail=f"No user of this account has the id {missing[0]!r}; "
            "provision the user before adding them to a group."
        )
    return [found[i] for i in wanted]


def _add_members(session, team: Team, membership_ids: list[int], now: datetime) -> bool:
    """True when someone was not a member yet."""
    added = False
    for membership_id in membership_ids:
        added |= insert_or_ignore(
            session,
            TeamMember.__table__,
            {"team_id": team.id, "membership_id": membership_id, "created_at": now},
            ["team_id", "membership_id"],
        )
    return added


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


def create(session, connector, body: dict, now: datetime) -> Team:
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
    ids = [m.value for m in resource.members or [] if m.value]
    membership_ids = _resolve_members(session, connector.account_id, ids)
    session.add(team)
    session.flush()
    _add_members(session, team, membership_ids, now)
    return team


def replace(session, connector, scim_id: str, body: dict, now: datetime) -> Team:
    """PUT /Groups/<id>: the name, externalId and the whole member list."""
    team = get(session, connector.account_id, scim_id)
    check_if_match(team.version)
    resource = validate(Group, body, Context.RESOURCE_REPLACEMENT_REQUEST)
    _write_attributes(team, resource)
    _check_unique(session, team)
    ids = [m.value for m in resource.members or [] if m.value]
    membership_ids = _resolve_members(session, connector.account_id, ids)
    session.flush()
    if membership_ids:
        _remove_members(session, team, TeamMember.membership_id.not_in(membership_ids))
    else:
        _remove_members(session, team)
    _add_members(session, team, membership_ids, now)
    _bump(session, team, now)
    return team


def _targets_members(path) -> bool:
    return path is not None and path.parts and path.parts[0].lower() == MEMBERS


def _members_op(session, team: Team, op: str, path, value, now: datetime) -> bool:
    """One PATCH operation on `members`; True when it changed the member list (adding a
    member again or removing a non-member leaves the version as it is)."""
    value_filter = path.value_filter if path is not None else None
    if path is not None and len(path.parts) > 1:
        raise MutabilityException(
            detail="A member's sub-attributes cannot be changed; add or remove the member."
        )
    if op == "remove":
        if value_filter is not None:
            multi = filters.mapping("Group").multi[MEMBERS]
            condition = filters.compile_values(multi, value_filter, MEMBERS)
            matched = select(Membership.id).where(
                Membership.account_id == team.account_id, condition
            )
            return _remove_members(session, team, TeamMember.membership_id.in_(matched))
        if value is not None:  # Entra ID: remove these members
            ids = _member_values(value, MEMBERS)
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
    membership_ids = _resolve_members(
        session, team.account_id, _member_values(value, MEMBERS) if value is not None else []
    )
    removed = False
    if op == "replace":
        if membership_ids:
            removed = _remove_members(
                session, team, TeamMember.membership_id.not_in(membership_ids)
            )
        else:
            removed = _remove_members(session, team)
    added = _add_members(session, team, membership_ids, now)
    return removed or added


def patch(session, connector, scim_id: str, body: dict, now: datetime) -> Team:
    team = get(session, connector.account_id, scim_id)
    check_if_match(team.version)
    operations = validate(PatchOp[Group], body, Context.RESOURCE_PATCH_REQUEST)
    changed = False
    others = []
    for operation in operations.operations or []:
        op = operation.op.value
        if _targets_members(operation.path):
            changed |= _members_op(session, team, op, operation.path, operation.value, now)
        elif operation.path is None and isinstance(operation.value, dict):
            rest = {}
            for key, value in operation.value.items():
                if str(key).rsplit(":", 1)[-1].lower() == MEMBERS:
                    changed |= _members_op(session, team, op, None, value, now)
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
    return team


def delete_group(session, connector, scim_id: str) -> None:
    """DELETE /Groups/<id>: the team goes (SPEC F5), its member rows with it."""
    team = get(session, connector.account_id, scim_id)
    check_if_match(team.version)
    session.delete(team)
    session.flush()
