"""Passphrase reset by an emailed single-use link, end to end through real SMTP (SPEC F1, F7)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from blueprints.auth import services
from blueprints.common.outbox import deliver_due
from models import OutboxEmail, utcnow
from tests import factories
from tests.common.mail import html_of, links_in, received, text_of

NEW = "a brand new passphrase for me"


def _request_link(client, email) -> None:
    response = client.post("/passphrase/forgot", data={"email": email})
    assert response.status_code == 200
    assert "Check your email" in response.get_data(as_text=True)


def _emailed_link(smtp_server) -> str:
    """Deliver the outbox and return the reset link of the one email received."""
    assert deliver_due(utcnow())["sent"] == 1
    (message,) = received(smtp_server)
    (link,) = links_in(text_of(message))
    return link


def _set(client, path, passphrase=NEW, confirm=None):
    return client.post(path, data={"passphrase": passphrase, "confirm": confirm or passphrase})


def _signs_in(app, email, passphrase) -> bool:
    response = app.test_client().post("/login", data={"email": email, "passphrase": passphrase})
    return response.status_code == 302


def test_reset_link_from_the_email_sets_a_new_passphrase(app, client, owner, smtp_server):
    _request_link(client, "Owner@Example.com")
    assert deliver_due(utcnow())["sent"] == 1

    (message,) = received(smtp_server)
    assert smtp_server.messages[0].rcpt_tos == [owner.email]
    assert message["To"] == owner.email
    assert message["Subject"] == "Reset your passphrase"
    (link,) = links_in(text_of(message))
    assert link.startswith("http://localhost/passphrase/reset/")  # absolute, from BASE_URL
    assert f'href="{link}"' in html_of(message)

    path = urlsplit(link).path
    form = client.get(path)
    assert form.status_code == 200
    assert "Choose a new passphrase" in form.get_data(as_text=True)
    response = _set(client, path)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    # The reset signs the user in here.
    assert client.get("/").status_code == 200
    assert not _signs_in(app, owner.email, factories.PASSPHRASE)
    assert _signs_in(app, owner.email, NEW)


def test_reset_link_works_only_once(app, client, owner, smtp_server):
    _request_link(client, owner.email)
    path = urlsplit(_emailed_link(smtp_server)).path
    assert _set(client, path).status_code == 302

    again = app.test_client()
    assert again.get(path).status_code == 410
    response = _set(again, path, "yet another passphrase here")
    assert response.status_code == 410
    assert "This link no longer works" in response.get_data(as_text=True)
    assert _signs_in(app, owner.email, NEW)
    assert not _signs_in(app, owner.email, "yet another passphrase here")


def test_using_one_reset_link_spends_the_others(app, client, owner, smtp_server):
    _request_link(client, owner.email)
    _request_link(client, owner.email)
    assert deliver_due(utcnow())["sent"] == 2
    first, second = (links_in(text_of(m))[0] for m in received(smtp_server))
    assert first != second
    assert _set(client, urlsplit(second).path).status_code == 302
    assert client.get(urlsplit(first).path).status_code == 410


def test_reset_link_older_than_its_lifetime_is_refused(app, client, session, owner):
    lifetime = timedelta(seconds=app.config["RESET_TOKEN_SECONDS"])
    services.start_reset(session, owner.email, utcnow() - lifetime - timedelta(seconds=1))
    body = session.scalar(select(OutboxEmail.body_text))
    (link,) = links_in(body)
    path = urlsplit(link).path

    assert client.get(path).status_code == 410
    response = _set(client, path)
    assert response.status_code == 410
    assert "This link no longer works" in response.get_data(as_text=True)
    assert _signs_in(app, owner.email, factories.PASSPHRASE)


def test_reset_link_expires_exactly_at_its_lifetime(app, session, owner):
    now = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    lifetime = timedelta(seconds=app.config["RESET_TOKEN_SECONDS"])
    services.start_reset(session, owner.email, now)
    token = links_in(session.scalar(select(OutboxEmail.body_text)))[0].rsplit("/", 1)[1]
    assert services.reset_for_token(session, token, now + lifetime - timedelta(seconds=1))
    assert services.reset_for_token(session, token, now + lifetime) is None


def test_reset_for_an_unknown_email_looks_the_same_and_sends_nothing(
    client, session, owner, smtp_server
):
    unknown = client.post("/passphrase/forgot", data={"email": "nobody@example.com"})
    known = client.post("/passphrase/forgot", data={"email": owner.email})
    assert unknown.status_code == known.status_code == 200
    page = unknown.get_data(as_text=True)
    assert "Check your email" in page
    assert "nobody@example.com" in page
    strip = re.compile(r"(nobody@example\.com|owner@example\.com|[\w.-]{60,})")
    assert strip.sub("", page) == strip.sub("", known.get_data(as_text=True))
    assert deliver_due(utcnow())["sent"] == 1
    assert [m["To"] for m in received(smtp_server)] == [owner.email]


def test_reset_ends_sessions_signed_in_before_it(app, client, owner, smtp_server):
    elsewhere = app.test_client()
    elsewhere.post("/login", data={"email": owner.email, "passphrase": factories.PASSPHRASE})
    assert elsewhere.get("/").status_code == 200

    _request_link(client, owner.email)
    assert _set(client, urlsplit(_emailed_link(smtp_server)).path).status_code == 302

    response = elsewhere.get("/enterprise/domains")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert client.get("/enterprise/domains").status_code == 200


def test_reset_with_too_short_passphrase_shows_the_error_and_changes_nothing(
    app, client, owner, smtp_server
):
    _request_link(client, owner.email)
    path = urlsplit(_emailed_link(smtp_server)).path
    response = _set(client, path, "short")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'id="passphrase-error"' in page
    assert "Use at least 12 characters" in page
    assert _signs_in(app, owner.email, factories.PASSPHRASE)
    # The link is not spent by a refused attempt.
    assert _set(client, path).status_code == 302


def test_reset_with_mismatched_confirmation_changes_nothing(app, client, owner, smtp_server):
    _request_link(client, owner.email)
    path = urlsplit(_emailed_link(smtp_server)).path
    response = _set(client, path, NEW, "something else entirely")
    assert response.status_code == 422
    assert "The two passphrases differ." in response.get_data(as_text=True)
    assert _signs_in(app, owner.email, factories.PASSPHRASE)


def test_reset_lifts_the_sign_in_lock_of_the_account(app, client, owner, smtp_server):
    """The lock message says "or reset your passphrase": a reset must really unlock."""
    for _ in range(app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]):
        client.post("/login", data={"email": owner.email, "passphrase": "wrong guess"})
    assert not _signs_in(app, owner.email, factories.PASSPHRASE)
    _request_link(client, owner.email)
    assert _set(client, urlsplit(_emailed_link(smtp_server)).path).status_code == 302
    assert _signs_in(app, owner.email, NEW)


@pytest.mark.parametrize("email", ["not-an-email", "", "x" * 400 + "@example.com"])
def test_reset_request_with_a_bad_email_is_a_form_error(client, session, email):
    response = client.post("/passphrase/forgot", data={"email": email})
    assert response.status_code == 422
    assert "Email me a link" in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(OutboxEmail)) == 0


def test_reset_requests_beyond_the_hourly_limit_send_nothing(app, session, owner):
    """Nobody can flood a user's inbox through the forgot-passphrase form."""
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    limit = app.config["RESET_EMAILS_PER_HOUR"]
    for minute in range(limit + 2):
        services.start_reset(session, owner.email, now + timedelta(minutes=minute))
    assert session.scalar(select(func.count(OutboxEmail.id))) == limit

    services.start_reset(session, owner.email, now + timedelta(minutes=61))
    assert session.scalar(select(func.count(OutboxEmail.id))) == limit + 1
