"""sortBy/sortOrder, startIndex/count and attributes/excludedAttributes on lists
(RFC 7644 §3.4.2.3-§3.4.2.5, §3.9): what an IdP reconciling thousands of users relies on
to see each user exactly once."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import insert

from models import Membership, utcnow
from tests.scim_api.conftest import assert_scim_error

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


@pytest.fixture
def four(scim) -> list[str]:
    """carol, Alice, bob, Dave, created in this order (their userNames)."""
    bodies = [
        {
            "userName": "carol",
            "externalId": "x-2",
            "name": {"familyName": "Smith"},
            "nickName": "Zoë",
            "emails": [{"value": "carol@x.test"}],
        },
        {
            "userName": "Alice",
            "externalId": "x-3",
            "name": {"familyName": "Jones"},
            "nickName": "ali",
            "displayName": "Alice J",
            # sortBy emails.value uses the primary one (RFC 7644 §3.4.2.3), not the first
            "emails": [{"value": "zed@x.test"}, {"value": "alice@x.test", "primary": True}],
            ENTERPRISE: {"department": "b"},
        },
        {
            "userName": "bob",
            "name": {"familyName": "smith"},  # ties with carol's Smith
            "nickName": "Bobby",
            "displayName": "bob b",
            "emails": [{"value": "bob@x.test"}],
            ENTERPRISE: {"department": "a"},
        },
        {"userName": "Dave", "externalId": "x-1"},
    ]
    for body in bodies:
        response = scim("POST", "/Users", json={"schemas": [USER, ENTERPRISE], **body})
        assert response.status_code == 201, response.get_data(as_text=True)
    return [body["userName"] for body in bodies]


def listed(scim, path: str = "/Users", **query) -> dict:
    response = scim("GET", path, query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def names(body: dict, key: str = "userName") -> list[str]:
    return [r[key] for r in body.get("Resources", [])]


def provision_directly(session, account_id: int, user_names: list[str]) -> None:
    """Many SCIM users at once, as rows (deactivated: no seats), one second apart."""
    start = utcnow() - timedelta(days=1)
    session.execute(
        insert(Membership),
        [
            {
                "account_id": account_id,
                "scim_id": str(uuid.uuid4()),
                "source": "scim",
                "role": "member",
                "active": False,
                "licensed": False,
                "user_name": name,
                "user_name_key": name.lower(),
                "scim_resource": {"userName": name, "active": False},
                "version": 1,
                "created_at": start + timedelta(seconds=i),
                "updated_at": start + timedelta(seconds=i),
            }
            for i, name in enumerate(user_names)
        ],
    )
    session.commit()


SORTED = [
    # sortBy, ascending order (missing values last, ties by creation)
    ("userName", ["Alice", "bob", "carol", "Dave"]),  # case-insensitive
    (f"{USER}:userName", ["Alice", "bob", "carol", "Dave"]),
    ("name.familyName", ["Alice", "carol", "bob", "Dave"]),
    ("emails.value", ["Alice", "bob", "carol", "Dave"]),
    ("emails", ["Alice", "bob", "carol", "Dave"]),
    ("meta.created", ["carol", "Alice", "bob", "Dave"]),
    ("externalId", ["Dave", "carol", "Alice", "bob"]),
    (f"{ENTERPRISE}:department", ["bob", "Alice", "carol", "Dave"]),
    ("nickName", ["Alice", "bob", "carol", "Dave"]),  # kept in the document
    ("displayName", ["Alice", "bob", "carol", "Dave"]),
]


def test_sort_ascending_and_descending(scim, four):
    """Descending is exactly the reverse: missing values first, ties newest first."""
    wrong = {}
    for sort_by, ascending in SORTED:
        got = names(listed(scim, sortBy=sort_by))
        if got != ascending or names(listed(scim, sortBy=sort_by, sortOrder="ascending")) != got:
            wrong[sort_by, "ascending"] = got
        got = names(listed(scim, sortBy=sort_by, sortOrder="descending"))
        if got != ascending[::-1]:
            wrong[sort_by, "descending"] = got
    assert wrong == {}


def test_without_sort_by_users_come_in_creation_order(scim, four):
    """A stable default order, so that paging without sortBy still sees everyone once."""
    assert names(listed(scim)) == four
    assert names(listed(scim, sortOrder="descending")) == four  # no sortBy: nothing to order


def test_sort_groups_by_display_name_ignoring_case(scim, four):
    for name in ["beta", "Alpha", "gamma"]:
        created = scim("POST", "/Groups", json={"schemas": [GROUP], "displayName": name})
        assert created.status_code == 201, created.get_data(as_text=True)

    assert names(listed(scim, "/Groups", sortBy="displayName"), "displayName") == [
        "Alpha",
        "beta",
        "gamma",
    ]
    body = listed(
        scim, "/Groups", sortBy="displayName", sortOrder="descending", count="1", startIndex="2"
    )
    assert (names(body, "displayName"), body["totalResults"]) == (["beta"], 3)


UNSORTABLE = [
    "foo",
    "department",  # the enterprise attribute needs its URN
    "name",
    "password",
    "groups.value",
    "emails.type",  # sorting by the primary email's type is not supported
    "meta.resourceType",
    "meta.version",
    'emails[type eq "work"].value',
    "[[",
]


def test_unknown_or_unsupported_sort_by_gets_400(scim):
    for sort_by in UNSORTABLE:
        assert_scim_error(scim("GET", "/Users", query_string={"sortBy": sort_by}), 400)


def test_bad_sort_order_gets_400(scim):
    response = scim("GET", "/Users", query_string={"sortBy": "userName", "sortOrder": "up"})
    assert assert_scim_error(response, 400)["scimType"] == "invalidValue"


def test_start_index_and_count_select_a_window(scim, four):
    body = listed(scim, startIndex="2", count="2")
    assert (names(body), body["startIndex"], body["itemsPerPage"], body["totalResults"]) == (
        four[1:3],
        2,
        2,
        4,
    )


def test_start_index_below_one_is_one(scim, four):
    for start in ("0", "-5"):
        body = listed(scim, startIndex=start, count="2")
        assert (names(body), body["startIndex"]) == (four[:2], 1), start


def test_count_zero_gives_the_total_only(scim, four):
    body = listed(scim, count="0", filter="emails pr")
    assert (body["totalResults"], body["itemsPerPage"], body.get("Resources", [])) == (3, 0, [])


def test_negative_count_is_zero(scim, four):
    """RFC 7644 §3.4.2.4: a negative count is interpreted as 0."""
    body = listed(scim, count="-1")
    assert (body["totalResults"], body.get("Resources", [])) == (4, [])


def test_start_index_beyond_the_end_gives_an_empty_page(scim, four):
    body = listed(scim, startIndex="5", count="10")
    assert (body["totalResults"], body["itemsPerPage"], body.get("Resources", [])) == (4, 0, [])
    body = listed(scim, startIndex="99999999999999999999")
    assert (body["totalResults"], body.get("Resources", [])) == (4, [])


def test_count_above_the_maximum_is_capped_at_1000(scim, session, issued):
    provision_directly(session, issued.connector.account_id, [f"u{i:04d}" for i in range(1001)])

    body = listed(scim, count="5000", attributes="userName")
    assert (body["totalResults"], body["itemsPerPage"], len(body["Resources"])) == (
        1001,
        1000,
        1000,
    )
    body = listed(scim, attributes="userName")  # no count: the default page
    assert (body["itemsPerPage"], len(body["Resources"])) == (100, 100)


@pytest.mark.parametrize(
    "order", [{}, {"sortBy": "userName"}, {"sortBy": "meta.created", "sortOrder": "descending"}]
)
def test_paging_by_100_visits_each_of_250_users_once(scim, session, issued, order):
    """No duplicate, no gap, pages agreeing on the total, across the three pages."""
    # userNames in an order unlike creation: 97 is coprime with 250
    user_names = [f"user-{i * 97 % 250:03d}" for i in range(250)]
    provision_directly(session, issued.connector.account_id, user_names)

    seen, sizes = [], []
    for start in (1, 101, 201, 301):
        body = listed(scim, startIndex=str(start), count="100", **order)
        assert body["totalResults"] == 250
        seen += names(body)
        sizes.append(body["itemsPerPage"])
    assert sizes == [100, 100, 50, 0]
    assert sorted(seen) == sorted(user_names)  # each exactly once
    expected = {
        None: user_names,
        "userName": sorted(user_names),
        "meta.created": user_names[::-1],
    }[order.get("sortBy")]
    assert seen == expected


def test_paging_counts_only_filtered_users(scim, session, issued):
    provision_directly(session, issued.connector.account_id, [f"a{i}" for i in range(5)] + ["b"])

    body = listed(scim, filter='userName sw "a"', sortBy="userName", startIndex="4", count="10")
    assert (body["totalResults"], names(body)) == (5, ["a3", "a4"])


def test_attributes_on_lists(scim, four):
    """id and schemas always come back (returned: always); the rest as asked."""
    (alice,) = listed(scim, attributes="userName", filter='userName eq "alice"')["Resources"]
    assert (set(alice), alice["userName"]) == ({"schemas", "id", "userName"}, "Alice")
    alice = listed(scim, attributes="emails.value", filter='userName eq "alice"')["Resources"][0]
    assert alice["emails"] == [{"value": "zed@x.test"}, {"value": "alice@x.test"}]
    assert "userName" not in alice
    alice = listed(scim, attributes=f"{ENTERPRISE}:department", filter='userName eq "alice"')
    assert alice["Resources"][0][ENTERPRISE] == {"department": "b"}


def test_excluded_attributes_on_lists(scim, four):
    body = listed(scim, excludedAttributes="emails,name,meta")
    for resource in body["Resources"]:
        assert {"emails", "name", "meta"}.isdisjoint(resource)
        assert resource["userName"] and resource["id"]


def test_attributes_on_search_and_groups(scim, four):
    response = scim(
        "POST",
        "/Users/.search",
        json={"schemas": [SEARCH], "attributes": ["userName"], "sortBy": "userName", "count": 2},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert [set(r) for r in response.get_json()["Resources"]] == [{"schemas", "id", "userName"}] * 2
    alice = listed(scim, filter='userName eq "alice"')["Resources"][0]
    created = scim(
        "POST",
        "/Groups",
        json={"schemas": [GROUP], "displayName": "Team", "members": [{"value": alice["id"]}]},
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    group = listed(scim, "/Groups", excludedAttributes="members")["Resources"][0]
    assert "members" not in group
    assert group["displayName"] == "Team"


def test_non_integer_count_or_start_index_gets_400(scim):
    for query in [
        {"count": "abc"},
        {"count": "1.5"},
        {"count": "1e3"},
        {"count": ""},
        {"startIndex": "x"},
        {"startIndex": "2.0"},
    ]:
        assert_scim_error(scim("GET", "/Users", query_string=query), 400)
    for body in [{"count": 1.5}, {"count": True}, {"startIndex": "x"}, {"count": "ten"}]:
        response = scim("POST", "/Users/.search", json={"schemas": [SEARCH], **body})
        assert_scim_error(response, 400)
