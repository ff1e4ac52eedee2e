"""Who signs in how while SSO is on (SPEC F3): members of a verified domain go through the
IdP (a real OpenID Connect provider) and are matched back by email; owners and co-owners
keep their passphrase as a break-glass; nobody outside the account's domains gets in."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from blueprints.sso import services
from models import AuditEvent, LoginThrottle, SsoFlow, User, utcnow
from tests import factories
from tests.sso.iam import (
    configure_oidc,
    idp_authorize,
    issuer_of,
    local_path,
    to_idp,
)
from tests.sso.pages import FLOW_GONE, section
from tests.sso.pages import text as page_text

WRONG = "not the passphrase at all"


@pytest.fixture
def sso_on(session, account, owner, iam_server, oidc_client):
    """Account with example.com verified and OIDC single sign-on enabled."""
    factories.make_domain(session, account, "example.com", verified=True)
    return configure_oidc(session, account, owner, iam_server, oidc_client, enabled=True)


@pytest.fixture
def member(session, account):
    return factories.make_user(session, account=account, email="member@example.com")


def _post_login(client, email: str, passphrase: str | None = None, next_url: str | None = None):
    data = {"email": email}
    if passphrase is not None:
        data["passphrase"] = passphrase
    if next_url is not None:
        data["next"] = next_url
    return client.post("/login", data=data)


def _assert_sent_to_idp(client, response, iam_server) -> str:
    """The browser goes on to the IdP's authorization endpoint; returns that URL."""
    location = to_idp(client, response)
    assert location.startswith(issuer_of(iam_server) + "/oauth/authorize?")
    return location


def _through_idp(client, iam_server, email: str, **login):
    """Sign in with `email` on our page, pass the IdP, and return our callback's answer."""
    location = _assert_sent_to_idp(client, _post_login(client, email, **login), iam_server)
    return client.get(local_path(idp_authorize(location)))


def _signed_in_as(client) -> str | None:
    """The email the top bar shows, or None when the dashboard sends to sign-in."""
    response = client.get("/account")  # every signed-in user has it
    if response.status_code != 200:
        return None
    page = page_text(response)
    start = page.index('<span class="who">') + len('<span class="who">')
    return page[start : page.index("</span>", start)]


def _users(session) -> int:
    return session.scalar(select(func.count(User.id)))


# --- members go through the IdP ----------------------------------------------------------


def test_member_is_sent_to_idp_and_signed_in_when_sso_is_on(
    client, session, sso_on, member, iam_server, idp_user
):
    idp_user("member@example.com")

    response = _through_idp(client, iam_server, "member@example.com")

    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert _signed_in_as(client) == "member@example.com"
    [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "user.sso_sign_in"))
    assert event.actor_user_id == member.id and event.account_id == sso_on.account_id


@pytest.mark.parametrize("passphrase", [factories.PASSPHRASE, WRONG])
def test_member_passphrase_is_not_checked_when_sso_is_on(
    client, session, sso_on, member, iam_server, passphrase
):
    response = _post_login(client, "member@example.com", passphrase)

    _assert_sent_to_idp(client, response, iam_server)
    assert _signed_in_as(client) is None
    assert session.scalar(select(func.count()).select_from(LoginThrottle)) == 0


def test_member_is_sent_to_idp_whatever_case_the_email_is_typed_in(
    client, sso_on, member, iam_server
):
    _assert_sent_to_idp(client, _post_login(client, "  Member@EXAMPLE.com "), iam_server)


def test_member_is_matched_by_email_case_insensitively(
    client, sso_on, member, iam_server, idp_user
):
    idp_user("Member@Example.COM")

    response = _through_idp(client, iam_server, "member@example.com")

    assert response.status_code == 303
    assert _signed_in_as(client) == "member@example.com"


def test_next_is_honoured_after_sso_sign_in(client, sso_on, member, iam_server, idp_user):
    idp_user("member@example.com")

    response = _through_idp(
        client, iam_server, "member@example.com", next_url="/passphrase/change?from=mail"
    )

    assert response.status_code == 303
    assert response.headers["Location"] == "/passphrase/change?from=mail"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "javascript:x"])
def test_next_is_ignored_after_sso_sign_in_when_not_relative(
    client, sso_on, member, iam_server, idp_user, target
):
    idp_user("member@example.com")

    response = _through_idp(client, iam_server, "member@example.com", next_url=target)

    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert _signed_in_as(client) == "member@example.com"


# --- owners keep the passphrase ----------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "co-owner"])
def test_admin_signs_in_with_passphrase_when_sso_is_on(client, session, account, sso_on, role):
    admin = factories.make_user(session, account=account, email="admin@example.com", role=role)

    response = _post_login(client, admin.email, factories.PASSPHRASE)

    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert _signed_in_as(client) == "admin@example.com"
    assert session.scalar(select(func.count()).select_from(SsoFlow)) == 0


def test_owner_with_wrong_passphrase_is_refused_not_sent_to_idp(client, owner, sso_on):
    response = _post_login(client, owner.email, WRONG)

    assert response.status_code == 401
    assert "Email or passphrase is incorrect." in page_text(response)
    assert _signed_in_as(client) is None


def test_owner_without_passphrase_goes_to_idp(client, owner, sso_on, iam_server, idp_user):
    idp_user("owner@example.com")

    response = _through_idp(client, iam_server, owner.email)

    assert response.status_code == 303
    assert _signed_in_as(client) == "owner@example.com"


def test_deactivated_owner_has_no_break_glass(client, session, account, sso_on, iam_server):
    former = factories.make_user(
        session, account=account, email="former@example.com", role="owner", active=False
    )

    _assert_sent_to_idp(client, _post_login(client, former.email, factories.PASSPHRASE), iam_server)
    assert _signed_in_as(client) is None


# --- who the IdP can't sign in -----------------------------------------------------------


def test_deactivated_member_is_refused_after_idp(
    client, session, account, sso_on, iam_server, idp_user
):
    factories.make_user(session, account=account, email="gone@example.com", active=False)
    idp_user("gone@example.com")

    response = _through_idp(client, iam_server, "gone@example.com")

    assert response.status_code == 403
    assert section(page_text(response), "sso-error") == (
        "The account of gone@example.com is deactivated. Ask your administrator."
    )
    assert _signed_in_as(client) is None


def test_unknown_email_is_refused_after_idp_and_no_user_is_created(
    client, session, sso_on, iam_server, idp_user
):
    idp_user("newcomer@example.com")
    before = _users(session)

    response = _through_idp(client, iam_server, "newcomer@example.com")

    assert response.status_code == 403
    assert section(page_text(response), "sso-error") == (
        "There is no account for newcomer@example.com. Ask your administrator."
    )
    assert _signed_in_as(client) is None
    assert _users(session) == before


def test_idp_identity_outside_verified_domains_is_refused(
    client, session, app, account, sso_on, member, iam_server, idp_user
):
    """Even a member of the account: other.org is verified by another account, so this IdP
    does not speak for it."""
    other = factories.make_account(session, name="Other Org")
    factories.make_domain(session, other, "other.org", verified=True)
    factories.make_user(session, account=account, email="bob@other.org")
    idp_user("bob@other.org")

    response = _through_idp(client, iam_server, "member@example.com")

    assert response.status_code == 403
    assert section(page_text(response), "sso-error") == (
        "bob@other.org is not in a verified domain of this account."
    )
    assert _signed_in_as(client) is None


def test_domain_verified_by_another_account_with_sso_off_keeps_passphrases(
    client, session, account, sso_on, iam_server
):
    other = factories.make_account(session, name="Other Org")
    factories.make_domain(session, other, "other.org", verified=True)
    factories.make_domain(session, account, "other.org")  # claimed here too, never verified
    bob = factories.make_user(session, account=other, email="bob@other.org")

    without = _post_login(client, bob.email)
    response = _post_login(client, bob.email, factories.PASSPHRASE)

    assert without.status_code == 422
    assert "Enter your passphrase." in page_text(without)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert _signed_in_as(client) == "bob@other.org"
    assert session.scalar(select(func.count()).select_from(SsoFlow)) == 0


def test_members_use_passphrases_again_when_sso_is_disabled(client, session, owner, sso_on, member):
    services.disable(session, sso_on, owner.id)

    response = _post_login(client, member.email, factories.PASSPHRASE)

    assert response.status_code == 302
    assert _signed_in_as(client) == "member@example.com"


def test_member_is_refused_when_sso_is_disabled_while_at_the_idp(
    client, session, owner, sso_on, member, iam_server, idp_user
):
    idp_user("member@example.com")
    location = _assert_sent_to_idp(client, _post_login(client, member.email), iam_server)
    services.disable(session, sso_on, owner.id)

    response = client.get(local_path(idp_authorize(location)))

    assert response.status_code == 403
    assert section(page_text(response), "sso-error") == (
        "Single sign-on is turned off for this account. Sign in with your passphrase."
    )
    assert _signed_in_as(client) is None


def test_callback_opened_in_another_browser_signs_nobody_in(
    app, client, sso_on, member, iam_server, idp_user
):
    """Login CSRF: someone's own callback URL, sent to a victim, must not sign the victim
    in as that someone; the browser that started the sign-in can still finish it."""
    idp_user("member@example.com")
    location = _assert_sent_to_idp(client, _post_login(client, member.email), iam_server)
    callback = local_path(idp_authorize(location))
    victim = app.test_client()

    refused = victim.get(callback)
    finished = client.get(callback)

    assert refused.status_code == 400
    assert FLOW_GONE in page_text(refused)
    assert _signed_in_as(victim) is None
    assert finished.status_code == 303
    assert _signed_in_as(client) == "member@example.com"


def test_sso_sign_in_replaces_the_session_of_whoever_was_signed_in(
    client, owner, sso_on, member, iam_server, idp_user, login_as
):
    login_as(owner)  # break-glass, with the passphrase
    idp_user("member@example.com")

    response = _through_idp(client, iam_server, "member@example.com")

    assert response.status_code == 303
    assert _signed_in_as(client) == "member@example.com"


def test_continue_page_without_a_sign_in_in_progress_is_400(client):
    response = client.get("/sso/continue")

    assert response.status_code == 400
    assert section(page_text(response), "sso-error") == FLOW_GONE


def test_member_of_an_internationalised_domain_is_sent_to_idp(
    client, session, account, sso_on, iam_server
):
    """Domains are stored in their IDNA form; people type their address in Unicode."""
    factories.make_domain(session, account, "xn--bcher-kva.example", verified=True)
    factories.make_user(session, account=account, email="anna@bücher.example")

    _assert_sent_to_idp(client, _post_login(client, "anna@Bücher.example"), iam_server)


def test_overlong_next_is_dropped_not_an_error(client, session, sso_on, member, iam_server):
    _assert_sent_to_idp(
        client, _post_login(client, member.email, next_url="/" + "a" * 3000), iam_server
    )

    flow = session.scalar(select(SsoFlow))
    assert flow.next_url is None


def test_purge_forgets_sign_ins_that_can_no_longer_finish(app, session, sso_on):
    now = utcnow()
    lifetime = timedelta(seconds=app.config["SSO_FLOW_SECONDS"])
    expired = services.start_flow(session, sso_on, "login", now - lifetime - timedelta(1))
    pending = services.start_flow(session, sso_on, "login", now - timedelta(seconds=1))
    session.commit()
    expired_id, pending_id = expired.id, pending.id

    assert services.purge_flows(session, now) == 1

    session.expire_all()
    assert session.get(SsoFlow, expired_id) is None
    assert session.get(SsoFlow, pending_id) is not None


def test_member_with_initial_passphrase_is_not_asked_to_change_it_after_sso(
    client, session, account, sso_on, iam_server, idp_user
):
    """A provisioned member's initial passphrase plays no part in SSO sign-in."""
    factories.make_user(
        session, account=account, email="new@example.com", must_change_passphrase=True
    )
    idp_user("new@example.com")
    assert _through_idp(client, iam_server, "new@example.com").status_code == 303
    assert client.get("/account").status_code == 200
    assert _signed_in_as(client) == "new@example.com"


def test_purge_job_runs_under_its_lease(app, session, sso_on):
    from app import run_job

    services.start_flow(session, sso_on, "login", utcnow() - timedelta(hours=2))
    session.commit()
    assert run_job(app, "purge-sso", utcnow()) == {"flows": 1, "assertions": 0}
    assert session.scalar(select(func.count(SsoFlow.id))) == 0
