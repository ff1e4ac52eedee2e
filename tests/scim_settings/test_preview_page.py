"""The SCIM page's preview (SPEC F12): Enable with "Preview first", the forecast of
what the IdP's writes would do, Go live (the page says to restart provisioning), and
Switch to preview; owners and co-owners, with CSRF on every form."""

from __future__ import annotations

from sqlalchemy import func, select

from models import AuditEvent, Membership, ScimConnector, ScimPreview
from tests import factories
from tests.scim_settings.test_page import HTMX, PAGE, _fragment, _text, _token, _visible

SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def _enable_preview(client, idp="okta"):
    return client.post(
        f"{PAGE}/enable", data={"idp": idp, "lifetime": "90", "preview": "y"}, headers=HTMX
    )


def _connector(session) -> ScimConnector:
    session.expire_all()
    return session.scalar(select(ScimConnector))


def _actions(session) -> list[str]:
    session.expire_all()
    return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def _push(client, session, token: str, *user_names: str) -> None:
    base = f"/scim/v2/{_connector(session).public_id}"
    for name in user_names:
        response = client.post(
            f"{base}/Users",
            json={"schemas": [SCIM_USER], "userName": name},
            headers={"Authorization": f"Bearer {token}"},
            csrf=False,
        )
        assert response.status_code == 201, response.get_data(as_text=True)


def test_enable_with_preview_first(client, session, ready, signed_in):
    response = _enable_preview(client)
    page = _fragment(response, "connector-panel")
    assert _token(page)
    assert 'id="preview-panel"' in page and 'hx-swap-oob="true"' in page
    assert "Seats needed: 0 of" in _visible(page)
    assert _connector(session).mode == "preview"
    assert _actions(session)[-2:] == ["scim.enabled", "scim.preview_started"]


def test_enable_without_preview_is_live(client, session, ready, signed_in):
    client.post(f"{PAGE}/enable", data={"idp": "okta", "lifetime": "90"}, headers=HTMX)
    assert _connector(session).mode == "live"
    assert "Switch to preview" in _text(client.get(PAGE))


def test_forecast_counts_what_was_pushed(client, session, ready, signed_in):
    token = _token(_text(_enable_preview(client)))
    _push(client, session, token, "a@example.com", "b@example.com", "guest@elsewhere.test")
    page = _visible(_text(client.get(f"{PAGE}/preview")))
    assert "Would be created (a new person) 2" in page
    assert "Invited (email outside your verified domains) 1" in page
    assert "Seats needed: 3 of" in page
    assert "<html" in _text(client.get(PAGE)).lower()
    fragment = _fragment(client.get(f"{PAGE}/preview", headers=HTMX), "preview-panel")
    assert "guest@elsewhere.test" in fragment
    assert _count_members(session) == 1  # the owner only


def _count_members(session) -> int:
    return session.scalar(select(func.count()).select_from(Membership))


def test_go_live_applies_nothing_and_says_to_restart(client, session, ready, signed_in):
    token = _token(_text(_enable_preview(client)))
    _push(client, session, token, "a@example.com")
    response = client.post(f"{PAGE}/preview/go-live", headers=HTMX)
    page = _visible(_fragment(response, "preview-panel"))
    assert "Nothing from the preview was applied" in page
    assert "Restart provisioning in Okta (Push Groups / Force Sync)" in page
    assert "the next sync applies" in page
    connector = _connector(session)
    assert connector.mode == "live"
    assert session.scalar(select(func.count()).select_from(ScimPreview)) == 0
    assert _count_members(session) == 1
    assert _actions(session)[-1] == "scim.went_live"
    again = client.post(f"{PAGE}/preview/go-live", headers=HTMX)
    assert "live already" in _fragment(again, "preview-panel", 422)


def test_switch_to_preview_when_live(client, session, enabled):
    response = client.post(f"{PAGE}/preview/start", headers=HTMX)
    page = _visible(_fragment(response, "preview-panel"))
    assert "Go live" in page and "Nothing yet" in page
    assert _connector(session).mode == "preview"
    assert _actions(session)[-1] == "scim.preview_started"


def test_preview_forms_need_csrf(client, session, enabled):
    response = client.post(f"{PAGE}/preview/start", headers=HTMX, csrf=False)
    assert response.status_code == 400
    assert _connector(session).mode == "live"


def test_members_cannot_switch(client, session, ready, owner, login_as):
    member = factories.make_user(session, ready, "member@outside.test", role="member")
    login_as(member)
    assert client.post(f"{PAGE}/preview/start", headers=HTMX).status_code == 403
    assert client.get(f"{PAGE}/preview").status_code == 403


def test_switching_needs_scim_enabled(client, ready, signed_in):
    assert client.post(f"{PAGE}/preview/start", headers=HTMX).status_code == 404


def test_restart_hint_names_each_idps_way():
    from blueprints.scim_settings.connector import restart_hint

    assert restart_hint("entra") == "Microsoft Entra ID (Restart provisioning)"
    assert "Okta: Push Groups / Force Sync; Entra ID: Restart provisioning" in restart_hint("other")
