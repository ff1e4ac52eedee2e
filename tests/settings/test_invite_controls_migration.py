"""The invite controls migration (e0f1a2b3c4d5), on the database the suite runs on
(SQLite, or PostgreSQL with TEST_DATABASE=postgresql): upgraded, an existing account
allows invitations to any domain (the behaviour before); the controls can be written;
downgraded, the columns go and the account stays."""

from __future__ import annotations

from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from blueprints.domains import policy
from models import Account, utcnow
from tests.conftest import _test_config
from tests.scim_api.test_migration import (  # noqa: F401 (scratch_url: a fixture)
    insert_account,
    scratch_url,
)

BEFORE = "d9e0f1a2b3c4"


def _columns(db) -> set[str]:
    return {c["name"] for c in inspect(db.engine).get_columns("account")}


def test_invite_controls_migrate_up_and_down(scratch_url):  # noqa: F811
    from app import create_app, db

    app = create_app(_test_config(scratch_url))
    now = utcnow().replace(tzinfo=None)
    with app.app_context():
        upgrade(revision=BEFORE)
        with db.engine.begin() as conn:
            insert_account(conn, now, seats_used=0)
        upgrade()
        assert {"invite_policy", "invite_domains"} <= _columns(db)
        session = db.session
        assert policy.invite_controls(session, 1) == policy.InviteControls("any", ())
        account = session.get(Account, 1)
        account.invite_policy, account.invite_domains = "list", "partner.test"
        session.commit()
        assert policy.invite_controls(session, 1) == policy.InviteControls(
            "list", ("partner.test",)
        )
        session.remove()

        downgrade(revision=BEFORE)
        assert not {"invite_policy", "invite_domains"} & _columns(db)
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM account WHERE id = 1")).scalar() == "Acme"
        upgrade()
        assert {"invite_policy", "invite_domains"} <= _columns(db)
        db.session.remove()
        db.engine.dispose()
