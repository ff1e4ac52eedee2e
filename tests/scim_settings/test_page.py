"""The SCIM page and its HTMX fragments (SPEC F4): the checklist, Enable SCIM, Reveal
token, Refresh Token → Passphrase → Refresh Token, Disable, the badge and the request log."""

from __future__ import annotations

import html
import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from blueprints.common.crypto import decrypt
from blueprints.scim_settings import connector as service
from models import (
    AuditEvent,
    Membership,
    OutboxEmail,
    ScimConnector,
    ScimRequestLog,
    ScimToken,
    SsoConnection,
    utcnow,
)
from tests import factories

PAGE = "/enterprise/scim"
HTMX = {"HX-Request": "true", "HX-Current-URL": "http://localhost/enterprise/scim"}
WRONG = "not my passphrase at all"
TOKEN = re.compile(r"scim_[A-Za-z0-9_-]{43}")


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _visible(page: str) -> str:
    """The text a person reads: tags dropped, white space collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def _root_id(page: str) -> str:
    """The id of the fragment's root element (STYLE §3: one fragment, one root)."""
    match = re.match(r'\s*<\w+[^>]*?\bid="([^"]+)"', page)
    assert match, page[:300]
    return match.group(1)


def _fragment(response, root: str, status: int = 200) -> str:
    page = _text(response)
    assert response.status_code == status, page[-2000:]
    assert "<html" not in page
    assert _root_id(page) == root
    return page


def _token(page: str) -> str | None:
    match = re.search(r'<code id="scim-token">([^<]+)</code>', page)
    return match.group(1) if match else None


def _url(page: str) -> str:
    return re.search(r'<code id="scim-url">([^<]+)</code>', page).group(1)


def _checklist(page: str) -> list[str]:
    return re.findall(r'<li class="(done|todo)">', page)


def _connector(session) -> ScimConnector | None:
    session.expire_all()
    return session.scalar(select(ScimConnector))


def _count(session, model, *where) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model).where(*where))


def _events(session, action: str) -> list[AuditEvent]:
    session.expire_all()
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def _emails(session) -> list[OutboxEmail]:
    session.expire_all()
    return list(session.scalars(select(OutboxEmail).order_by(OutboxEmail.id)))


def _accepted(session, connector, token, now=None) -> str | None:
    session.expire_all()
    header = f"Bearer {token}"
    reason = service.authenticate(session, connector.public_id, header, now or utcnow()).reason
    session.commit()  # as the SCIM request that authenticated would, with its log row
    return reason


def _enable(client, idp="okta", lifetime="90"):
    return client.post(f"{PAGE}/enable", data={"idp": idp, "lifetime": lifetime}, headers=HTMX)


def _default(session) -> ScimToken | None:
    """The connector's first live token: "Default", the one Enable SCIM created."""
    session.expire_all()
    return session.scalar(
        select(ScimToken).where(ScimToken.revoked_at.is_(None)).order_by(ScimToken.id)
    )


def _path(action: str) -> str:
    """The URL of a page action: the connector's (enable, disable, log…) or, for reveal,
    refresh, revoke and token (its panel), the "Default" token's (SPEC F11: per token)."""
    if action not in ("reveal", "refresh", "revoke", "token"):
        return f"{PAGE}/{action}" if action else PAGE
    from blueprints.common.extensions import db

    token = _default(db.session)
    base = f"{PAGE}/tokens/{token.id if token else 999999}"
    return base if action == "token" else f"{base}/{action}"


def _panel_id(session) -> str:
    return f"token-panel-{_default(session).id}"


def _passphrase(client, action: str, passphrase: str = factories.PASSPHRASE):
    return client.post(_path(action), data={"passphrase": passphrase}, headers=HTMX)


@pytest.fixture
def co_owner(session, account):
    return factories.make_user(session, account, "co@example.com", role="co-owner")


# --- the checklist --------------------------------------------------------------------------


def test_checklist_shows_missing_steps_with_links_when_nothing_is_set_up(client, signed_in):
    page = _text(client.get(PAGE))

    assert _checklist(page) == ["todo"] * 4
    assert '<a href="/enterprise/domains">verify a domain</a>' in page
    assert '<a href="/enterprise/sso">enable SSO</a>' in page
    assert "/enterprise/scim/enable" not in page
    assert "Enable SCIM</button>" not in page


@pytest.mark.parametrize(
    ("domain", "sso", "checklist", "still_missing"),
    [
        ("verified", False, ["done", "todo", "todo", "todo"], "enable SSO"),
        ("pending", True, ["todo", "done", "todo", "todo"], "verify a domain"),
        ("failed", True, ["todo", "done", "todo", "todo"], "verify a domain"),
    ],
)
def test_checklist_ticks_only_steps_that_hold(
    client, session, account, signed_in, domain, sso, checklist, still_missing
):
    factories.make_domain(session, account, "example.com", status=domain)
    session.add(SsoConnection(account_id=account.id, public_id="s1", protocol="oidc", enabled=sso))
    session.commit()

    page = _text(client.get(PAGE))

    assert _checklist(page) == checklist
    assert f">{still_missing}</a>" in page
    assert "Enable SCIM</button>" not in page


def test_checklist_ignores_another_accounts_domain_and_sso(client, session, signed_in):
    other = factories.make_account(session, name="Other")
    factories.make_domain(session, other, "example.org", verified=True)
    session.add(SsoConnection(account_id=other.id, public_id="s2", protocol="oidc", enabled=True))
    session.commit()

    assert _checklist(_text(client.get(PAGE))) == ["todo"] * 4


def test_checklist_offers_enable_form_when_domain_verified_and_sso_on(client, ready, signed_in):
    page = _text(client.get(PAGE))

    assert _checklist(page) == ["done", "done", "todo", "todo"]
    assert 'hx-post="/enterprise/scim/enable"' in page
    assert "Enable SCIM</button>" in page
    idps = re.search(r'<select[^>]*name="idp".*?</select>', page, re.S).group(0)
    assert re.findall(r"<option[^>]*>([^<]+)</option>", idps) == list(service.IDPS.values())
    lifetimes = re.search(r'<select[^>]*name="lifetime".*?</select>', page, re.S).group(0)
    assert re.findall(r'<option[^>]*value="([^"]+)"', lifetimes) == [
        "30",
        "90",
        "180",
        "365",
        "730",
        "never",
    ]
    assert re.findall(r"<option[^>]*>([^<]+)</option>", lifetimes) == [
        "30 days",
        "90 days",
        "180 days",
        "1 year",
        "2 years",
        "No expiry",
    ]


def test_checklist_ticks_last_step_after_first_authenticated_request(client, session, enabled):
    assert _checklist(_text(client.get(PAGE))) == ["done", "done", "done", "todo"]
    connector = _connector(session)
    assert _accepted(session, connector, "scim_" + "x" * 43) == "unknown"
    assert _checklist(_text(client.get(PAGE))) == ["done", "done", "done", "todo"]

    assert _accepted(session, connector, enabled) is None

    page = _text(client.get(PAGE))
    assert _checklist(page) == ["done"] * 4
    assert "first request" in page


# --- who may see it -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "action"),
    [
        ("GET", ""),
        ("GET", "log"),
        ("GET", "token"),
        ("POST", "enable"),
        ("GET", "reveal"),
        ("POST", "reveal"),
        ("GET", "refresh"),
        ("POST", "refresh"),
        ("GET", "revoke"),
        ("POST", "revoke"),
        ("GET", "tokens/new"),
        ("POST", "tokens/new"),
        ("GET", "actions"),
        ("POST", "disable"),
    ],
)
def test_members_get_403_everywhere_on_the_scim_page(
    client, session, ready, owner, login_as, method, action
):
    service.enable(session, ready.id, owner, "okta", "90", utcnow())
    member = factories.make_user(session, ready, "member@outside.test", role="member")
    login_as(member)

    response = client.open(
        _path(action),
        method=method,
        data={
            "idp": "okta",
            "lifetime": "90",
            "name": "Mine",
            "passphrase": factories.PASSPHRASE,
        },
        headers=HTMX,
    )

    assert response.status_code == 403
    assert "scim_" not in response.get_data(as_text=True)
    scim_events = (AuditEvent.action.like("scim.%"), AuditEvent.action != "scim.enabled")
    assert _count(session, AuditEvent, *scim_events) == 0


def test_co_owner_can_use_the_scim_page(client, session, ready, co_owner, login_as):
    login_as(co_owner)

    assert _token(_fragment(_enable(client), "connector-panel"))
    assert _default(session).bound_user_id == co_owner.id


def test_signed_out_htmx_request_gets_401_with_redirect(client, session, ready):
    response = _enable(client)

    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login?next=/enterprise/scim"
    assert (
        _count(session=client.application.extensions["sqlalchemy"].session, model=ScimConnector)
        == 0
    )


# --- enable ---------------------------------------------------------------------------------


def test_enable_returns_panel_with_url_token_once_and_okta_steps(client, session, ready, signed_in):
    response = _enable(client, "okta", "90")

    page = _fragment(response, "connector-panel")
    connector = _connector(session)
    url = f"http://localhost/scim/v2/{connector.public_id}"
    token = _token(page)
    assert TOKEN.fullmatch(token)
    assert _url(page) == url
    assert page.count(token) == 1
    assert '<button type="button" class="copy" data-copy="#scim-url">Copy</button>' in page
    assert '<button type="button" class="copy" data-copy="#scim-token">Copy</button>' in page
    assert _checklist(page) == ["done", "done", "done", "todo"]
    # Okta: the base URL, `email` as the unique identifier, push users and groups.
    steps = re.search(r'<section class="card" id="idp-steps">.*?</section>', page, re.S).group(0)
    assert "Configure Okta" in steps
    assert f"SCIM connector base URL</strong> to <code>{url}</code>" in steps
    assert "Unique identifier field for users</strong> to <code>email</code>" in steps
    assert "Push New Users" in steps and "Push Groups" in steps
    default = _default(session)
    assert default.expires_at - default.issued_at == timedelta(days=90)
    assert default.token_hash == service.token_hash(token)
    assert default.name == "Default"
    # The request log, rendered before there was a connector, is swapped for a polling one.
    log = re.search(r'<section class="card" id="request-log"[^>]*>', page).group(0)
    assert 'hx-swap-oob="true"' in log and 'hx-trigger="every 10s"' in log
    assert "hx-swap-oob" not in _text(client.get(PAGE))


def test_enable_shows_entra_steps_with_tenant_url_and_secret_token(
    client, session, ready, signed_in
):
    page = _fragment(_enable(client, "entra", "365"), "connector-panel")

    url = _url(page)
    steps = re.search(r'<section class="card" id="idp-steps">.*?</section>', page, re.S).group(0)
    assert "Configure Microsoft Entra ID" in steps
    assert f"Tenant URL</strong> to <code>{url}</code>" in steps
    assert "Secret Token" in steps and "Test Connection" in steps
    assert "Okta" not in steps


def test_enable_shows_generic_steps_for_other_idp(client, ready, signed_in):
    page = _fragment(_enable(client, "other", "30"), "connector-panel")

    assert f"base URL <code>{_url(page)}</code>" in page
    assert "Authorization: Bearer <token>" in page


@pytest.mark.parametrize(
    ("lifetime", "days"),
    [("30", 30), ("90", 90), ("180", 180), ("365", 365), ("730", 730), ("never", None)],
)
def test_enable_sets_expiry_from_chosen_lifetime(client, session, ready, signed_in, lifetime, days):
    before = utcnow()
    page = _fragment(_enable(client, "okta", lifetime), "connector-panel")

    default = _default(session)
    assert before <= default.issued_at <= utcnow()
    if days is None:
        assert default.expires_at is None
        assert "Valid, no expiry" in page
        assert "<td>Never</td>" in page
    else:
        assert default.expires_at == default.issued_at + timedelta(days=days)
        assert default.expires_at.strftime("%Y-%m-%d %H:%M UTC") in _visible(page)


@pytest.mark.parametrize(
    "data",
    [
        {"idp": "google", "lifetime": "90"},
        {"idp": "okta", "lifetime": "7"},
        {"idp": "okta", "lifetime": "-1"},
        {"idp": "okta"},
        {"lifetime": "90"},
        {},
    ],
)
def test_enable_refuses_invalid_choice_with_422_and_creates_nothing(
    client, session, ready, signed_in, data
):
    response = client.post(f"{PAGE}/enable", data=data, headers=HTMX)

    page = _fragment(response, "connector-panel", 422)
    assert "Choose an IdP and a lifetime." in page
    assert 'aria-invalid="true"' in page
    assert "Enable SCIM</button>" in page
    assert _count(session, ScimConnector) == 0
    assert _count(session, AuditEvent, AuditEvent.action.like("scim.%")) == 0


def test_enable_refuses_without_prerequisites(client, session, account, signed_in):
    factories.make_domain(session, account, "example.com", verified=True)

    page = _fragment(_enable(client), "connector-panel", 422)

    assert "Verify a domain and enable SSO before enabling SCIM." in page
    assert _count(session, ScimConnector) == 0


def test_enable_refuses_second_time_and_keeps_first_token(client, session, enabled):
    response = _enable(client, "entra", "30")

    page = _fragment(response, "connector-panel", 422)
    assert "SCIM is already enabled." in page
    assert _token(page) is None
    connector = _connector(session)
    assert (connector.idp, _default(session).lifetime_days) == ("okta", 90)
    assert _accepted(session, connector, enabled) is None
    assert len(_events(session, "scim.enabled")) == 1


def test_enable_needs_csrf_token(client, session, ready, signed_in):
    response = client.post(
        f"{PAGE}/enable", data={"idp": "okta", "lifetime": "90"}, headers=HTMX, csrf=False
    )

    assert response.status_code == 400
    assert response.headers["HX-Retarget"] == "#messages"
    assert _count(session, ScimConnector) == 0


def test_enable_after_disable_keeps_url_with_new_token(client, session, enabled):
    url = _url(_text(client.get(PAGE)))
    _fragment(_passphrase(client, "disable"), "connector-panel")

    page = _fragment(_enable(client, "entra", "30"), "connector-panel")

    assert _url(page) == url
    assert _token(page) not in (None, enabled)
    assert _count(session, ScimConnector) == 1
    connector = _connector(session)
    assert _accepted(session, connector, enabled) == "revoked"  # disabling revoked it
    assert _accepted(session, connector, _token(page)) is None


# --- the token never leaks ------------------------------------------------------------------


def test_token_shows_only_in_issue_and_reveal_fragments(client, session, enabled):
    connector = _connector(session)
    service.authenticate(session, connector.public_id, f"Bearer {enabled}", utcnow())
    session.add(
        ScimRequestLog(
            connector_id=connector.id,
            method="GET",
            resource="/Users",
            status=200,
            outcome="success",
        )
    )
    session.commit()

    for path in map(_path, ["", "log", "token", "reveal", "refresh", "revoke", "tokens/new"]):
        for headers in ({}, HTMX):
            body = client.get(path, headers=headers).get_data(as_text=True)
            assert enabled not in body, path
            assert not TOKEN.search(body), path
    refused = _passphrase(client, "reveal", WRONG).get_data(as_text=True)
    assert not TOKEN.search(refused)
    for email in _emails(session):
        assert enabled not in email.body_text + (email.body_html or "")
    assert enabled not in str(
        [(e.action, e.target, e.detail) for e in _events(session, "scim.enabled")]
    )


def test_token_never_reaches_the_logs(client, session, ready, signed_in, caplog):
    """Everything at DEBUG, SQL statements and their parameters included."""
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy", "sqlalchemy.engine", "sqlalchemy.engine.Engine"):
        caplog.set_level(logging.DEBUG, logger=name)  # alembic's logging config quiets them

    first = _token(_text(_enable(client)))
    revealed = _token(_text(_passphrase(client, "reveal")))
    second = _token(_text(_passphrase(client, "refresh")))
    connector = _connector(session)
    for token in (first, second, "scim_" + "y" * 43):
        _accepted(session, connector, token)
        service.authenticate(session, "no-such-connector", f"Bearer {token}", utcnow())
    _passphrase(client, "disable")
    _accepted(session, connector, second)

    assert first == revealed and first and second
    assert any(r.name.startswith("sqlalchemy.engine") for r in caplog.records)
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for token in (first, second):
        assert token not in logged
        assert token.removeprefix("scim_") not in logged


# --- reveal token ---------------------------------------------------------------------------


def test_reveal_asks_for_passphrase_in_token_panel(client, session, enabled):
    panel = _panel_id(session)
    page = _fragment(client.get(_path("reveal"), headers=HTMX), panel)

    assert '<label for="passphrase">Passphrase</label>' in page
    assert 'type="password"' in page and 'autocomplete="current-password"' in page
    assert f'hx-post="{_path("reveal")}" hx-target="#{panel}"' in page
    assert "Reveal token</button>" in page
    assert 'name="csrf_token"' in page


@pytest.mark.parametrize(
    ("passphrase", "error"),
    [(WRONG, "That passphrase is incorrect."), ("", "This field is required.")],
)
def test_reveal_refuses_wrong_passphrase_with_form_again(
    client, session, co_owner, enabled, passphrase, error
):
    emails = len(_emails(session))

    response = _passphrase(client, "reveal", passphrase)

    page = _fragment(response, _panel_id(session), 422)
    assert "HX-Retarget" not in response.headers  # the form posts to the token panel
    assert f'<p class="error" id="passphrase-error">{error}</p>' in page
    assert 'aria-invalid="true"' in page
    assert "Reveal token</button>" in page
    assert _token(page) is None and not TOKEN.search(page)
    assert _events(session, "scim.token_revealed") == []
    assert len(_emails(session)) == emails


def test_reveal_shows_token_with_copy_button_audits_and_notifies_owners(
    client, session, owner, co_owner, enabled
):
    factories.make_user(session, owner.memberships[0].account, "m@example.com", role="member")
    emails = len(_emails(session))

    response = _passphrase(client, "reveal")

    page = _fragment(response, _panel_id(session))
    assert _token(page) == enabled == decrypt(_default(session).token_encrypted)
    assert '<button type="button" class="copy" data-copy="#scim-token">Copy</button>' in page
    assert "Hide token</button>" in page
    [event] = _events(session, "scim.token_revealed")
    assert event.actor_user_id == owner.id
    assert (event.target, event.detail["token"]) == ("SCIM token Default", "Default")
    notices = _emails(session)[emails:]
    assert sorted(e.to_addr for e in notices) == ["co@example.com", "owner@example.com"]
    assert {e.subject for e in notices} == {"Your SCIM token was revealed"}
    assert "By:   owner@example.com" in notices[0].body_text


def test_hide_token_brings_back_the_buttons(client, session, enabled):
    page = _fragment(client.get(_path("token"), headers=HTMX), _panel_id(session))

    assert _token(page) is None
    for label in ("Reveal token", "Refresh Token", "Revoke"):
        assert f">{label}</button>" in page


@pytest.mark.parametrize("action", ["reveal", "refresh", "disable"])
def test_token_actions_are_404_while_scim_is_off(client, session, ready, signed_in, action):
    assert client.get(_path(action), headers=HTMX).status_code == 404
    assert _passphrase(client, action).status_code == 404
    assert _events(session, f"scim.token_{action}ed") == []


# --- Refresh Token → Passphrase → Refresh Token -------------------------------------------


def test_refresh_button_opens_passphrase_form_labelled_as_the_seed(client, session, enabled):
    buttons = _text(client.get(PAGE))
    refresh = _path("refresh")
    assert re.search(rf'hx-get="{refresh}"[^>]*>Refresh Token</button>', buttons)

    page = _fragment(client.get(refresh, headers=HTMX), _panel_id(session))

    assert '<label for="passphrase">Passphrase</label>' in page
    assert re.search(r'<button type="submit" class="primary">Refresh Token</button>', page)
    assert "keeps working for 24 hours" in page
    assert f'hx-post="{refresh}" hx-target="#connector-panel"' in page


def test_refresh_refuses_wrong_passphrase_in_place_of_the_form(client, session, enabled):
    """The form posts to the whole connector panel (a refresh changes the badge, the
    times and the banner): the refusal is that panel, whole, with the form in its token
    panel, never a lone passphrase form in the panel's place."""
    response = _passphrase(client, "refresh", WRONG)

    page = _fragment(response, "connector-panel", 422)
    assert "HX-Retarget" not in response.headers
    assert _url(page)  # the connector URL and the rest of the panel are still there
    token_panel = page[page.index(f'<div id="{_panel_id(session)}"') :]
    assert "That passphrase is incorrect." in token_panel
    assert f'hx-post="{_path("refresh")}" hx-target="#connector-panel"' in token_panel
    assert "Refresh Token</button>" in page
    assert _accepted(session, _connector(session), enabled) is None
    assert _events(session, "scim.token_refreshed") == []


def test_refresh_issues_new_token_on_same_url_with_grace_note(
    client, session, owner, co_owner, enabled, login_as
):
    url = _url(_text(client.get(PAGE)))
    connector = _default(session)
    connector.refresh_failure_reason = "Single sign-on is off."
    connector.refresh_failed_at = connector.expires_at = utcnow() + timedelta(days=5)
    session.commit()
    assert 'id="scim-warning"' in _text(client.get(PAGE))
    login_as(co_owner)
    emails = len(_emails(session))

    response = _passphrase(client, "refresh")

    page = _fragment(response, "connector-panel")
    new = _token(page)
    assert TOKEN.fullmatch(new) and new != enabled
    assert _url(page) == url
    assert 'id="scim-warning"' not in page
    connector = _default(session)
    until = connector.previous_valid_until
    assert until - connector.refreshed_at == timedelta(hours=24)
    assert f"The previous token keeps working until {until:%Y-%m-%d %H:%M} UTC." in page
    assert "by co@example.com" in page
    assert connector.bound_user_id == co_owner.id
    assert (connector.refresh_failure_reason, connector.refresh_failed_at) == (None, None)
    assert connector.expires_at == connector.refreshed_at + timedelta(days=90)
    # The old token keeps working for the grace period, and not a minute after it.
    connector = _connector(session)
    assert _accepted(session, connector, enabled) is None
    assert _accepted(session, connector, new) is None
    assert _accepted(session, connector, enabled, utcnow() + timedelta(hours=25)) == "unknown"
    assert _accepted(session, connector, new, utcnow() + timedelta(hours=25)) is None
    [event] = _events(session, "scim.token_refreshed")
    assert event.actor_user_id == co_owner.id
    notices = _emails(session)[emails:]
    assert sorted(e.to_addr for e in notices) == ["co@example.com", "owner@example.com"]
    assert {e.subject for e in notices} == {"Your SCIM token was refreshed"}


def test_refresh_of_expired_token_says_it_stays_refused(client, session, enabled):
    _default(session).expires_at = utcnow() - timedelta(days=1)
    session.commit()
    connector = _connector(session)
    assert "Expired" in _text(client.get(PAGE))

    page = _fragment(_passphrase(client, "refresh"), "connector-panel")

    assert "The previous token had expired; it stays refused." in page
    assert _accepted(session, connector, enabled) == "unknown"
    assert re.search(r'id="token-state-\d+">Valid</span>', page)


# --- disable --------------------------------------------------------------------------------


def test_disable_asks_for_passphrase_then_offers_enable_again(client, session, ready, enabled):
    for n in range(3):
        factories.make_user(session, ready, f"scim{n}@example.com", source="scim")
    members = [(m.user_id, m.source, m.active) for m in session.scalars(select(Membership))]
    form = _fragment(client.get(f"{PAGE}/disable", headers=HTMX), "connector-actions")
    assert "Disable SCIM</button>" in form and "Members stay" in form
    refused = _passphrase(client, "disable", WRONG)
    assert "That passphrase is incorrect." in _fragment(refused, "connector-panel", 422)
    assert _connector(session).enabled

    page = _fragment(_passphrase(client, "disable"), "connector-panel")

    assert "Enable SCIM</button>" in page
    assert "Enabling it again keeps the same connector URL" in page
    assert _checklist(page) == ["done", "done", "todo", "todo"]
    assert _token(page) is None
    assert _accepted(session, _connector(session), enabled) == "disabled"
    assert [(m.user_id, m.source, m.active) for m in session.scalars(select(Membership))] == members
    assert len(_events(session, "scim.disabled")) == 1


# --- the badge ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "name", "label"),
    [
        (timedelta(days=100), "valid", "Valid"),
        (timedelta(days=20, hours=2), "valid", "Valid"),
        (timedelta(days=19, hours=23), "expiring", "Expiring soon: 19 days left"),
        (timedelta(days=1, hours=1), "expiring", "Expiring soon: 1 day left"),
        (timedelta(minutes=-1), "expired", "Expired"),
        (None, "no_expiry", "Valid, no expiry"),
    ],
)
def test_badge_shows_token_state_from_expiry(client, session, enabled, expires_in, name, label):
    token = _default(session)
    token.expires_at = utcnow() + expires_in if expires_in is not None else None
    session.commit()

    page = _text(client.get(PAGE))

    badge = f'<span class="badge token-state {name}" id="token-state-{token.id}">{label}</span>'
    assert badge in page


def test_badge_lists_issued_refreshed_by_expires_and_last_used(client, session, co_owner, enabled):
    """The token's row: name, state, issued, last refreshed (by whom), expires, last used
    (time and client address), created by."""
    token = _default(session)
    token.issued_at = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    token.refreshed_at = datetime(2030, 2, 3, 4, 5, tzinfo=UTC)
    token.refreshed_by_user_id = co_owner.id
    token.expires_at = datetime(2030, 5, 4, 3, 2, tzinfo=UTC)
    session.commit()
    assert "<td>Not yet</td>" in _text(client.get(PAGE))
    service.authenticate(
        session,
        _connector(session).public_id,
        f"Bearer {enabled}",
        datetime(2030, 3, 1, 12, 0, tzinfo=UTC),
        addr="203.0.113.7",
    )
    session.commit()

    page = _text(client.get(PAGE))

    row = re.search(rf'<tbody id="token-{token.id}".*?</tr>', page, re.S).group(0)
    cells = [_visible(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    assert cells == [
        "Default created by owner@example.com",
        "Valid",
        "2030-01-02 03:04 UTC",
        "2030-02-03 04:05 UTC by co@example.com",
        "2030-05-04 03:02 UTC",
        "2030-03-01 12:00 UTC from 203.0.113.7",
        "Read and write any address",
    ]
    assert f'<span class="badge token-state valid" id="token-state-{token.id}">Valid</span>' in row


# --- the request log ------------------------------------------------------------------------


def _log_rows(session, connector_id: int, rows: list[tuple[str, str, int]]) -> None:
    base = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    for minute, (method, resource, status) in enumerate(rows):
        session.add(
            ScimRequestLog(
                connector_id=connector_id,
                method=method,
                resource=resource,
                status=status,
                outcome="success" if status < 400 else "failure",
                detail=None if status < 400 else f"error {status}",
                remote_addr=f"198.51.100.{minute + 1}",
                created_at=base + timedelta(minutes=minute),
            )
        )
    session.commit()


def _requests(page: str) -> list[str]:
    return re.findall(r"<td><code>([^<]+)</code></td>", page)


ROWS = [
    ("GET", "/Users", 200),
    ("POST", "/Users", 201),
    ("PATCH", "/Users/1", 400),
    ("GET", "/Groups", 200),
    ("DELETE", "/Users/2", 401),
]


@pytest.fixture
def logged(session, enabled):
    """Five requests on this account's connector and two on another account's."""
    _log_rows(session, _connector(session).id, ROWS)
    other = factories.make_account(session, name="Other")
    theirs = ScimConnector(account_id=other.id, public_id="other-connector", enabled=True)
    session.add(theirs)
    session.commit()
    _log_rows(session, theirs.id, [("PUT", "/Users/theirs", 200), ("GET", "/Secret", 500)])


def test_request_log_fragment_lists_requests_newest_first_and_polls(client, logged):
    response = client.get(f"{PAGE}/log", headers=HTMX)

    page = _fragment(response, "request-log")
    assert response.headers["Vary"] == "HX-Request" or "HX-Request" in response.headers["Vary"]
    assert _requests(page) == [
        "DELETE /Users/2",
        "GET /Groups",
        "PATCH /Users/1",
        "POST /Users",
        "GET /Users",
    ]
    root = re.match(r"\s*<section[^>]*>", page).group(0)
    assert 'hx-trigger="every 10s"' in root
    assert 'hx-get="/enterprise/scim/log"' in root
    assert "2030-01-01 12:04:00" in page and "error 401" in page
    # Who called: the client's address, in a column of its own.
    assert "<th>From</th>" in page
    assert re.findall(r"<td>(198\.51\.100\.\d+)</td>", page) == [
        "198.51.100.5",
        "198.51.100.4",
        "198.51.100.3",
        "198.51.100.2",
        "198.51.100.1",
    ]


@pytest.mark.parametrize(
    ("outcome", "shown"),
    [
        ("success", ["GET /Groups", "POST /Users", "GET /Users"]),
        ("failure", ["DELETE /Users/2", "PATCH /Users/1"]),
        ("bogus", [r[0] + " " + r[1] for r in reversed(ROWS)]),
        ("", [r[0] + " " + r[1] for r in reversed(ROWS)]),
    ],
)
def test_request_log_filters_by_outcome(client, logged, outcome, shown):
    page = _fragment(client.get(f"{PAGE}/log?outcome={outcome}", headers=HTMX), "request-log")

    assert _requests(page) == shown
    root = re.match(r"\s*<section[^>]*>", page).group(0)
    kept = f"?outcome={outcome}" if outcome in ("success", "failure") else ""
    assert f'hx-get="/enterprise/scim/log{kept}"' in root


def test_request_log_never_shows_another_accounts_requests(client, logged):
    for path in (f"{PAGE}/log", f"{PAGE}/log?outcome=failure", PAGE):
        page = _text(client.get(path, headers=HTMX if "log" in path else {}))
        assert "theirs" not in page and "/Secret" not in page, path


def test_request_log_without_htmx_is_the_whole_page(client, logged):
    response = client.get(f"{PAGE}/log?outcome=failure")

    page = _text(response)
    assert response.status_code == 200 and "<html" in page
    assert 'id="connector-panel"' in page
    assert _requests(page) == ["DELETE /Users/2", "PATCH /Users/1"]


def test_request_log_keeps_the_latest_fifty_and_escapes_details(client, session, enabled):
    connector = _connector(session)
    _log_rows(session, connector.id, [("GET", f"/Users/{n}", 200) for n in range(60)])
    session.add(
        ScimRequestLog(
            connector_id=connector.id,
            method="POST",
            resource="/Users",
            status=409,
            outcome="failure",
            detail='userName "<script>alert(1)</script>" is taken',
            created_at=datetime(2030, 1, 2, tzinfo=UTC),
        )
    )
    session.commit()

    raw = client.get(f"{PAGE}/log", headers=HTMX).get_data(as_text=True)

    assert "<script>" not in raw and "&lt;script&gt;" in raw
    requests = _requests(html.unescape(raw))
    assert len(requests) == 50
    assert requests[:2] == ["POST /Users", "GET /Users/59"]


def test_request_log_is_empty_before_scim_is_enabled(client, ready, signed_in):
    page = _fragment(client.get(f"{PAGE}/log", headers=HTMX), "request-log")

    assert "No SCIM requests yet." in page
    assert "every 10s" not in page


@pytest.mark.parametrize(
    ("expires_in", "wording"),
    [
        (timedelta(days=5, hours=1), "The token expires in 5 days."),
        (timedelta(hours=3), "The token expires in less than a day."),
        (timedelta(hours=-3), "The token has expired"),
    ],
)
def test_warning_banner_says_how_long_is_left(client, session, enabled, expires_in, wording):
    connector = _default(session)
    connector.refresh_failure_reason = "Single sign-on is off."
    connector.expires_at = utcnow() + expires_in
    session.commit()
    page = _text(client.get(PAGE))
    banner = page[
        page.index('id="scim-warning"') : page.index("</p>", page.index('id="scim-warning"'))
    ]
    assert wording in " ".join(banner.split())
    assert "Single sign-on is off." in banner
    assert "“Default”" in banner


@pytest.mark.parametrize("action", ["reveal", "refresh", "disable"])
def test_asking_for_the_passphrase_does_not_read_the_request_log(app, client, enabled, action):
    """A fragment has its own context: the passphrase form costs no query of the 50-row
    request log (the full page and the log's own fragment do read it)."""
    from sqlalchemy import event

    from blueprints.common.extensions import db

    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        form = client.get(_path(action), headers=HTMX)
        asked = list(statements)
        client.get(f"{PAGE}/log", headers=HTMX)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)

    assert form.status_code == 200
    assert not [s for s in asked if "scim_request_log" in s]
    assert [s for s in statements[len(asked) :] if "scim_request_log" in s]
