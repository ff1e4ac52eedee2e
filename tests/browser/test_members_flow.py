"""The Members page in a real browser: search and team filter update the list in place and
the URL (which reloads as the same list), a manual member is deactivated after the
passphrase in their row, and a SCIM-managed member's actions are disabled."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from blueprints.scim_settings import connector as service
from models import Account, Membership, Team, TeamMember, utcnow
from tests import factories
from tests.scim_settings.conftest import ready  # noqa: F401  (verified domain + SSO on)

pytestmark = pytest.mark.browser

SCREENSHOT = Path(tempfile.gettempdir()) / "members.png"  # /tmp/members.png, to look at


@dataclass
class Crew:
    alice: Membership  # manual, in Design
    bob: Membership  # manual, no team
    carol: Membership  # manual, in Design
    dana: Membership  # from SCIM
    design: Team


def _membership(session, user) -> Membership:
    return session.scalar(select(Membership).where(Membership.user_id == user.id))


@pytest.fixture
def crew(session, ready, owner) -> Crew:  # noqa: F811
    """Three manual members (two in the team Design), one SCIM member, SCIM on."""
    account = ready
    alice, bob, carol = (
        _membership(
            session,
            factories.make_user(
                session, account=account, email=f"{name.lower()}@example.com", display_name=full
            ),
        )
        for name, full in [
            ("Alice", "Alice Anders"),
            ("Bob", "Bob Brown"),
            ("Carol", "Carol Chen"),
        ]
    )
    dana = Membership(
        account_id=account.id,
        source="scim",
        scim_id=str(uuid4()),
        user_name="dana@example.com",
        user_name_key="dana@example.com",
        email="dana@example.com",
        display_name="Dana Scim",
        role="member",
        active=True,
        licensed=True,
    )
    session.add(dana)
    account.seats_used += 1
    design = Team(
        scim_id=str(uuid4()),
        account_id=account.id,
        display_name="Design",
        display_name_key="design",
        source="manual",
    )
    session.add(design)
    session.flush()
    session.add_all(
        [
            TeamMember(team_id=design.id, membership_id=alice.id),
            TeamMember(team_id=design.id, membership_id=carol.id),
        ]
    )
    session.commit()
    service.enable(session, account.id, owner, "okta", "90", utcnow())
    session.commit()  # the test is the caller: the live server sees SCIM on
    return Crew(alice=alice, bob=bob, carol=carol, dana=dana, design=design)


def sign_in(page: Page, user) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Passphrase").fill(factories.PASSPHRASE)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation").get_by_role("link", name="Members")).to_be_visible()


def open_members(page: Page) -> None:
    page.get_by_role("navigation").get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", name="Members", exact=True)).to_be_visible()
    # The CDN is blocked: htmx must have come from the local fallback copy.
    assert page.evaluate("typeof window.htmx") == "object"


def mark_page(page: Page) -> None:
    """Leave a marker a full page load would wipe out."""
    page.evaluate("window.__marker = 1")


def assert_same_page(page: Page) -> None:
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"


def listed(page: Page):
    """The emails cell of every listed member."""
    return page.locator("#members-results tbody tr.member .member-email")


def query(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def test_search_and_team_filter_update_list_in_place_and_url(page, owner, crew):
    sign_in(page, owner)
    open_members(page)
    expect(listed(page)).to_have_count(5)  # owner, alice, bob, carol, dana
    mark_page(page)

    # Search: typed, the list narrows without a page load and the URL follows.
    page.get_by_label("Search").press_sequentially("alice")
    # (waits out the keyup delay: "ali" alone would list the same member)
    expect(page).to_have_url(re.compile(r"/enterprise/members\?(.*&)?q=alice(&|$)"))
    expect(listed(page)).to_have_text(["alice@example.com"])
    expect(page.locator(".result-count")).to_have_text("1\N{EN DASH}1 of 1 member")
    assert_same_page(page)
    assert page.url.split("?")[0].endswith("/enterprise/members")
    assert query(page).get("q") == ["alice"]

    # Reloading that URL: the same filtered list, the search box still filled.
    page.reload()
    expect(page.get_by_role("heading", name="Members", exact=True)).to_be_visible()
    expect(page.get_by_label("Search")).to_have_value("alice")
    expect(listed(page)).to_have_text(["alice@example.com"])

    # Team filter (search cleared): only Design's members, team= in the URL.
    mark_page(page)
    page.get_by_label("Search").fill("")
    page.get_by_label("Team", exact=True).select_option(label="Design")
    expect(page).to_have_url(re.compile(rf"[?&]team={crew.design.id}(&|$)"))
    expect(listed(page)).to_have_text(["alice@example.com", "carol@example.com"])
    expect(page.locator("#members-results tbody tr.member").first).to_contain_text("Design")
    assert_same_page(page)
    assert query(page).get("team") == [str(crew.design.id)]
    assert "q" not in query(page)

    # And that URL reloads as the same list too.
    page.reload()
    expect(page.get_by_label("Team", exact=True)).to_have_value(str(crew.design.id))
    expect(listed(page)).to_have_text(["alice@example.com", "carol@example.com"])


def test_a_search_pasted_or_filled_in_without_typing_runs_too(page, owner, crew):
    """A search pasted with the mouse, or filled in by the browser, sends no keyup:
    the list must follow the `input` event (as htmx's active-search example does)."""
    sign_in(page, owner)
    open_members(page)
    expect(listed(page)).to_have_count(5)
    mark_page(page)

    page.get_by_label("Search").fill("carol")  # one input event, no key pressed

    expect(listed(page)).to_have_text(["carol@example.com"])
    expect(page).to_have_url(re.compile(r"[?&]q=carol(&|$)"))
    assert_same_page(page)
    # The export follows the list: a download now is of the filtered members.
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    exported = download.value.path().read_text()
    assert "carol@example.com" in exported and "alice@example.com" not in exported

    page.get_by_label("Search").fill("")  # cleared with the mouse: everyone again
    expect(listed(page)).to_have_count(5)


def test_owner_deactivates_manual_member_after_passphrase_in_row(page, owner, crew, session):
    seats_before = session.get(Account, crew.alice.account_id).seats_used
    sign_in(page, owner)
    open_members(page)
    mark_page(page)
    row = page.locator(f"#member-{crew.alice.id}")
    expect(row.locator(".badge").nth(1)).to_have_text("active")

    row.get_by_role("link", name="Deactivate").click()
    passphrase = row.get_by_label("Passphrase")
    expect(passphrase).to_be_focused()
    passphrase.fill("not my passphrase")
    row.get_by_role("button", name="Deactivate").click()
    expect(row.locator(".error")).to_have_text("That passphrase is incorrect.")
    expect(row.get_by_label("Passphrase")).to_be_focused()
    session.expire_all()
    assert session.get(Membership, crew.alice.id).active is True

    row.get_by_label("Passphrase").fill(factories.PASSPHRASE)
    row.get_by_role("button", name="Deactivate").click()

    expect(row.locator(".badge").nth(1)).to_have_text("deactivated")
    expect(row.get_by_role("link", name="Reactivate")).to_be_visible()
    expect(row.get_by_role("link", name="Deactivate")).to_have_count(0)
    expect(row.get_by_role("status")).to_contain_text("alice@example.com is deactivated")
    expect(row.get_by_label("Passphrase")).to_have_count(0)
    # The other members are untouched.
    expect(page.locator(f"#member-{crew.bob.id}").locator(".badge").nth(1)).to_have_text("active")
    assert_same_page(page)
    assert page.url.endswith("/enterprise/members")

    session.expire_all()
    member = session.get(Membership, crew.alice.id)
    assert (member.active, member.licensed) == (False, False)
    assert session.get(Account, member.account_id).seats_used == seats_before - 1
    page.screenshot(path=SCREENSHOT, full_page=True)

    # The page loaded again: the seat meter counts the freed seat.
    page.reload()
    expect(page.locator("#seat-meter")).to_contain_text(f"{seats_before - 1} of 50 licences in use")
    expect(page.locator(f"#member-{crew.alice.id}").locator(".badge").nth(1)).to_have_text(
        "deactivated"
    )


def test_scim_managed_member_has_actions_disabled(page, owner, crew):
    sign_in(page, owner)
    open_members(page)
    row = page.locator(f"#member-{crew.dana.id}")

    expect(row.locator(".badge").first).to_have_text("SCIM")
    for action in ("Deactivate", "Remove"):
        button = row.get_by_role("button", name=action)
        expect(button).to_be_disabled()
        expect(button).to_have_attribute(
            "title", "Managed by your identity provider: change this member there."
        )
        expect(row.get_by_role("link", name=action)).to_have_count(0)
    expect(row.locator(".note")).to_have_text("Managed by your identity provider.")
    # A manual member's row on the same page keeps its actions.
    manual = page.locator(f"#member-{crew.bob.id}")
    expect(manual.get_by_role("link", name="Deactivate")).to_be_enabled()
    expect(manual.get_by_text("Managed by your identity provider.")).to_have_count(0)
