"""The unclaimed accounts migration (f1a2b3c4d5e6), on the database the suite runs on
(SQLite, or PostgreSQL with TEST_DATABASE=postgresql): upgraded, existing people get
their email's domain (IDNA, lower case) and the index; downgraded, both go."""

from __future__ import annotations

from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from models import User, utcnow
from tests.conftest import _test_config
from tests.scim_api.test_migration import scratch_url  # noqa: F401 (a fixture)

BEFORE = "e0f1a2b3c4d5"


def _columns(db) -> set[str]:
    return {c["name"] for c in inspect(db.engine).get_columns("user")}


def test_email_domain_migrates_up_and_down(scratch_url):  # noqa: F811
    from app import create_app, db

    app = create_app(_test_config(scratch_url))
    now = utcnow().replace(tzinfo=None)
    with app.app_context():
        upgrade(revision=BEFORE)
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    'INSERT INTO "user" (id, email, email_key, must_change_passphrase, '
                    "session_generation, created_at) VALUES "
                    "(1, 'Ann@Acme.TEST', 'ann@acme.test', :no, 1, :t), "
                    "(2, 'bo@bücher.example', 'bo@bücher.example', :no, 1, :t), "
                    "(3, 'cy@eu.acme.test', 'cy@eu.acme.test', :no, 1, :t)"
                ),
                {"t": now, "no": False},
            )
        upgrade()
        assert "email_domain" in _columns(db)
        indexes = {i["name"]: i["column_names"] for i in inspect(db.engine).get_indexes("user")}
        assert indexes["ix_user_email_domain_key"] == ["email_domain", "email_key"]
        with db.engine.connect() as conn:
            found = dict(conn.execute(text('SELECT id, email_domain FROM "user"')).all())
        assert found == {1: "acme.test", 2: "xn--bcher-kva.example", 3: "eu.acme.test"}

        person = db.session.get(User, 1)
        person.email, person.email_key = "ann@new.test", "ann@new.test"
        db.session.commit()
        assert db.session.get(User, 1).email_domain == "new.test"  # kept on writes
        db.session.remove()

        downgrade(revision=BEFORE)
        assert "email_domain" not in _columns(db)
        with db.engine.connect() as conn:
            assert conn.execute(text('SELECT email FROM "user" WHERE id = 2')).scalar() == (
                "bo@bücher.example"
            )
        upgrade()
        assert "email_domain" in _columns(db)
        db.session.remove()
        db.engine.dispose()
