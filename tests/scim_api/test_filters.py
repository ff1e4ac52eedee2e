"""SCIM filters (RFC 7644 §3.4.2.2) on GET /Users, POST /Users/.search and /Groups: every
operator, logic and precedence, case rules, value paths, URNs, dates, and the
invalidFilter errors an IdP gets for a filter we cannot answer."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.scim_api.conftest import assert_scim_error

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

ALICE, BOB, ELODIE, DAVE = "Alice@Example.com", "bob.builder", "ÉLODIE@example.com", "dave_x"
EVERYONE = {ALICE, BOB, ELODIE, DAVE}


def _created(response) -> dict:
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


@pytest.fixture
def people(scim) -> dict:
    """Four users (created in this order) and three groups, as an IdP provisions them."""
    alice = _created(
        scim(
            "POST",
            "/Users",
            json={
                "schemas": [USER, ENTERPRISE],
                "userName": ALICE,
                "externalId": "EXT-Alice",
                "name": {"givenName": "Alice", "familyName": "Smith", "middleName": "Jane"},
                "displayName": "Alice Smith",
                "nickName": "Ali",
                "userType": "Employee",
                "locale": "en-GB",
                "title": "Engineer",
                "emails": [
                    {"value": "Alice@Example.com", "type": "work", "primary": True},
                    {"value": "alice@home.test", "type": "home"},
                ],
                "phoneNumbers": [
                    {"value": "+44 20 7946 0555", "type": "work", "primary": True},
                    {"value": "+44 7700 900123", "type": "mobile"},
                ],
                "addresses": [{"type": "work", "locality": "London", "country": "GB"}],
                "roles": [{"value": "Admin", "primary": True}],
                "x509Certificates": [{"value": "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"}],
                ENTERPRISE: {"department": "Sales", "employeeNumber": "1001"},
            },
        )
    )
    bob = _created(
        scim(
            "POST",
            "/Users",
            json={
                "schemas": [USER, ENTERPRISE],
                "userName": BOB,
                "externalId": "ext-bob",
                "name": {"givenName": "Bob", "familyName": "Smithers"},
                "displayName": "Bob 100% Builder",
                "userType": "Contractor",
                "emails": [{"value": "bob@partner.test", "type": "work"}],
                "phoneNumbers": [{"value": "555-0100", "type": "mobile"}],
                "addresses": [
                    {"type": "home", "locality": "Paris", "country": "FR"},
                    {"type": "work", "locality": "London", "country": "GB", "primary": True},
                ],
                "roles": [{"value": "admin"}, {"value": "Auditor"}],
                "entitlements": [{"value": "licence:pro", "type": "licence"}],
                ENTERPRISE: {"department": "Engineering", "manager": {"value": alice["id"]}},
            },
        )
    )
    elodie = _created(
        scim(
            "POST",
            "/Users",
            json={
                "schemas": [USER, ENTERPRISE],
                "userName": ELODIE,
                "name": {"givenName": "Élodie", "familyName": "Dupont"},
                "displayName": "Élodie_Dupont",
                "title": "Manager",
                "active": False,
                "emails": [{"value": "Élodie@example.com", "type": "home", "primary": True}],
                ENTERPRISE: {"department": "SALES"},
            },
        )
    )
    dave = _created(scim("POST", "/Users", json={"schemas": [USER], "userName": DAVE}))
    engineers = _created(
        scim(
            "POST",
            "/Groups",
            json={
                "schemas": [GROUP],
                "displayName": "Engineers",
                "externalId": "G-ENG",
                "members": [{"value": alice["id"]}, {"value": bob["id"]}],
            },
        )
    )
    sales = _created(
        scim(
            "POST",
            "/Groups",
            json={"schemas": [GROUP], "displayName": "Sales", "members": [{"value": elodie["id"]}]},
        )
    )
    empty = _created(scim("POST", "/Groups", json={"schemas": [GROUP], "displayName": "Empty"}))
    return {
        "alice": alice,
        "bob": bob,
        "elodie": elodie,
        "dave": dave,
        "engineers": engineers,
        "sales": sales,
        "empty": empty,
    }


def users(scim, scim_filter: str) -> set[str]:
    """The userNames GET /Users?filter= returns (totalResults agreeing)."""
    response = scim("GET", "/Users", query_string={"filter": scim_filter})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    names = {r["userName"] for r in body.get("Resources", [])}
    assert body["totalResults"] == len(names)
    return names


def searched(scim, scim_filter: str, kind: str = "Users") -> set[str]:
    """The same through POST /.search (RFC 7644 §3.4.3)."""
    response = scim(
        "POST",
        f"/{kind}/.search",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": scim_filter,
        },
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    key = "userName" if kind == "Users" else "displayName"
    return {r[key] for r in response.get_json().get("Resources", [])}


def groups(scim, scim_filter: str) -> set[str]:
    response = scim("GET", "/Groups", query_string={"filter": scim_filter})
    assert response.status_code == 200, response.get_data(as_text=True)
    return {r["displayName"] for r in response.get_json().get("Resources", [])}


def wrong(query, table) -> dict:
    """The filters of `table` ((filter, expected) pairs) for which `query` gives something
    else, with what it gave; each test checks a whole table against one set of users."""
    return {f: got for f, expected in table if (got := query(f)) != expected}


OPERATORS = [
    ('userName eq "alice@example.com"', {ALICE}),
    ('userName ne "alice@example.com"', {BOB, ELODIE, DAVE}),
    ('userName co "BUILD"', {BOB}),
    ('userName sw "ÉLO"', {ELODIE}),
    ('userName ew "@EXAMPLE.COM"', {ALICE, ELODIE}),
    ("title pr", {ALICE, ELODIE}),
    ('userName gt "d"', {DAVE, ELODIE}),
    ('userName ge "dave_x"', {DAVE, ELODIE}),
    ('userName lt "bob.builder"', {ALICE}),
    ('userName le "bob.builder"', {ALICE, BOB}),
    ('name.familyName sw "smith"', {ALICE, BOB}),
    ('name.familyName eq "SMITH"', {ALICE}),
    ('displayName ew "builder"', {BOB}),
    ('title eq "ENGINEER"', {ALICE}),
    ('emails.value ew "example.com"', {ALICE, ELODIE}),
    ('emails.type eq "WORK"', {ALICE, BOB}),
    ("emails pr", {ALICE, BOB, ELODIE}),
    ("active eq false", {ELODIE}),
    ("active eq true", {ALICE, BOB, DAVE}),
    ("active ne false", {ALICE, BOB, DAVE}),
    ('USERNAME EQ "bob.builder" OR Title Pr', {ALICE, BOB, ELODIE}),
]


def test_every_operator_on_get_and_search(scim, people):
    """eq ne co sw ew pr gt ge lt le (keywords in any case); GET ?filter= and POST
    /.search agree."""
    assert wrong(lambda f: users(scim, f), OPERATORS) == {}
    assert wrong(lambda f: searched(scim, f), OPERATORS) == {}


def test_and_binds_tighter_than_or_and_parentheses_group(scim, people):
    """RFC 7644 §3.4.2.2: "and" takes precedence over "or"; not and () as written."""
    table = [
        ('userName eq "bob.builder" or title pr and active eq false', {BOB, ELODIE}),
        ('(userName eq "bob.builder" or title pr) and active eq false', {ELODIE}),
        ('title pr and active eq true or userName eq "dave_x"', {ALICE, DAVE}),
        ('title pr and (active eq true or userName eq "dave_x")', {ALICE}),
        ('not (userName sw "a" or userName sw "b")', {ELODIE, DAVE}),
        ('not (userName sw "a") and not (userName sw "b")', {ELODIE, DAVE}),
        ('not (not (title eq "manager"))', {ELODIE}),
        ('((userName eq "bob.builder"))', {BOB}),
    ]
    assert wrong(lambda f: users(scim, f), table) == {}


def test_case_insensitive_attributes_ignore_case(scim, people):
    """caseExact=false (RFC 7643 §4.1): userName, displayName, name, emails, enterprise."""
    table = [
        ('userName eq "ALICE@EXAMPLE.COM"', {ALICE}),
        ('displayName eq "ALICE SMITH"', {ALICE}),
        ('name.givenName eq "aLiCe"', {ALICE}),
        ('emails.value eq "ALICE@example.COM"', {ALICE}),
        (f'{ENTERPRISE}:employeeNumber eq "1001"', {ALICE}),
        (f'{ENTERPRISE}:department eq "sAlEs"', {ALICE, ELODIE}),  # "Sales" and "SALES"
    ]
    assert wrong(lambda f: users(scim, f), table) == {}


def test_external_id_and_id_are_case_exact(scim, people):
    alice_id = people["alice"]["id"]
    table = [
        ('externalId eq "EXT-Alice"', {ALICE}),
        ('externalId eq "ext-alice"', set()),
        ('externalId eq "EXT-BOB"', set()),
        ('externalId sw "ext-"', {BOB}),
        (f'id eq "{alice_id}"', {ALICE}),
        (f'id eq "{alice_id.upper()}"', set()),
    ]
    assert wrong(lambda f: users(scim, f), table) == {}


def test_non_ascii_letters_fold_in_the_database(scim, people):
    """É and é compare equal in SQL, on SQLite as on PostgreSQL, not only ASCII."""
    table = [
        ('userName eq "élodie@example.com"', {ELODIE}),
        ('userName sw "élodie"', {ELODIE}),
        ('name.givenName eq "ÉLODIE"', {ELODIE}),
        ('displayName sw "élodie_"', {ELODIE}),
        ('emails.value eq "ÉLODIE@EXAMPLE.COM"', {ELODIE}),
        ('emails[value co "élodie"]', {ELODIE}),
        ('name.givenName eq "elodie"', set()),  # folding keeps the accent
    ]
    assert wrong(lambda f: users(scim, f), table) == {}


def test_value_paths_match_within_one_email(scim, people):
    """Bob has a work email and Élodie an example.com one, but only Alice has both in the
    same email."""
    table = [
        ('emails[type eq "work" and value co "@example.com"]', {ALICE}),
        ('emails[type eq "work"] and emails[value co "@example.com"]', {ALICE}),
        ('emails[type eq "home" or value co "partner"]', {ALICE, BOB, ELODIE}),
        ("emails[primary eq true]", {ALICE, ELODIE}),
        ("not (emails[primary eq true])", {BOB, DAVE}),
        ('emails[type eq "home"].value ew ".test"', {ALICE}),
    ]
    assert wrong(lambda f: users(scim, f), table) == {}


def test_every_kept_attribute_filters_in_sql(scim, people):
    """SPEC F5: the attributes kept in the stored document filter like the others, on
    both databases: single values, multi-valued ones with sub-attributes and value
    paths, case rules from the schema (roles.value is caseExact=false)."""
    table = [
        ('nickName eq "ALI"', {ALICE}),
        ("nickName pr", {ALICE}),
        ('userType eq "contractor"', {BOB}),
        ('userType ne "Employee"', {BOB, ELODIE, DAVE}),
        ('locale sw "en"', {ALICE}),
        ('name.middleName eq "jane"', {ALICE}),
        ('phoneNumbers co "555"', {ALICE, BOB}),
        ('phoneNumbers.type eq "MOBILE"', {ALICE, BOB}),
        ('phoneNumbers[type eq "mobile" and value co "555"]', {BOB}),
        ("phoneNumbers[primary eq true]", {ALICE}),
        ("not (phoneNumbers pr)", {ELODIE, DAVE}),
        ('addresses.locality eq "london"', {ALICE, BOB}),
        ('addresses[type eq "home" and country eq "FR"]', {BOB}),
        ('addresses[type eq "home" and country eq "GB"]', set()),
        ('roles.value eq "ADMIN"', {ALICE, BOB}),
        ('roles[value eq "auditor"]', {BOB}),
        ("roles[primary eq true]", {ALICE}),
        ('entitlements[type eq "licence"]', {BOB}),
        ("x509Certificates pr", {ALICE}),
        ('x509Certificates.value eq "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"', {ALICE}),
        ('x509Certificates.value eq "miibijanbgkqhkig9w0baqefaaocaq8amiibcgkcaqea"', set()),
        ("ims pr", set()),
    ]
    assert wrong(lambda f: users(scim, f), table) == {}
    assert wrong(lambda f: searched(scim, f), table) == {}


def test_urn_qualified_attributes(scim, people):
    table = [
        (f'{USER}:userName eq "bob.builder"', {BOB}),
        (f'{USER}:name.familyName eq "dupont"', {ELODIE}),
        (f'{ENTERPRISE}:department eq "engineering"', {BOB}),
        (f'{ENTERPRISE}:manager.value eq "{people["alice"]["id"]}"', {BOB}),
    ]
    assert wrong(lambda f: users(scim, f), table) == {}


def test_users_without_a_title_match_negations(scim, people):
    """RFC 7644 "not": a user without a title matches `not (title pr)` and
    `title ne "x"`, never `title eq "x"` or `title co`."""
    table = [
        ("title eq null", {BOB, DAVE}),
        ("not (title pr)", {BOB, DAVE}),
        ('not (title eq "engineer")', {BOB, ELODIE, DAVE}),
        ('title ne "engineer"', {BOB, ELODIE, DAVE}),
        ('title co "e"', {ALICE, ELODIE}),
    ]
    assert wrong(lambda f: users(scim, f), table) == {}


def test_ne_on_multi_valued_means_no_value_equals(scim, people):
    """Alice's other email does not make her match: none of a user's emails may equal it."""
    table = [
        ('emails ne "alice@example.com"', {BOB, ELODIE, DAVE}),
        ('emails.value ne "ALICE@HOME.TEST"', {BOB, ELODIE, DAVE}),
        ("not (emails pr)", {DAVE}),
    ]
    assert wrong(lambda f: users(scim, f), table) == {}


def test_percent_and_underscore_match_literally(scim, people):
    """A SQL LIKE wildcard in a value is an ordinary character."""
    table = [
        ('displayName co "%"', {BOB}),
        ('displayName co "_"', {ELODIE}),
        ('userName co "_"', {DAVE}),
        ('userName co "%"', set()),
        ('displayName sw "%"', set()),
        ('displayName ew "_"', set()),
        ('emails[value co "_"]', set()),
    ]
    assert wrong(lambda f: users(scim, f), table) == {}


def test_meta_dates_compare_as_instants(scim, people):
    """Users created after Alice, up to her, and the same instant written with another
    offset (RFC 3339)."""
    created = people["alice"]["meta"]["created"]
    instant = datetime.fromisoformat(created).astimezone(timezone(timedelta(hours=2)))
    table = [
        (f'meta.created gt "{created}"', {BOB, ELODIE, DAVE}),
        (f'meta.created le "{created}"', {ALICE}),
        (f'meta.created ge "{created}"', EVERYONE),
        (f'meta.created lt "{created}"', set()),
        (f'meta.created eq "{instant.isoformat()}"', {ALICE}),
        ('meta.created gt "2000-01-01T00:00:00Z"', EVERYONE),
        ('meta.lastModified lt "2000-01-01T00:00:00Z"', set()),
        ('meta.lastModified gt "2000-01-01T00:00:00+05:00"', EVERYONE),
    ]
    assert wrong(lambda f: users(scim, f), table) == {}


def test_last_modified_follows_a_change(scim, people):
    before = people["alice"]["meta"]["lastModified"]
    changed = scim(
        "PATCH",
        f"/Users/{people['dave']['id']}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "title", "value": "Intern"}],
        },
    )
    assert changed.status_code == 200, changed.get_data(as_text=True)
    after = changed.get_json()["meta"]["lastModified"]

    assert users(scim, f'meta.lastModified gt "{before}"') == {BOB, ELODIE, DAVE}
    assert users(scim, f'meta.created gt "{before}" and meta.lastModified ge "{after}"') == {DAVE}


def test_users_by_group(scim, people):
    table = [
        (f'groups.value eq "{people["engineers"]["id"]}"', {ALICE, BOB}),
        ('groups[display eq "SALES"]', {ELODIE}),
        ("not (groups pr)", {DAVE}),
    ]
    assert wrong(lambda f: users(scim, f), table) == {}


def test_groups_by_member_and_name(scim, people):
    table = [
        (f'members.value eq "{people["alice"]["id"]}"', {"Engineers"}),
        (f'members[value eq "{people["elodie"]["id"]}"]', {"Sales"}),
        ("not (members pr)", {"Empty"}),
        ('displayName eq "ENGINEERS"', {"Engineers"}),
        ('externalId eq "G-ENG"', {"Engineers"}),
        ('externalId eq "g-eng"', set()),
    ]
    assert wrong(lambda f: groups(scim, f), table) == {}
    assert searched(scim, 'displayName sw "e"', "Groups") == {"Engineers", "Empty"}


INVALID = [
    'foo eq "x"',
    'department eq "x"',  # the enterprise attribute needs its URN
    'manager.value eq "x"',
    "userName eq",
    '(userName eq "a"',
    'userName eq "a")',
    'emails[type eq "work"',
    'userName xx "a"',
    'userName eq "a" and',
    "not userName pr",
    "active gt true",
    'meta.created co "2020"',
    "userName eq 5",
    "active eq 1",
    'meta.created gt "not-a-date"',
    'meta.created gt "2020-13-45T00:00:00Z"',
    'meta.created ge "2020"',
    'meta.created gt "0001-01-01T00:00:00+14:00"',  # before year 1 in UTC
    'emails[foo eq "x"]',
    'name[givenName eq "x"]',
    'phoneNumbers[foo eq "x"]',
    "phoneNumbers[primary eq 1]",
    'meta.version eq "W/1"',
    'password eq "x"',
    'userName eq "\\u0000"',  # PostgreSQL cannot bind a NUL
    'displayName eq "\\ud800"',  # a lone surrogate is not UTF-8
]


def test_invalid_filters_get_400_invalid_filter(scim):
    for scim_filter in INVALID:
        response = scim("GET", "/Users", query_string={"filter": scim_filter})
        assert assert_scim_error(response, 400).get("scimType") == "invalidFilter", scim_filter


def test_invalid_filters_on_search_and_groups_get_400_invalid_filter(scim):
    """On /Groups, userName and title are unknown attributes."""
    for scim_filter in ['foo eq "x"', "userName eq", 'meta.created co "x"']:
        response = scim(
            "POST",
            "/Users/.search",
            json={
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "filter": scim_filter,
            },
        )
        assert assert_scim_error(response, 400).get("scimType") == "invalidFilter", scim_filter
    for scim_filter in ['userName eq "x"', "members.value eq 5", 'members[type gt "x"', "title pr"]:
        response = scim("GET", "/Groups", query_string={"filter": scim_filter})
        assert assert_scim_error(response, 400).get("scimType") == "invalidFilter", scim_filter
