"""The team rules migration (b7c8d9e0f1a2), on the database the suite runs on (SQLite, or
PostgreSQL with TEST_DATABASE=postgresql): upgraded, an existing account has no rules and
its members keep their roles and licences; a rule and a run can be written; downgraded,
both tables go and the members keep what the rules gave them."""

from __future__ import annotations

from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from blueprints.members import rules
from models import Membership, Team, TeamMember, utcnow
from tests.conftest import _test_config
from tests.scim_api.test_migration import (  # noqa: F401 (scratch_url: a fixture)
    insert_account,
    scratch_url,
)

BEFORE = "a6b7c8d9e0f1"


def test_team_rules_migrate_up_and_down(scratch_url):  # noqa: F811
    from app import create_app, db

    app = create_app(_test_config(scratch_url))
    now = utcnow().replace(tzinfo=None)
    with app.app_context():
        upgrade(revision=BEFORE)
        with db.engine.begin() as conn:
            insert_account(conn, now)
            conn.execute(
                text(
                    "INSERT INTO membership (id, account_id, scim_id, role, source, active, "
                    "licensed, version, created_at, updated_at) VALUES "
                    "(1, 1, 'u-1', 'owner', 'scim', :yes, :yes, 1, :t, :t), "
                    "(2, 1, 'u-2', 'co-owner', 'scim', :yes, :no, 1, :t, :t)"
                ),
                {"t": now, "yes": True, "no": False},
            )
            conn.execute(
                text(
                    "INSERT INTO team (id, scim_id, account_id, display_name, display_name_key, "
                    "source, version, created_at, updated_at) VALUES "
                    "(1, 'g-1', 1, 'Admins', 'admins', 'scim', 1, :t, :t)"
                ),
                {"t": now},
            )
            conn.execute(
                text(
                    "INSERT INTO team_member (team_id, membership_id, created_at) VALUES (1, 2, :t)"
                ),
                {"t": now},
            )
        upgrade()
        assert {"team_rule", "team_rule_run"} <= set(inspect(db.engine).get_table_names())
        session = db.session
        assert rules.list_rules(session, 1) == []
        assert rules.progress(session, 1) is None
        member = session.get(Membership, 2)
        assert (member.role, member.licensed) == ("co-owner", False)  # untouched

        owner = session.get(Membership, 1)
        rule = rules.add_rule(session, owner, 1, "member", True, utcnow())
        session.commit()
        assert [r.team.display_name for r in rules.list_rules(session, 1)] == ["Admins"]
        assert rules.progress(session, 1).pending
        assert session.get(Team, 1) and session.get(TeamMember, (1, 2))
        assert rule.id
        session.remove()

        downgrade(revision=BEFORE)
        tables = set(inspect(db.engine).get_table_names())
        assert not {"team_rule", "team_rule_run"} & tables
        with db.engine.connect() as conn:
            role = conn.execute(text("SELECT role FROM membership WHERE id = 2")).scalar()
        assert role == "co-owner"
        upgrade()
        assert "team_rule" in set(inspect(db.engine).get_table_names())
        db.session.remove()
        db.engine.dispose()
