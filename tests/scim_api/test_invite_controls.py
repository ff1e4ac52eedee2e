"""Invite controls for SCIM (SPEC F13): a user outside the verified domains, who would be
invited, is refused with a 403 when the account's invite controls don't allow the email's
domain; nothing is written. Each setting, the create and the email change, and the
problem on the SCIM page's provisioning health panel."""

from __future__ import annotations

import html

import pytest
from sqlalchemy import func, select

from models import Account, Membership, OutboxEmail
from tests.scim_api.conftest import assert_scim_error, provision
from tests.scim_settings.conftest import signed_in  # noqa: F401 (a fixture)

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
REFUSED = (
    "Invitations to elsewhere.test are not allowed by this account's invite controls; "
    "add the domain to the list or verify it."
)


def _controls(session, account, policy: str, domains: str | None = None) -> None:
    account.invite_policy, account.invite_domains = policy, domains
    session.commit()


def _counts(session) -> tuple[int, int, int]:
    session.expire_all()
    members = session.scalar(select(func.count()).select_from(Membership))
    mails = session.scalar(select(func.count()).select_from(OutboxEmail))
    seats = session.scalar(select(Account.seats_used))
    return members, mails, seats


def _create(scim, email: str):
    return scim("POST", "/Users", json={"schemas": [USER], "userName": email})


def test_any_domain_invites_as_before(scim, session, ready):
    created = provision(scim, "kim@elsewhere.test")

    member = session.scalar(select(Membership).where(Membership.scim_id == created["id"]))
    assert member.status == "invited"


@pytest.mark.parametrize("policy", ["verified", "list"])
def test_outside_the_controls_is_refused_and_writes_nothing(scim, session, ready, policy):
    _controls(session, ready, policy, "partner.test" if policy == "list" else None)
    before = _counts(session)

    body = assert_scim_error(_create(scim, "kim@elsewhere.test"), 403)

    assert body["detail"] == REFUSED
    assert _counts(session) == before


def test_verified_only_still_provisions_the_verified_domains(scim, session, ready):
    _controls(session, ready, "verified")

    created = provision(scim, "ana@example.com")

    member = session.scalar(select(Membership).where(Membership.scim_id == created["id"]))
    assert member.status == "active" and member.user is not None


def test_custom_list_invites_a_listed_domain(scim, session, ready):
    _controls(session, ready, "list", "partner.test\nother.test")

    created = provision(scim, "Kim@Partner.test")

    member = session.scalar(select(Membership).where(Membership.scim_id == created["id"]))
    assert member.status == "invited"
    assert session.scalar(select(OutboxEmail.id).where(OutboxEmail.to_addr == "Kim@Partner.test"))


def test_email_change_outside_the_controls_is_refused(scim, session, ready):
    _controls(session, ready, "verified")
    created = provision(scim, "kim")  # no email yet: nobody linked, nothing to invite
    before = _counts(session)

    response = scim(
        "PATCH",
        f"/Users/{created['id']}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "add", "path": "emails", "value": [{"value": "kim@elsewhere.test"}]}
            ],
        },
    )

    assert assert_scim_error(response, 403)["detail"] == REFUSED
    assert _counts(session) == before
    member = session.scalar(select(Membership).where(Membership.scim_id == created["id"]))
    assert member.email is None and member.invitation_token_hash is None


def test_refusals_are_a_provisioning_problem_on_the_scim_page(
    client,
    session,
    ready,
    scim,
    signed_in,  # noqa: F811
):
    _controls(session, ready, "verified")
    for name in ("kim@elsewhere.test", "lee@elsewhere.test"):
        assert _create(scim, name).status_code == 403

    page = html.unescape(client.get("/enterprise/scim").get_data(as_text=True))

    assert 'class="problem problem-invites"' in page
    assert "Invitations refused by the invite controls" in page
    assert REFUSED in page
