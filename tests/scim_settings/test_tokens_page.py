"""Named tokens on the SCIM page (SPEC F11): the tokens table, New token (name, lifetime,
passphrase; shown once), per-token Reveal token / Refresh Token / Revoke, the limit, and
the audit trail of each credential event, which names the token and never its secret."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from blueprints.scim_settings import connector as service
from models import AuditEvent, ScimToken
from tests import factories
from tests.scim_api.conftest import other_issued  # noqa: F401
from tests.scim_settings.test_page import (
    HTMX,
    PAGE,
    TOKEN,
    WRONG,
    _accepted,
    _connector,
    _default,
    _emails,
    _enable,
    _fragment,
    _text,
    _token,
)


def _new(client, name="Okta production", lifetime="90", passphrase=factories.PASSPHRASE):
    return client.post(
        f"{PAGE}/tokens/new",
        data={"name": name, "lifetime": lifetime, "passphrase": passphrase},
        headers=HTMX,
    )


def _named(session, name: str) -> ScimToken:
    session.expire_all()
    return session.scalar(
        select(ScimToken).where(ScimToken.name == name).order_by(ScimToken.id.desc())
    )


def _events(session) -> list[AuditEvent]:
    session.expire_all()
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.action.like("scim.token_%")).order_by(AuditEvent.id)
        )
    )


def _row(page: str, token: ScimToken) -> str:
    return re.search(rf'<tbody id="token-{token.id}".*?</tbody>', page, re.S).group(0)


def test_new_token_asks_for_name_lifetime_and_passphrase(client, enabled):
    page = _fragment(client.get(f"{PAGE}/tokens/new", headers=HTMX), "connector-actions")

    assert '<label for="name">Token name</label>' in page
    assert '<label for="lifetime">Token lifetime</label>' in page
    assert '<label for="passphrase">Passphrase</label>' in page
    assert 'hx-post="/enterprise/scim/tokens/new" hx-target="#connector-panel"' in page
    assert ">Create token</button>" in page
    assert 'name="csrf_token"' in page


def test_new_token_is_shown_once_with_copy_button_and_both_tokens_work(
    client, session, enabled, co_owner_of_ready
):
    before = len(_emails(session))

    page = _fragment(_new(client), "connector-panel")

    secret = _token(page)
    assert TOKEN.fullmatch(secret) and secret != enabled
    assert page.count(secret) == 1
    assert '<button type="button" class="copy" data-copy="#scim-token">Copy</button>' in page
    assert "Token “Okta production” created." in page
    created = _named(session, "Okta production")
    assert (created.expires_at - created.issued_at).days == 90
    assert created.created_by_user_id == created.bound_user_id
    row = _row(page, created)
    assert "Okta production" in row and "owner@example.com" in row and "Not yet" in row
    connector = _connector(session)
    assert _accepted(session, connector, enabled) is None
    assert _accepted(session, connector, secret) is None
    # The page again: the token is no longer there, the two rows are.
    again = _text(client.get(PAGE))
    assert secret not in again and enabled not in again
    assert again.count('<tbody id="token-') == 2
    notices = _emails(session)[before:]
    assert {e.subject for e in notices} == {"A SCIM token was created"}
    assert all(secret not in e.body_text + (e.body_html or "") for e in notices)


@pytest.fixture
def co_owner_of_ready(session, ready):
    return factories.make_user(session, ready, "co@example.com", role="co-owner")


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", "Give the token a name, such as the IdP app it is for."),
        ("   ", "Give the token a name, such as the IdP app it is for."),
        ("x" * 81, "Keep the name to 80 characters."),
        ("Default", 'A live token is already named "Default"; choose another name.'),
        ("default", 'A live token is already named "default"; choose another name.'),
    ],
)
def test_new_token_refuses_a_missing_or_taken_name_next_to_the_field(
    client, session, enabled, name, error
):
    response = _new(client, name=name)

    page = _fragment(response, "connector-panel", 422)
    match = re.search(r'<p class="error" id="name-error">([^<]+)</p>', page)
    assert match, page[-3000:]
    assert match.group(1) == error
    assert _token(page) is None and not TOKEN.search(page)
    assert 'id="connector-actions"' in page and ">Create token</button>" in page
    session.expire_all()
    assert len(_connector(session).tokens) == 1
    assert [e.action for e in _events(session)] == []


def test_new_token_refuses_a_wrong_passphrase(client, session, enabled):
    page = _fragment(_new(client, passphrase=WRONG), "connector-panel", 422)

    assert '<p class="error" id="passphrase-error">That passphrase is incorrect.</p>' in page
    assert _named(session, "Okta production") is None


def test_new_token_beyond_the_limit_is_refused_with_a_clear_error(app, client, session, enabled):
    app.config["SCIM_MAX_TOKENS"] = 3
    for n in (1, 2):
        _fragment(_new(client, name=f"Token {n}"), "connector-panel")

    page = _fragment(_new(client, name="One too many"), "connector-panel", 422)

    error = re.search(r'<p class="error form-error" id="new-token-error"[^>]*>([^<]+)</p>', page)
    assert error and "already has 3 live tokens, the most it may have" in error.group(1)
    assert "Revoke one you no longer use first." in error.group(1)
    assert _named(session, "One too many") is None
    # Revoking one frees a place.
    client.post(
        f"{PAGE}/tokens/{_named(session, 'Token 1').id}/revoke",
        data={"passphrase": factories.PASSPHRASE},
        headers=HTMX,
    )
    assert _token(_fragment(_new(client, name="One too many"), "connector-panel"))


def test_revoke_asks_for_the_passphrase_then_refuses_that_token_only(client, session, enabled):
    secret = _token(_text(_new(client)))
    created = _named(session, "Okta production")
    panel = f"token-panel-{created.id}"

    form = _fragment(client.get(f"{PAGE}/tokens/{created.id}/revoke", headers=HTMX), panel)
    assert "the other tokens keep working" in form
    assert re.search(r'<button type="submit" class="danger">Revoke</button>', form)
    refused = client.post(
        f"{PAGE}/tokens/{created.id}/revoke", data={"passphrase": WRONG}, headers=HTMX
    )
    assert "That passphrase is incorrect." in _fragment(refused, "connector-panel", 422)
    assert _accepted(session, _connector(session), secret) is None

    page = _fragment(
        client.post(
            f"{PAGE}/tokens/{created.id}/revoke",
            data={"passphrase": factories.PASSPHRASE},
            headers=HTMX,
        ),
        "connector-panel",
    )

    assert "Token “Okta production” revoked: it is refused now." in page
    row = _row(page, created)
    assert f'id="token-state-{created.id}">Revoked</span>' in row
    assert "Reveal token" not in row and "Revoke</button>" not in row
    connector = _connector(session)
    assert _accepted(session, connector, secret) == "revoked"
    assert _accepted(session, connector, enabled) is None
    # A revoked token has no actions left.
    assert client.get(f"{PAGE}/tokens/{created.id}/reveal", headers=HTMX).status_code == 404


def test_revoking_the_last_live_token_is_allowed_and_the_page_says_the_idp_is_refused(
    client, session, enabled
):
    default = _default(session)
    form = _fragment(
        client.get(f"{PAGE}/tokens/{default.id}/revoke", headers=HTMX), f"token-panel-{default.id}"
    )
    assert "It is the last live token" in form

    page = _fragment(
        client.post(
            f"{PAGE}/tokens/{default.id}/revoke",
            data={"passphrase": factories.PASSPHRASE},
            headers=HTMX,
        ),
        "connector-panel",
    )

    assert 'id="no-live-token"' in page
    assert _accepted(session, _connector(session), enabled) == "revoked"
    assert _connector(session).enabled  # SCIM stays on; New token brings the IdP back
    assert _token(_fragment(_new(client, name="Default"), "connector-panel"))


def test_reveal_and_refresh_act_on_their_own_token(client, session, enabled):
    secret = _token(_text(_new(client)))
    created = _named(session, "Okta production")

    revealed = client.post(
        f"{PAGE}/tokens/{created.id}/reveal",
        data={"passphrase": factories.PASSPHRASE},
        headers=HTMX,
    )
    assert _token(_fragment(revealed, f"token-panel-{created.id}")) == secret

    page = _fragment(
        client.post(
            f"{PAGE}/tokens/{created.id}/refresh",
            data={"passphrase": factories.PASSPHRASE},
            headers=HTMX,
        ),
        "connector-panel",
    )

    renewed = _token(page)
    assert renewed not in (secret, enabled)
    assert "The previous token keeps working until" in page
    connector = _connector(session)
    assert _accepted(session, connector, renewed) is None
    assert _accepted(session, connector, secret) is None  # its grace
    assert _accepted(session, connector, enabled) is None  # "Default": untouched
    assert _named(session, "Default").token_hash == service.token_hash(enabled)


def test_a_token_of_another_account_is_404_on_this_page(
    client,
    session,
    enabled,
    other_issued,  # noqa: F811
):
    theirs = other_issued
    for action in ("reveal", "refresh", "revoke", "access"):
        url = f"{PAGE}/tokens/{theirs.scim_token.id}/{action}"
        assert client.get(url, headers=HTMX).status_code == 404
        data = {"passphrase": factories.PASSPHRASE, "access-passphrase": factories.PASSPHRASE}
        response = client.post(url, data=data | {"access-read_only": "y"}, headers=HTMX)
        assert response.status_code == 404
        assert theirs.token not in response.get_data(as_text=True)
    assert _accepted(session, theirs.connector, theirs.token) is None
    session.expire_all()
    assert session.get(ScimToken, theirs.scim_token.id).read_only is False


def test_every_credential_event_is_audited_naming_the_token_never_its_secret(
    client, session, enabled
):
    secret = _token(_text(_new(client)))
    created = _named(session, "Okta production")
    for action in ("reveal", "refresh", "revoke"):
        client.post(
            f"{PAGE}/tokens/{created.id}/{action}",
            data={"passphrase": factories.PASSPHRASE},
            headers=HTMX,
        )

    events = _events(session)

    assert [(e.action, e.target, e.detail["token"]) for e in events] == [
        ("scim.token_created", "SCIM token Okta production", "Okta production"),
        ("scim.token_revealed", "SCIM token Okta production", "Okta production"),
        ("scim.token_refreshed", "SCIM token Okta production", "Okta production"),
        ("scim.token_revoked", "SCIM token Okta production", "Okta production"),
    ]
    assert {e.detail["token_id"] for e in events} == {created.id}
    everything = str([(e.action, e.target, e.detail) for e in session.scalars(select(AuditEvent))])
    assert secret not in everything and enabled not in everything
    assert secret.removeprefix("scim_") not in everything
    # The audit log page has a label for each.
    log = _text(client.get("/enterprise/audit"))
    for label in ("SCIM token created", "SCIM token revealed", "SCIM token revoked"):
        assert label in log


def test_disable_revokes_every_token_and_enable_starts_again_with_default(client, session, enabled):
    secret = _token(_text(_new(client)))
    client.post(f"{PAGE}/disable", data={"passphrase": factories.PASSPHRASE}, headers=HTMX)
    connector = _connector(session)
    assert {t.name: t.revoked_at is not None for t in connector.tokens} == {
        "Default": True,
        "Okta production": True,
    }
    assert _accepted(session, connector, secret) == "disabled"

    page = _fragment(_enable(client, "okta", "30"), "connector-panel")

    assert page.count('<tbody id="token-') == 1  # the earlier set-up's tokens aren't listed
    assert _default(session).name == "Default"
    assert _accepted(session, _connector(session), secret) == "revoked"
