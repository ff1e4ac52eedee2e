"""What provisioning a SCIM user does to people and seats (SPEC F5): the member's email,
matching existing people safely, the welcome and invitation emails, and licences."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select, update

from blueprints.common.outbox import deliver_due
from models import Account, AuditEvent, Membership, OutboxEmail, SsoConnection, User, utcnow
from tests import factories
from tests.common.mail import links_in, received, text_of
from tests.scim_api.conftest import assert_scim_error

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def post(scim, user_name, **attributes):
    return scim("POST", "/Users", json={"schemas": [USER], "userName": user_name} | attributes)


def create(scim, user_name, **attributes) -> dict:
    response = post(scim, user_name, **attributes)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def patch(scim, user_id, *operations):
    body = {"schemas": [PATCH_OP], "Operations": list(operations)}
    return scim("PATCH", f"/Users/{user_id}", json=body)


def member(session, user_id) -> Membership:
    session.expire_all()
    return session.scalar(select(Membership).where(Membership.scim_id == user_id))


def users(session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(User))


@pytest.fixture
def outbox(session, issued):
    """The emails queued from now on (enabling SCIM already wrote to the owner)."""
    first = session.scalar(select(func.max(OutboxEmail.id))) or 0

    def queued() -> list[OutboxEmail]:
        session.expire_all()
        return session.scalars(
            select(OutboxEmail).where(OutboxEmail.id > first).order_by(OutboxEmail.id)
        ).all()

    return queued


def seats_used(session, account) -> int:
    session.expire_all()
    return session.get(Account, account.id).seats_used


@pytest.fixture
def sso_off(session, ready):
    """SSO off, so that members of example.com sign in with a passphrase at /login."""
    session.execute(
        update(SsoConnection).where(SsoConnection.account_id == ready.id).values(enabled=False)
    )
    session.commit()


# --- The member's email -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_name", "emails", "expected"),
    [
        (
            "u1",
            [
                {"value": "work@example.com", "type": "work"},
                {"value": "main@example.com", "type": "home", "primary": True},
            ],
            "main@example.com",
        ),
        (
            "u2",
            [
                {"value": "home@example.com", "type": "home"},
                {"value": "work@example.com", "type": "Work"},
            ],
            "work@example.com",
        ),
        (
            "u3",
            [{"value": "first@example.com", "type": "home"}, {"value": "second@example.com"}],
            "first@example.com",
        ),
        ("jane.doe@example.com", None, "jane.doe@example.com"),
        ("jane.doe@example.com", [{"value": "other@example.com"}], "other@example.com"),
    ],
    ids=["primary", "work", "first", "user-name", "emails-before-user-name"],
)
def test_member_email_is_primary_else_work_else_first_else_user_name(
    scim, session, user_name, emails, expected
):
    user = create(scim, user_name, **({"emails": emails} if emails else {}))

    row = member(session, user["id"])
    assert row.email == expected
    assert row.user.email == expected


@pytest.mark.parametrize("user_name", ["jdoe", "DOMAIN\\jdoe", "jdoe@", "@example.com"])
def test_user_without_any_email_is_kept_with_no_email(scim, outbox, session, user_name):
    before = users(session)

    user = create(scim, user_name)

    row = member(session, user["id"])
    assert (row.email, row.user_id) == (None, None)
    assert users(session) == before
    assert outbox() == []
    assert scim("GET", f"/Users/{user['id']}").get_json()["userName"] == user_name


def test_user_name_too_long_for_an_address_is_kept_with_no_email(scim, session):
    """An address holds at most 320 characters; a longer userName is still a userName."""
    user_name = "a" * 400 + "@example.com"

    user = create(scim, user_name)

    row = member(session, user["id"])
    assert (row.user_name, row.email, row.user_id) == (user_name, None, None)


def test_email_longer_than_an_address_can_be_is_400(scim, session):
    before = users(session)

    response = post(scim, "jdoe", emails=[{"value": "a" * 400 + "@example.com"}])

    assert assert_scim_error(response, 400)["scimType"] == "invalidValue"
    assert users(session) == before
    assert scim("GET", "/Users").get_json()["totalResults"] == 0


def test_long_display_name_names_the_new_person_in_short(scim, session):
    """The member keeps all 512 characters; the person's name column holds 200."""
    user = create(scim, "long@example.com", displayName="d" * 512)

    row = member(session, user["id"])
    assert user["displayName"] == "d" * 512
    assert row.user.display_name == "d" * 200


# --- Matching in the verified domains -----------------------------------------------------


@pytest.mark.parametrize("sent", ["dana@example.com", "Dana@Example.COM"])
def test_existing_person_in_a_verified_domain_is_joined_not_duplicated(scim, outbox, session, sent):
    dana = factories.make_user(session, email="dana@example.com")
    passphrase_hash, before = dana.passphrase_hash, users(session)

    user = create(scim, "dana", emails=[{"value": sent, "primary": True}])

    row = member(session, user["id"])
    assert row.user_id == dana.id
    assert users(session) == before
    assert session.get(User, dana.id).passphrase_hash == passphrase_hash
    assert outbox() == []  # no welcome, no new passphrase


def test_manual_member_is_adopted_not_duplicated(scim, outbox, session, ready):
    carol = factories.make_user(session, ready, "carol@example.com")
    manual = session.scalar(select(Membership).where(Membership.user_id == carol.id))
    manual_id, seats = manual.id, seats_used(session, ready)

    user = create(scim, "carol@example.com", displayName="Carol")

    row = member(session, user["id"])
    assert row.id == manual_id
    assert (row.source, row.user_id, row.role, row.display_name) == (
        "scim",
        carol.id,
        "member",
        "Carol",
    )
    assert session.scalar(select(func.count()).where(Membership.user_id == carol.id)) == 1
    assert seats_used(session, ready) == seats  # the seat they held already
    assert outbox() == []


def test_second_scim_user_with_an_adopted_email_is_409(scim, session):
    create(scim, "carol@example.com")

    response = post(scim, "carol.other", emails=[{"value": "CAROL@example.com"}])

    assert assert_scim_error(response, 409)["scimType"] == "uniqueness"
    assert scim("GET", "/Users").get_json()["totalResults"] == 1


def test_new_person_gets_an_account_without_passphrase_and_a_queued_welcome(scim, outbox, session):
    user = create(scim, "erin@example.com")

    row = member(session, user["id"])
    assert row.user.email == "erin@example.com"
    assert row.user.passphrase_hash is None  # made by the outbox job, off the request
    assert row.user.must_change_passphrase is True
    [email] = outbox()
    assert (email.to_addr, email.kind, email.user_id) == (
        "erin@example.com",
        "welcome",
        row.user_id,
    )
    assert "passphrase:" not in email.body_text.lower()
    assert email.body_html is None


def test_welcome_email_passphrase_signs_the_person_in_and_must_be_changed(
    scim, outbox, session, client, smtp_server, sso_off
):
    create(scim, "erin@example.com", displayName="Erin")

    deliver_due(utcnow())

    [message] = [m for m in received(smtp_server) if m["To"] == "erin@example.com"]
    assert message["To"] == "erin@example.com"
    assert message["Subject"] == "Welcome to Example Inc"
    text = text_of(message)
    passphrase = re.search(r"Initial passphrase: (\S+)", text).group(1)
    assert "http://localhost/login" in links_in(text)
    [stored] = outbox()
    assert stored.sent_at is not None
    assert passphrase not in stored.body_text + (stored.body_html or "")
    signed_in = client.post("/login", data={"email": "erin@example.com", "passphrase": passphrase})
    assert signed_in.status_code == 302
    assert signed_in.headers["Location"].startswith("/passphrase/change")


# --- Outside the verified domains ---------------------------------------------------------


@pytest.mark.parametrize("existing", [False, True], ids=["new-person", "existing-person"])
def test_outside_verified_domains_the_member_is_invited_never_joined(
    scim, outbox, session, client, existing
):
    if existing:
        factories.make_user(session, email="someone@elsewhere.test")
    before = users(session)

    user = create(scim, "someone@elsewhere.test")

    row = member(session, user["id"])
    assert (row.status, row.user_id, row.email) == ("invited", None, "someone@elsewhere.test")
    assert users(session) == before
    [email] = outbox()
    assert email.to_addr == "someone@elsewhere.test"
    assert email.subject == "You are invited to join Example Inc"
    [link] = links_in(email.body_text)
    assert link.startswith("http://localhost/invitations/")
    assert client.get(urlsplit(link).path).status_code == 200


# --- The IdP changes the email ------------------------------------------------------------


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "add", "path": "emails", "value": [{"value": "jdoe@example.com", "primary": True}]},
        {"op": "Add", "path": 'emails[type eq "work"].value', "value": "jdoe@example.com"},
        {"op": "Replace", "value": {"emails": [{"value": "jdoe@example.com", "type": "work"}]}},
    ],
    ids=["add", "entra-value-path", "path-less"],
)
def test_email_given_later_to_a_no_email_user_creates_and_welcomes_them(
    scim, outbox, session, operation
):
    user = create(scim, "jdoe")

    response = patch(scim, user["id"], operation)

    assert response.status_code == 200, response.get_data(as_text=True)
    row = member(session, user["id"])
    assert row.user.email == "jdoe@example.com"
    assert [(e.to_addr, e.kind) for e in outbox()] == [("jdoe@example.com", "welcome")]


def test_email_given_later_joins_an_existing_person(scim, outbox, session):
    dana = factories.make_user(session, email="dana@example.com")
    user = create(scim, "dana")

    patch(scim, user["id"], {"op": "add", "path": "emails", "value": [{"value": dana.email}]})

    assert member(session, user["id"]).user_id == dana.id
    assert outbox() == []


def test_email_given_later_outside_the_domains_invites(scim, outbox, session):
    factories.make_user(session, email="someone@elsewhere.test")
    user = create(scim, "someone")

    patch(
        scim,
        user["id"],
        {"op": "add", "path": "emails", "value": [{"value": "someone@elsewhere.test"}]},
    )

    row = member(session, user["id"])
    assert (row.status, row.user_id) == ("invited", None)
    assert [e.to_addr for e in outbox()] == ["someone@elsewhere.test"]


def test_email_given_later_that_another_user_holds_is_409(scim, session):
    create(scim, "carol@example.com")
    user = create(scim, "jdoe")

    response = patch(
        scim, user["id"], {"op": "add", "path": "emails", "value": [{"value": "carol@example.com"}]}
    )

    assert assert_scim_error(response, 409)["scimType"] == "uniqueness"
    row = member(session, user["id"])
    assert (row.email, row.user_id) == (None, None)
    assert "emails" not in scim("GET", f"/Users/{user['id']}").get_json()


def test_linked_persons_email_follows_within_the_verified_domains(scim, session):
    user = create(scim, "erin@example.com")

    patch(scim, user["id"], {"op": "replace", "path": "userName", "value": "erin.new@example.com"})

    assert member(session, user["id"]).user.email == "erin.new@example.com"


# --- Licences -----------------------------------------------------------------------------


@pytest.fixture
def two_seats_left(session, ready):
    """The owner holds one seat of three."""
    ready.seat_limit = 3
    session.commit()
    assert seats_used(session, ready) == 1
    return ready


def test_create_beyond_the_seat_limit_is_403_and_creates_nothing(
    scim, outbox, session, two_seats_left
):
    create(scim, "a@example.com")
    create(scim, "b@example.com")
    before = users(session)
    events = session.scalar(select(func.count()).select_from(AuditEvent))

    # On PostgreSQL the create is one statement outside a transaction, gated by the seat:
    # with none left, no person, membership, email or audit event is written.
    response = post(scim, "c@example.com", displayName="Carol")

    assert "licence limit" in assert_scim_error(response, 403)["detail"].lower()
    assert scim("GET", "/Users").get_json()["totalResults"] == 2
    assert users(session) == before
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events
    assert [e.to_addr for e in outbox()] == ["a@example.com", "b@example.com"]
    assert seats_used(session, two_seats_left) == 3


def test_inactive_user_can_be_created_without_a_seat(scim, session, two_seats_left):
    create(scim, "a@example.com")
    create(scim, "b@example.com")

    user = create(scim, "c@example.com", active=False)

    assert user["active"] is False
    assert seats_used(session, two_seats_left) == 3


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "replace", "path": "active", "value": False},
        {"op": "Replace", "path": "active", "value": "False"},
        {"op": "Replace", "value": {"active": "False"}},
    ],
    ids=["rfc", "entra-string", "path-less"],
)
def test_deactivation_frees_the_seat(scim, session, two_seats_left, operation):
    a = create(scim, "a@example.com")
    create(scim, "b@example.com")

    response = patch(scim, a["id"], operation)

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["active"] is False
    assert seats_used(session, two_seats_left) == 2
    create(scim, "c@example.com")  # the freed seat is taken


def test_deactivation_signs_the_member_out(scim, session, ready, client, login_as, sso_off):
    carol = factories.make_user(session, ready, "carol@example.com")
    user = create(scim, "carol@example.com")
    login_as(carol)
    assert client.get("/account").status_code == 200

    patch(scim, user["id"], {"op": "replace", "path": "active", "value": False})

    session.expire_all()
    assert session.get(User, carol.id).session_generation == 2
    signed_out = client.get("/account")
    assert signed_out.status_code == 302
    assert urlsplit(signed_out.headers["Location"]).path == "/login"


def test_reactivation_without_a_free_seat_is_403_and_the_user_stays_inactive(
    scim, session, two_seats_left
):
    a = create(scim, "a@example.com")
    create(scim, "b@example.com")
    patch(scim, a["id"], {"op": "replace", "path": "active", "value": False})
    create(scim, "c@example.com")

    response = patch(scim, a["id"], {"op": "replace", "path": "active", "value": True})

    assert "licence limit" in assert_scim_error(response, 403)["detail"].lower()
    assert scim("GET", f"/Users/{a['id']}").get_json()["active"] is False
    assert seats_used(session, two_seats_left) == 3


def test_reactivation_with_a_free_seat_takes_it(scim, session, two_seats_left):
    a = create(scim, "a@example.com")
    patch(scim, a["id"], {"op": "replace", "path": "active", "value": False})

    response = scim(
        "PUT",
        f"/Users/{a['id']}",
        json={"schemas": [USER], "userName": "a@example.com", "active": True},
    )

    assert response.get_json()["active"] is True
    assert seats_used(session, two_seats_left) == 2


def test_delete_frees_the_seat(scim, session, two_seats_left):
    a = create(scim, "a@example.com")
    create(scim, "b@example.com")

    assert scim("DELETE", f"/Users/{a['id']}").status_code == 204

    assert seats_used(session, two_seats_left) == 2
    create(scim, "c@example.com")


def test_inactive_users_are_still_returned(scim):
    user = create(scim, "a@example.com", active=False)

    single = scim("GET", f"/Users/{user['id']}").get_json()
    listed = scim("GET", "/Users?filter=active eq false").get_json()

    assert single["active"] is False
    assert [r["id"] for r in listed["Resources"]] == [user["id"]]


@pytest.mark.parametrize(
    ("method", "body"),
    [
        (
            "PATCH",
            {
                "schemas": [PATCH_OP],
                "Operations": [{"op": "replace", "path": "active", "value": False}],
            },
        ),
        ("PUT", {"schemas": [USER], "userName": "owner@example.com", "active": False}),
        ("DELETE", None),
    ],
)
def test_idp_cannot_remove_the_only_active_owner(scim, session, ready, owner, method, body):
    user = create(scim, "owner@example.com")

    response = scim(method, f"/Users/{user['id']}", json=body)

    assert_scim_error(response, 403)
    row = member(session, user["id"])
    assert (row.user_id, row.role, row.active) == (owner.id, "owner", True)
    assert session.get(User, owner.id).session_generation == 1
