"""Member actions on the Members page: deactivate, reactivate, remove, make and take back
co-owner, each behind the passphrase, and the rules of who may do what (SPEC F6)."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import func, select

from models import Account, AuditEvent, Membership, TeamMember, User
from tests import factories
from tests.members.conftest import (
    MEMBERS,
    disable_scim,
    enable_scim,
    listed,
    make_team,
    membership_of,
    scim_member,
    sign_in,
)

WRONG = "not the right passphrase at all"


def act(client, membership_id: int, action: str, passphrase=factories.PASSPHRASE, **kwargs):
    return client.post(
        f"{MEMBERS}/{membership_id}/{action}", data={"passphrase": passphrase}, **kwargs
    )


def shown(response) -> str:
    """The response as a person reads it (entities decoded)."""
    return html.unescape(response.get_data(as_text=True))


def find(session, membership_id: int) -> Membership | None:
    """The membership as the database has it now (None once removed)."""
    session.expire_all()
    return session.scalar(select(Membership).where(Membership.id == membership_id))


def row_html(page: str, membership_id: int) -> str:
    match = re.search(rf'<tr id="member-{membership_id}".*?</tr>', page, re.S)
    assert match, f"no row for member {membership_id}"
    return match.group(0)


def meter_oob(fragment: str) -> str:
    """The seat meter an htmx action answer swaps in out of band, as text."""
    match = re.search(r'<section[^>]*id="seat-meter"[^>]*>.*?</section>', fragment, re.S)
    assert match, "no seat meter in the answer"
    assert 'hx-swap-oob="true"' in match.group(0).split(">", 1)[0]
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(0)).split())


def seats(session, account) -> int:
    session.expire_all()
    return session.get(Account, account.id).seats_used


def events(session, action: str) -> list[AuditEvent]:
    session.expire_all()
    return session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()


@pytest.fixture
def ada(session, account, owner):
    """A manual member who can sign in."""
    return factories.make_user(session, account=account, email="ada@example.com")


@pytest.fixture
def ada_m(session, account, ada) -> Membership:
    return membership_of(session, ada, account)


# --- deactivate -----------------------------------------------------------------------------


def test_owner_deactivates_a_member(as_owner, session, account, owner, ada, ada_m, htmx):
    assert seats(session, account) == 2
    response = act(as_owner, ada_m.id, "deactivate", headers=htmx)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert text.lstrip().startswith(f'<tr id="member-{ada_m.id}"')
    assert "ada@example.com is deactivated; their seat is free." in text
    assert ">deactivated</span>" in text
    assert ">Reactivate</a>" in text and ">Deactivate</a>" not in text
    assert "1 of 50 licences in use" in meter_oob(text)  # the meter follows, out of band

    m = membership_of(session, ada, account)
    assert m.active is False and m.licensed is False
    assert seats(session, account) == 1
    [event] = events(session, "member.deactivate")
    assert event.account_id == account.id
    assert event.actor_user_id == owner.id
    assert event.target == "ada@example.com"


def test_deactivation_ends_the_members_session(app, as_owner, session, account, ada, ada_m):
    theirs = app.test_client()
    sign_in(theirs, ada)
    assert theirs.get("/account").status_code == 200
    generation = ada.session_generation

    assert act(as_owner, ada_m.id, "deactivate").status_code == 302

    session.expire_all()
    assert session.get(User, ada.id).session_generation == generation + 1
    response = theirs.get("/account")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_wrong_passphrase_changes_nothing(as_owner, session, account, ada, ada_m, htmx):
    response = act(as_owner, ada_m.id, "deactivate", passphrase=WRONG, headers=htmx)
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert "That passphrase is incorrect." in text
    assert text.lstrip().startswith(f'<tr id="member-{ada_m.id}"')
    assert 'name="passphrase"' in text  # the form stays for another try

    m = membership_of(session, ada, account)
    assert m.active is True and m.licensed is True
    assert seats(session, account) == 2
    assert session.get(User, ada.id).session_generation == 1
    assert events(session, "member.deactivate") == []


def test_empty_passphrase_changes_nothing(as_owner, session, account, ada, ada_m):
    response = act(as_owner, ada_m.id, "remove", passphrase="")
    assert response.status_code == 422
    assert membership_of(session, ada, account) is not None
    assert seats(session, account) == 2


def test_post_without_csrf_token_is_refused(as_owner, session, account, ada, ada_m):
    response = act(as_owner, ada_m.id, "deactivate", csrf=False)
    assert response.status_code == 400
    assert membership_of(session, ada, account).active is True


def test_deactivating_a_deactivated_member_is_refused(as_owner, session, account):
    gone = factories.make_user(session, account=account, email="gone@example.com", active=False)
    m = membership_of(session, gone, account)
    response = act(as_owner, m.id, "deactivate")
    assert response.status_code == 422
    assert "This member is not active." in response.get_data(as_text=True)
    assert seats(session, account) == 1


def test_non_htmx_action_redirects_to_the_list_with_a_flash(as_owner, session, account, ada_m):
    response = act(as_owner, ada_m.id, "deactivate")
    assert response.status_code == 302
    assert response.headers["Location"] == MEMBERS
    page = as_owner.get(MEMBERS).get_data(as_text=True)
    assert "ada@example.com is deactivated; their seat is free." in page
    assert ">deactivated</span>" in row_html(page, ada_m.id)
    # The flash is shown once.
    assert "their seat is free" not in as_owner.get(MEMBERS).get_data(as_text=True)


# --- the passphrase step --------------------------------------------------------------------


def test_action_link_asks_for_the_passphrase_in_the_row(as_owner, ada_m, htmx):
    page = as_owner.get(MEMBERS).get_data(as_text=True)
    assert f'href="{MEMBERS}/{ada_m.id}/deactivate"' in row_html(page, ada_m.id)

    response = as_owner.get(f"{MEMBERS}/{ada_m.id}/deactivate", headers=htmx)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert text.lstrip().startswith(f'<tr id="member-{ada_m.id}"')
    assert 'type="password"' in text and 'name="passphrase"' in text
    assert f'hx-post="{MEMBERS}/{ada_m.id}/deactivate"' in text
    assert re.search(r'<button type="submit"[^>]*>Deactivate</button>', text)
    assert "disabled" not in re.search(r'<button type="submit"[^>]*>', text).group(0)

    cancel = as_owner.get(f"{MEMBERS}/{ada_m.id}/row", headers=htmx).get_data(as_text=True)
    assert 'name="passphrase"' not in cancel and ">Deactivate</a>" in cancel


def test_action_page_without_javascript(as_owner, ada_m):
    response = as_owner.get(f"{MEMBERS}/{ada_m.id}/remove")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "<html" in text.lower()
    assert "<h1>Remove</h1>" in text
    assert f'action="{MEMBERS}/{ada_m.id}/remove"' in text
    assert 'name="passphrase"' in text


def test_unknown_member_or_action_is_404(as_owner, ada_m):
    assert as_owner.get(f"{MEMBERS}/{ada_m.id + 10_000}/deactivate").status_code == 404
    assert act(as_owner, ada_m.id + 10_000, "deactivate").status_code == 404
    assert as_owner.get(f"{MEMBERS}/{ada_m.id}/promote-to-king").status_code == 404


# --- reactivate -----------------------------------------------------------------------------


@pytest.fixture
def linus(session, account, owner) -> Membership:
    user = factories.make_user(session, account=account, email="linus@example.com", active=False)
    return membership_of(session, user, account)


def test_reactivate_takes_a_seat(as_owner, session, account, owner, linus, htmx):
    assert seats(session, account) == 1
    response = act(as_owner, linus.id, "reactivate", headers=htmx)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "linus@example.com is active again." in text
    assert ">active</span>" in text and "Licensed" in text

    session.expire_all()
    m = session.get(Membership, linus.id)
    assert m.active is True and m.licensed is True
    assert seats(session, account) == 2
    [event] = events(session, "member.reactivate")
    assert event.actor_user_id == owner.id and event.target == "linus@example.com"


def test_reactivate_without_a_free_seat_is_refused(as_owner, session, account, linus, htmx):
    account.seat_limit = account.seats_used  # the owner holds the only seat
    session.commit()
    response = act(as_owner, linus.id, "reactivate", headers=htmx)
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert "No licence left" in text
    assert text.lstrip().startswith(f'<tr id="member-{linus.id}"')

    session.expire_all()
    m = session.get(Membership, linus.id)
    assert m.active is False and m.licensed is False
    assert seats(session, account) == 1
    assert events(session, "member.reactivate") == []


def test_seat_freed_by_deactivation_can_be_taken_by_reactivation(
    as_owner, session, account, ada_m, linus
):
    account.seat_limit = 2  # owner + ada: full
    session.commit()
    assert act(as_owner, linus.id, "reactivate").status_code == 422
    assert act(as_owner, ada_m.id, "deactivate").status_code == 302
    assert act(as_owner, linus.id, "reactivate").status_code == 302
    session.expire_all()
    assert session.get(Membership, linus.id).active is True
    assert session.get(Membership, ada_m.id).active is False
    assert seats(session, account) == 2
    meter = re.search(r'id="seat-meter".*?</p>', shown(as_owner.get(MEMBERS)), re.S).group(0)
    assert "2 of 2 licences in use" in re.sub(r"<[^>]+>", "", meter)


# --- remove ---------------------------------------------------------------------------------


def test_remove_deletes_the_membership_and_its_team_rows(
    app, as_owner, session, account, owner, ada, ada_m, htmx
):
    team = make_team(session, account, "Research", [ada_m], source="manual")
    theirs = app.test_client()
    sign_in(theirs, ada)

    response = act(as_owner, ada_m.id, "remove", headers=htmx)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert f'<tr id="member-{ada_m.id}" class="removed">' in text
    assert "ada@example.com was removed from the account." in text
    assert "1 of 50 licences in use" in meter_oob(text)

    assert find(session, ada_m.id) is None
    assert (
        session.scalar(
            select(func.count()).select_from(TeamMember).where(TeamMember.team_id == team.id)
        )
        == 0
    )
    assert seats(session, account) == 1
    [event] = events(session, "member.remove")
    assert event.actor_user_id == owner.id and event.target == "ada@example.com"

    assert listed(as_owner.get(MEMBERS).get_data(as_text=True)) == ["owner@example.com"]
    teams = as_owner.get(f"{MEMBERS}/teams").get_data(as_text=True)
    assert re.search(r">Research</a></td><td>0</td>", teams)
    assert theirs.get("/account").status_code == 302  # their session ended too


def test_removing_a_deactivated_member_leaves_the_seats_alone(as_owner, session, account, linus):
    assert act(as_owner, linus.id, "remove").status_code == 302
    assert find(session, linus.id) is None
    assert seats(session, account) == 1


# --- SCIM-managed members -------------------------------------------------------------------


@pytest.fixture
def alan(session, account, owner) -> Membership:
    return scim_member(session, account, "alan@example.com", display_name="Alan Turing")


def test_scim_managed_member_is_read_only(as_owner, session, account, owner, alan):
    enable_scim(session, account, owner)
    page = as_owner.get(MEMBERS).get_data(as_text=True)
    row = row_html(page, alan.id)
    assert 'class="member managed"' in row
    for label in ("Deactivate", "Remove"):
        button = re.search(rf"<button[^>]*>{label}</button>", row)
        assert button, label
        assert "disabled" in button.group(0)
        assert 'title="Managed by your identity provider: ' in button.group(0)
    assert f'href="{MEMBERS}/{alan.id}/deactivate"' not in row
    assert "Managed by your identity provider." in row

    for action in ("deactivate", "remove"):
        response = act(as_owner, alan.id, action)
        assert response.status_code == 422, action
        assert "Managed by your identity provider" in response.get_data(as_text=True)
    session.expire_all()
    m = session.get(Membership, alan.id)
    assert m is not None and m.active is True and m.licensed is True
    assert seats(session, account) == 2
    assert events(session, "member.deactivate") == []


def test_scim_managed_member_confirm_form_is_disabled(as_owner, session, account, owner, alan):
    enable_scim(session, account, owner)
    row = row_html(shown(as_owner.get(f"{MEMBERS}/{alan.id}/deactivate")), alan.id)
    assert "Managed by your identity provider" in row
    assert "disabled" in re.search(r'<button type="submit"[^>]*>', row).group(0)


def test_owner_can_still_make_a_scim_member_co_owner(as_owner, session, account, owner, alan):
    enable_scim(session, account, owner)
    assert act(as_owner, alan.id, "make-co-owner").status_code == 302
    session.expire_all()
    assert session.get(Membership, alan.id).role == "co-owner"


def test_scim_member_is_handled_by_hand_while_scim_is_off(
    as_owner, session, account, owner, alan, htmx
):
    enable_scim(session, account, owner)
    disable_scim(session, account, owner)
    page = as_owner.get(MEMBERS).get_data(as_text=True)
    row = row_html(page, alan.id)
    assert f'href="{MEMBERS}/{alan.id}/deactivate"' in row
    assert "Managed by your identity provider" not in row

    response = act(as_owner, alan.id, "deactivate", headers=htmx)
    assert response.status_code == 200
    session.expire_all()
    m = session.get(Membership, alan.id)
    assert m.active is False and m.licensed is False
    assert seats(session, account) == 1


# --- roles ----------------------------------------------------------------------------------


def test_owner_makes_a_co_owner_and_takes_it_back(
    app, as_owner, session, account, owner, ada, ada_m, htmx
):
    theirs = app.test_client()
    sign_in(theirs, ada)
    assert theirs.get(MEMBERS).status_code == 403

    response = act(as_owner, ada_m.id, "make-co-owner", headers=htmx)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "ada@example.com is now a co-owner." in text
    assert "<td>co-owner</td>" in text and ">Take back co-owner</a>" in text
    assert membership_of(session, ada, account).role == "co-owner"
    assert len(events(session, "member.make_co_owner")) == 1
    assert theirs.get(MEMBERS).status_code == 200  # the new co-owner sees the page

    response = act(as_owner, ada_m.id, "revoke-co-owner", headers=htmx)
    assert response.status_code == 200
    assert "no longer a co-owner" in response.get_data(as_text=True)
    assert membership_of(session, ada, account).role == "member"
    assert len(events(session, "member.revoke_co_owner")) == 1
    assert theirs.get(MEMBERS).status_code == 403


def test_only_active_members_can_be_made_co_owners(as_owner, session, account, linus):
    response = act(as_owner, linus.id, "make-co-owner")
    assert response.status_code == 422
    assert "Only an active member can be made a co-owner." in response.get_data(as_text=True)
    session.expire_all()
    assert session.get(Membership, linus.id).role == "member"


@pytest.fixture
def co_owner(session, account, owner) -> User:
    return factories.make_user(session, account=account, email="co@example.com", role="co-owner")


@pytest.fixture
def as_co_owner(client, co_owner, login_as):
    login_as(co_owner)
    return client


def test_co_owner_cannot_make_or_take_back_co_owners(
    as_co_owner, session, account, ada, ada_m, htmx
):
    page = as_co_owner.get(MEMBERS).get_data(as_text=True)
    row = row_html(page, ada_m.id)
    assert "Make co-owner" not in row
    assert ">Deactivate</a>" in row  # a co-owner still manages members

    response = act(as_co_owner, ada_m.id, "make-co-owner", headers=htmx)
    assert response.status_code == 422
    assert "Only an owner can make or take back co-owners." in response.get_data(as_text=True)
    assert membership_of(session, ada, account).role == "member"
    assert events(session, "member.make_co_owner") == []


def test_co_owner_cannot_take_back_another_co_owner(as_co_owner, session, account):
    other = factories.make_user(session, account=account, email="co2@example.com", role="co-owner")
    m = membership_of(session, other, account)
    response = act(as_co_owner, m.id, "revoke-co-owner")
    assert response.status_code == 422
    assert membership_of(session, other, account).role == "co-owner"


def test_co_owner_manages_plain_members(as_co_owner, session, account, ada, ada_m):
    assert act(as_co_owner, ada_m.id, "deactivate").status_code == 302
    assert membership_of(session, ada, account).active is False
    assert seats(session, account) == 2  # owner and co-owner


def test_co_owner_cannot_remove_the_last_owner(as_co_owner, session, account, owner):
    owner_m = membership_of(session, owner, account)
    page = as_co_owner.get(MEMBERS).get_data(as_text=True)
    row = row_html(page, owner_m.id)
    assert f'href="{MEMBERS}/{owner_m.id}/' not in row
    assert 'title="Only an owner can change an owner."' in row

    for action in ("deactivate", "remove"):
        response = act(as_co_owner, owner_m.id, action)
        assert response.status_code == 422, action
        assert "Only an owner can change an owner." in response.get_data(as_text=True)
    m = membership_of(session, owner, account)
    assert m is not None and m.active is True and m.role == "owner"
    assert seats(session, account) == 2
    assert session.get(User, owner.id).session_generation == 1


@pytest.mark.parametrize("action", ["deactivate", "remove", "make-co-owner", "revoke-co-owner"])
def test_nobody_acts_on_themselves(as_owner, session, account, owner, action):
    owner_m = membership_of(session, owner, account)
    response = act(as_owner, owner_m.id, action)
    assert response.status_code == 422
    assert "You can't change your own membership" in shown(response)
    m = membership_of(session, owner, account)
    assert m.active is True and m.role == "owner"


def test_own_row_says_you_and_has_no_buttons(as_owner, session, account, owner):
    owner_m = membership_of(session, owner, account)
    row = row_html(as_owner.get(MEMBERS).get_data(as_text=True), owner_m.id)
    assert '<span class="note">You</span>' in row
    assert "<button" not in row and 'class="button' not in row


def test_co_owner_cannot_act_on_themselves(as_co_owner, session, account, co_owner):
    m = membership_of(session, co_owner, account)
    assert act(as_co_owner, m.id, "deactivate").status_code == 422
    assert membership_of(session, co_owner, account).active is True


def test_owners_keep_their_role(as_owner, session, account):
    second = factories.make_user(session, account=account, email="boss@example.com", role="owner")
    m = membership_of(session, second, account)
    for action in ("make-co-owner", "revoke-co-owner"):
        response = act(as_owner, m.id, action)
        assert response.status_code == 422, action
        assert "Owners keep their role." in response.get_data(as_text=True)
    assert membership_of(session, second, account).role == "owner"


def test_the_account_always_keeps_an_owner(as_owner, session, account, owner):
    second = factories.make_user(session, account=account, email="boss@example.com", role="owner")
    second_m = membership_of(session, second, account)
    # With another owner active, an owner may deactivate and remove a fellow owner …
    assert act(as_owner, second_m.id, "deactivate").status_code == 302
    assert act(as_owner, second_m.id, "remove").status_code == 302
    # … but the one left cannot leave.
    owner_m = membership_of(session, owner, account)
    for action in ("deactivate", "remove"):
        assert act(as_owner, owner_m.id, action).status_code == 422
    session.expire_all()
    owners = session.scalars(
        select(Membership).where(
            Membership.account_id == account.id,
            Membership.role == "owner",
            Membership.active.is_(True),
        )
    ).all()
    assert [m.id for m in owners] == [owner_m.id]
