"""The invite controls on the Account settings page (SPEC F13): owners save them (CSRF,
audited with before and after); co-owners see them read-only and get 403 on save; a bad
domain is shown next to the field and changes nothing."""

from __future__ import annotations

import html

import pytest
from sqlalchemy import select

from models import Account, AuditEvent
from tests import factories

PAGE = "/enterprise/settings"
SAVE = "/enterprise/settings/invite-controls"
HTMX = {"HX-Request": "true", "HX-Current-URL": "http://localhost/enterprise/settings"}


def _account(session) -> Account:
    session.expire_all()
    return session.scalar(select(Account))


def _events(session) -> list[AuditEvent]:
    return session.scalars(
        select(AuditEvent).where(AuditEvent.action == "account.invite_controls_changed")
    ).all()


def test_page_shows_the_controls_with_any_domain_by_default(as_owner):
    response = as_owner.get(PAGE)

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'id="invite-controls"' in page
    assert 'id="invite-policy-any" name="policy" value="any" checked' in page
    assert f'href="{PAGE}" aria-current="page"' in page  # in the nav


def test_owner_saves_a_custom_list_normalised_and_audited(as_owner, session):
    response = as_owner.post(
        SAVE,
        data={"policy": "list", "domains": "Partner.test, @bücher.example\npartner.test"},
        headers=HTMX,
    )

    text = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 200
    assert text.lstrip().startswith('<section id="invite-controls"') and "<html" not in text
    assert "Invite controls saved." in text
    account = _account(session)
    assert (account.invite_policy, account.invite_domains) == (
        "list",
        "partner.test\nxn--bcher-kva.example",
    )
    (event,) = _events(session)
    assert event.detail == {
        "before": {"policy": "any", "domains": []},
        "after": {"policy": "list", "domains": ["partner.test", "xn--bcher-kva.example"]},
    }


def test_unchanged_save_is_no_event(as_owner, session):
    as_owner.post(SAVE, data={"policy": "verified", "domains": ""}, headers=HTMX)
    response = as_owner.post(SAVE, data={"policy": "verified", "domains": ""}, headers=HTMX)

    assert "Nothing changed." in response.get_data(as_text=True)
    assert len(_events(session)) == 1


def test_plain_form_post_answers_the_page(as_owner, session):
    response = as_owner.post(SAVE, data={"policy": "verified"})

    assert response.status_code == 200 and "<html" in response.get_data(as_text=True)
    assert _account(session).invite_policy == "verified"


@pytest.mark.parametrize(
    "data, field, message",
    [
        ({"policy": "list", "domains": "partner.test, not a domain!"}, "domains", "isn't a valid"),
        ({"policy": "list", "domains": "http://x.test"}, "domains", "without http://"),
        ({"policy": "list", "domains": ""}, "domains", "List at least one domain"),
        ({"policy": "everyone", "domains": ""}, "policy", "Not a valid choice"),
        ({"domains": ""}, "policy", "Choose who may be invited."),
        (
            {"policy": "list", "domains": " ".join(f"d{i}.test" for i in range(101))},
            "domains",
            "at most 100 domains",
        ),
    ],
)
def test_bad_input_is_shown_next_to_the_field_and_changes_nothing(
    as_owner, session, data, field, message
):
    response = as_owner.post(SAVE, data=data, headers=HTMX)

    text = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 422
    assert f'<p class="error" id="{field}-error">' in text
    assert message in text.split(f'id="{field}-error">', 1)[1].split("</p>", 1)[0]
    account = _account(session)
    assert (account.invite_policy, account.invite_domains) == ("any", None)
    assert _events(session) == []


def test_save_without_csrf_is_refused(as_owner, session):
    response = as_owner.post(SAVE, data={"policy": "verified"}, headers=HTMX, csrf=False)

    assert response.status_code == 400
    assert _account(session).invite_policy == "any"


def test_co_owner_sees_read_only_and_gets_403_on_save(client, session, account, login_as):
    account.invite_policy, account.invite_domains = "list", "partner.test"
    session.commit()
    co_owner = factories.make_user(session, account, "co@example.com", role="co-owner")
    login_as(co_owner)

    page = client.get(PAGE).get_data(as_text=True)
    assert "Only an owner can change it." in page and "Only the domains listed" in page
    assert 'name="policy"' not in page

    assert client.post(SAVE, data={"policy": "any"}, headers=HTMX).status_code == 403
    assert _account(session).invite_policy == "list"


def test_members_get_403(client, session, account, login_as):
    member = factories.make_user(session, account, "m@example.com")
    login_as(member)

    assert client.get(PAGE).status_code == 403
    assert client.post(SAVE, data={"policy": "any"}, headers=HTMX).status_code == 403
