"""Sign-in, sign-out and roles (SPEC F1)."""

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest

from tests import factories


def test_owner_signs_in_and_sees_enterprise_navigation(client, owner, login_as):
    response = login_as(owner)
    assert response.status_code == 302
    page = client.get("/").get_data(as_text=True)
    for label in ("Domains", "SSO", "SCIM", "Members"):
        assert f">{label}</a>" in page
    assert owner.email in page


def test_member_gets_403_on_enterprise_pages(client, session, account, login_as):
    member = factories.make_user(session, account=account, role="member")
    login_as(member)
    for path in (
        "/enterprise/domains",
        "/enterprise/sso",
        "/enterprise/scim",
        "/enterprise/members",
    ):
        assert client.get(path).status_code == 403, path


# --- wrong passphrases and lock-outs ------------------------------------------------------


def _sign_in(client, email, passphrase, addr="127.0.0.1", **data):
    return client.post(
        "/login",
        data={"email": email, "passphrase": passphrase, **data},
        environ_base={"REMOTE_ADDR": addr},
    )


def _signed_in(client) -> bool:
    return client.get("/").status_code == 200


def test_sign_in_is_refused_with_wrong_passphrase(client, owner):
    response = _sign_in(client, owner.email, "not the passphrase at all")
    assert response.status_code == 401
    assert "Email or passphrase is incorrect." in response.get_data(as_text=True)
    assert not _signed_in(client)


def test_sign_in_gives_the_same_answer_for_an_unknown_email(client, owner):
    wrong = _sign_in(client, owner.email, "not the passphrase at all")
    unknown = _sign_in(client, "nobody@example.com", factories.PASSPHRASE)
    assert unknown.status_code == wrong.status_code == 401
    assert "Email or passphrase is incorrect." in unknown.get_data(as_text=True)
    assert not _signed_in(client)


def test_sign_in_matches_the_email_case_insensitively(client, owner):
    response = _sign_in(client, "  OWNER@Example.COM ", factories.PASSPHRASE)
    assert response.status_code == 302
    assert _signed_in(client)


def test_right_passphrase_is_refused_after_too_many_failures_on_the_account(
    app, client, session, account, owner
):
    for _ in range(app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]):
        assert _sign_in(client, owner.email, "wrong guess").status_code == 401
    response = _sign_in(client, owner.email, factories.PASSPHRASE)
    assert response.status_code == 429
    page = response.get_data(as_text=True)
    assert "Too many failed sign-ins. Try again in 15 minutes" in page
    assert not _signed_in(client)
    # The lock is on that account: another one still signs in from the same address.
    other = factories.make_user(session, account=account, email="other@example.com")
    assert _sign_in(client, other.email, factories.PASSPHRASE).status_code == 302


def test_account_lock_applies_from_every_address(app, client, owner):
    limit = app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]
    for i in range(limit):
        _sign_in(client, owner.email, "wrong guess", addr=f"10.0.0.{i + 1}")
    assert _sign_in(client, owner.email, factories.PASSPHRASE, addr="10.9.9.9").status_code == 429


def test_right_passphrase_is_refused_after_too_many_failures_from_one_address(app, client, owner):
    """Failures spread over many emails (credential stuffing) lock the client address."""
    for i in range(app.config["LOGIN_MAX_FAILURES_PER_ADDRESS"]):
        response = _sign_in(client, f"guess-{i}@example.com", "wrong guess", addr="10.0.0.66")
        assert response.status_code == 401
    response = _sign_in(client, owner.email, factories.PASSPHRASE, addr="10.0.0.66")
    assert response.status_code == 429
    assert "Too many failed sign-ins." in response.get_data(as_text=True)
    assert not _signed_in(client)
    # Another address is not affected.
    assert _sign_in(client, owner.email, factories.PASSPHRASE, addr="10.0.0.67").status_code == 302


def test_sign_in_lock_ends_after_the_lockout_period(app, session, owner):
    from blueprints.auth import services

    now = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    lockout = timedelta(seconds=app.config["LOGIN_LOCKOUT_SECONDS"])
    for _ in range(app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]):
        result = services.sign_in(session, owner.email, "wrong guess", "10.1.1.1", now)
        assert result.user is None
    almost = services.sign_in(
        session, owner.email, factories.PASSPHRASE, "10.1.1.1", now + lockout - timedelta(seconds=1)
    )
    assert almost.user is None
    assert almost.locked_until == now + lockout
    later = services.sign_in(session, owner.email, factories.PASSPHRASE, "10.1.1.1", now + lockout)
    assert later.user is not None
    assert later.user.id == owner.id


def test_failures_older_than_the_window_do_not_count(app, session, owner):
    from blueprints.auth import services

    now = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    window = timedelta(seconds=app.config["LOGIN_LOCKOUT_SECONDS"])
    limit = app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]
    for _ in range(limit - 1):
        services.sign_in(session, owner.email, "wrong guess", "10.1.1.1", now)
    # One more failure, but a window later: the count starts again, so no lock.
    services.sign_in(session, owner.email, "wrong guess", "10.1.1.1", now + window)
    result = services.sign_in(
        session, owner.email, factories.PASSPHRASE, "10.1.1.1", now + window + timedelta(seconds=1)
    )
    assert result.user is not None


def test_concurrent_failures_on_one_account_are_all_counted(app, owner):
    """Requests failing the same new email at once (a parallel guessing run) must neither
    error nor lose counts, or the lock could be dodged by sending guesses in parallel."""
    from app import db
    from blueprints.auth import services
    from models import LoginThrottle

    now = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    email = owner.email
    attempts = app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"] - 1
    start = threading.Barrier(attempts)
    errors: list[Exception] = []

    def guess():
        with app.app_context():
            start.wait()
            try:
                services.sign_in(db.session, email, "wrong guess", "10.2.2.2", now)
                db.session.commit()  # each thread is a caller, as a sign-in request is
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=guess) for _ in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    db.session.expire_all()
    assert db.session.get(LoginThrottle, f"account:{email}").failures == attempts
    assert db.session.get(LoginThrottle, "address:10.2.2.2").failures == attempts


# --- sign-out -----------------------------------------------------------------------------


def test_sign_out_by_post_ends_the_session(client, owner, login_as):
    login_as(owner)
    assert _signed_in(client)
    response = client.post("/logout")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert not _signed_in(client)
    assert "You are signed out." in client.get("/login").get_data(as_text=True)


def test_sign_out_by_get_only_asks_for_confirmation(client, owner, login_as):
    """A link or image pointing at /logout elsewhere cannot sign anyone out."""
    login_as(owner)
    response = client.get("/logout")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Sign out?" in page
    assert 'method="post" action="/logout"' in page
    assert _signed_in(client)


# --- where sign-in lands ------------------------------------------------------------------


def test_signed_out_visit_goes_to_sign_in_and_lands_back_after_it(client, owner):
    response = client.get("/enterprise/domains")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/enterprise/domains"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    hidden = re.search(r'name="next" type="hidden" value="([^"]*)"', page)
    assert hidden, page
    assert hidden.group(1) == "/enterprise/domains"
    response = _sign_in(client, owner.email, factories.PASSPHRASE, next=hidden.group(1))
    assert response.status_code == 302
    assert response.headers["Location"] == "/enterprise/domains"
    assert client.get("/enterprise/domains").status_code == 200


def test_next_keeps_the_query_string(client, owner):
    response = _sign_in(client, owner.email, factories.PASSPHRASE, next="/enterprise/domains?x=1")
    assert response.headers["Location"] == "/enterprise/domains?x=1"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example",
        "https://evil.example/enterprise/domains",
        "//evil.example",
        "//evil.example/path",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/\t/evil.example",
        " //evil.example",
        "/\x00/evil.example",
        "/ok\x7f",
        "enterprise/domains",
    ],
)
def test_next_pointing_elsewhere_is_ignored(client, owner, target):
    response = _sign_in(client, owner.email, factories.PASSPHRASE, next=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("target", ["https://evil.example", "//evil.example", "/\\evil.example"])
def test_next_pointing_elsewhere_is_ignored_when_already_signed_in(client, owner, login_as, target):
    login_as(owner)
    response = client.get("/login", query_string={"next": target})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_htmx_request_without_session_gets_401_with_hx_redirect(client, htmx):
    response = client.get("/enterprise/domains", headers=htmx)
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login?next=/enterprise/domains"
    assert "Location" not in response.headers
    assert "<html" not in response.get_data(as_text=True)


def test_htmx_request_from_another_site_url_does_not_become_next(client):
    headers = {"HX-Request": "true", "HX-Current-URL": "https://evil.example//evil.example"}
    response = client.get("/enterprise/domains", headers=headers)
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login"


def test_sign_in_form_fields_carry_no_placeholder_junk(client):
    """Unset field options must not render as the text "None" inside the inputs."""
    page = client.get("/login").get_data(as_text=True)
    assert '="None"' not in page
    assert 'autocomplete="current-password"' in page
