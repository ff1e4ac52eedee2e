"""Dry run before go-live (SPEC F12): in preview the IdP's writes are answered as live
would answer them, nothing is applied, and the forecast says what they would do.

The Okta and Entra ID sequences are the documented ones (samples/okta, samples/entra);
each runs in preview and changes no member, person, team, seat, email or audit event,
then runs again live on the same account, and what it did matches the forecast.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from blueprints.scim_api import preview
from blueprints.scim_settings import connector as service
from models import (
    Account,
    AuditEvent,
    Membership,
    OutboxEmail,
    ScimConnector,
    ScimPreview,
    Team,
    TeamMember,
    User,
    utcnow,
)
from tests import factories
from tests.scim_api import test_entra, test_okta
from tests.scim_api.conftest import assert_scim_error, provision

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


@pytest.fixture
def previewing(session, issued, owner):
    """The `issued` connector switched to preview."""
    connector = session.get(ScimConnector, issued.connector.id)
    service.start_preview(session, connector, owner, utcnow())
    session.commit()
    return connector


def state(session, account_id: int) -> dict:
    """Everything a write in preview must leave alone."""
    count = lambda model: session.scalar(select(func.count()).select_from(model))  # noqa: E731
    account = session.get(Account, account_id)
    session.refresh(account)
    return {
        "members": count(Membership),
        "people": count(User),
        "teams": count(Team),
        "team_members": count(TeamMember),
        "outbox": count(OutboxEmail),
        "audit": count(AuditEvent),
        "seats_used": account.seats_used,
        "sign_outs": session.scalar(select(func.sum(User.session_generation))),
    }


def forecast_of(session, connector) -> preview.Forecast:
    session.expire_all()
    return preview.forecast(session, connector.id, connector.account_id)


def user_body(user_name: str, email: str | None = None, **extra) -> dict:
    body = {"schemas": [USER], "userName": user_name, **extra}
    if email:
        body["emails"] = [{"value": email, "type": "work", "primary": True}]
    return body


# --- The IdP sequences ------------------------------------------------------------------------


def okta_sequence(scim, user_name: str = test_okta.USER_NAME) -> str:
    """Okta's assignment then deactivation: lookup, create, read, update, deactivate."""
    assert test_okta.find_user(scim, user_name)["totalResults"] == 0
    replace = {test_okta.USER_NAME: user_name}
    created = test_okta.create_user(scim, replace)
    assert created["userName"] == user_name
    user_id = created["id"]
    got = scim("GET", f"/Users/{user_id}")
    assert got.status_code == 200
    assert got.get_json()["userName"] == user_name
    assert test_okta.find_user(scim, user_name)["totalResults"] == 1
    renamed = scim(
        "PATCH",
        f"/Users/{user_id}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"name": {"givenName": "Renamed"}}}],
        },
    )
    assert renamed.status_code == 200, renamed.get_data(as_text=True)
    assert renamed.get_json()["name"]["givenName"] == "Renamed"
    off = scim("PATCH", f"/Users/{user_id}", json=test_okta.sample("deactivate_user.json"))
    assert off.status_code == 200, off.get_data(as_text=True)
    assert off.get_json()["active"] is False
    return user_id


def entra_sequence(scim) -> str:
    """Entra ID's test connection, then its create and updates, then its disable (the
    "False" string form)."""
    probe = test_entra.find_user(scim, str(uuid.uuid4()))  # "Test Connection"
    assert probe["totalResults"] == 0 and probe["Resources"] == []
    assert test_entra.find_user(scim, test_entra.USER_NAME)["totalResults"] == 0
    response = scim("POST", "/Users", json=test_entra.sample("create_user.json"))
    assert response.status_code == 201, response.get_data(as_text=True)
    user_id = response.get_json()["id"]
    assert test_entra.find_user(scim, test_entra.USER_NAME)["totalResults"] == 1
    for name in ("replace_attributes.json", "update_user_single_valued.json"):
        changed = scim("PATCH", f"/Users/{user_id}", json=test_entra.sample(name))
        assert changed.status_code == 200, (name, changed.get_data(as_text=True))
    got = scim("GET", f"/Users/{user_id}").get_json()
    assert got["displayName"] == "Pvlo"
    assert got["externalId"] == "Eqpj"
    off = scim("PATCH", f"/Users/{user_id}", json=test_entra.sample("disable_user_string.json"))
    assert off.status_code == 200, off.get_data(as_text=True)
    assert off.get_json()["active"] is False
    return user_id


def go_live(session, connector, owner) -> None:
    service.go_live(session, session.get(ScimConnector, connector.id), owner, utcnow())
    session.commit()


def test_okta_sequence_in_preview_changes_nothing(scim, session, ready, previewing, owner):
    before = state(session, ready.id)
    user_id = okta_sequence(scim)
    assert state(session, ready.id) == before
    forecast = forecast_of(session, previewing)
    assert forecast.counts == {"created": 1}  # deactivated: it needs no seat
    assert forecast.seats_needed == 0
    assert scim("GET", f"/Users/{user_id}").get_json()["active"] is False

    go_live(session, previewing, owner)  # the same sequence, live: what was forecast
    okta_sequence(scim)
    after = state(session, ready.id)
    assert (after["members"], after["people"]) == (before["members"] + 1, before["people"] + 1)
    assert after["seats_used"] == before["seats_used"] + forecast.seats_needed


def test_entra_sequence_in_preview_changes_nothing(scim, session, ready, previewing, owner):
    before = state(session, ready.id)
    entra_sequence(scim)
    assert state(session, ready.id) == before
    forecast = forecast_of(session, previewing)
    assert forecast.counts == {"created": 1}

    go_live(session, previewing, owner)
    entra_sequence(scim)
    after = state(session, ready.id)
    assert (after["members"], after["people"]) == (before["members"] + 1, before["people"] + 1)
    assert after["seats_used"] == before["seats_used"] + forecast.seats_needed


def test_okta_profile_put_on_a_preview_user(scim, session, ready, previewing):
    before = state(session, ready.id)
    user = test_okta.create_user(scim)
    put = test_okta.sample("put_user.json", {test_okta.DOC_USER_ID: user["id"]})
    response = scim("PUT", f"/Users/{user['id']}", json=put, headers={"If-Match": 'W/"1"'})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["id"] == user["id"] and body["name"]["middleName"] == "Excited"
    assert response.headers["ETag"] == body["meta"]["version"] == 'W/"2"'
    assert scim("GET", f"/Users/{user['id']}").get_json()["name"]["middleName"] == "Excited"
    stale = scim("PUT", f"/Users/{user['id']}", json=put, headers={"If-Match": 'W/"1"'})
    assert_scim_error(stale, 412)
    assert state(session, ready.id) == before


def test_a_preview_user_can_be_deleted_then_is_gone(scim, session, previewing):
    created = provision(scim, "gone@example.com")
    assert scim("DELETE", f"/Users/{created['id']}").status_code == 204
    assert_scim_error(scim("GET", f"/Users/{created['id']}"), 404)
    assert forecast_of(session, previewing).counts == {}


# --- The forecast matches what live does -----------------------------------------------------


def mixed_sequence(scim) -> dict[str, int]:
    """A first sync of every kind of user: new people, an existing person, an existing
    member, an email outside the verified domains, a userName collision, and more users
    than seats. Returns the statuses seen."""
    statuses: dict[int, int] = {}
    bodies = [
        user_body("new1@example.com", "new1@example.com"),
        user_body("new2@example.com", "new2@example.com"),
        user_body("person@example.com", "person@example.com"),  # a person, not a member
        user_body("manual@example.com", "manual@example.com"),  # a manual member
        user_body("guest@elsewhere.test", "guest@elsewhere.test"),  # invited
        user_body("new1@example.com", "other1@example.com"),  # userName taken: 409
        user_body("new3@example.com", "new3@example.com"),
        user_body("new4@example.com", "new4@example.com"),
        user_body("off@example.com", "off@example.com", active=False),  # needs no seat
    ]
    for body in bodies:
        response = scim("POST", "/Users", json=body)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    return statuses


@pytest.fixture
def crowded(session, ready, owner):
    """The account with an existing person (no membership), a manual member, and room for
    three more seats."""
    factories.make_user(session, None, "person@example.com")
    factories.make_user(session, ready, "manual@example.com", active=False)
    account = session.get(Account, ready.id)
    account.seat_limit = account.seats_used + 3
    session.commit()
    return account


def test_forecast_matches_what_the_same_sequence_does_live(
    scim, session, crowded, previewing, owner
):
    before = state(session, crowded.id)
    statuses = mixed_sequence(scim)
    assert statuses == {201: 8, 409: 1}  # every create answered as if applied
    assert state(session, crowded.id) == before
    forecast = forecast_of(session, previewing)
    free = forecast.seats_free
    assert free == 3

    connector = session.get(ScimConnector, previewing.id)
    service.go_live(session, connector, owner, utcnow())
    session.commit()
    assert session.scalar(select(func.count()).select_from(ScimPreview)) == 0

    people_before = set(session.scalars(select(User.email)))
    live = mixed_sequence(scim)
    session.expire_all()
    members = session.scalars(
        select(Membership).where(Membership.account_id == crowded.id, Membership.source == "scim")
    ).all()
    created = [m for m in members if m.user and m.user.email not in people_before]
    invited = [m for m in members if m.invitation_token_hash is not None]
    matched = [m for m in members if m.user and m.user.email in people_before]

    assert live.get(403, 0) == forecast.refused
    assert live.get(409, 0) == forecast.counts.get("collision", 0) == 1
    assert len(created) == forecast.counts.get("created", 0)
    assert len(matched) == forecast.counts.get("matched", 0)
    assert len(invited) == forecast.counts.get("invited", 0)
    assert forecast.seats_needed - forecast.refused == free
    account = session.get(Account, crowded.id)
    assert account.seats_used == account.seat_limit
    assert forecast.refused == 4  # seven need a seat; the last four find none


def test_forecast_lists_who_is_matched_and_invited(scim, session, crowded, previewing):
    crowded.seat_limit = 50
    session.commit()
    mixed_sequence(scim)
    forecast = forecast_of(session, previewing)
    matched = {
        row.detail["email"]: row.detail["already_member"] for row in forecast.lists["matched"]
    }
    assert matched == {"person@example.com": False, "manual@example.com": True}
    assert [r.detail["email"] for r in forecast.lists["invited"]] == ["guest@elsewhere.test"]
    assert [r.detail["name"] for r in forecast.lists["collision"]] == ["new1@example.com"]


def test_a_user_refused_for_lack_of_seats_is_answered_201(scim, session, ready, previewing):
    account = session.get(Account, ready.id)
    account.seat_limit = account.seats_used  # no seat free at all
    session.commit()
    response = scim("POST", "/Users", json=user_body("late@example.com", "late@example.com"))
    assert response.status_code == 201, response.get_data(as_text=True)
    forecast = forecast_of(session, previewing)
    assert forecast.refused == 1 and forecast.seats_needed == 1 and forecast.seats_free == 0


# --- Answers as live would give them ----------------------------------------------------------


def test_a_second_create_of_a_previewed_user_name_is_409(scim, session, previewing):
    provision(scim, "twice@example.com")
    again = scim("POST", "/Users", json=user_body("TWICE@example.com"))
    body = assert_scim_error(again, 409)
    assert body["scimType"] == "uniqueness"
    assert "twice@example.com" in body["detail"].lower()
    assert forecast_of(session, previewing).counts == {"created": 1, "collision": 1}


def test_a_previewed_email_taken_again_is_409(scim, previewing):
    provision(scim, "a@example.com", emails=[{"value": "same@example.com", "primary": True}])
    again = scim("POST", "/Users", json=user_body("b@example.com", "same@example.com"))
    assert "same@example.com" in assert_scim_error(again, 409)["detail"]


def test_a_collision_with_a_live_member_is_the_live_409(scim, session, issued, owner):
    provision(scim, "live@example.com")
    connector = session.get(ScimConnector, issued.connector.id)
    service.start_preview(session, connector, owner, utcnow())
    session.commit()
    live = scim("POST", "/Users", json=user_body("live@example.com"))
    assert assert_scim_error(live, 409)["scimType"] == "uniqueness"


def test_bad_input_in_preview_is_the_live_400(scim, session, previewing):
    assert_scim_error(scim("POST", "/Users", json={"schemas": [USER], "userName": " "}), 400)
    assert forecast_of(session, previewing).counts == {}


def test_entra_test_connection_finds_nothing(scim, previewing):
    provision(scim, "someone@example.com")
    found = test_entra.find_user(scim, str(uuid.uuid4()))
    assert found["totalResults"] == 0 and found["Resources"] == []


def test_lookup_by_external_id_finds_a_preview_user(scim, previewing):
    provision(scim, "ext@example.com", externalId="abc-1")
    query = quote('externalId eq "abc-1"')
    found = scim("GET", f"/Users?filter={query}").get_json()
    assert [r["userName"] for r in found["Resources"]] == ["ext@example.com"]


def test_a_write_to_a_live_user_is_answered_and_not_applied(scim, session, issued, owner):
    user = provision(scim, "kept@example.com")
    connector = session.get(ScimConnector, issued.connector.id)
    service.start_preview(session, connector, owner, utcnow())
    session.commit()
    before = state(session, connector.account_id)
    off = scim("PATCH", f"/Users/{user['id']}", json=test_okta.sample("deactivate_user.json"))
    assert off.status_code == 200 and off.get_json()["active"] is False
    assert scim("GET", f"/Users/{user['id']}").get_json()["active"] is True  # live state
    assert scim("DELETE", f"/Users/{user['id']}").status_code == 204
    assert scim("GET", f"/Users/{user['id']}").status_code == 200
    assert state(session, connector.account_id) == before
    forecast = forecast_of(session, connector)
    assert forecast.counts == {"remove": 1}


def test_a_preview_user_read_with_if_none_match_is_304(scim, previewing):
    created = scim("POST", "/Users", json=user_body("etag@example.com"))
    tag = created.headers["ETag"]
    again = scim("GET", f"/Users/{created.get_json()['id']}", headers={"If-None-Match": tag})
    assert again.status_code == 304


# --- Groups -----------------------------------------------------------------------------------


def _members(scim, group_id: str) -> set[str]:
    got = scim("GET", f"/Groups/{group_id}")
    assert got.status_code == 200, got.get_data(as_text=True)
    return {m["value"] for m in got.get_json().get("members", [])}


def test_okta_group_push_in_preview_changes_nothing(scim, session, ready, previewing):
    before = state(session, ready.id)
    user = test_okta.create_user(scim)
    other = test_okta.create_user(
        scim, {"test.user@example.com": "other.user@example.com", "00ujl29u0le5T6Aj10h7": "x2"}
    )
    name = quote('displayName eq "Test SCIMv2"')
    assert scim("GET", f"/Groups?filter={name}").get_json()["totalResults"] == 0
    body = test_okta.sample("create_group.json")
    body["members"] = [{"value": other["id"]}, {"value": "not-a-user"}]
    created = scim("POST", "/Groups", json=body)
    assert created.status_code == 201, created.get_data(as_text=True)
    group_id = created.get_json()["id"]
    assert [m["value"] for m in created.get_json()["members"]] == [other["id"]]
    assert scim("GET", f"/Groups?filter={name}").get_json()["totalResults"] == 1

    patch = test_okta.sample(
        "update_group_membership.json",
        {test_okta.DOC_OTHER_USER_ID: other["id"], test_okta.DOC_USER_ID: user["id"]},
    )
    response = scim("PATCH", f"/Groups/{group_id}", json=patch)
    assert response.status_code == 204, response.get_data(as_text=True)
    assert _members(scim, group_id) == {user["id"]}
    renamed = scim(
        "PATCH",
        f"/Groups/{group_id}",
        json=test_okta.sample(
            "rename_group.json", {test_okta.DOC_GROUP_ID: group_id, "Test SCIMv2": "Renamed"}
        ),
    )
    assert renamed.status_code == 204, renamed.get_data(as_text=True)
    got = scim("GET", f"/Groups/{group_id}").get_json()
    assert got["displayName"] == "Renamed"
    assert {m["value"] for m in got["members"]} == {user["id"]}

    assert state(session, ready.id) == before
    forecast = forecast_of(session, previewing)
    assert forecast.counts == {"created": 2, "group": 1}
    assert forecast.lists["group"][0].detail["members"] == 1
    assert scim("DELETE", f"/Groups/{group_id}").status_code == 204
    assert_scim_error(scim("GET", f"/Groups/{group_id}"), 404)


def test_entra_group_sequence_in_preview(scim, session, ready, previewing):
    before = state(session, ready.id)
    user = scim("POST", "/Users", json=test_entra.sample("create_user.json")).get_json()
    assert test_entra.find_group(scim, test_entra.GROUP_NAME)["totalResults"] == 0
    created = scim("POST", "/Groups", json=test_entra.sample("create_group.json"))
    assert created.status_code == 201, created.get_data(as_text=True)
    group_id = created.get_json()["id"]
    assert test_entra.find_group(scim, test_entra.GROUP_NAME)["totalResults"] == 1
    replace = {test_entra.DOC_MEMBER_ID: user["id"]}
    added = scim(
        "PATCH", f"/Groups/{group_id}", json=test_entra.sample("add_members.json", replace)
    )
    assert added.status_code == 204, added.get_data(as_text=True)
    assert _members(scim, group_id) == {user["id"]}
    removed = scim(
        "PATCH", f"/Groups/{group_id}", json=test_entra.sample("remove_members.json", replace)
    )
    assert removed.status_code == 204
    assert _members(scim, group_id) == set()
    again = scim("POST", "/Groups", json=test_entra.sample("create_group.json"))
    assert assert_scim_error(again, 409)["scimType"] == "uniqueness"
    assert state(session, ready.id) == before
    assert forecast_of(session, previewing).counts == {"created": 1, "group": 1, "collision": 1}


def test_a_write_to_a_live_group_is_answered_and_not_applied(scim, session, issued, owner):
    user = provision(scim, "member@example.com")
    group = scim("POST", "/Groups", json={"schemas": [GROUP], "displayName": "Live"}).get_json()
    connector = session.get(ScimConnector, issued.connector.id)
    service.start_preview(session, connector, owner, utcnow())
    session.commit()
    before = state(session, connector.account_id)
    add = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": user["id"]}]}],
    }
    assert scim("PATCH", f"/Groups/{group['id']}", json=add).status_code == 204
    assert _members(scim, group["id"]) == set()  # the live group, unchanged
    assert scim("DELETE", f"/Groups/{group['id']}").status_code == 204
    assert scim("GET", f"/Groups/{group['id']}").status_code == 200
    assert state(session, connector.account_id) == before
    assert forecast_of(session, connector).counts == {"remove": 1}
