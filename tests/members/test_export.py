"""The Members CSV export: the list under the same filters, as a spreadsheet opens it,
streamed (SPEC F6)."""

from __future__ import annotations

import csv
import html
import io
import re

import pytest

from tests import factories
from tests.members.conftest import (
    MEMBERS,
    invited_member,
    make_team,
    many_members,
    member,
    membership_of,
    scim_member,
)

EXPORT = f"{MEMBERS}/export.csv"
HEADER = ["email", "name", "role", "source", "status", "licence", "teams", "last_sign_in"]


def export(client, **args) -> list[dict]:
    response = client.get(EXPORT, query_string=args)
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == HEADER
    return [dict(zip(HEADER, row, strict=True)) for row in rows[1:]]


@pytest.fixture
def people(session, account, owner):
    ada = member(session, account, "ada@example.com", display_name="Ada Lovelace")
    member(session, account, "linus@example.com", active=False)
    alan = scim_member(session, account, "alan@example.com", display_name="Alan Turing")
    invited_member(session, account, "katherine@partner.test")
    m_ada = membership_of(session, ada, account)
    make_team(session, account, "Research", [m_ada, alan])
    make_team(session, account, "Analytical Engines", [m_ada], source="manual")


def test_export_is_a_streamed_csv_attachment(as_owner, people):
    response = as_owner.get(EXPORT)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert re.search(r'filename="members-\d{8}\.csv"', disposition)
    assert response.is_streamed is True
    assert "no-store" in response.headers.get("Cache-Control", "")


def test_export_has_a_header_and_one_row_per_member(as_owner, people):
    rows = export(as_owner)
    assert [r["email"] for r in rows] == [
        "ada@example.com",
        "alan@example.com",
        "katherine@partner.test",
        "linus@example.com",
        "owner@example.com",
    ]
    by_email = {r["email"]: r for r in rows}
    assert by_email["ada@example.com"] == {
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "role": "member",
        "source": "manual",
        "status": "active",
        "licence": "yes",
        "teams": "Analytical Engines; Research",
        "last_sign_in": "",
    }
    assert by_email["alan@example.com"]["source"] == "scim"
    assert by_email["alan@example.com"]["teams"] == "Research"
    assert by_email["linus@example.com"]["status"] == "deactivated"
    assert by_email["linus@example.com"]["licence"] == "no"
    assert by_email["katherine@partner.test"]["status"] == "invited"
    owner_row = by_email["owner@example.com"]
    assert owner_row["role"] == "owner" and owner_row["teams"] == ""
    # The owner signed in to download this.
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", owner_row["last_sign_in"])


def test_export_follows_the_lists_filters(as_owner, people):
    assert [r["email"] for r in export(as_owner, source="manual")] == [
        "ada@example.com",
        "linus@example.com",
        "owner@example.com",
    ]
    assert [r["email"] for r in export(as_owner, source="scim", status="invited")] == [
        "katherine@partner.test"
    ]
    assert [r["email"] for r in export(as_owner, q="TURING")] == ["alan@example.com"]
    assert [r["email"] for r in export(as_owner, status="deactivated")] == ["linus@example.com"]
    assert export(as_owner, q="nobody") == []


def test_export_filters_by_team_and_keeps_the_sort(as_owner, session, account, people):
    research = next(
        team_id
        for team_id, name in re.findall(
            r'<option value="(\d+)"\s*>([^<]+)</option>',
            as_owner.get(MEMBERS).get_data(as_text=True),
        )
        if name == "Research"
    )
    assert [r["email"] for r in export(as_owner, team=research)] == [
        "ada@example.com",
        "alan@example.com",
    ]
    assert [r["email"] for r in export(as_owner, team=research, order="desc")] == [
        "alan@example.com",
        "ada@example.com",
    ]


def test_export_ignores_the_page(as_owner, session, account, owner):
    account.seat_limit = 500
    session.commit()
    many_members(session, account, 59)
    rows = export(as_owner, page=2)
    assert len(rows) == 60


def test_export_link_carries_the_filters(as_owner, people):
    page = as_owner.get(MEMBERS, query_string={"q": "ada", "source": "manual", "page": "2"})
    link = re.search(r'id="export-csv" href="([^"]+)"', page.get_data(as_text=True)).group(1)
    link = html.unescape(link)
    assert link.startswith(EXPORT + "?")
    assert "q=ada" in link and "source=manual" in link and "page=" not in link
    assert [r["email"] for r in export_url(as_owner, link)] == ["ada@example.com"]


def export_url(client, url: str) -> list[dict]:
    rows = list(csv.reader(io.StringIO(client.get(url).get_data(as_text=True))))
    return [dict(zip(HEADER, row, strict=True)) for row in rows[1:]]


@pytest.mark.parametrize("name", ['=HYPERLINK("http://evil.test","x")', "+1+1", "-2+3", "@SUM(A1)"])
def test_formula_like_cells_get_a_leading_apostrophe(as_owner, session, account, name):
    member(session, account, "mallory@example.com", display_name=name)
    [row] = export(as_owner, q="mallory")
    assert row["name"] == "'" + name


def test_formula_like_team_names_and_emails_are_defused(as_owner, session, account):
    mallory = member(session, account, "=cmd@example.com", display_name="Mallory")
    make_team(session, account, "=1+2", [membership_of(session, mallory, account)])
    [row] = export(as_owner, q="mallory")
    assert row["email"] == "'=cmd@example.com"
    assert row["teams"] == "'=1+2"


def test_commas_quotes_and_newlines_survive(as_owner, session, account):
    member(session, account, "quote@example.com", display_name='Lovelace, Ada "Countess"\nof L')
    [row] = export(as_owner, q="quote@")
    assert row["name"] == 'Lovelace, Ada "Countess"\nof L'


def test_large_export_has_every_member_once(as_owner, session, account, owner):
    """More rows than one write batch (500) and one fetch batch (1,000)."""
    account.seat_limit = 2000
    session.commit()
    many_members(session, account, 1049)
    rows = export(as_owner)
    emails = [r["email"] for r in rows]
    assert len(emails) == 1050 == len(set(emails))
    assert emails == sorted(emails)
    assert emails[-1] == "owner@example.com"


def test_another_accounts_export_has_none_of_our_members(
    client, session, account, people, login_as
):
    other = factories.make_account(session, name="Other Inc")
    other_owner = factories.make_user(session, other, "owner@example.org", role="owner")
    member(session, other, "stranger@example.org")
    login_as(other_owner)
    assert [r["email"] for r in export(client)] == ["owner@example.org", "stranger@example.org"]
    assert [r["email"] for r in export(client, q="example.com")] == []


def test_plain_member_cannot_export(client, session, account, owner, login_as):
    plain = factories.make_user(session, account=account, email="plain@example.com")
    login_as(plain)
    response = client.get(EXPORT)
    assert response.status_code == 403
    assert "owner@example.com" not in response.get_data(as_text=True)
