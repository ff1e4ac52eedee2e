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

PATCH operations are split by patch.py: those on `members` become those statements here;
the others go through scim2-models on a member-less copy of the team. Nothing here
commits (the request's unit of work does).

Team rules (SPEC F12, blueprints/members/rules.py): a write to a team an owner made a rule
for re-evaluates the role and licence of the members it added and removed (their ids come
back from the INSERT's and DELETE's RETURNING), in the same transaction; licences the
seats can't cover refuse the whole request with the licence-limit 403, so nothing is half
applied. A write to a team without a rule changes no role or licence, and costs one probe.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from scim2_models import Context, NotFoundException, UniquenessException
from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.orm.attributes import set_committed_value

from blueprints.common.sql import execute, upsert_rows
from blueprints.members import rules
from blueprints.scim_api import filters, provisioning
from blueprints.scim_api import patch as patching
from blueprints.scim_api.query import descending, page, wants
from blueprints.scim_api.schemas import Group
from blueprints.scim_api.serialize import (
    GROUP_SCHEMAS,
    check_if_match,
    group_columns,
    group_members,
    group_payload,
    group_resource,
    list_response,
    refuse_unknown_schemas,
    render,
    usable_id,
    validate,
)
from models import Membership, Team, TeamMember

MEMBERS = patching.MEMBERS


def get(session, account_id: int, scim_id: str) -> Team:
    """The account's group `scim_id` (one a URL can name: routes.ScimIdConverter), or 404."""
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


def show(session, team: Team, base: str, params) -> dict:
    """One group; its members are not even queried when the client leaves them out."""
    members = members_of(session, [team.id])[team.id] if wants(params, MEMBERS) else None
    return render(Group, group_payload(team, members, base), params)


def search(session, account_id: int, req, base: str) -> dict:
    where = and_(
        Team.account_id == account_id,
        Team.source == "scim",
        filters.where_clause("Group", req.filter),
    )
    order = filters.order_by("Group", req.sort_by, descending(req))
    window = page(req)
    total = session.scalar(select(func.count()).select_from(Team).where(where))
    resources: list[dict] = []
    if window.count and total >= window.start:
        teams = session.scalars(
            select(Team).where(where).order_by(*order).offset(window.start - 1).limit(window.count)
        ).all()
        members = members_of(session, [t.id for t in teams]) if wants(req, MEMBERS) else {}
        resources = [render(Group, group_payload(t, members.get(t.id), base), req) for t in teams]
    return list_response(total, window.start, resources)


# --- Writing ------------------------------------------------------------------------------


def _write_attributes(team: Team, resource: Group) -> None:
    for name, value in group_columns(resource).items():
        setattr(team, name, value)


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


def _add_members(
    session, team: Team, rows: list[dict], now: datetime, replace: bool, touched=None
) -> int:
    """Insert the members not in the team yet, and write the display of those who are
    (on `add`, only a display that was sent); how many rows changed. `touched` (a list, for
    a ruled team) gets their membership ids."""
    if not rows:
        return 0
    table = TeamMember.__table__

    def changed_display(excluded):
        differs = table.c.display.is_distinct_from(excluded.display)
        return differs if replace else and_(excluded.display.is_not(None), differs)

    return upsert_rows(
        session,
        table,
        [dict(r, team_id=team.id, created_at=now) for r in rows],
        ["team_id", "membership_id"],
        update=lambda excluded: {"display": excluded.display},
        where=changed_display,
        collect=touched,
    )


def _remove_members(session, team: Team, condition=None, touched=None) -> int:
    """How many members were removed; `touched` (a list, for a ruled team) gets their
    membership ids."""
    statement = delete(TeamMember).where(TeamMember.team_id == team.id)
    if condition is not None:
        statement = statement.where(condition)
    if touched is not None:
        removed = execute(session, statement.returning(TeamMember.membership_id)).scalars().all()
        touched.extend(removed)
        return len(removed)
    return session.execute(statement.execution_options(synchronize_session=False)).rowcount


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


def _set_members(
    session, team: Team, rows: list[dict], now: datetime, touched=None
) -> tuple[int, int]:
    """Make `rows` the team's whole member list (PUT, PATCH replace): (added or display
    changed, removed)."""
    keep = [r["membership_id"] for r in rows]
    condition = TeamMember.membership_id.not_in(keep) if keep else None
    removed = _remove_members(session, team, condition, touched)
    return _add_members(session, team, rows, now, replace=True, touched=touched), removed


def _ruled(session, team: Team) -> list | None:
    """A list to collect the members a write touches when a rule names `team`, else None."""
    return [] if rules.team_ruled(session, team.id) else None


def _apply_rules(session, team: Team, touched: list | None) -> None:
    """The team rules for the members a write added or removed, now (SPEC F12)."""
    if not touched:
        return
    try:
        rules.apply_to_ids(session, team.account_id, touched, strict=True)
    except rules.NoSeats:
        raise provisioning.licence_limit() from None


def _renamed(session, team: Team, before: dict, now: datetime) -> None:
    """A ruled team renamed: users whose SCIM `roles` name a team match its rule by name
    (SPEC F12), so everyone is re-evaluated in the background (the apply-team-rules job)."""
    if filters.key(before["displayName"] or "") != team.display_name_key and rules.team_ruled(
        session, team.id
    ):
        rules.request_run(session, team.account_id, now)


def _attributes(team: Team) -> dict:
    """A group's own attributes as the audit compares them."""
    return {"displayName": team.display_name, "externalId": team.external_id}


def _audit(
    session, team: Team, before: dict, now: datetime, added=0, removed=0, deleted=False
) -> None:
    """Audit a write of `team` (SPEC F10), from its attributes `before`."""
    after = {} if deleted else _attributes(team)
    event = provisioning.group_event(
        team.account_id, team.scim_id, before, after, now, added, removed
    )
    if event is not None:
        provisioning.audit(session, event)


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
    rows, skipped = _resolve_members(session, connector.account_id, group_members(resource))
    session.add(team)
    session.flush()
    added = _add_members(session, team, rows, now, replace=True)
    provisioning.audit(
        session,
        provisioning.group_event(team.account_id, team.scim_id, {}, _attributes(team), now, added),
    )
    return team, skipped


def replace(
    session, connector, scim_id: str, body: dict, now: datetime, if_match: str | None = None
) -> tuple[Team, list[str]]:
    """PUT /Groups/<id>: the name, externalId and the whole member list."""
    team = get(session, connector.account_id, scim_id)
    check_if_match(team.version, if_match)
    refuse_unknown_schemas(body, GROUP_SCHEMAS)
    resource = validate(Group, body, Context.RESOURCE_REPLACEMENT_REQUEST)
    before = _attributes(team)
    _write_attributes(team, resource)
    _check_unique(session, team)
    rows, skipped = _resolve_members(session, connector.account_id, group_members(resource))
    session.flush()
    touched = _ruled(session, team)
    added, removed = _set_members(session, team, rows, now, touched)
    _apply_rules(session, team, touched)
    _renamed(session, team, before, now)
    _bump(session, team, now)
    _audit(session, team, before, now, added, removed)
    return team, skipped


def _members_op(
    session, team: Team, operation: patching.MembersOp, now: datetime, touched=None
) -> tuple:
    """One PATCH operation on `members` as row statements: (members added or whose
    display changed, members removed, the ids skipped as unknown). Adding a member again
    or removing a non-member changes nothing (nor the version)."""
    if operation.op == "remove":
        condition = None
        if operation.value_filter is not None:
            multi = filters.mapping("Group").multi[MEMBERS]
            matched = (
                select(TeamMember.membership_id)
                .join(Membership, Membership.id == TeamMember.membership_id)
                .where(
                    TeamMember.team_id == team.id,
                    filters.compile_values(multi, operation.value_filter, MEMBERS),
                )
            )
            condition = TeamMember.membership_id.in_(matched)
        elif operation.members is not None:
            ids = [member_id for member_id, _, _ in operation.members]
            rows = select(Membership.id).where(
                Membership.account_id == team.account_id,
                Membership.scim_id.in_([i for i in ids if usable_id(i)]),
            )
            condition = TeamMember.membership_id.in_(rows)
        return 0, _remove_members(session, team, condition, touched), []
    rows, unknown = _resolve_members(session, team.account_id, operation.members or [])
    if operation.op == "replace":
        return *_set_members(session, team, rows, now, touched), unknown
    return _add_members(session, team, rows, now, replace=False, touched=touched), 0, unknown


def patch(
    session, connector, scim_id: str, body: dict, now: datetime, if_match: str | None = None
) -> tuple[Team, list[str]]:
    """PATCH /Groups/<id>: returns the team and the member ids skipped as unknown."""
    team = get(session, connector.account_id, scim_id)
    check_if_match(team.version, if_match)
    operations = patching.group_operations(body)
    before = _attributes(team)
    added = removed = 0
    skipped: list[str] = []
    touched = _ruled(session, team) if operations.members else None
    for operation in operations.members:
        more, fewer, unknown = _members_op(session, team, operation, now, touched)
        added, removed = added + more, removed + fewer
        skipped += unknown
    renamed = False
    if operations.others is not None:
        resource = group_resource(team)
        if patching.apply(operations.others, resource):
            _write_attributes(team, resource)
            _check_unique(session, team)
            _renamed(session, team, before, now)
            renamed = True
    session.flush()
    _apply_rules(session, team, touched)
    if added or removed or renamed:
        _bump(session, team, now)
        _audit(session, team, before, now, added, removed)
    return team, list(dict.fromkeys(skipped))


def delete_group(
    session, connector, scim_id: str, now: datetime, if_match: str | None = None
) -> None:
    """DELETE /Groups/<id>: the team goes (SPEC F5), its member rows with it."""
    team = get(session, connector.account_id, scim_id)
    check_if_match(team.version, if_match)
    _audit(session, team, _attributes(team), now, deleted=True)
    try:
        rules.team_deleted(session, team, now)
    except rules.NoSeats:
        raise provisioning.licence_limit() from None
    session.delete(team)
    session.flush()
