"""The deprovisioning policy migration (c8d9e0f1a2b3), on the database the suite runs on
(SQLite, or PostgreSQL with TEST_DATABASE=postgresql): upgraded, an existing connector
has the "remove" policy for 30 days and no member is scheduled; a policy and a suspended
member can be written; downgraded, the columns go, the member the IdP deleted goes with
its child rows, a member only deactivated stays."""

from __future__ import annotations

from datetime import timedelta

from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from models import Membership, ScimConnector, utcnow
from tests.conftest import _test_config
from tests.scim_api.test_migration import (  # noqa: F401 (scratch_url: a fixture)
    insert_account,
    insert_connector,
    scratch_url,
)

BEFORE = "b7c8d9e0f1a2"


def _columns(engine, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(table)}


def test_deprovisioning_policy_migrates_up_and_down(scratch_url):  # noqa: F811
    from app import create_app, db

    app = create_app(_test_config(scratch_url))
    now = utcnow().replace(tzinfo=None)
    with app.app_context():
        upgrade(revision=BEFORE)
        with db.engine.begin() as conn:
            insert_account(conn, now)
            insert_connector(conn, now, "migrated")
            conn.execute(
                text(
                    "INSERT INTO membership (id, account_id, scim_id, role, source, active, "
                    "licensed, version, created_at, updated_at) VALUES "
                    "(1, 1, 'u-1', 'owner', 'scim', :yes, :yes, 1, :t, :t), "
                    "(2, 1, 'u-2', 'member', 'scim', :yes, :no, 1, :t, :t), "
                    "(3, 1, 'u-3', 'member', 'scim', :no, :no, 1, :t, :t)"
                ),
                {"t": now, "yes": True, "no": False},
            )
        upgrade()
        assert {"deprovision_mode", "suspend_days"} <= _columns(db.engine, "scim_connector")
        assert {"removal_due_at", "suspended_team_ids"} <= _columns(db.engine, "membership")
        session = db.session
        connector = session.get(ScimConnector, 1)
        assert (connector.deprovision_mode, connector.suspend_days) == ("remove", 30)
        assert all(session.get(Membership, i).removal_due_at is None for i in (1, 2, 3))

        connector.deprovision_mode, connector.suspend_days = "suspend", 7
        deleted = session.get(Membership, 2)
        deleted.source, deleted.active = "suspended", False
        deleted.removal_due_at = utcnow() + timedelta(days=7)
        deleted.suspended_team_ids = [["g-5", None]]
        session.get(Membership, 3).removal_due_at = utcnow() + timedelta(days=7)
        session.commit()
        session.expire_all()
        assert session.get(Membership, 2).suspended_team_ids == [["g-5", None]]
        session.remove()
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    'INSERT INTO member_email (membership_id, position, value, "primary") '
                    "VALUES (2, 0, 'b@example.com', :yes)"
                ),
                {"yes": True},
            )

        downgrade(revision=BEFORE)
        assert "deprovision_mode" not in _columns(db.engine, "scim_connector")
        assert "removal_due_at" not in _columns(db.engine, "membership")
        with db.engine.connect() as conn:
            ids = conn.execute(text("SELECT id FROM membership ORDER BY id")).scalars().all()
            emails = conn.execute(text("SELECT count(*) FROM member_email")).scalar()
        assert ids == [1, 3] and emails == 0
        upgrade()
        assert "removal_due_at" in _columns(db.engine, "membership")
        db.session.remove()
        db.engine.dispose()
