"""Sign-ins, failed ones and passphrase events are in the audit log of each account the
person belongs to (SPEC F10), with the address they came from; never in another's; a
failed one is kept although the sign-in answers with an error."""

from __future__ import annotations

from sqlalchemy import select

from models import AuditEvent, Membership
from tests import factories


def events(session, action: str) -> list[tuple]:
    session.expire_all()
    return list(
        session.execute(
            select(AuditEvent.account_id, AuditEvent.actor_user_id, AuditEvent.remote_addr)
            .where(AuditEvent.action == action)
            .order_by(AuditEvent.id)
        )
    )


def test_a_sign_in_is_in_the_log_of_each_account_of_the_person(
    client, session, account, owner, login_as
):
    second = factories.make_account(session, name="Second Inc")
    session.add(Membership(account_id=second.id, user_id=owner.id, role="member"))
    factories.make_account(session, name="Unrelated Inc")
    session.commit()

    login_as(owner)

    assert sorted(events(session, "user.sign_in")) == sorted(
        [(account.id, owner.id, "127.0.0.1"), (second.id, owner.id, "127.0.0.1")]
    )


def test_a_failed_sign_in_is_recorded_and_kept(client, session, account, owner):
    response = client.post(
        "/login",
        data={"email": owner.email, "passphrase": "wrong passphrase"},
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )

    assert response.status_code == 401
    assert events(session, "user.sign_in_failed") == [(account.id, owner.id, "198.51.100.7")]
    assert events(session, "user.sign_in") == []


def test_an_unknown_address_is_in_no_accounts_log(client, session, account, owner):
    response = client.post(
        "/login", data={"email": "nobody@example.com", "passphrase": "anything at all"}
    )

    assert response.status_code == 401
    assert events(session, "user.sign_in_failed") == []


def test_the_audit_log_page_shows_failed_sign_ins_by_label(
    client, session, account, owner, login_as
):
    client.post("/login", data={"email": owner.email, "passphrase": "wrong passphrase"})
    login_as(owner)

    page = client.get("/enterprise/audit").get_data(as_text=True)

    assert "Sign-in failed" in page and "Signed in" in page


def test_a_wrong_passphrase_for_a_sensitive_action_is_recorded(
    client, session, account, owner, login_as
):
    login_as(owner)

    response = client.post(
        "/passphrase/change",
        data={
            "current": "not it",
            "passphrase": "a brand new passphrase 42",
            "confirm": "a brand new passphrase 42",
        },
    )

    assert response.status_code == 422
    assert events(session, "user.passphrase_refused") == [(account.id, owner.id, "127.0.0.1")]
