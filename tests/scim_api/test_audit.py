"""Every change SCIM makes is in the audit trail (SPEC F10), written in the transaction
that makes it: what resource, which attributes from what to what, the identity provider
as the actor; never the password; nothing for a refused or unchanged write."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from models import AuditEvent
from tests.scim_api.conftest import provision

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def events(session) -> list[AuditEvent]:
    """The audit events of SCIM's changes (not of the SCIM settings), oldest first."""
    session.expire_all()
    return list(
        session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action.like("scim.user%") | AuditEvent.action.like("scim.group%"))
            .order_by(AuditEvent.id)
        )
    )


def patch(scim, path: str, *operations: dict):
    return scim("PATCH", path, json={"schemas": [PATCH_OP], "Operations": list(operations)})


def test_a_provisioned_user_is_audited_with_its_attributes_never_its_password(
    scim, session, issued
):
    user = provision(scim, "ada@example.com", displayName="Ada", password="hunter2-secret")

    [event] = events(session)
    assert (event.action, event.target, event.actor_user_id) == (
        "scim.user_created",
        "user:ada@example.com",
        None,
    )
    assert event.account_id == issued.connector.account_id
    assert event.detail["via"] == "scim" and event.detail["id"] == user["id"]
    assert event.detail["changes"]["userName"] == [None, "ada@example.com"]
    assert event.detail["changes"]["displayName"] == [None, "Ada"]
    assert "hunter2-secret" not in repr(event.detail)


@pytest.mark.parametrize(
    ("operation", "action", "changes"),
    [
        (
            {"op": "replace", "path": "active", "value": False},
            "scim.user_deactivated",
            {"active": [True, False]},
        ),
        (
            {"op": "replace", "path": "title", "value": "CTO"},
            "scim.user_updated",
            {"title": [None, "CTO"]},
        ),
        # Entra ID's documented form of the same deactivation.
        (
            {"op": "Replace", "path": "active", "value": "False"},
            "scim.user_deactivated",
            {"active": [True, False]},
        ),
    ],
)
def test_a_patch_is_audited_with_what_it_changed(scim, session, operation, action, changes):
    user = provision(scim, "ada@example.com")

    assert patch(scim, f"/Users/{user['id']}", operation).status_code == 200

    event = events(session)[-1]
    assert (event.action, event.detail["changes"]) == (action, changes)


def test_reactivation_and_deletion_are_audited(scim, session):
    user = provision(scim, "ada@example.com", active=False)

    patch(scim, f"/Users/{user['id']}", {"op": "replace", "path": "active", "value": True})
    assert scim("DELETE", f"/Users/{user['id']}").status_code == 204

    _, reactivated, deleted = events(session)
    assert reactivated.action == "scim.user_reactivated"
    assert deleted.action == "scim.user_deleted"
    assert deleted.detail["changes"]["userName"] == ["ada@example.com", None]


def test_a_write_that_changes_nothing_or_is_refused_is_not_audited(scim, session):
    user = provision(scim, "ada@example.com", title="CTO")

    same = patch(scim, f"/Users/{user['id']}", {"op": "replace", "path": "title", "value": "CTO"})
    again = scim("POST", "/Users", json={"schemas": [USER], "userName": "ada@example.com"})

    assert (same.status_code, again.status_code) == (200, 409)
    assert [e.action for e in events(session)] == ["scim.user_created"]


def test_group_writes_are_audited_with_their_member_counts(scim, session):
    ada = provision(scim, "ada@example.com")["id"]
    bob = provision(scim, "bob@example.com")["id"]
    group = scim(
        "POST",
        "/Groups",
        json={"schemas": [GROUP], "displayName": "Engineering", "members": [{"value": ada}]},
    ).get_json()
    path = f"/Groups/{group['id']}"

    patch(scim, path, {"op": "add", "path": "members", "value": [{"value": bob}]})
    patch(scim, path, {"op": "add", "path": "members", "value": [{"value": bob}]})  # no-op
    patch(scim, path, {"op": "replace", "path": "displayName", "value": "Platform"})
    patch(scim, path, {"op": "remove", "path": f'members[value eq "{ada}"]'})
    scim("DELETE", path)

    audited = [e for e in events(session) if e.action.startswith("scim.group")]
    assert [(e.action, e.target, e.detail.get("members")) for e in audited] == [
        ("scim.group_created", "group:Engineering", {"added": 1, "removed": 0}),
        ("scim.group_updated", "group:Engineering", {"added": 1, "removed": 0}),
        ("scim.group_updated", "group:Platform", None),
        ("scim.group_updated", "group:Platform", {"added": 0, "removed": 1}),
        ("scim.group_deleted", "group:Platform", None),
    ]
    assert audited[2].detail["changes"] == {"displayName": ["Engineering", "Platform"]}


def test_the_audit_log_page_shows_the_identity_provider_as_the_actor(
    scim, session, client, owner, login_as
):
    provision(scim, "ada@example.com")
    login_as(owner)

    page = client.get("/enterprise/audit", query_string={"action": "scim.user_created"})

    text = page.get_data(as_text=True)
    assert "User provisioned" in text and "user:ada@example.com" in text
    assert "Identity provider (SCIM)" in text


def test_scim_changes_stream_to_the_siem_with_what_they_changed(scim, session, issued, owner):
    """The SCIM writes (Core statements, not the ORM) are queued by the same trigger as
    every other event: the receiver gets each, signed, in order."""
    from blueprints.audit import jobs, streaming
    from tests.audit.receiver import Receiver

    receiver = Receiver().start()
    try:
        now = datetime.now(UTC)
        _, receiver.secret = streaming.configure(
            session, issued.connector.account_id, owner, receiver.url, now
        )
        session.commit()
        ada = provision(scim, "ada@example.com", displayName="Ada", password="hunter2-secret")
        patch(scim, f"/Users/{ada['id']}", {"op": "replace", "path": "active", "value": False})
        refused = scim("POST", "/Users", json={"schemas": [USER], "userName": "ada@example.com"})

        jobs.deliver_streams(now)

        assert refused.status_code == 409
        assert receiver.actions == [
            "audit.stream_configured",
            "scim.user_created",
            "scim.user_deactivated",
        ]
        created = receiver.accepted[1]
        assert created["actor"] == "Identity provider (SCIM)"
        assert created["detail"]["changes"]["displayName"] == [None, "Ada"]
        assert "hunter2-secret" not in repr(receiver.accepted)
        assert receiver.bad_signatures == 0
    finally:
        receiver.stop()
