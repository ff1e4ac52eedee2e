"""POST /.search at the service provider's root (RFC 7644 §3.4.3): Users and Groups in one
list.

"the search request … MAY contain the resource types to be searched"; here it covers both,
in one SQL statement that pages over the union of the two (a user and a group are told
apart by their `schemas`). The filter is bound to both resource types: an attribute only
one of them has (userName, members) evaluates to false for the other, as RFC 7644
§3.4.2.1 says; one that neither has is a 400. sortBy orders the union the same way (a
resource without the attribute comes last); without it, users come before groups.
"""

from __future__ import annotations

from scim2_models import Path, ScimFilter, SearchRequest
from sqlalchemy import String, and_, cast, func, literal, null, select, union_all
from sqlalchemy.types import NullType

from blueprints.scim_api import filters, groups, users
from blueprints.scim_api.query import descending, page, searching, wants
from blueprints.scim_api.schemas import PROVIDER, Group, UserResource
from blueprints.scim_api.serialize import group_payload, list_response, render, user_payload
from models import Membership, Team

_KINDS = (("User", UserResource, Membership, 0), ("Group", Group, Team, 1))


def _bound(req: SearchRequest, model) -> tuple[ScimFilter | None, Path | None]:
    """The request's filter and sortBy, bound to one resource type."""
    with PROVIDER:
        scim_filter = ScimFilter[model](str(req.filter)) if req.filter is not None else None
        sort_by = Path[model](str(req.sort_by)) if req.sort_by is not None else None
    return scim_filter, sort_by


def _parameters(req: SearchRequest, model) -> SearchRequest | None:
    """attributes/excludedAttributes for one resource type: the paths it has. Asked only
    for attributes of the other type, it shows what is always returned (id, schemas)."""
    if not req.attributes and not req.excluded_attributes:
        return None

    def own(paths):
        with PROVIDER:
            return [str(p) for p in paths or () if Path[model](str(p)).resolve() is not None]

    values = {"excludedAttributes": own(req.excluded_attributes)}
    if req.attributes:
        values = {"attributes": own(req.attributes) or ["id"]}
    with PROVIDER:
        return searching(model).model_validate({k: v for k, v in values.items() if v})


def search_all(session, account_id: int, req: SearchRequest, base: str) -> dict:
    reverse = descending(req)
    selects, totals, keys = [], 0, {}
    for kind, model, table, rank in _KINDS:
        scim_filter, sort_by = _bound(req, model)
        where = and_(
            table.account_id == account_id,
            table.source == "scim",
            filters.where_clause(kind, scim_filter, lenient=True),
        )
        totals += session.scalar(select(func.count()).select_from(table).where(where))
        keys[kind] = filters.sort_key(kind, sort_by, lenient=True) if sort_by else None
        selects.append((rank, table, where))
    # Both sides of the UNION carry a sort key of the same type (NULL where a type has no
    # such attribute).
    # A document attribute's key (userType…) is untyped JSON text to SQLAlchemy: the
    # other side's NULL is then cast to a string (casting to no type failed: a 500).
    typed = next(
        (k.type for k in keys.values() if k is not None and not isinstance(k.type, NullType)),
        String() if any(k is not None for k in keys.values()) else None,
    )
    parts = []
    for (kind, *_), (rank, table, where) in zip(_KINDS, selects, strict=True):
        key = keys[kind]
        if key is None:
            key = cast(null(), typed) if typed is not None else null()
        parts.append(
            select(literal(rank).label("kind"), key.label("k"), table.id.label("id")).where(where)
        )
    union = union_all(*parts).subquery()
    window = page(req)
    listed = []
    if window.count:
        order = [union.c.kind, union.c.id]
        if any(k is not None for k in keys.values()):
            # Descending is the exact reverse, ties included (as on /Users and /Groups).
            order = [filters.ordered(union.c.k, reverse)]
            order += (
                [union.c.kind.desc(), union.c.id.desc()] if reverse else [union.c.kind, union.c.id]
            )
        listed = session.execute(
            select(union.c.kind, union.c.id)
            .order_by(*order)
            .offset(window.start - 1)
            .limit(window.count)
        ).all()
    resources = _render(session, account_id, req, base, listed)
    return list_response(totals, window.start, resources)


def _render(session, account_id: int, req, base: str, listed) -> list[dict]:
    user_ids = [row_id for kind, row_id in listed if kind == 0]
    team_ids = [row_id for kind, row_id in listed if kind == 1]
    shown: dict[tuple[int, int], dict] = {}
    if user_ids:
        params = _parameters(req, UserResource)
        columns = users.shown(wants(params, "groups"))
        rows = session.execute(select(*columns).where(Membership.id.in_(user_ids))).all()
        managers = users.known_managers(session, account_id, [r.scim_resource for r in rows])
        for r in rows:
            body = user_payload(r, users.teams_of(r), base, managers)
            shown[0, r.id] = render(UserResource, body, params)
    if team_ids:
        params = _parameters(req, Group)
        found = session.scalars(select(Team).where(Team.id.in_(team_ids))).all()
        members = groups.members_of(session, team_ids) if wants(params, "members") else {}
        for team in found:
            body = group_payload(team, members.get(team.id), base)
            shown[1, team.id] = render(Group, body, params)
    # A resource deleted since the page was read is left out rather than failing.
    return [shown[key] for key in listed if key in shown]
