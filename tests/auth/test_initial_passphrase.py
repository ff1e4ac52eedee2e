"""An initial passphrase (SCIM welcome) must be changed at first sign-in (SPEC F1)."""

from __future__ import annotations

import pytest

from tests import factories

NEW = "my very own passphrase now"


@pytest.fixture
def newcomer(session, account):
    return factories.make_user(
        session,
        account=account,
        email="new.owner@example.com",
        role="owner",
        must_change_passphrase=True,
    )


def _change(client, current=factories.PASSPHRASE, new=NEW, confirm=None, next_=None):
    return client.post(
        "/passphrase/change",
        query_string={"next": next_} if next_ else None,
        data={"current": current, "passphrase": new, "confirm": confirm or new},
    )


def test_initial_passphrase_sign_in_is_sent_to_change_it(client, newcomer, login_as):
    response = login_as(newcomer)
    assert response.status_code == 302
    assert response.headers["Location"] == "/passphrase/change"
    page = client.get("/passphrase/change").get_data(as_text=True)
    assert "You signed in with an initial passphrase" in page


@pytest.mark.parametrize("path", ["/", "/enterprise/domains", "/enterprise/scim"])
def test_initial_passphrase_blocks_every_page_until_changed(client, newcomer, login_as, path):
    login_as(newcomer)
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/passphrase/change")


def test_initial_passphrase_change_opens_the_pages(client, newcomer, login_as):
    login_as(newcomer)
    response = _change(client)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.get("/enterprise/domains").status_code == 200
    assert "Change your passphrase" not in client.get("/").get_data(as_text=True)


def test_initial_passphrase_change_lands_where_the_user_was_going(client, newcomer):
    signed_in = client.post(
        "/login",
        data={
            "email": newcomer.email,
            "passphrase": factories.PASSPHRASE,
            "next": "/enterprise/domains",
        },
    )
    target = signed_in.headers["Location"]
    assert target == "/passphrase/change?next=/enterprise/domains"
    # A page opened meanwhile keeps the same destination.
    assert client.get("/enterprise/domains").headers["Location"] == target
    response = client.post(
        target,
        data={"current": factories.PASSPHRASE, "passphrase": NEW, "confirm": NEW},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/enterprise/domains"


def test_initial_passphrase_change_ends_the_other_sessions(app, client, newcomer, login_as):
    elsewhere = app.test_client()
    elsewhere.post("/login", data={"email": newcomer.email, "passphrase": factories.PASSPHRASE})
    login_as(newcomer)
    assert _change(client).status_code == 302

    assert client.get("/").status_code == 200
    response = elsewhere.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    # The old passphrase is gone, the new one works.
    stranger = app.test_client()
    old = stranger.post(
        "/login", data={"email": newcomer.email, "passphrase": factories.PASSPHRASE}
    )
    assert old.status_code == 401
    new = stranger.post("/login", data={"email": newcomer.email, "passphrase": NEW})
    assert new.status_code == 302
    assert new.headers["Location"] == "/"


def test_initial_passphrase_change_needs_the_current_one(app, client, newcomer, login_as):
    login_as(newcomer)
    response = _change(client, current="not the initial passphrase")
    assert response.status_code == 422
    assert "That passphrase is incorrect." in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_initial_passphrase_cannot_be_kept(client, newcomer, login_as):
    login_as(newcomer)
    response = _change(client, new=factories.PASSPHRASE)
    assert response.status_code == 422
    assert "Choose a passphrase different from the current one." in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_initial_passphrase_change_refuses_a_short_one(client, newcomer, login_as):
    login_as(newcomer)
    response = _change(client, new="short")
    assert response.status_code == 422
    assert "Use at least 12 characters" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_initial_passphrase_user_can_still_sign_out(client, newcomer, login_as):
    login_as(newcomer)
    assert client.post("/logout").headers["Location"] == "/login"
    assert client.get("/passphrase/change").status_code == 302
    assert client.get("/passphrase/change").headers["Location"].startswith("/login")


def test_changing_a_passphrase_by_choice_keeps_this_session(app, client, owner, login_as):
    elsewhere = app.test_client()
    elsewhere.post("/login", data={"email": owner.email, "passphrase": factories.PASSPHRASE})
    login_as(owner)
    response = _change(client)
    assert response.status_code == 302
    assert client.get("/enterprise/domains").status_code == 200
    assert elsewhere.get("/").status_code == 302
