"""The Members page as an owner sees it: who may open it, search, filters, sort, pages,
the htmx fragment, the seat meter and the Teams tab (SPEC F6)."""

from __future__ import annotations

import html
import re

import pytest

from tests import factories
from tests.members.conftest import (
    ACTIONS,
    MEMBERS,
    invited_member,
    listed,
    make_team,
    many_members,
    member,
    membership_of,
    scim_member,
)

# --- access ---------------------------------------------------------------------------------


@pytest.fixture
def target(session, account, owner):
    """A member the others try to act on, in a team."""
    user = member(session, account, "target@example.com")
    team = make_team(session, account, "Engineering", [membership_of(session, user, account)])
    return membership_of(session, user, account), team


def _pages(membership_id: int, team_id: int) -> list[str]:
    return [
        MEMBERS,
        f"{MEMBERS}/teams",
        f"{MEMBERS}/teams/{team_id}",
        f"{MEMBERS}/export.csv",
        f"{MEMBERS}/{membership_id}/row",
    ]


def test_plain_member_is_forbidden_everywhere(client, session, account, target, login_as):
    membership, team = target
    plain = factories.make_user(session, account=account, email="plain@example.com")
    login_as(plain)
    for url in _pages(membership.id, team.id):
        assert client.get(url).status_code == 403, url
    for action in ACTIONS:
        url = f"{MEMBERS}/{membership.id}/{action}"
        assert client.get(url).status_code == 403, url
        response = client.post(url, data={"passphrase": factories.PASSPHRASE})
        assert response.status_code == 403, url
    session.expire_all()
    assert membership_of(session, membership.user, account).active
    assert account.seats_used == 3


def test_co_owner_may_open_the_page(client, session, account, owner, login_as):
    co = factories.make_user(session, account=account, email="co@example.com", role="co-owner")
    login_as(co)
    page = client.get(MEMBERS)
    assert page.status_code == 200
    assert listed(page.get_data(as_text=True)) == ["co@example.com", "owner@example.com"]


def test_signed_out_visitor_is_sent_to_sign_in(client, account, target):
    membership, team = target
    for url in [*_pages(membership.id, team.id), f"{MEMBERS}/{membership.id}/deactivate"]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.headers["Location"].startswith("/login"), url
    response = client.post(
        f"{MEMBERS}/{membership.id}/deactivate", data={"passphrase": factories.PASSPHRASE}
    )
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_another_accounts_owner_gets_404_for_our_ids(
    client, session, account, target, other_account, login_as
):
    membership, team = target
    _, other_owner = other_account
    login_as(other_owner)
    for url in (
        f"{MEMBERS}/teams/{team.id}",
        f"{MEMBERS}/{membership.id}/row",
        *(f"{MEMBERS}/{membership.id}/{action}" for action in ACTIONS),
    ):
        assert client.get(url).status_code == 404, url
    for action in ACTIONS:
        url = f"{MEMBERS}/{membership.id}/{action}"
        assert client.post(url, data={"passphrase": factories.PASSPHRASE}).status_code == 404
    session.expire_all()
    assert membership_of(session, membership.user, account).active
    assert account.seats_used == 2


def test_another_accounts_owner_never_sees_our_members(
    client, session, account, target, other_account, login_as
):
    _, team = target
    _, other_owner = other_account
    login_as(other_owner)
    page = client.get(MEMBERS).get_data(as_text=True)
    assert listed(page) == ["owner@example.org", "stranger@example.org"]
    assert "Engineering" not in page  # our team is not a choice in their team filter
    # Our team's id in their filter finds nobody rather than our members.
    filtered = client.get(MEMBERS, query_string={"team": team.id}).get_data(as_text=True)
    assert listed(filtered) == []
    searched = client.get(MEMBERS, query_string={"q": "example.com"}).get_data(as_text=True)
    assert listed(searched) == []
    teams = client.get(f"{MEMBERS}/teams").get_data(as_text=True)
    assert "Engineering" not in teams


# --- search and filters -----------------------------------------------------------------------


@pytest.fixture
def people(session, account, owner):
    """A small, varied account: manual and SCIM, active, deactivated and invited, two teams."""
    ada = member(session, account, "ada@example.com", display_name="Ada Lovelace")
    grace = member(session, account, "grace@example.com", display_name="Grace Hopper")
    member(session, account, "linus@example.com", display_name="Linus", active=False)
    alan = scim_member(session, account, "alan@example.com", display_name="Alan Turing")
    invited_member(session, account, "katherine@partner.test")
    scim_member(session, account, "edsger@example.com", display_name="Edsger Dijkstra")
    m_ada = membership_of(session, ada, account)
    m_grace = membership_of(session, grace, account)
    research = make_team(session, account, "Research", [m_ada, alan])
    ops = make_team(session, account, "Ops", [m_grace], source="manual")
    return {"research": research, "ops": ops}


def _list(client, **args) -> list[str]:
    response = client.get(MEMBERS, query_string=args)
    assert response.status_code == 200
    return listed(response.get_data(as_text=True))


def test_search_by_email_substring(as_owner, people):
    assert _list(as_owner, q="ada@") == ["ada@example.com"]
    assert _list(as_owner, q="partner") == ["katherine@partner.test"]


def test_search_ignores_case_in_email_and_name(as_owner, people):
    assert _list(as_owner, q="ADA") == ["ada@example.com"]
    assert _list(as_owner, q="hopper") == ["grace@example.com"]
    assert _list(as_owner, q="TURING") == ["alan@example.com"]  # a SCIM displayName


def test_search_treats_like_wildcards_as_text(as_owner, session, account, people):
    member(session, account, "a_b@example.com", display_name="Half 50% Off")
    member(session, account, "axb@example.com", display_name="Half 500 Off")
    assert _list(as_owner, q="a_b") == ["a_b@example.com"]
    assert _list(as_owner, q="50%") == ["a_b@example.com"]
    assert _list(as_owner, q="%") == ["a_b@example.com"]
    assert _list(as_owner, q="_") == ["a_b@example.com"]


def test_search_without_match_says_so(as_owner, people):
    page = as_owner.get(MEMBERS, query_string={"q": "nobody-here"}).get_data(as_text=True)
    assert listed(page) == []
    assert "No members match" in page


def test_filter_by_source(as_owner, people):
    assert _list(as_owner, source="scim") == [
        "alan@example.com",
        "edsger@example.com",
        "katherine@partner.test",
    ]
    assert _list(as_owner, source="manual") == [
        "ada@example.com",
        "grace@example.com",
        "linus@example.com",
        "owner@example.com",
    ]


def test_filter_by_status(as_owner, people):
    assert _list(as_owner, status="deactivated") == ["linus@example.com"]
    assert _list(as_owner, status="invited") == ["katherine@partner.test"]
    active = _list(as_owner, status="active")
    assert "linus@example.com" not in active and "katherine@partner.test" not in active
    assert active == [
        "ada@example.com",
        "alan@example.com",
        "edsger@example.com",
        "grace@example.com",
        "owner@example.com",
    ]


def test_filter_by_team(as_owner, people):
    assert _list(as_owner, team=people["research"].id) == ["ada@example.com", "alan@example.com"]
    assert _list(as_owner, team=people["ops"].id) == ["grace@example.com"]


def test_filters_combine(as_owner, people):
    assert _list(as_owner, source="scim", team=people["research"].id) == ["alan@example.com"]
    assert _list(as_owner, source="manual", status="active", q="a") == [
        "ada@example.com",
        "grace@example.com",
        "owner@example.com",
    ]
    assert _list(as_owner, source="scim", status="deactivated") == []


def test_garbage_filter_values_show_everyone(as_owner, people):
    everyone = _list(as_owner)
    assert len(everyone) == 7
    assert _list(as_owner, source="ldap", status="zombie", team="x", sort="evil") == everyone


def test_sort_by_email_both_ways(as_owner, people):
    ascending = _list(as_owner, sort="email", order="asc")
    assert ascending == sorted(ascending)
    assert ascending[0] == "ada@example.com"
    assert _list(as_owner, sort="email", order="desc") == list(reversed(ascending))


def test_sort_by_name(as_owner, people):
    # Ada Lovelace, Alan Turing, Edsger Dijkstra, Grace Hopper, Linus; then nameless ones.
    by_name = _list(as_owner, sort="name")
    assert by_name[:5] == [
        "ada@example.com",
        "alan@example.com",
        "edsger@example.com",
        "grace@example.com",
        "linus@example.com",
    ]
    by_name_desc = _list(as_owner, sort="name", order="desc")
    assert by_name_desc[:5] == [
        "linus@example.com",
        "grace@example.com",
        "edsger@example.com",
        "alan@example.com",
        "ada@example.com",
    ]


def test_sorted_column_header_shows_the_direction(as_owner, people):
    page = as_owner.get(MEMBERS, query_string={"sort": "name", "order": "desc"})
    text = page.get_data(as_text=True)
    assert 'aria-sort="descending"' in text
    assert "Name ▼" in text


# --- pages ----------------------------------------------------------------------------------


@pytest.fixture
def crowd(session, account, owner):
    """120 members in all: the owner and m000 … m118."""
    account.seat_limit = 500
    session.commit()
    many_members(session, account, 119)


def _count_text(page: str) -> str:
    match = re.search(r'<p class="result-count">\s*(.*?)\s*</p>', page, re.S)
    assert match, "no result count"
    # The page writes an en dash ("1\u201350 of …"); compare with a plain hyphen.
    return " ".join(html.unescape(match.group(1)).replace("\u2013", "-").split())


def test_first_page_shows_fifty(as_owner, crowd):
    page = as_owner.get(MEMBERS).get_data(as_text=True)
    rows = listed(page)
    assert len(rows) == 50
    assert rows[0] == "m000@example.com"
    assert _count_text(page) == "1-50 of 120 members"
    assert "Page 1 of 3" in page
    assert 'rel="next"' in page and 'rel="prev"' not in page


def test_last_page_shows_the_rest(as_owner, crowd):
    page = as_owner.get(MEMBERS, query_string={"page": 3}).get_data(as_text=True)
    rows = listed(page)
    assert len(rows) == 20
    assert rows[-1] == "owner@example.com"
    assert _count_text(page) == "101-120 of 120 members"
    assert "Page 3 of 3" in page
    assert 'rel="prev"' in page and 'rel="next"' not in page


def test_pages_do_not_overlap(as_owner, crowd):
    seen = []
    for number in (1, 2, 3):
        seen += _list(as_owner, page=number)
    assert len(seen) == 120 == len(set(seen))


def test_page_past_the_end_shows_the_last_page(as_owner, crowd):
    page = as_owner.get(MEMBERS, query_string={"page": 999}).get_data(as_text=True)
    assert len(listed(page)) == 20
    assert _count_text(page) == "101-120 of 120 members"
    assert "Page 3 of 3" in page


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1e3", ""])
def test_page_garbage_falls_back_to_the_first(as_owner, crowd, value):
    response = as_owner.get(MEMBERS, query_string={"page": value})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert listed(page)[0] == "m000@example.com"
    assert _count_text(page) == "1-50 of 120 members"


def test_next_link_keeps_the_filters(as_owner, crowd):
    page = as_owner.get(MEMBERS, query_string={"q": "m0", "sort": "email", "order": "desc"})
    text = html.unescape(page.get_data(as_text=True))
    next_link = re.search(r'<a href="([^"]+)"[^>]*rel="next"', text).group(1)
    assert "q=m0" in next_link and "order=desc" in next_link and "page=2" in next_link
    second = listed(as_owner.get(next_link).get_data(as_text=True))
    assert second[0] == "m049@example.com"  # m099 … m050 were on page 1


# --- page or fragment -----------------------------------------------------------------------


def test_htmx_gets_only_the_results(as_owner, people, htmx):
    response = as_owner.get(MEMBERS, query_string={"q": "ada"}, headers=htmx)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "<html" not in text.lower()
    assert text.lstrip().startswith('<div id="members-results"')
    assert 'id="member-filters"' not in text
    assert listed(text) == ["ada@example.com"]
    assert "HX-Request" in response.headers.get("Vary", "")


def test_full_page_keeps_the_filters_in_the_form(as_owner, people):
    response = as_owner.get(
        MEMBERS,
        query_string={"q": "ada", "source": "manual", "status": "active", "sort": "name"},
    )
    text = response.get_data(as_text=True)
    assert "<html" in text.lower()
    assert 'id="member-filters"' in text
    assert 'id="members-results"' in text
    assert 'id="seat-meter"' in text
    assert re.search(r'id="member-search" name="q" value="ada"', text)
    assert re.search(r'<option value="manual"\s+selected>', text)
    assert re.search(r'<option value="active"\s+selected>', text)
    assert '<input type="hidden" name="sort" value="name">' in text
    assert "HX-Request" in response.headers.get("Vary", "")


def test_team_filter_offers_the_accounts_teams(as_owner, people):
    text = as_owner.get(MEMBERS, query_string={"team": people["ops"].id}).get_data(as_text=True)
    assert re.search(rf'<option value="{people["ops"].id}"\s+selected>Ops</option>', text)
    assert re.search(rf'<option value="{people["research"].id}"\s*>Research</option>', text)


def test_boosted_htmx_request_gets_the_whole_page(as_owner, people, htmx):
    text = as_owner.get(MEMBERS, headers=htmx | {"HX-Boosted": "true"}).get_data(as_text=True)
    assert "<html" in text.lower() and 'id="member-filters"' in text


# --- seat meter -----------------------------------------------------------------------------


def _meter(page: str) -> str:
    match = re.search(r'<section[^>]*id="seat-meter".*?</section>', page, re.S)
    assert match, "no seat meter"
    return " ".join(re.sub(r"<[^>]+>", " ", html.unescape(match.group(0))).split())


def _with_limit(session, account, limit: int, members: int) -> None:
    account.seat_limit = limit
    session.commit()
    many_members(session, account, members)


def test_seat_meter_shows_used_of_limit(as_owner, session, account):
    _with_limit(session, account, 10, 2)  # and the owner
    meter = _meter(as_owner.get(MEMBERS).get_data(as_text=True))
    assert "3 of 10 licences in use" in meter
    assert "left" not in meter and "Every licence" not in meter


def test_seat_meter_ignores_deactivated_members(as_owner, session, account):
    member(session, account, "gone@example.com", active=False)
    meter = _meter(as_owner.get(MEMBERS).get_data(as_text=True))
    assert "1 of 50 licences in use" in meter


def test_seat_meter_warns_from_ninety_percent(as_owner, session, account):
    _with_limit(session, account, 10, 8)
    meter = _meter(as_owner.get(MEMBERS).get_data(as_text=True))
    assert "9 of 10 licences in use" in meter
    assert "90 % of your licences are in use: 1 left." in meter
    assert "Every licence" not in meter


def test_seat_meter_below_ninety_percent_has_no_banner(as_owner, session, account):
    _with_limit(session, account, 10, 7)
    page = as_owner.get(MEMBERS).get_data(as_text=True)
    assert "8 of 10 licences in use" in _meter(page)
    assert 'role="alert"' not in re.search(r'id="seat-meter".*?</section>', page, re.S).group(0)


def test_seat_meter_full(as_owner, session, account):
    _with_limit(session, account, 10, 9)
    meter = _meter(as_owner.get(MEMBERS).get_data(as_text=True))
    assert "10 of 10 licences in use" in meter
    assert "Every licence is in use" in meter


# --- teams ----------------------------------------------------------------------------------


def _teams_table(page: str) -> list[tuple[str, str, str]]:
    """(name, members, source) per row of the Teams table."""
    body = re.search(r'<table class="table teams">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    rows = []
    for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        cells = [
            " ".join(re.sub(r"<[^>]+>", " ", c).split())
            for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)
        ]
        rows.append(tuple(cells))
    return rows


def test_teams_tab_lists_teams_with_counts_and_source(as_owner, session, account, people):
    make_team(session, account, "Empty", [], source="manual")
    page = as_owner.get(f"{MEMBERS}/teams")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert _teams_table(text) == [
        ("Empty", "0", "Manual"),
        ("Ops", "1", "Manual"),
        ("Research", "2", "SCIM"),
    ]
    assert f'href="{MEMBERS}/teams/{people["research"].id}"' in text


def test_teams_tab_without_teams(as_owner):
    text = as_owner.get(f"{MEMBERS}/teams").get_data(as_text=True)
    assert "No teams yet" in text


def test_team_page_lists_only_its_members(as_owner, people):
    response = as_owner.get(f"{MEMBERS}/teams/{people['research'].id}")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "<h1>Research</h1>" in text
    assert listed(text) == ["ada@example.com", "alan@example.com"]
    assert _count_text(text) == "1-2 of 2 members"


def test_team_page_keeps_its_team_under_other_filters(as_owner, people, htmx):
    url = f"{MEMBERS}/teams/{people['research'].id}"
    # A different team in the query does not escape the page's team.
    assert _list_at(as_owner, url, team=people["ops"].id) == [
        "ada@example.com",
        "alan@example.com",
    ]
    assert _list_at(as_owner, url, source="scim") == ["alan@example.com"]
    fragment = as_owner.get(url, query_string={"q": "ada"}, headers=htmx).get_data(as_text=True)
    assert "<html" not in fragment.lower()
    assert listed(fragment) == ["ada@example.com"]


def _list_at(client, url: str, **args) -> list[str]:
    response = client.get(url, query_string=args)
    assert response.status_code == 200
    return listed(response.get_data(as_text=True))


def test_unknown_team_is_404(as_owner, people):
    missing = people["research"].id + people["ops"].id + 1000
    assert as_owner.get(f"{MEMBERS}/teams/{missing}").status_code == 404


def test_htmx_search_pushes_a_canonical_url(as_owner, people):
    # The filter form sends every field; the URL the browser shows keeps what matters.
    response = as_owner.get(
        MEMBERS,
        query_string={"q": "ada", "source": "", "status": "", "team": "", "sort": "email"},
        headers={"HX-Request": "true"},
    )
    assert response.headers["HX-Push-Url"] == "/enterprise/members?q=ada"
