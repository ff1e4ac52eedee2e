"""The team rules panel on the Teams tab (SPEC F12): owners add, change, move and remove
rules (htmx fragments, CSRF, errors next to the field, 422 when refused); co-owners see
the rules but may not change them; the progress of re-applying them is shown."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app import run_job
from blueprints.members import rules
from models import AuditEvent, Membership, TeamRule, utcnow
from tests import factories
from tests.members.conftest import make_team, scim_member

TEAMS = "/enterprise/members/teams"
RULES = f"{TEAMS}/rules"


def order(session, account) -> list[str]:
    session.expire_all()
    return [r.team.display_name for r in rules.list_rules(session, account.id)]


def events(session, action: str) -> list[AuditEvent]:
    return session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()


def fragment(response, status: int = 200) -> str:
    text = response.get_data(as_text=True)
    assert response.status_code == status, text[:800]
    assert "<html" not in text
    assert 'id="team-rules"' in text
    return text


@pytest.fixture
def alan(session, account, owner) -> Membership:
    return scim_member(session, account, "alan@example.com")


@pytest.fixture
def admins(session, account, alan):
    return make_team(session, account, "Admins", members=[alan])


@pytest.fixture
def contractors(session, account, alan):
    return make_team(session, account, "Contractors", members=[alan])


def add(client, team, role="co-owner", licence="licensed", **kwargs):
    data = {"team": str(team.id), "role": role, "licence": licence}
    return client.post(RULES, data=data, headers={"HX-Request": "true"}, **kwargs)


def test_teams_tab_explains_rules_and_which_wins(as_owner, admins):
    text = as_owner.get(TEAMS).get_data(as_text=True)
    assert "Team rules" in text
    assert "the first rule in the list wins" in text
    assert f'<option value="{admins.id}">Admins</option>' in text
    assert "Add rule" in text


def test_owner_adds_a_rule_and_sees_it_applying(as_owner, session, account, admins, alan):
    text = fragment(add(as_owner, admins))
    assert order(session, account) == ["Admins"]
    [event] = events(session, "team_rule.added")
    assert event.target == "Admins" and event.detail["role"] == "co-owner"
    assert "Applying to 1 member…" in text
    assert 'hx-trigger="every 2s"' in text
    # Not before the job: the IdP's change and the job apply rules, the page doesn't.
    session.expire_all()
    assert session.get(Membership, alan.id).role == "member"


def test_job_applies_the_rule_and_progress_says_so(app, as_owner, session, account, admins, alan):
    add(as_owner, admins)
    run_job(app, "apply-team-rules")
    session.expire_all()
    assert session.get(Membership, alan.id).role == "co-owner"
    progress = as_owner.get(f"{RULES}/progress")
    text = progress.get_data(as_text=True)
    assert progress.status_code == 200 and 'id="rule-progress"' in text
    assert "Rules applied to 1 member " in text and "every 2s" not in text


def test_change_move_and_remove_are_audited(as_owner, session, account, admins, contractors):
    add(as_owner, admins)
    add(as_owner, contractors, role="member", licence="none")
    assert order(session, account) == ["Admins", "Contractors"]
    rule = session.scalar(select(TeamRule).where(TeamRule.team_id == contractors.id))

    text = fragment(
        as_owner.post(
            f"{RULES}/{rule.id}/move", data={"direction": "up"}, headers={"HX-Request": "true"}
        )
    )
    assert order(session, account) == ["Contractors", "Admins"]
    assert re.search(r"Contractors.*Admins", text, re.S)
    assert events(session, "team_rule.moved")[0].detail["direction"] == "up"

    prefix = f"rule-{rule.id}-"
    response = as_owner.post(
        f"{RULES}/{rule.id}", data={prefix + "role": "co-owner", prefix + "licence": "licensed"}
    )
    fragment(response)
    session.expire_all()
    changed = session.get(TeamRule, rule.id)
    assert (changed.role, changed.licensed) == ("co-owner", True)
    [event] = events(session, "team_rule.changed")
    assert event.detail["before"]["role"] == "member"

    fragment(as_owner.post(f"{RULES}/{rule.id}/remove"))
    assert order(session, account) == ["Admins"]
    assert len(events(session, "team_rule.removed")) == 1


def test_refused_form_is_422_with_the_error_next_to_the_field(as_owner, session, account, admins):
    add(as_owner, admins)
    text = fragment(add(as_owner, admins), 422)  # a rule exists for it already
    assert 'class="error" id="team-error"' in text
    text = fragment(add(as_owner, admins, role="owner"), 422)
    assert 'id="role-error"' in text
    assert order(session, account) == ["Admins"]
    assert len(events(session, "team_rule.added")) == 1


def test_manual_or_other_accounts_teams_cannot_be_ruled(as_owner, session, account, owner):
    manual = make_team(session, account, "Hand-made", source="manual")
    other = factories.make_account(session, name="Other")
    theirs = make_team(session, other, "Theirs")
    for team in (manual, theirs):
        assert add(as_owner, team).status_code == 422
    assert order(session, account) == []


def test_co_owner_sees_rules_but_cannot_change_them(app, session, account, owner, admins):
    rules.add_rule(
        session,
        session.scalar(select(Membership).where(Membership.role == "owner")),
        admins.id,
        "co-owner",
        True,
        utcnow(),
    )
    session.commit()
    deputy = factories.make_user(session, account, "deputy@example.com", role="co-owner")
    client = app.test_client()
    client.post("/login", data={"email": deputy.email, "passphrase": factories.PASSPHRASE})
    text = client.get(TEAMS).get_data(as_text=True)
    assert "Admins" in text and "Only an owner can change the team rules." in text
    assert "Add rule" not in text
    rule = rules.list_rules(session, account.id)[0]
    assert add(client, admins).status_code == 403
    assert client.post(f"{RULES}/{rule.id}/remove").status_code == 403
    assert client.post(f"{RULES}/{rule.id}/move", data={"direction": "down"}).status_code == 403
    assert order(session, account) == ["Admins"]


def test_rule_actions_need_the_csrf_token(as_owner, session, account, admins):
    assert add(as_owner, admins, csrf=False).status_code == 400
    assert order(session, account) == []


def test_another_accounts_rule_is_404(as_owner, session, account, owner):
    other = factories.make_account(session, name="Other")
    boss = factories.make_user(session, other, "boss@example.org", role="owner")
    team = make_team(session, other, "Theirs")
    boss_m = session.scalar(select(Membership).where(Membership.user_id == boss.id))
    rule = rules.add_rule(session, boss_m, team.id, "member", True, utcnow())
    session.commit()
    assert as_owner.post(f"{RULES}/{rule.id}/remove").status_code == 404
    assert session.get(TeamRule, rule.id) is not None


def test_with_rules_an_idp_members_role_is_not_changed_by_hand(
    as_owner, session, account, admins, alan
):
    """The rules would undo it: Make co-owner is disabled with the reason, and refused."""
    add(as_owner, admins)
    page = as_owner.get("/enterprise/members").get_data(as_text=True)
    assert "Team rules decide the roles of your identity provider" in page
    response = as_owner.post(
        f"/enterprise/members/{alan.id}/make-co-owner", data={"passphrase": factories.PASSPHRASE}
    )
    assert response.status_code == 422
    assert "Team rules decide the roles" in response.get_data(as_text=True)
    session.expire_all()
    assert session.get(Membership, alan.id).role == "member"
