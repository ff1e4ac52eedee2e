"""blueprints.scim_api.query without HTTP or an app: the query of a list or search
(RFC 7644 §3.4.2) as a SearchRequest, its page window (§3.4.2.4), and which attributes a
response includes (§3.9)."""

from __future__ import annotations

import pytest
from scim2_models import SCIMException

from blueprints.scim_api import query
from blueprints.scim_api.query import MAX_ATTRIBUTE_PATHS, MAX_START_INDEX, Page
from blueprints.scim_api.schemas import (
    CORE_GROUP,
    CORE_USER,
    DEFAULT_COUNT,
    MAX_RESULTS,
    Group,
    UserResource,
)
from tests.scim_api.conftest import refusal

# --- search_request -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "start", "count"),
    [
        ({}, None, None),
        ({"startIndex": "1", "count": "10"}, 1, 10),  # GET: query strings
        ({"startIndex": " 21 ", "count": "10 "}, 21, 10),
        ({"startIndex": 21, "count": 10}, 21, 10),  # POST .search: JSON numbers
        ({"count": "0"}, None, 0),
        ({"count": "-5"}, None, 0),  # RFC 7644 §3.4.2.4: negative is 0
        ({"startIndex": "0"}, 1, None),  # less than 1 is 1
        ({"startIndex": -3}, 1, None),
    ],
)
def test_search_request_paging_values(values, start, count):
    req = query.search_request(UserResource, values)

    assert (req.start_index, req.count) == (start, count)


@pytest.mark.parametrize(
    "values",
    [
        {"startIndex": "abc"},
        {"startIndex": ""},
        {"startIndex": "1.5"},
        {"count": "ten"},
        {"count": "0x10"},
        {"count": 2.0},
        {"count": True},  # JSON true is no integer
        {"startIndex": False},
        {"count": [10]},
        {"startIndex": {"n": 1}},
    ],
)
def test_search_request_paging_not_an_integer(values):
    with pytest.raises(SCIMException) as raised:
        query.search_request(UserResource, values)

    assert raised.value.scim_type == "invalidValue"
    assert next(iter(values)) in raised.value.detail  # which parameter


@pytest.mark.parametrize("key", ["attributes", "excludedAttributes"])
@pytest.mark.parametrize(
    "make",
    [lambda n: ",".join(["userName"] * n), lambda n: ["userName"] * n],
    ids=["GET-comma-separated", "POST-list"],
)
@pytest.mark.parametrize(
    ("paths", "too_many"),
    [(MAX_ATTRIBUTE_PATHS, False), (MAX_ATTRIBUTE_PATHS + 1, True)],
)
def test_search_request_attribute_paths_bounded(key, make, paths, too_many):
    values = {key: make(paths)}

    if too_many:
        assert refusal(lambda: query.search_request(UserResource, values)) == (
            400,
            "invalidValue",
        )
    else:
        req = query.search_request(UserResource, values)
        shown = req.attributes if key == "attributes" else req.excluded_attributes
        assert len(shown) == paths  # every path kept, none dropped


@pytest.mark.parametrize(
    ("sort_order", "descending"),
    [
        (None, False),
        ("ascending", False),
        ("ASCENDING", False),
        ("descending", True),
        ("Descending", True),
        (" descending ", True),
    ],
)
def test_search_request_sort_order_any_case(sort_order, descending):
    values = {"sortBy": "userName"} | ({} if sort_order is None else {"sortOrder": sort_order})

    assert query.descending(query.search_request(UserResource, values)) is descending


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"sortOrder": "sideways"}, (400, "invalidValue")),
        ({"filter": 'userName eq "unterminated'}, (400, "invalidFilter")),
        ({"filter": "userName eq"}, (400, "invalidFilter")),
        ({"filter": 'nosuch eq "x"'}, (400, "invalidFilter")),
        ({"filter": 'members.value eq "u-1"'}, (400, "invalidFilter")),  # a Group attribute
        ({"sortBy": "nosuch"}, (400, "invalidPath")),
    ],
)
def test_search_request_refused(values, error):
    assert refusal(lambda: query.search_request(UserResource, values)) == error


def test_search_request_ignores_other_parameters():
    """A list URL may carry parameters of its own (a cache buster, an IdP's marker)."""
    req = query.search_request(UserResource, {"count": "3", "_": "1700000000", "foo": ["bar"]})

    assert req.count == 3


def test_search_request_for_a_group():
    req = query.search_request(Group, {"filter": 'members[value eq "u-1"]', "count": "1"})

    assert str(req.filter) == 'members[value eq "u-1"]' and req.count == 1


@pytest.mark.parametrize(
    ("values", "shaped"),
    [
        ({}, False),
        ({"attributes": ""}, False),
        ({"excludedAttributes": ""}, False),
        ({"count": "3", "filter": 'userName eq "x"'}, False),  # not for a single resource
        ({"attributes": "userName"}, True),
        ({"excludedAttributes": "emails"}, True),
    ],
)
def test_response_parameters(values, shaped):
    assert (query.response_parameters(UserResource, values) is not None) is shaped


# --- page -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "window"),
    [
        ({}, Page(1, DEFAULT_COUNT)),
        ({"startIndex": "0"}, Page(1, DEFAULT_COUNT)),
        ({"startIndex": "-10", "count": "5"}, Page(1, 5)),
        ({"startIndex": "11", "count": "10"}, Page(11, 10)),
        ({"count": "0"}, Page(1, 0)),  # totals only
        ({"count": "-1"}, Page(1, 0)),
        ({"count": str(MAX_RESULTS)}, Page(1, MAX_RESULTS)),
        ({"count": str(MAX_RESULTS + 1)}, Page(1, MAX_RESULTS)),  # capped, not refused
        ({"count": "1000000"}, Page(1, MAX_RESULTS)),
        ({"startIndex": str(MAX_START_INDEX), "count": "10"}, Page(MAX_START_INDEX, 10)),
        ({"startIndex": str(MAX_START_INDEX + 1), "count": "10"}, Page(MAX_START_INDEX + 1, 0)),
        ({"startIndex": str(2**70)}, Page(2**70, 0)),  # past any list: an empty page
    ],
)
def test_page(values, window):
    """RFC 7644 §3.4.2.4: 1-based startIndex (less than 1 is 1), count as asked, at most
    filter.maxResults (ServiceProviderConfig); count 0 returns totals only."""
    assert query.page(query.search_request(UserResource, values)) == window


# --- wants ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "wanted"),
    [
        ({}, True),
        ({"attributes": "members"}, True),
        ({"attributes": "MEMBERS"}, True),  # attribute names compare without case
        ({"attributes": "displayName,members"}, True),
        ({"attributes": "members.value"}, True),
        ({"attributes": f"{CORE_GROUP}:members"}, True),
        ({"attributes": "displayName"}, False),
        ({"attributes": "externalId,meta"}, False),
        ({"excludedAttributes": "members"}, False),
        ({"excludedAttributes": f"{CORE_GROUP}:members"}, False),
        ({"excludedAttributes": "displayName"}, True),
        ({"excludedAttributes": "externalId,displayName"}, True),
    ],
)
def test_wants_members(values, wanted):
    """Whether GET /Groups reads the members at all: only when the response shows them."""
    params = query.response_parameters(Group, values) if values else None

    assert query.wants(params, "members") is wanted


@pytest.mark.parametrize(
    ("values", "wanted"),
    [
        ({"attributes": "groups"}, True),
        ({"attributes": "groups.display"}, True),
        ({"attributes": f"{CORE_USER}:groups"}, True),
        ({"attributes": "userName,emails"}, False),
        ({"excludedAttributes": "groups"}, False),
        ({"excludedAttributes": "emails"}, True),
    ],
)
def test_wants_groups(values, wanted):
    assert query.wants(query.response_parameters(UserResource, values), "groups") is wanted


def test_wants_of_a_list_query():
    req = query.search_request(Group, {"filter": 'displayName sw "T"', "count": "5"})

    assert query.wants(req, "members") is True


@pytest.mark.parametrize(
    ("model", "excluded", "attribute"),
    [
        (Group, "members.display", "members"),
        (Group, "members.$ref", "members"),
        (Group, f"{CORE_GROUP}:members.display", "members"),
        (UserResource, "groups.display", "groups"),
    ],
)
def test_wants_attribute_when_only_a_sub_attribute_is_excluded(model, excluded, attribute):
    """RFC 7644 §3.9: excludedAttributes removes the named attributes from the default
    set; excluding `members.display` leaves `members` (their value, $ref, type), which
    serialize.render shows, so they must be read."""
    params = query.response_parameters(model, {"excludedAttributes": excluded})

    assert query.wants(params, attribute) is True
