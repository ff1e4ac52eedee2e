"""One owner per transaction (blueprints/common/unit_of_work.py): a page request commits
once at its end when it succeeds, an error answer changes nothing unless the route kept
its writes on purpose, a failed commit is an error page, and the SCIM API's requests
keep their own unit of work."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from blueprints.common.extensions import db
from blueprints.domains import services as domains
from blueprints.scim_settings import connector
from models import AuditEvent, Domain, LoginThrottle, Membership, Team, utcnow
from tests import factories
from tests.scim_settings.conftest import ready  # noqa: F401 (an account ready for SCIM)

DOMAINS = "/enterprise/domains"
SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
SCIM_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


def _count(session, model, *where) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model).where(*where))


def _failures(session, email: str) -> int:
    session.expire_all()
    row = session.get(LoginThrottle, f"account:{email}")
    return row.failures if row else 0


def _post(client, path: str, data: dict, failing_commit):
    """POST with `db.session.commit` replaced by `failing_commit` for that request only
    (the CSRF token is fetched before: its page's commit must succeed)."""
    token = client.csrf_token()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(db.session, "commit", failing_commit)
        return client.post(path, data=data, headers={"X-CSRFToken": token}, csrf=False)


def _locked(message: str):
    """A `db.session.commit` that fails as a database that stayed locked does."""

    def commit():
        raise OperationalError("COMMIT", None, sqlite3.OperationalError(message))

    return commit


@pytest.fixture
def signed_in(owner, login_as):
    login_as(owner)
    return owner


# --- (a) an error answer changes nothing ---------------------------------------------------


def test_refused_form_post_writes_nothing_even_after_the_service_flushed(
    client, session, signed_in, monkeypatch
):
    """The service wrote the domain and its audit event (flushed), then refused: the 422
    answer rolls both back."""
    add_domain = domains.add_domain

    def add_then_refuse(session, *args, **kwargs):
        add_domain(session, *args, **kwargs)
        session.flush()
        raise domains.DomainError("Refused after writing.")

    monkeypatch.setattr(domains, "add_domain", add_then_refuse)

    response = client.post(DOMAINS, data={"name": "example.com"})

    assert response.status_code == 422
    assert "Refused after writing." in response.get_data(as_text=True)
    assert _count(session, Domain) == 0
    assert _count(session, AuditEvent, AuditEvent.action == "domain.added") == 0


def test_valid_form_post_is_committed(client, session, signed_in):
    response = client.post(DOMAINS, data={"name": "example.com"})

    assert response.status_code == 302
    assert _count(session, Domain, Domain.name == "example.com") == 1
    assert _count(session, AuditEvent, AuditEvent.action == "domain.added") == 1


def test_refused_passphrase_change_keeps_the_failures_its_check_had_cleared(
    client, session, signed_in
):
    """The right current passphrase clears the account's failures (a flushed DELETE),
    but a new passphrase equal to it is refused: the 422 rolls the clearing back."""
    same = factories.PASSPHRASE
    wrong = client.post(
        "/passphrase/change", data={"current": "not it", "passphrase": "x", "confirm": "x"}
    )
    assert wrong.status_code == 422
    assert _failures(session, signed_in.email) == 1

    refused = client.post(
        "/passphrase/change", data={"current": same, "passphrase": same, "confirm": same}
    )

    assert refused.status_code == 422
    assert "different from the current one" in refused.get_data(as_text=True)
    assert _failures(session, signed_in.email) == 1


# --- (b) writes kept on purpose although the answer is an error ----------------------------


def test_failed_sign_in_is_counted_although_the_answer_is_401(app, client, session, owner):
    limit = app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]
    wrong = {"email": owner.email, "passphrase": "not the passphrase"}

    assert client.post("/login", data=wrong).status_code == 401
    assert _failures(session, owner.email) == 1
    for _ in range(limit - 1):
        assert client.post("/login", data=wrong).status_code == 401

    right = client.post("/login", data={"email": owner.email, "passphrase": factories.PASSPHRASE})

    assert right.status_code == 429  # locked out by the failures the 401s kept
    assert client.get("/").status_code == 302  # not signed in


def test_wrong_passphrase_on_a_re_auth_form_is_counted_although_the_answer_is_422(
    client, session, account, signed_in
):
    domain = factories.make_domain(session, account, "example.com")

    response = client.post(f"{DOMAINS}/{domain.id}/remove", data={"passphrase": "not it"})

    assert response.status_code == 422
    assert _failures(session, signed_in.email) == 1
    assert _count(session, Domain) == 1


# --- (c) a commit that fails is an error page, not the success -----------------------------


def test_commit_failing_on_a_lock_is_a_503_page_and_nothing_is_saved(
    client, session, signed_in, caplog
):
    with caplog.at_level(logging.ERROR):
        response = _post(client, DOMAINS, {"name": "example.com"}, _locked("database is locked"))

    assert response.status_code == 503
    assert "Location" not in response.headers  # not the redirect the view had built
    page = response.get_data(as_text=True)
    assert "could not be saved" in page and "Error 503" in page
    assert response.headers["Retry-After"] == "1"
    assert response.headers["X-Content-Type-Options"] == "nosniff"  # still a page of ours
    assert "could not commit the request's work" in caplog.text
    assert _count(session, Domain) == 0
    assert client.post(DOMAINS, data={"name": "example.com"}).status_code == 302  # retried


def test_commit_failing_otherwise_is_a_500_page(client, session, signed_in):
    def broken():
        raise RuntimeError("not a database hiccup")

    response = _post(client, DOMAINS, {"name": "example.com"}, broken)

    assert response.status_code == 500
    assert "Error 500" in response.get_data(as_text=True)
    assert _count(session, Domain) == 0


def test_sign_in_whose_commit_fails_signs_nobody_in(client, session, owner):
    """The session cookie the view set is not sent either: no half sign-in."""
    right = {"email": owner.email, "passphrase": factories.PASSPHRASE}
    response = _post(client, "/login", right, _locked("database is locked"))

    assert response.status_code == 503
    assert client.get("/").status_code == 302  # to the sign-in page
    assert _count(session, AuditEvent, AuditEvent.action == "user.sign_in") == 0


# --- (d) the SCIM API keeps its own unit of work -------------------------------------------


@pytest.fixture
def bearer(session, ready, owner):  # noqa: F811
    issued = connector.enable(session, ready.id, owner, "okta", "90", utcnow())
    session.commit()  # the test is the caller: the SCIM requests see the connector
    return issued


def _create_user(client, issued, user_name: str):
    return client.post(
        f"/scim/v2/{issued.connector.public_id}/Users",
        json={"schemas": [SCIM_USER], "userName": user_name},
        headers={"Authorization": f"Bearer {issued.token}"},
        csrf=False,
    )


def test_scim_create_is_still_committed(client, session, bearer):
    response = _create_user(client, bearer, "ada@example.com")

    assert response.status_code == 201, response.get_data(as_text=True)
    assert _count(session, Membership, Membership.email == "ada@example.com") == 1


def test_scim_commit_failure_is_the_scim_apis_own_503_not_a_page(
    client, session, bearer, monkeypatch
):
    # A group: on PostgreSQL a user's create is one statement that commits itself, with
    # no separate commit to fail (users._one_statement).
    with monkeypatch.context() as patch:
        patch.setattr(db.session, "commit", _locked("database is locked"))
        response = client.post(
            f"/scim/v2/{bearer.connector.public_id}/Groups",
            json={"schemas": [SCIM_GROUP], "displayName": "Engineering"},
            headers={"Authorization": f"Bearer {bearer.token}"},
            csrf=False,
        )

    assert response.status_code == 503
    assert response.mimetype == "application/scim+json"
    assert "<html" not in response.get_data(as_text=True).lower()
    assert _count(session, Team, Team.display_name == "Engineering") == 0
