"""The deprovisioning policy panel of the SCIM page (SPEC F12): owners save "End access
now" or "Suspend for N days, then remove"; a bad N is refused next to the field with
nothing changed; the change is audited; co-owners see the policy but can't change it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from models import AuditEvent, ScimConnector
from tests import factories
from tests.scim_settings.test_page import HTMX, PAGE, _fragment, _text, _visible

POLICY = f"{PAGE}/deprovisioning"


def connector(session) -> ScimConnector:
    session.expire_all()
    return session.scalar(select(ScimConnector))


def save(client, mode="suspend", days="14", **kwargs):
    return client.post(POLICY, data={"mode": mode, "days": days}, headers=HTMX, **kwargs)


def test_page_shows_the_panel_with_the_default_policy(client, enabled):
    page = _text(client.get(PAGE))

    assert 'id="deprovision-panel"' in page
    assert "When the IdP deactivates or deletes a user" in page
    assert 'id="mode-remove" name="mode" value="remove" checked' in page
    assert "End access now" in page and "Suspend for N days, then remove" in page
    assert "doesn't move removals already scheduled" in _visible(page)


def test_panel_is_not_shown_before_scim_is_enabled(client, ready, signed_in):
    page = _text(client.get(PAGE))

    assert 'id="deprovision-panel"' in page  # the empty placeholder Enable swaps
    assert "When the IdP deactivates" not in page
    assert client.post(POLICY, data={"mode": "suspend", "days": "3"}).status_code == 404


def test_enable_swaps_the_panel_in(client, ready, signed_in):
    from tests.scim_settings.test_page import _enable

    page = _text(_enable(client))

    panel = page.split('id="deprovision-panel"', 1)[1].split(">", 1)[0]
    assert 'hx-swap-oob="true"' in panel
    assert "When the IdP deactivates or deletes a user" in page


def test_owner_saves_suspend_and_it_is_audited(client, session, enabled):
    page = _fragment(save(client, days="14"), "deprovision-panel")

    assert "Policy saved." in page
    assert 'value="suspend" checked' in page and 'value="14"' in page
    saved = connector(session)
    assert (saved.deprovision_mode, saved.suspend_days) == ("suspend", 14)
    event = session.scalar(
        select(AuditEvent).where(AuditEvent.action == "scim.deprovision_policy_changed")
    )
    assert event.detail == {
        "before": {"mode": "remove", "days": 30},
        "after": {"mode": "suspend", "days": 14},
    }
    assert event.actor_user_id is not None

    again = _fragment(save(client, days=" 14 "), "deprovision-panel")
    assert "Policy unchanged." in again
    assert (
        len(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action == "scim.deprovision_policy_changed")
            ).all()
        )
        == 1
    )


def test_owner_switches_back_to_remove_keeping_the_days(client, session, enabled):
    save(client, days="9")

    _fragment(save(client, mode="remove", days=""), "deprovision-panel")

    saved = connector(session)
    assert (saved.deprovision_mode, saved.suspend_days) == ("remove", 9)


@pytest.mark.parametrize(
    ("days", "message"),
    [
        ("0", "from 1 to 365"),
        ("366", "from 1 to 365"),
        ("-3", "from 1 to 365"),
        ("ten", "from 1 to 365"),
        ("2.5", "from 1 to 365"),
        ("٣", "from 1 to 365"),  # a digit to isdigit(), not to int() users expect
        ("", "how many days"),
        ("9" * 30, "from 1 to 365"),
    ],
)
def test_bad_days_are_shown_next_to_the_field_and_change_nothing(
    client, session, enabled, days, message
):
    page = _fragment(save(client, days=days), "deprovision-panel", 422)

    error = page.split('id="days-error">', 1)[1].split("</p>", 1)[0]
    assert message in error
    assert 'aria-describedby="days-error"' in page
    saved = connector(session)
    assert (saved.deprovision_mode, saved.suspend_days) == ("remove", 30)
    assert (
        session.scalar(
            select(AuditEvent).where(AuditEvent.action == "scim.deprovision_policy_changed")
        )
        is None
    )


def test_an_unknown_mode_is_refused(client, session, enabled):
    page = _fragment(save(client, mode="forever"), "deprovision-panel", 422)

    assert 'id="mode-error"' in page
    assert connector(session).deprovision_mode == "remove"


def test_saving_needs_the_csrf_token(client, session, enabled):
    response = save(client, csrf=False)

    assert response.status_code == 400
    assert connector(session).deprovision_mode == "remove"


def test_co_owner_sees_the_policy_but_cannot_change_it(app, session, account, enabled):
    save_as_owner = connector(session)
    save_as_owner.deprovision_mode, save_as_owner.suspend_days = "suspend", 21
    session.commit()
    deputy = factories.make_user(session, account, "deputy@example.com", role="co-owner")
    other = app.test_client()
    other.post("/login", data={"email": deputy.email, "passphrase": factories.PASSPHRASE})

    page = _text(other.get(PAGE))
    assert "Suspend for 21 days, then remove" in page
    assert "Only an owner can change it." in page
    assert 'name="mode"' not in page
    assert save(other, mode="remove").status_code == 403
    assert connector(session).deprovision_mode == "suspend"
