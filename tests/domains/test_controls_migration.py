"""The domain controls migration (0a1b2c3d4e5f), on the database the suite runs on
(SQLite, or PostgreSQL with TEST_DATABASE=postgresql): upgraded, an existing domain has
capture and lock off and the account is not SCIM only; the switches and a sign-up can be
written; downgraded, the columns and the table go and the rows stay."""

from __future__ import annotations

from datetime import timedelta

from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from blueprints.domains import policy
from models import Account, Domain, Signup, utcnow
from tests.conftest import _test_config
from tests.scim_api.test_migration import (  # noqa: F401 (scratch_url: a fixture)
    insert_account,
    scratch_url,
)

BEFORE = "f1a2b3c4d5e6"


def _columns(db, table: str) -> set[str]:
    return {c["name"] for c in inspect(db.engine).get_columns(table)}


def test_domain_controls_migrate_up_and_down(scratch_url):  # noqa: F811
    from app import create_app, db

    app = create_app(_test_config(scratch_url))
    now = utcnow().replace(tzinfo=None)
    with app.app_context():
        upgrade(revision=BEFORE)
        with db.engine.begin() as conn:
            insert_account(conn, now, seats_used=0)
            conn.execute(
                text(
                    "INSERT INTO domain (id, account_id, name, token, status, created_at) "
                    "VALUES (1, 1, 'acme.test', 'tok', 'verified', :t)"
                ),
                {"t": now},
            )
        upgrade()
        assert {"capture", "locked"} <= _columns(db, "domain")
        assert "scim_only" in _columns(db, "account")
        session = db.session
        domain = session.get(Domain, 1)
        assert (domain.capture, domain.locked, session.get(Account, 1).scim_only) == (
            False,
            False,
            False,
        )
        assert policy.capturing_account(session, "kim@acme.test") is None
        domain.capture = domain.locked = True
        session.add(
            Signup(
                email="kim@free.test",
                email_key="kim@free.test",
                passphrase_hash="x",
                token_hash="h" * 64,
                expires_at=utcnow() + timedelta(days=1),
            )
        )
        session.commit()
        assert policy.capturing_account(session, "kim@acme.test").id == 1
        assert policy.locked_by(session, "acme.test") == 1
        session.remove()

        downgrade(revision=BEFORE)
        assert not {"capture", "locked"} & _columns(db, "domain")
        assert "scim_only" not in _columns(db, "account")
        assert "signup" not in set(inspect(db.engine).get_table_names())
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM domain WHERE id = 1")).scalar() == (
                "acme.test"
            )
        upgrade()
        assert "signup" in set(inspect(db.engine).get_table_names())
        db.session.remove()
        db.engine.dispose()
