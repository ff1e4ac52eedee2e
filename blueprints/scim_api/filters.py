"""SCIM filters (RFC 7644 §3.4.2.2) compiled to SQL, and sortBy to an ORDER BY.

scim2-models parses the filter and binds each attribute path to the schema (which says
whether it is caseExact, its type, whether it is multi-valued); this module maps every
bound attribute we store to a column, explicitly, and emits SQLAlchemy expressions with
bound parameters. Nothing is evaluated in Python and no row is loaded to decide a match.

- caseExact=false strings are compared folded (NFC, lower case, as scim2-models' policy
  folds them); userName and a team's displayName use their stored folded key column, so
  `userName eq` is an index lookup.
- Every comparison is NULL-safe, so `not (title eq "x")` matches users without a title,
  as RFC 7644's "not" requires.
- Multi-valued attributes (emails, groups, members) become EXISTS subqueries; `ne` on
  them means "no value equals" (scim2-models' reading), a value path
  `emails[type eq "work" and value co "@x"]` is one EXISTS with the inner filter.
- A User attribute without a column of its own (nickName, title, locale, the enterprise
  attributes, phoneNumbers, addresses…) is read from the stored resource document:
  SQLAlchemy's JSON indexing for a single value, an EXISTS over the array's elements
  (blueprints.common.sql.json_elements) for a multi-valued one. Still SQL, on both
  databases; only userName, externalId, displayName and emails.value have indexes.
- An operator that makes no sense for the type (`gt` on a boolean, `co` on a date), or a
  value of the wrong type is a 400 invalidFilter; so is an attribute no schema declares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from scim2_models import CaseExact, InvalidFilterException, InvalidValueException, Path, ScimFilter
from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    FilterVisitor,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)
from sqlalchemy import Boolean, and_, exists, false, func, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from blueprints.common.sql import json_elements, json_field, unstorable
from blueprints.scim_api.schemas import CORE_GROUP, CORE_USER, ENTERPRISE, POLICY
from models import MemberEmail, Membership, Team, TeamMember

Op = CompareOperator
# A filter's comparisons (and `pr`s), and its nesting (parentheses, `not`, value paths):
# an IdP's filters have one or two terms; far more is a 400 before any SQL, not a
# statement the database refuses as too complex (SQLite's expression depth is 1,000).
MAX_FILTER_TERMS = 100
MAX_FILTER_DEPTH = 50
STRING_OPS = {Op.co, Op.sw, Op.ew}
ORDER_OPS = {Op.gt, Op.ge, Op.lt, Op.le}


def fold(value: str) -> str:
    """The comparison form of a caseExact=false string (NFC, lower case)."""
    return POLICY.comparison_key(_CASE_INSENSITIVE, value)


def key(value: str) -> str:
    """What a key column (userName, displayName, emails.value) stores: the value folded,
    without surrounding spaces. Unique and looked up in this form, so that an IdP's
    `userName eq " bob"` finds the "bob" that a create of " bob" would collide with."""
    return fold(value.strip())


class _CaseInsensitive:
    case_exact = False


_CASE_INSENSITIVE = _CaseInsensitive()


@dataclass(frozen=True)
class Column:
    """How one attribute is stored: its SQL expression and how values compare to it."""

    expr: Any
    kind: str = "string"  # string | key (folded at write) | boolean | datetime | constant
    case_exact: bool = False


@dataclass(frozen=True)
class MultiValued:
    """A multi-valued attribute kept in another table: `exists(where)` correlates it with
    the resource row, `subs` maps its sub-attributes."""

    exists: Callable[[ColumnElement], ColumnElement]
    subs: dict[str, Column]
    sort: Any = None  # the value sortBy uses (RFC 7644 §3.4.2.3: the primary, else first)


@dataclass(frozen=True)
class Mapping:
    """The attributes of one resource type we store, by lower-case attribute URN."""

    resource: type
    columns: dict[str, Column]
    multi: dict[str, MultiValued] = field(default_factory=dict)
    default_order: Any = None
    # The JSON column holding every other attribute of the resource (Users only).
    document: Any = None

    def column(self, binding) -> Column | None:
        """The column of a single-valued attribute: its own, else its place in the
        resource document, else None (nothing stores it)."""
        found = self.columns.get(binding.urn.lower())
        if found is not None or self.document is None:
            return found
        path = document_path(binding.urn)
        if path is None:
            return None
        if binding.target_type is bool:
            return Column(self.document[path].as_boolean(), "boolean")
        return Column(self.document[path].as_string(), case_exact=binding.case_exact)

    def multi_valued(self, binding) -> MultiValued | None:
        """How a multi-valued attribute is stored: its own table, else the array in the
        resource document."""
        found = self.multi.get(binding.field_name)
        if found is not None or self.document is None:
            return found
        return _document_multi(self.document, binding)


def _meta(prefix: str, created, modified, resource_type: str) -> dict[str, Column]:
    return {
        f"{prefix}:meta.created": Column(created, "datetime"),
        f"{prefix}:meta.lastmodified": Column(modified, "datetime"),
        f"{prefix}:meta.resourcetype": Column(resource_type, "constant", True),
    }


def document_path(urn: str) -> tuple[str, ...] | None:
    """Where the attribute named by its full URN (as scim2-models binds it, canonical
    case) sits in a stored User document: core attributes at the top, the enterprise
    extension under its URN. `name.givenName` -> ("name", "givenName")."""
    for schema, prefix in ((ENTERPRISE, (ENTERPRISE,)), (CORE_USER, ())):
        if urn.lower().startswith(schema.lower() + ":"):
            path = (*prefix, *urn[len(schema) + 1 :].split("."))
            return None if path[0] in NOT_IN_DOCUMENT else path
    return None


# Attributes a User has that its stored document doesn't: ours (id, meta, groups), and
# the password, which is never stored.
NOT_IN_DOCUMENT = frozenset({"id", "meta", "groups", "password", "schemas"})


def _alias(model: type[BaseModel], name: str) -> str:
    return model.model_fields[name].serialization_alias or _scim_name(name, lower=False)


_DOCUMENT_MULTI: dict[str, MultiValued] = {}


def _document_multi(document, binding) -> MultiValued | None:
    """A multi-valued complex attribute kept in the document (phoneNumbers, addresses,
    roles…): an EXISTS over the elements of its array, each sub-attribute a member of
    the element."""
    model = binding.field_type
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    path = document_path(binding.urn)
    if path is None or path[0] == ENTERPRISE:
        return None
    attribute = path[0]
    if attribute in _DOCUMENT_MULTI:
        return _DOCUMENT_MULTI[attribute]
    elements = json_elements(document, attribute).table_valued("value").alias(f"e_{attribute}")
    subs = {}
    for name in model.model_fields:
        alias = _alias(model, name)
        is_bool = model.model_fields[name].annotation in (bool, bool | None)
        subs[alias.lower()] = Column(
            json_field(elements.c.value, alias, Boolean() if is_bool else None),
            "boolean" if is_bool else "string",
            case_exact=model.get_field_annotation(name, CaseExact) == CaseExact.true,
        )
    found = MultiValued(
        exists=lambda where: select(1).select_from(elements).where(where).exists(),
        subs=subs,
    )
    _DOCUMENT_MULTI[attribute] = found
    return found


def _user_mapping() -> Mapping:
    from blueprints.scim_api.schemas import UserResource

    core = CORE_USER.lower()
    email = MemberEmail
    primary_email = (
        select(email.value_key)
        .where(email.membership_id == Membership.id)
        .order_by(email.primary.desc(), email.position)
        .limit(1)
        .scalar_subquery()
    )
    return Mapping(
        resource=UserResource,
        columns={
            f"{core}:id": Column(Membership.scim_id, case_exact=True),
            f"{core}:externalid": Column(Membership.external_id, case_exact=True),
            f"{core}:username": Column(Membership.user_name_key, "key"),
            f"{core}:displayname": Column(Membership.display_name_key, "key"),
            f"{core}:active": Column(Membership.active, "boolean"),
            f"{core}:name.givenname": Column(Membership.given_name),
            f"{core}:name.familyname": Column(Membership.family_name),
            **_meta(core, Membership.created_at, Membership.updated_at, "User"),
        },
        multi={
            "emails": MultiValued(
                exists=lambda where: exists().where(email.membership_id == Membership.id, where),
                subs={
                    "value": Column(email.value_key, "key"),
                    "type": Column(email.type),
                    "primary": Column(email.primary, "boolean"),
                    "display": Column(email.display),
                },
                sort=primary_email,
            ),
            "groups": MultiValued(
                # select(...).exists(): an Exists has no .join(), so the joined form
                # built by exists().select_from(...).join(...) raised (a 500 on any
                # `groups` filter).
                exists=lambda where: (
                    select(TeamMember.team_id)
                    .join(Team, Team.id == TeamMember.team_id)
                    .where(TeamMember.membership_id == Membership.id, where)
                    .exists()
                ),
                subs={
                    "value": Column(Team.scim_id, case_exact=True),
                    "display": Column(Team.display_name_key, "key"),
                    "type": Column("direct", "constant"),
                },
            ),
        },
        default_order=Membership.id,
        document=Membership.scim_resource,
    )


def _group_mapping() -> Mapping:
    from blueprints.scim_api.schemas import Group

    core = CORE_GROUP.lower()
    return Mapping(
        resource=Group,
        columns={
            f"{core}:id": Column(Team.scim_id, case_exact=True),
            f"{core}:externalid": Column(Team.external_id, case_exact=True),
            f"{core}:displayname": Column(Team.display_name_key, "key"),
            **_meta(core, Team.created_at, Team.updated_at, "Group"),
        },
        multi={
            "members": MultiValued(
                exists=lambda where: (  # select(...).exists(), as for a user's groups
                    select(TeamMember.membership_id)
                    .join(Membership, Membership.id == TeamMember.membership_id)
                    .where(TeamMember.team_id == Team.id, where)
                    .exists()
                ),
                subs={
                    "value": Column(Membership.scim_id, case_exact=True),
                    "display": Column(TeamMember.display),
                    "type": Column("User", "constant"),
                },
            )
        },
        default_order=Team.id,
    )


_MAPPINGS: dict[str, Mapping] = {}


def mapping(kind: str) -> Mapping:
    """The mapping for "User" or "Group" (built once: the models import late)."""
    if kind not in _MAPPINGS:
        _MAPPINGS[kind] = _user_mapping() if kind == "User" else _group_mapping()
    return _MAPPINGS[kind]


def _bad(detail: str) -> InvalidFilterException:
    return InvalidFilterException(detail=detail)


def _parse_datetime(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidFilterException(detail=f"{where} compares with a date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidFilterException(
            detail=f"{value!r} is not an RFC 3339 date-time (as in 2026-01-31T12:00:00Z)"
        ) from None
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:  # "0001-01-01T00:00:00+14:00" is before year 1 in UTC: was a 500
        raise InvalidFilterException(
            detail=f"{value!r} is outside the date-times we can compare (years 1 to 9999, UTC)"
        ) from None


def storable_operand(value: str, where: str) -> str:
    """A string operand the database can bind: the filter's parser decodes JSON escapes,
    so `"\\u0000"` and `"\\ud800"` pass the request's input check (serialize.check_input)
    as text and become a NUL or a lone surrogate here, which reached the driver and were a
    500. No stored value holds either, so such a filter is refused as invalid."""
    problem = unstorable(value)
    if problem:
        raise _bad(f"The value compared with {where} {problem}.")
    return value


def compare(column: Column, op: Op, value: Any, where: str) -> ColumnElement:
    """`column op value`, NULL-safe: a missing attribute matches `ne` and nothing else."""
    expr = column.expr
    if column.kind == "constant":
        return _constant(column, op, value)
    if value is None:
        if op == Op.eq:
            return expr.is_(None)
        if op == Op.ne:
            return expr.is_not(None)
        raise InvalidFilterException(detail=f"'{op.value}' cannot compare {where} with null")
    if column.kind == "boolean":
        if not isinstance(value, bool):
            raise _bad(f"{where} is a boolean: compare it with true or false")
        if op not in (Op.eq, Op.ne):
            raise _bad(f"'{op.value}' cannot be applied to the boolean {where}")
    elif column.kind == "datetime":
        if op in STRING_OPS:
            raise _bad(f"'{op.value}' cannot be applied to the date-time {where}")
        value = _parse_datetime(value, where)
    else:
        if not isinstance(value, str):
            raise _bad(f"{where} is a string: compare it with a quoted value")
        value = storable_operand(value, where)
        if column.kind == "key" and op in (Op.eq, Op.ne):
            value = key(value)
        elif not column.case_exact:
            value = fold(value)
            if column.kind != "key":
                expr = func.lower(expr)
    present = column.expr.is_not(None)
    if op == Op.eq:
        return and_(present, expr == value)
    if op == Op.ne:
        return or_(column.expr.is_(None), expr != value)
    if op == Op.co:
        return and_(present, expr.contains(value, autoescape=True))
    if op == Op.sw:
        return and_(present, expr.startswith(value, autoescape=True))
    if op == Op.ew:
        return and_(present, expr.endswith(value, autoescape=True))
    operators = {Op.gt: "__gt__", Op.ge: "__ge__", Op.lt: "__lt__", Op.le: "__le__"}
    return and_(present, getattr(expr, operators[op])(value))


def _constant(column: Column, op: Op, value: Any) -> ColumnElement:
    """A value every row has (meta.resourceType, groups.type), decided here, with or
    without case as the attribute says (RFC 7643 §3.1: resourceType is caseExact)."""
    if not isinstance(value, str):
        return true() if op == Op.ne else false()
    left, right = column.expr, value
    if not column.case_exact:
        left, right = left.lower(), fold(value)
    result = {
        Op.eq: left == right,
        Op.ne: left != right,
        Op.co: right in left,
        Op.sw: left.startswith(right),
        Op.ew: left.endswith(right),
        Op.gt: left > right,
        Op.ge: left >= right,
        Op.lt: left < right,
        Op.le: left <= right,
    }[op]
    return true() if result else false()


def present(column: Column) -> ColumnElement:
    if column.kind == "constant":
        return true()
    if column.kind in ("boolean", "datetime"):
        return column.expr.is_not(None)
    return and_(column.expr.is_not(None), column.expr != "")


class _Logic(FilterVisitor[ColumnElement]):
    """not / and / or, the same at the resource level and inside a value filter."""

    def visit_not(self, node: Not) -> ColumnElement:
        return not_(self.visit(node.expr))

    def visit_logical_expr(self, node: LogicalExpr) -> ColumnElement:
        terms = [self.visit(term) for term in node.terms]
        return and_(*terms) if node.op == LogicalOperator.and_ else or_(*terms)


class _Compiler(_Logic):
    """A resource-level filter to a WHERE clause."""

    def __init__(self, mapping: Mapping, scim_filter: ScimFilter, lenient: bool = False):
        self.mapping = mapping
        self.filter = scim_filter
        self.lenient = lenient

    def _bind(self, attr_path: AttrPath, comparison: bool):
        """The attribute `attr_path` names, or None when the resource type has no such
        attribute and the filter is `lenient` (a search across resource types, where
        RFC 7644 §3.4.2.1 has such a comparison evaluate to false)."""
        resolve = self.filter.resolve_comparison if comparison else self.filter.resolve
        try:
            binding = resolve(attr_path, strict=True)
        except InvalidFilterException:
            if self.lenient:
                return None
            raise
        except Exception:
            binding = None
        if binding is None and not self.lenient:
            raise InvalidFilterException(detail=f"There is no attribute {attr_path} to filter on.")
        return binding

    def _column(self, binding, attr_path: AttrPath):
        """(Column, None) for a single-valued attribute, (Column, MultiValued) otherwise."""
        if binding.is_multivalued:
            multi = self.mapping.multi_valued(binding)
            sub = binding.sub_field_name
            name = _scim_name(sub) if sub else "value"
            column = multi.subs.get(name) if multi else None
            if column is None:
                raise InvalidFilterException(detail=f"Filtering on {attr_path} is not supported.")
            return column, multi
        column = self.mapping.column(binding)
        if column is None:
            raise InvalidFilterException(detail=f"Filtering on {attr_path} is not supported.")
        return column, None

    def visit_comparison(self, node: Comparison) -> ColumnElement:
        binding = self._bind(node.attr_path, comparison=True)
        if binding is None:
            return false()
        column, multi = self._column(binding, node.attr_path)
        where = str(node.attr_path)
        if multi is None:
            return compare(column, node.op, node.value, where)
        if node.op == Op.ne:  # no value equals the operand
            return not_(multi.exists(compare(column, Op.eq, node.value, where)))
        return multi.exists(compare(column, node.op, node.value, where))

    def visit_present(self, node: Present) -> ColumnElement:
        binding = self._bind(node.attr_path, comparison=False)
        if binding is None:
            return false()
        if binding.is_multivalued and binding.sub_field_name is None:
            multi = self.mapping.multi_valued(binding)
            if multi is None:
                raise _bad(f"Filtering on {node.attr_path} is not supported.")
            return multi.exists(true())
        column, multi = self._column(binding, node.attr_path)
        return present(column) if multi is None else multi.exists(present(column))

    def visit_value_path(self, node: ValuePath) -> ColumnElement:
        binding = self._bind(node.attr_path, comparison=False)
        if binding is None:
            return false()
        multi = self.mapping.multi_valued(binding) if binding.is_multivalued else None
        if multi is None:
            raise InvalidFilterException(
                detail=f"{node.attr_path} is not a multi-valued attribute we can select values of."
            )
        return multi.exists(compile_values(multi, node.val_filter, str(node.attr_path)))


class _ValueCompiler(_Logic):
    """The filter inside `attr[...]`, over the sub-attributes of one multi-valued
    attribute (no nesting, as RFC 7644's errata say)."""

    def __init__(self, multi: MultiValued, parent: str):
        self.multi, self.parent = multi, parent

    def _column(self, attr_path: AttrPath) -> Column:
        name = attr_path.attr.lower() if attr_path.sub_attr is None else None
        column = self.multi.subs.get(name) if name else None
        if column is None or attr_path.uri:
            raise InvalidFilterException(
                detail=f"{self.parent} has no sub-attribute {attr_path} to filter on."
            )
        return column

    def visit_comparison(self, node: Comparison) -> ColumnElement:
        column = self._column(node.attr_path)
        return compare(column, node.op, node.value, f"{self.parent}.{node.attr_path}")

    def visit_present(self, node: Present) -> ColumnElement:
        return present(self._column(node.attr_path))

    def visit_value_path(self, node: ValuePath) -> ColumnElement:
        raise InvalidFilterException(detail="A value filter cannot hold another one.")


def compile_values(multi: MultiValued, node: FilterNode, parent: str) -> ColumnElement:
    return _ValueCompiler(multi, parent).visit(node)


def _scim_name(field_name: str, lower: bool = True) -> str:
    """A Python field name as its SCIM attribute name (camelCase), lower case unless
    asked otherwise."""
    head, *rest = field_name.split("_")
    name = head + "".join(part.title() for part in rest)
    return name.lower() if lower else name


def one_eq(req) -> tuple[str | None, str] | None:
    """(the attribute's URN, lower case; the value) when the request's filter is exactly one
    `attribute eq "string"` on a first page: the lookup an IdP sends before every create,
    which callers answer with a statement on an index rather than the filter's tree."""
    if req.filter is None or (req.start_index or 1) > 1:
        return None
    node = req.filter.ast
    if not (isinstance(node, Comparison) and node.op == Op.eq):
        return None
    if not isinstance(node.value, str) or node.attr_path.sub_attr is not None:
        return None
    binding = req.filter.resolve_comparison(node.attr_path, strict=False)
    urn = binding.urn.lower() if binding is not None else None
    return urn, node.value


def where_clause(kind: str, scim_filter: ScimFilter | None, lenient: bool = False) -> ColumnElement:
    """The WHERE clause for a parsed filter on "User" or "Group" resources; `lenient`
    for a search across resource types (attributes of the other type match nothing)."""
    if scim_filter is None:
        return true()
    try:
        node = scim_filter.ast
    except (InvalidFilterException, InvalidValueException):
        raise
    except Exception as exc:  # a parser error of another kind is still a bad filter
        raise InvalidFilterException(detail=f"The filter is not valid: {exc}") from None
    check_size(node)
    return _Compiler(mapping(kind), scim_filter, lenient).visit(node)


def check_size(node: FilterNode) -> None:
    """400 invalidFilter for a filter past MAX_FILTER_TERMS comparisons or nested past
    MAX_FILTER_DEPTH, before any SQL: the database would refuse it as too complex (SQLite's
    expression depth), after work, and not in words an IdP admin can act on. Walked
    without recursion, so no depth makes this walk itself fail."""
    terms = 0
    stack = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > MAX_FILTER_DEPTH:
            raise InvalidFilterException(
                detail=f"The filter is nested deeper than {MAX_FILTER_DEPTH} levels "
                "(parentheses, not, value paths); send a flatter filter."
            )
        if isinstance(current, LogicalExpr):
            stack.extend((term, depth + 1) for term in current.terms)
        elif isinstance(current, Not):
            stack.append((current.expr, depth + 1))
        elif isinstance(current, ValuePath):
            stack.append((current.val_filter, depth + 1))
        else:
            terms += 1
            if terms > MAX_FILTER_TERMS:
                raise InvalidFilterException(
                    detail=f"The filter has more than {MAX_FILTER_TERMS} comparisons; split "
                    "it into several requests."
                )


def sort_key(kind: str, sort_by: Path, lenient: bool = False):
    """What sortBy orders `kind` by (RFC 7644 §3.4.2.3: a multi-valued attribute by its
    primary, else first, value); with `lenient`, None when `kind` has no such attribute
    (a search across resource types)."""
    m = mapping(kind)
    try:
        binding = sort_by.resolve()
    except Exception:
        binding = None
    if binding is None:
        if lenient:
            return None
        raise InvalidValueException(detail=f"There is no attribute {sort_by} to sort by.")
    if binding.is_multivalued:
        multi = m.multi_valued(binding)
        # multi.sort is the primary (else first) *value*: `emails.type` or `emails.display`
        # used to sort silently by the email address instead.
        if multi is None or multi.sort is None or binding.sub_field_name not in (None, "value"):
            raise InvalidValueException(detail=f"Sorting by {sort_by} is not supported.")
        return multi.sort
    column = m.column(binding)
    if column is None or column.kind == "constant":
        raise InvalidValueException(detail=f"Sorting by {sort_by} is not supported.")
    if column.kind == "string" and not column.case_exact:
        return func.lower(column.expr)
    return column.expr


def ordered(expr, descending: bool):
    """Resources without the sorted attribute come last in ascending order."""
    return expr.desc().nulls_first() if descending else expr.asc().nulls_last()


def order_by(kind: str, sort_by: Path | None, descending: bool) -> list:
    """ORDER BY for sortBy/sortOrder, then the id so that pages are stable."""
    m = mapping(kind)
    if sort_by is None:
        return [m.default_order]
    expr = sort_key(kind, sort_by)
    return [ordered(expr, descending), m.default_order.desc() if descending else m.default_order]
