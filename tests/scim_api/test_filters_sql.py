"""blueprints.scim_api.filters without HTTP or an app: SCIM filters (RFC 7644 §3.4.2.2)
compiled to SQL and run on an in-memory SQLite database holding four users and three
teams (configured as the app's engine), table-driven (filter → the resources it
matches); the clauses PostgreSQL is spoken to differently for, compiled for it; and the
invalidFilter errors an IdP gets for a filter we cannot answer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from scim2_models import InvalidFilterException, ScimFilter
from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    LogicalExpr,
    LogicalOperator,
    Not,
    ValuePath,
)
from sqlalchemy import create_engine, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from blueprints.common import sqlite_writer
from blueprints.scim_api import filters, query
from blueprints.scim_api.filters import MAX_FILTER_DEPTH, MAX_FILTER_TERMS
from blueprints.scim_api.schemas import ENTERPRISE, PROVIDER, Group, UserResource
from models import Account, MemberEmail, Membership, Team, TeamMember, db
from tests.scim_api.conftest import refusal

ALICE, BOB, ELODIE, DAVE = "Alice@Example.com", "bob.builder", "ÉLODIE@example.com", "dave_x"
EVERYONE = {ALICE, BOB, ELODIE, DAVE}
ENGINEERING, SALES, EMPTY = "Engineering", "Sales", "Empty"
ALL_TEAMS = {ENGINEERING, SALES, EMPTY}


def _at(month: int) -> datetime:
    return datetime(2026, month, 1, tzinfo=UTC)


def _user(
    scim_id: str,
    user_name: str,
    document: dict,
    *,
    active: bool = True,
    external_id: str | None = None,
    display_name: str | None = None,
    given_name: str | None = None,
    family_name: str | None = None,
    month: int = 1,
) -> dict:
    """A SCIM membership row as users.py writes it: the document and its copies."""
    return {
        "scim_id": scim_id,
        "account_id": 1,
        "source": "scim",
        "active": active,
        "user_name": user_name,
        "user_name_key": filters.key(user_name),
        "external_id": external_id,
        "display_name": display_name,
        "display_name_key": filters.key(display_name) if display_name else None,
        "given_name": given_name,
        "family_name": family_name,
        "scim_resource": {"userName": user_name, **document},
        "version": 1,
        "created_at": _at(month),
        "updated_at": _at(month + 1),
    }


USERS = [
    _user(
        "u-alice",
        ALICE,
        {
            "name": {"givenName": "Alice", "familyName": "Smith"},
            "nickName": "Ali",
            "title": "Engineer",
            "userType": "Employee",
            "phoneNumbers": [{"value": "+44 20 7946 0555", "type": "work", "primary": True}],
            "addresses": [{"type": "work", "locality": "London", "country": "GB"}],
            "roles": [{"value": "Admin"}],
            ENTERPRISE: {"department": "Sales", "employeeNumber": "1001"},
        },
        external_id="EXT-A",
        display_name="Alice Smith",
        given_name="Alice",
        family_name="Smith",
        month=1,
    ),
    _user(
        "u-bob",
        BOB,
        {
            "name": {"givenName": "Bob", "familyName": "Smithers"},
            "userType": "Contractor",
            "phoneNumbers": [{"value": "555-0100", "type": "mobile"}],
            "roles": [{"value": "auditor"}],
            ENTERPRISE: {"department": "Engineering", "manager": {"value": "u-alice"}},
        },
        external_id="ext-b",
        display_name="Bob 100% Builder",
        given_name="Bob",
        family_name="Smithers",
        month=2,
    ),
    _user("u-elodie", ELODIE, {"title": "", "nickName": "Élo"}, active=False, month=3),
    _user(
        "u-dave",
        DAVE,
        {"title": "Engineering Manager"},
        external_id="EXT-D",
        display_name="dave",
        month=4,
    ),
]
EMAILS = {  # membership id (1-based, in USERS' order) → (value, type, primary)
    1: [("Alice@Example.com", "work", True), ("alice@home.test", "home", False)],
    2: [("bob@partner.test", "work", False), ("bob@example.com", "home", False)],
    4: [("dave@example.com", "home", False)],
}
TEAMS = [  # (scim_id, displayName, externalId, members as (membership id, display))
    ("g-eng", ENGINEERING, "ext-eng", [(1, "Alice"), (2, None)]),
    ("g-sales", SALES, None, [(1, None)]),
    ("g-empty", EMPTY, None, []),
]


@pytest.fixture(scope="module")
def engine():
    engine = create_engine("sqlite://")
    # As the app's engine: LIKE case-sensitive (as on PostgreSQL), a Unicode lower().
    sqlite_writer.install(engine)
    db.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(Account.__table__), [{"id": 1, "name": "Acme", "created_at": _at(1)}])
        conn.execute(insert(Membership.__table__), [dict(u, id=i) for i, u in enumerate(USERS, 1)])
        conn.execute(
            insert(MemberEmail.__table__),
            [
                {
                    "membership_id": member,
                    "position": position,
                    "value": value,
                    "value_key": filters.key(value),
                    "type": kind,
                    "primary": primary,
                }
                for member, rows in EMAILS.items()
                for position, (value, kind, primary) in enumerate(rows)
            ],
        )
        for team_id, (scim_id, name, external_id, members) in enumerate(TEAMS, 1):
            conn.execute(
                insert(Team.__table__),
                {
                    "id": team_id,
                    "scim_id": scim_id,
                    "account_id": 1,
                    "display_name": name,
                    "display_name_key": filters.key(name),
                    "external_id": external_id,
                    "source": "scim",
                    "created_at": _at(team_id),
                    "updated_at": _at(team_id),
                },
            )
            for member, display in members:
                conn.execute(
                    insert(TeamMember.__table__),
                    {
                        "team_id": team_id,
                        "membership_id": member,
                        "display": display,
                        "created_at": _at(1),
                    },
                )
    yield engine
    engine.dispose()


def bound(model, text: str) -> ScimFilter:
    """The filter as GET /Users?filter=… or /Groups?filter=… parses it."""
    return query.search_request(model, {"filter": text}).filter


def users(engine, text: str | None) -> set[str]:
    where = filters.where_clause("User", bound(UserResource, text) if text else None)
    with engine.connect() as conn:
        return set(conn.execute(select(Membership.user_name).where(where)).scalars())


def teams(engine, text: str | None) -> set[str]:
    where = filters.where_clause("Group", bound(Group, text) if text else None)
    with engine.connect() as conn:
        return set(conn.execute(select(Team.display_name).where(where)).scalars())


# --- Users: which rows match ----------------------------------------------------------------

USER_MATCHES = [
    # caseExact=false (RFC 7643 §4.1.1): userName compares folded, on its key column
    ('userName eq "alice@example.com"', {ALICE}),
    ('userName eq "ALICE@EXAMPLE.COM"', {ALICE}),
    ('userName eq " Alice@Example.com "', {ALICE}),  # the key has no surrounding spaces
    ('userName eq "élodie@example.com"', {ELODIE}),  # folded beyond ASCII
    ('userName eq "E\\u0301LODIE@example.com"', {ELODIE}),  # NFC: decomposed É is É
    ('userName eq "nobody"', set()),
    ('userName ne "BOB.BUILDER"', EVERYONE - {BOB}),
    ('userName sw "BOB"', {BOB}),
    ('userName ew "@EXAMPLE.COM"', {ALICE, ELODIE}),
    ('userName co "_"', {DAVE}),  # a LIKE wildcard, compared literally
    ('displayName co "%"', {BOB}),  # likewise
    ('userName co "."', {ALICE, BOB, ELODIE}),
    ('userName gt "c"', {ELODIE, DAVE}),  # "dave_x", "élodie…" sort after "c"
    ('displayName eq "ALICE SMITH"', {ALICE}),
    ('displayName ne "alice smith"', EVERYONE - {ALICE}),  # no displayName is "not equal"
    # caseExact=true (RFC 7643 §3.1): id and externalId compare as written
    ('externalId eq "EXT-A"', {ALICE}),
    ('externalId eq "ext-a"', set()),
    ('externalId sw "EXT"', {ALICE, DAVE}),  # not "ext-b"
    ('externalId ew "b"', {BOB}),
    ('externalId ew "B"', set()),
    ('id co "BOB"', set()),
    ('id co "bob"', {BOB}),
    ("externalId pr", {ALICE, BOB, DAVE}),
    ('id eq "u-bob"', {BOB}),
    ('id eq "U-BOB"', set()),
    # booleans
    ("active eq true", {ALICE, BOB, DAVE}),
    ("active eq false", {ELODIE}),
    ("active ne true", {ELODIE}),
    ("active pr", EVERYONE),
    # name columns
    ('name.givenName eq "ALICE"', {ALICE}),
    ('name.familyName sw "smith"', {ALICE, BOB}),
    ('name.familyName gt "Smith"', {BOB}),  # "smithers" > "smith"; no name is no match
    ('name.familyName le "Smith"', {ALICE}),
    ("name pr", {ALICE, BOB}),
    # attributes read from the stored document
    ('title eq "engineer"', {ALICE}),
    ('title sw "ENGINEER"', {ALICE, DAVE}),
    ("title pr", {ALICE, DAVE}),  # "" is no value (RFC 7644 §3.4.2.2 "pr": non-empty)
    ("not (title pr)", {BOB, ELODIE}),
    ('title ne "Engineer"', {BOB, ELODIE, DAVE}),  # RFC "not": missing is not equal
    ('not (title eq "Engineer")', {BOB, ELODIE, DAVE}),
    ('nickName eq "ALI"', {ALICE}),
    ('nickName eq "ÉLO"', {ELODIE}),  # folded beyond ASCII on the database's side too
    ('nickName sw "él"', {ELODIE}),
    ('userType eq "contractor"', {BOB}),
    ("title eq \"x' OR '1'='1\"", set()),  # a bound value, never SQL
    (f'{ENTERPRISE}:department eq "sales"', {ALICE}),
    (f'{ENTERPRISE}:manager.value eq "u-alice"', {BOB}),
    (f"{ENTERPRISE}:manager pr", {BOB}),
    (f'{ENTERPRISE}:employeeNumber eq "1001"', {ALICE}),
    # multi-valued attributes in the document: any value matches
    ('phoneNumbers.value co "+44"', {ALICE}),
    ('phoneNumbers[type eq "WORK"]', {ALICE}),
    ("phoneNumbers[primary eq true]", {ALICE}),
    ('addresses.locality eq "london"', {ALICE}),
    ('roles.value eq "ADMIN"', {ALICE}),
    ("roles pr", {ALICE, BOB}),
    # emails (rows of their own)
    ('emails.value eq "ALICE@example.COM"', {ALICE}),
    ('emails eq "bob@partner.test"', {BOB}),  # no sub-attribute: the value
    ('emails co "example.com"', {ALICE, BOB, DAVE}),
    ('emails.type eq "WORK"', {ALICE, BOB}),
    ("emails.primary eq true", {ALICE}),
    ("emails pr", {ALICE, BOB, DAVE}),
    ("not (emails pr)", {ELODIE}),
    ('emails ne "bob@partner.test"', EVERYONE - {BOB}),  # no value equals
    # RFC 7644 §3.4.2.2's example: both conditions on one and the same email …
    ('emails[type eq "work" and value co "@example.com"]', {ALICE}),
    # … unlike two conditions that any email may each meet
    ('emails.type eq "work" and emails.value co "@example.com"', {ALICE, BOB}),
    ('emails[type eq "home" or primary eq true]', {ALICE, BOB, DAVE}),
    ('emails[not (type eq "home")]', {ALICE, BOB}),
    # a user's groups
    ('groups.value eq "g-sales"', {ALICE}),
    ('groups.display eq "ENGINEERING"', {ALICE, BOB}),
    ('groups[display eq "sales"]', {ALICE}),
    ("groups pr", {ALICE, BOB}),
    ("not (groups pr)", {ELODIE, DAVE}),
    ('groups.type eq "direct"', {ALICE, BOB}),
    # meta: date-times compare as instants (RFC 3339, any offset)
    ('meta.created gt "2026-01-15T00:00:00Z"', {BOB, ELODIE, DAVE}),
    ('meta.created ge "2026-02-01T00:00:00Z"', {BOB, ELODIE, DAVE}),
    ('meta.created lt "2026-02-01T00:00:00Z"', {ALICE}),
    ('meta.created le "2026-02-01T00:00:00Z"', {ALICE, BOB}),
    ('meta.created eq "2026-02-01T00:00:00Z"', {BOB}),
    ('meta.created eq "2026-02-01T02:00:00+02:00"', {BOB}),  # the same instant
    ('meta.created gt "2026-02-01T01:00:00+02:00"', {BOB, ELODIE, DAVE}),  # 23:00 the eve
    ('meta.lastModified lt "2026-03-01T00:00:00Z"', {ALICE}),
    ('meta.resourceType eq "User"', EVERYONE),
    ('meta.resourceType eq "Group"', set()),
    # logic: "not" over "and" over "or" (RFC 7644 §3.4.2.2)
    ('userName sw "a" or userName sw "b" and active eq false', {ALICE}),
    ('(userName sw "a" or userName sw "b") and active eq true', {ALICE, BOB}),
    ('userName sw "b" and active eq false or userName sw "d"', {DAVE}),
    ('not (userName sw "a") and active eq true', {BOB, DAVE}),
    ('not (userName sw "a" or userName sw "b")', {ELODIE, DAVE}),
    ('title pr and not (title sw "engineering")', {ALICE}),
    ('active eq true and (emails.type eq "work" or title pr)', {ALICE, BOB, DAVE}),
    ('userName eq "nobody" or not (active eq true)', {ELODIE}),
]


@pytest.mark.parametrize(("text", "matched"), USER_MATCHES)
def test_user_filter_matches(engine, text, matched):
    assert users(engine, text) == matched


@pytest.mark.parametrize(
    ("text", "matched"),
    [
        ('meta.resourceType eq "user"', set()),
        ('meta.resourceType eq "USER"', set()),
        ('meta.resourceType ne "user"', EVERYONE),
        ('meta.resourceType sw "u"', set()),
    ],
)
def test_resource_type_is_case_exact(engine, text, matched):
    """RFC 7643 §3.1: meta.resourceType "has a mutability of "readOnly" and "caseExact"
    as "true"", so "user" is not "User"."""
    assert users(engine, text) == matched


def test_no_filter_matches_every_user(engine):
    assert users(engine, None) == EVERYONE


# --- Groups: which rows match ---------------------------------------------------------------

GROUP_MATCHES = [
    ('displayName eq "ENGINEERING"', {ENGINEERING}),
    ('displayName eq " sales "', {SALES}),
    ('displayName sw "e"', {ENGINEERING, EMPTY}),
    ('displayName ne "sales"', {ENGINEERING, EMPTY}),
    ('externalId eq "ext-eng"', {ENGINEERING}),
    ('externalId eq "EXT-ENG"', set()),  # caseExact
    ("externalId pr", {ENGINEERING}),
    ('id eq "g-sales"', {SALES}),
    ('members.value eq "u-bob"', {ENGINEERING}),
    ('members[value eq "u-alice"]', {ENGINEERING, SALES}),
    ('members eq "u-alice"', {ENGINEERING, SALES}),
    ('members.value ne "u-alice"', {EMPTY}),  # no member is u-alice
    ("members pr", {ENGINEERING, SALES}),
    ("not (members pr)", {EMPTY}),
    ('members.display co "ALI"', {ENGINEERING}),
    ('members.type eq "User"', {ENGINEERING, SALES}),
    ('members[value eq "u-bob" or value eq "u-dave"]', {ENGINEERING}),
    ('meta.resourceType eq "Group"', ALL_TEAMS),
    ('meta.created gt "2026-01-15T00:00:00Z"', {SALES, EMPTY}),
    ('displayName sw "S" or members.value eq "u-bob"', {ENGINEERING, SALES}),
]


@pytest.mark.parametrize(("text", "matched"), GROUP_MATCHES)
def test_group_filter_matches(engine, text, matched):
    assert teams(engine, text) == matched


# --- A search across both resource types (POST /.search at the root) ------------------------


@pytest.mark.parametrize(
    ("model", "kind", "text", "matched"),
    [
        (Group, "Group", 'userName eq "bob.builder" or displayName eq "sales"', {SALES}),
        (Group, "Group", "userName pr", set()),
        (Group, "Group", "not (userName pr)", ALL_TEAMS),
        (UserResource, "User", 'userName eq "bob.builder" or displayName eq "sales"', {BOB}),
        (UserResource, "User", 'members pr or userName sw "d"', {DAVE}),
        (UserResource, "User", 'members[value eq "u-bob"]', set()),
    ],
)
def test_lenient_filter_of_the_other_type_is_false(engine, model, kind, text, matched):
    """RFC 7644 §3.4.2.1: in a search across resource types, a comparison on an attribute
    a type doesn't have is false for that type (search.py binds the filter to each)."""
    with PROVIDER:
        scim_filter = ScimFilter[model](text)
    where = filters.where_clause(kind, scim_filter, lenient=True)
    name = Membership.user_name if kind == "User" else Team.display_name
    with engine.connect() as conn:
        assert set(conn.execute(select(name).where(where)).scalars()) == matched


# --- Compiled for PostgreSQL, and what is bound -------------------------------------------


@pytest.mark.parametrize(
    ("kind", "text", "fragment"),
    [
        ("User", 'title eq "Engineer"', "#>>"),  # a document attribute: JSON path as text
        ("User", f"{ENTERPRISE}:department pr", "#>>"),
        ("User", 'phoneNumbers.value co "+44"', "jsonb_array_elements"),  # its array
        ("User", "phoneNumbers[primary eq true]", "AS BOOLEAN"),  # a JSON true is a boolean
        ("User", 'addresses[type eq "work" and locality pr]', "jsonb_array_elements"),
        ("User", 'emails[type eq "work" and value co "@x"]', "EXISTS"),
        ("User", 'groups.display eq "Sales"', "JOIN team"),
        ("User", 'userName co "_"', "ESCAPE"),
        ("User", 'meta.created gt "2026-01-15T00:00:00Z"', "membership.created_at >"),
        ("User", "not (title pr) or active eq false", "NOT ("),
        ("Group", 'members[value eq "u-alice"]', "JOIN membership"),
        ("Group", "not (members pr)", "NOT (EXISTS"),
    ],
)
def test_filter_compiles_for_postgresql(kind, text, fragment):
    """The tables above run on SQLite; PostgreSQL is spoken differently where JSON is
    read (`#>>`, jsonb_array_elements, a cast to boolean), so those clauses are compiled
    for it too."""
    model = UserResource if kind == "User" else Group
    clause = filters.where_clause(kind, bound(model, text))

    assert fragment in str(clause.compile(dialect=postgresql.dialect()))


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "pg"])
@pytest.mark.parametrize(
    ("text", "column", "value"),
    [
        ('userName eq "ALICE@Example.COM"', "membership.user_name_key", "alice@example.com"),
        ('userName eq " BOB "', "membership.user_name_key", "bob"),
        ('emails.value eq "A@X.TEST"', "member_email.value_key", "a@x.test"),
        ('emails eq "A@X.TEST"', "member_email.value_key", "a@x.test"),
        ('displayName eq "Babs"', "membership.display_name_key", "babs"),
        ('externalId eq "EXT-A"', "membership.external_id", "EXT-A"),
        ('id eq "U-1"', "membership.scim_id", "U-1"),
        ('name.givenName eq "ALICE"', "membership.given_name", "alice"),
        ('groups.value eq "G-1"', "team.scim_id", "G-1"),
    ],
)
def test_compared_column_and_value(text, column, value, dialect):
    """Case-insensitive attributes compare their folded key (an index lookup) with the
    folded operand; case-exact ones compare as written. The operand is a bound value."""
    compiled = filters.where_clause("User", bound(UserResource, text)).compile(dialect=dialect)

    assert column in str(compiled)
    assert value in compiled.params.values()
    assert value not in str(compiled)  # bound, never spliced into the statement


# --- Refused filters ------------------------------------------------------------------------


def _where_clause(kind: str, text: str):
    """where_clause on a filter bound to the resource type without the request's checks
    (scim2-models binds lazily), as search.py builds one."""
    model = UserResource if kind == "User" else Group
    with PROVIDER:
        return filters.where_clause(kind, ScimFilter[model](text))


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("User", 'nosuch eq "x"'),  # an attribute no schema declares
        ("User", 'urn:example:ext:2.0:User:badge eq "x"'),
        ("User", 'members.value eq "u-1"'),  # a Group's attribute
        ("Group", 'userName eq "bjensen"'),  # a User's attribute
        ("Group", "emails pr"),
        ("User", 'emails[nosuch eq "x"]'),
        ("User", 'password eq "secret"'),  # never stored
        ("User", 'meta.version eq "W/\\"1\\""'),  # not a column we keep
        ("User", "meta.location pr"),
        ("User", 'active eq "true"'),  # a boolean compared with a string
        ("User", 'emails[primary eq "yes"]'),
        ("User", "name.givenName co true"),  # a string compared with a boolean
        ("User", 'meta.created co "2026"'),  # a substring of a date-time
        ("User", 'meta.created sw "2026"'),
        ("User", "meta.created gt 5"),
        ("User", "userName gt null"),  # only eq/ne compare with null
        ("User", 'title eq "a\\u0000b"'),  # a NUL: PostgreSQL cannot bind it
        ("User", 'title eq "\\ud800"'),  # a lone surrogate: not Unicode
        ("Group", 'displayName co "\\u0000"'),
    ],
)
def test_where_clause_refuses(kind, text):
    with pytest.raises(InvalidFilterException) as raised:
        _where_clause(kind, text)

    assert raised.value.status == 400 and raised.value.scim_type == "invalidFilter"


@pytest.mark.parametrize(
    ("model", "text"),
    [
        (UserResource, "active gt true"),  # RFC 7644 §3.4.2.2: no order on booleans
        (UserResource, "active le false"),
        (UserResource, 'active co "t"'),
        (UserResource, "userName gt 5"),
        (UserResource, 'meta.created eq "yesterday"'),
        (UserResource, 'nosuch eq "x"'),
        (UserResource, "userName eq"),
        (UserResource, 'userName xx "a"'),
        (UserResource, 'userName eq "unterminated'),
        (UserResource, 'emails[type eq "work" and emails[value pr]]'),  # nested value path
        (Group, "members.value gt 5"),
        (Group, 'userName eq "bjensen"'),
    ],
)
def test_request_with_a_bad_filter_is_invalid_filter(model, text):
    """Whichever layer notices (the parser, the schema, this module), the IdP gets 400
    invalidFilter (RFC 7644 §3.4.2.2)."""
    kind = "User" if model is UserResource else "Group"

    def run():
        filters.where_clause(kind, bound(model, text))

    assert refusal(run) == (400, "invalidFilter")


# --- Size ---------------------------------------------------------------------------------


def _term(i: int = 0) -> Comparison:
    return Comparison(attr_path=AttrPath(attr="userName"), op=CompareOperator.eq, value=f"u{i}")


def _or(terms: int) -> LogicalExpr:
    return LogicalExpr(op=LogicalOperator.or_, terms=tuple(_term(i) for i in range(terms)))


def _nots(depth: int):
    """A comparison under `depth - 1` nots: `depth` levels in all."""
    node = _term()
    for _ in range(depth - 1):
        node = Not(expr=node)
    return node


def _value_paths(depth: int):
    """`emails[…]` under nots, `depth` levels in all (the value path and its filter count)."""
    inner = ValuePath(attr_path=AttrPath(attr="emails"), val_filter=_term())
    node = inner
    for _ in range(depth - 2):
        node = Not(expr=node)
    return node


@pytest.mark.parametrize(
    ("node", "refused"),
    [
        (_term(), False),
        (_or(MAX_FILTER_TERMS), False),
        (_or(MAX_FILTER_TERMS + 1), True),
        (LogicalExpr(op=LogicalOperator.and_, terms=(_or(60), _or(41))), True),
        (LogicalExpr(op=LogicalOperator.and_, terms=(_or(60), _or(40))), False),
        (_nots(MAX_FILTER_DEPTH), False),
        (_nots(MAX_FILTER_DEPTH + 1), True),
        (_nots(100_000), True),  # walked without recursion: still a 400, not a crash
        (_value_paths(MAX_FILTER_DEPTH), False),
        (_value_paths(MAX_FILTER_DEPTH + 1), True),
    ],
    ids=[
        "one-term",
        "most-terms",
        "too-many-terms",
        "too-many-terms-across-branches",
        "most-terms-across-branches",
        "deepest",
        "too-deep",
        "far-too-deep",
        "deepest-value-path",
        "too-deep-value-path",
    ],
)
def test_check_size(node, refused):
    """More than MAX_FILTER_TERMS comparisons, or nesting past MAX_FILTER_DEPTH, is a 400
    before any SQL (not a database error after the work)."""
    if refused:
        with pytest.raises(InvalidFilterException) as raised:
            filters.check_size(node)
        assert raised.value.scim_type == "invalidFilter"
    else:
        filters.check_size(node)


@pytest.mark.parametrize(("terms", "refused"), [(MAX_FILTER_TERMS, False), (101, True)])
def test_filter_with_too_many_terms_is_refused(engine, terms, refused):
    text = " or ".join(f'userName eq "u{i}"' for i in range(terms - 1)) + ' or userName eq "dave_x"'

    if refused:
        assert refusal(lambda: users(engine, text)) == (400, "invalidFilter")
    else:
        assert users(engine, text) == {DAVE}
