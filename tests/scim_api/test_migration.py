"""The migration to the whole stored resource (b1c2d3e4f5a6), on the database the suite
runs on (SQLite, or PostgreSQL with TEST_DATABASE=postgresql): users provisioned before it
read back as they did, filter, and take PATCHes after it; a downgrade gives the old
columns back."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from blueprints.scim_settings.connector import token_hash
from tests.conftest import _postgres_url, _test_config

BEFORE = "ae1f2b3c4d5e"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
TOKEN = "scim_migration-test-token"
CREATED = datetime(2026, 11, 1, 9, 30, tzinfo=UTC).replace(tzinfo=None)


@pytest.fixture
def scratch_url(tmp_path):
    """A database of its own: this test migrates it up and down."""
    if os.environ.get("TEST_DATABASE", "sqlite") == "postgresql":
        generator = _postgres_url()
        yield next(generator)
        with pytest.raises(StopIteration):
            next(generator)
    else:
        yield f"sqlite:///{tmp_path / 'migrate.db'}"


def insert_account(conn, now, seats_used: int = 1) -> None:
    """Account 1 ("Acme", 50 seats), written in SQL at an older revision."""
    conn.execute(
        text(
            "INSERT INTO account (id, name, seat_limit, seats_used, created_at) "
            "VALUES (1, 'Acme', 50, :used, :t)"
        ),
        {"t": now, "used": seats_used},
    )


def insert_connector(conn, now, public_id: str) -> None:
    """Account 1's enabled Okta connector 1, written in SQL at an older revision."""
    conn.execute(
        text(
            "INSERT INTO scim_connector (id, account_id, public_id, enabled, idp, "
            "created_at) VALUES (1, 1, :public_id, :yes, 'okta', :t)"
        ),
        {"t": now, "yes": True, "public_id": public_id},
    )


def _seed_old_schema(conn) -> None:
    """Rows as the app wrote them before the migration: an account with SCIM on, a
    provisioned user with every column the old schema had, and a manual member."""
    conn.execute(
        text(
            "INSERT INTO account (id, name, seat_limit, seats_used, created_at) "
            "VALUES (1, 'Acme', 50, 2, :t)"
        ),
        {"t": CREATED},
    )
    conn.execute(
        text(
            "INSERT INTO scim_connector (id, account_id, public_id, enabled, idp, token_hash, "
            "created_at) VALUES (1, 1, 'migrated', :yes, 'okta', :hash, :t)"
        ),
        {"t": CREATED, "hash": token_hash(TOKEN), "yes": True},
    )
    conn.execute(
        text(
            "INSERT INTO membership (id, account_id, scim_id, role, source, active, licensed, "
            "external_id, user_name, user_name_key, email, display_name, formatted_name, "
            "given_name, family_name, middle_name, honorific_prefix, honorific_suffix, title, "
            "employee_number, cost_center, organization, division, department, manager_id, "
            "version, created_at, updated_at) VALUES (1, 1, 'u-1', 'member', 'scim', :yes, "
            ":yes, '00u1', 'BJensen@example.com', 'bjensen@example.com', "
            "'bjensen@example.com', 'Babs Jensen', 'Ms. Barbara J Jensen, III', 'Barbara', "
            "'Jensen', 'Jane', 'Ms.', 'III', 'Tour Guide', '701984', '4130', 'Universal', "
            "'Theme Park', 'Tours', 'u-2', 3, :t, :t)"
        ),
        {"t": CREATED, "yes": True},
    )
    conn.execute(
        text(
            "INSERT INTO membership (id, account_id, scim_id, role, source, active, licensed, "
            "user_name, user_name_key, display_name, version, created_at, updated_at) "
            "VALUES (2, 1, 'u-2', 'member', 'scim', :no, :no, 'boss', 'boss', NULL, 1, :t, :t)"
        ),
        {"t": CREATED, "no": False},
    )
    conn.execute(
        text(
            "INSERT INTO membership (id, account_id, role, source, active, licensed, email, "
            "display_name, version, created_at, updated_at) VALUES (3, 1, 'owner', 'manual', "
            ":yes, :yes, 'owner@example.com', 'Owner', 1, :t, :t)"
        ),
        {"t": CREATED, "yes": True},
    )
    for position, (value, kind, primary, display) in enumerate(
        [("bjensen@example.com", "work", True, "Work"), ("babs@jensen.test", "home", False, None)]
    ):
        conn.execute(
            text(
                "INSERT INTO member_email (membership_id, position, value, value_key, type, "
                '"primary", display) VALUES (1, :p, :v, :k, :ty, :pr, :d)'
            ),
            {
                "p": position,
                "v": value,
                "k": value.lower(),
                "ty": kind,
                "pr": primary,
                "d": display,
            },
        )


def _get(client, path: str, **query):
    response = client.get(
        f"/scim/v2/migrated{path}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        query_string=query,
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_users_provisioned_before_read_back_filter_and_patch_after(scratch_url):
    from app import create_app, db

    app = create_app(_test_config(scratch_url))
    with app.app_context():
        upgrade(revision=BEFORE)
        with db.engine.begin() as conn:
            _seed_old_schema(conn)
        # To the head, not just b1c2d3e4f5a6: the app's code reads the schema of the head
        # (the connector's token moved to scim_token since), and the old token still works.
        upgrade()
        db.session.remove()

        client = app.test_client()
        user = _get(client, "/Users/u-1")
        assert {k: v for k, v in user.items() if k not in ("meta", "groups")} == {
            "schemas": [USER, ENTERPRISE],
            "id": "u-1",
            "externalId": "00u1",
            "userName": "BJensen@example.com",
            "name": {
                "formatted": "Ms. Barbara J Jensen, III",
                "familyName": "Jensen",
                "givenName": "Barbara",
                "middleName": "Jane",
                "honorificPrefix": "Ms.",
                "honorificSuffix": "III",
            },
            "displayName": "Babs Jensen",
            "title": "Tour Guide",
            "active": True,
            "emails": [
                {
                    "value": "bjensen@example.com",
                    "type": "work",
                    "primary": True,
                    "display": "Work",
                },
                {"value": "babs@jensen.test", "type": "home"},
            ],
            ENTERPRISE: {
                "employeeNumber": "701984",
                "costCenter": "4130",
                "organization": "Universal",
                "division": "Theme Park",
                "department": "Tours",
                # u-2 is a user of the account: its location is the predictable $ref
                "manager": {"value": "u-2", "$ref": "http://localhost/scim/v2/migrated/Users/u-2"},
            },
        }
        assert user["meta"]["version"] == 'W/"3"'
        assert _get(client, "/Users/u-2")["active"] is False
        found = _get(client, "/Users", filter=f'{ENTERPRISE}:department eq "tours"')
        assert [r["id"] for r in found["Resources"]] == ["u-1"]
        assert _get(client, "/Users", filter='displayName eq "BABS JENSEN"')["totalResults"] == 1
        assert _get(client, "/Users")["totalResults"] == 2  # the manual member stays hidden

        patched = client.patch(
            "/scim/v2/migrated/Users/u-1",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "add", "path": "nickName", "value": "Babs"}],
            },
        )
        assert patched.status_code == 200, patched.get_data(as_text=True)
        assert _get(client, "/Users/u-1")["nickName"] == "Babs"

        db.session.remove()
        downgrade(revision=BEFORE)
        with db.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT title, middle_name, department, manager_id FROM membership WHERE id = 1"
                )
            ).one()
        assert tuple(row) == ("Tour Guide", "Jane", "Tours", "u-2")
        db.engine.dispose()
