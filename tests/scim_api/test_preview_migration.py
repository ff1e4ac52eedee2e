"""The preview migration (d9e0f1a2b3c4), on the database the suite runs on (SQLite, or
PostgreSQL with TEST_DATABASE=postgresql): upgraded, an existing connector is live and
has no forecast; a preview row can be written; downgraded, the table and the mode go and
the connector stays."""

from __future__ import annotations

from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from models import ScimConnector, ScimPreview, utcnow
from tests.conftest import _test_config
from tests.scim_api.test_migration import (  # noqa: F401 (scratch_url: a fixture)
    insert_account,
    insert_connector,
    scratch_url,
)

BEFORE = "c8d9e0f1a2b3"


def test_preview_migrates_up_and_down(scratch_url):  # noqa: F811
    from app import create_app, db

    app = create_app(_test_config(scratch_url))
    now = utcnow().replace(tzinfo=None)
    with app.app_context():
        upgrade(revision=BEFORE)
        with db.engine.begin() as conn:
            insert_account(conn, now)
            insert_connector(conn, now, "pub")
        upgrade()
        assert "scim_preview" in set(inspect(db.engine).get_table_names())
        session = db.session
        assert session.get(ScimConnector, 1).mode == "live"
        session.add(
            ScimPreview(
                connector_id=1,
                kind="User",
                scim_id="u-1",
                user_name_key="a@example.com",
                document={"userName": "a@example.com"},
                outcome="created",
                detail={"email": "a@example.com"},
                needs_seat=True,
            )
        )
        session.commit()
        assert session.get(ScimPreview, 1).document == {"userName": "a@example.com"}
        session.remove()

        downgrade(revision=BEFORE)
        assert "scim_preview" not in set(inspect(db.engine).get_table_names())
        columns = {c["name"] for c in inspect(db.engine).get_columns("scim_connector")}
        assert "mode" not in columns
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT public_id FROM scim_connector")).scalar() == "pub"
        upgrade()
        assert "scim_preview" in set(inspect(db.engine).get_table_names())
        db.session.remove()
        db.engine.dispose()
