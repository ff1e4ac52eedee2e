"""The migration to named tokens (f5a6b7c8d9e0), on the database the suite runs on (SQLite,
or PostgreSQL with TEST_DATABASE=postgresql): a connector's one token becomes its token
named "Default" with the same secret, grace, expiry and history, so the IdP notices
nothing; a downgrade puts it back on the connector. Then the tokens' access
(a6b7c8d9e0f1): existing tokens unrestricted; a downgrade revokes restricted tokens rather
than widen them."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

from flask_migrate import downgrade, upgrade
from sqlalchemy import select, text

from blueprints.common.crypto import encrypt
from blueprints.scim_settings import connector as service
from blueprints.scim_settings.connector import token_hash
from models import ScimToken, User, utcnow
from tests.conftest import _test_config
from tests.scim_api.test_migration import scratch_url  # noqa: F401 (a fixture)

BEFORE = "e4f5a6b7c8d9"
TOKEN = "scim_the-token-the-idp-was-given-before-the-migration"
PREVIOUS = "scim_the-token-a-refresh-replaced-an-hour-before-it"


def _naive(moment):
    return moment.replace(tzinfo=None)


def _seed_one_token_schema(conn, now) -> None:
    """An account with SCIM on, as the one-token schema held it: its token refreshed an
    hour ago (the replaced one in its grace), 30 days left, its automatic refresh
    failing, and a request from the IdP in the log."""
    conn.execute(
        text(
            "INSERT INTO account (id, name, seat_limit, seats_used, created_at) "
            "VALUES (1, 'Acme', 50, 0, :t)"
        ),
        {"t": _naive(now)},
    )
    conn.execute(
        text(
            'INSERT INTO "user" (id, email, email_key, passphrase_hash, must_change_passphrase, '
            "session_generation, created_at) VALUES (1, 'owner@example.com', "
            "'owner@example.com', 'x', :no, 1, :t)"
        ),
        {"t": _naive(now), "no": False},
    )
    conn.execute(
        text(
            "INSERT INTO scim_connector (id, account_id, public_id, enabled, idp, lifetime_days, "
            "token_hash, token_encrypted, previous_token_hash, previous_valid_until, issued_at, "
            "refreshed_at, expires_at, last_used_at, first_request_at, bound_user_id, "
            "refreshed_by_user_id, refresh_failure_reason, refresh_failed_at, enabled_at, "
            "created_at) VALUES (1, 1, 'migrated', :yes, 'okta', 90, :hash, :cipher, :prev, "
            ":grace, :issued, :issued, :expires, :used, :first, 1, 1, 'Single sign-on is off.', "
            ":failed, :enabled, :enabled)"
        ),
        {
            "yes": True,
            "hash": token_hash(TOKEN),
            "cipher": encrypt(TOKEN),
            "prev": token_hash(PREVIOUS),
            "grace": _naive(now + timedelta(hours=23)),
            "issued": _naive(now - timedelta(hours=1)),
            "expires": _naive(now + timedelta(days=30)),
            "used": _naive(now - timedelta(minutes=5)),
            "first": _naive(now - timedelta(days=60)),
            "failed": _naive(now - timedelta(days=1)),
            "enabled": _naive(now - timedelta(days=61)),
        },
    )
    conn.execute(
        text(
            "INSERT INTO scim_request_log (connector_id, method, resource, status, outcome, "
            "remote_addr, created_at) VALUES (1, 'GET', '/Users', 200, 'success', "
            "'198.51.100.20', :t)"
        ),
        {"t": _naive(now - timedelta(minutes=5))},
    )


def _get(client, token: str):
    return client.get(
        "/scim/v2/migrated/ServiceProviderConfig", headers={"Authorization": f"Bearer {token}"}
    )


@contextmanager
def _upgraded(url: str, now):
    """A scratch database as the one-token schema held it (`_seed_one_token_schema`),
    upgraded to the head; the app, inside its context."""
    from app import create_app, db

    app = create_app(_test_config(url))
    with app.app_context():
        upgrade(revision=BEFORE)
        with db.engine.begin() as conn:
            _seed_one_token_schema(conn, now)
        upgrade()
        db.session.remove()
        yield app


def test_one_token_connector_becomes_default_token_and_its_idp_notices_nothing(scratch_url):  # noqa: F811
    from app import db

    now = utcnow()
    with _upgraded(scratch_url, now) as app:
        with db.engine.connect() as conn:
            migrated_addr = conn.execute(text("SELECT last_used_addr FROM scim_token")).scalar()
        assert migrated_addr == "198.51.100.20"  # the last address the request log saw

        # The IdP's token, and the one it replaced (still in its grace), keep working.
        client = app.test_client()
        assert _get(client, TOKEN).status_code == 200
        assert _get(client, PREVIOUS).status_code == 200
        assert _get(client, "scim_" + "x" * 43).status_code == 401

        [token] = db.session.scalars(select(ScimToken)).all()
        assert (token.connector_id, token.name, token.revoked_at) == (1, "Default", None)
        assert token.token_hash == token_hash(TOKEN)
        assert token.lifetime_days == 90
        assert abs(token.expires_at - (now + timedelta(days=30))) < timedelta(seconds=1)
        assert abs(token.issued_at - (now - timedelta(hours=1))) < timedelta(seconds=1)
        assert (token.bound_user_id, token.refreshed_by_user_id) == (1, 1)
        assert token.refresh_failure_reason == "Single sign-on is off."
        assert token.last_used_addr == "127.0.0.1"  # the requests above, stamped
        assert token.created_by_user_id is None  # never recorded: not guessed
        # Nothing restricts it (a6b7c8d9e0f1): any address, reads and writes.
        assert (token.allowed_networks, token.read_only) == (None, False)
        # Reveal token shows the same secret; the page lists it.
        owner = db.session.get(User, 1)
        assert service.reveal(db.session, token.connector, token, owner, now) == TOKEN
        db.session.rollback()
        db.session.remove()

        downgrade(revision=BEFORE)
        with db.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT token_hash, previous_token_hash, lifetime_days, bound_user_id, "
                    "refresh_failure_reason FROM scim_connector WHERE id = 1"
                )
            ).one()
        assert tuple(row) == (
            token_hash(TOKEN),
            token_hash(PREVIOUS),
            90,
            1,
            "Single sign-on is off.",
        )
        db.engine.dispose()


def test_downgrading_token_access_revokes_restricted_tokens_rather_than_widen_them(
    scratch_url,  # noqa: F811
):
    from app import db

    now = utcnow()
    with _upgraded(scratch_url, now) as app:
        owner = db.session.get(User, 1)
        [default] = db.session.scalars(select(ScimToken)).all()
        connector = default.connector
        for name, allowed, read_only in [
            ("Pinned", "203.0.113.0/24", False),
            ("Reporting", None, True),
        ]:
            service.create_token(db.session, connector, owner, name, "90", now, allowed, read_only)
        db.session.commit()
        db.session.remove()

        downgrade(revision="f5a6b7c8d9e0")
        with db.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT name, revoked_at IS NOT NULL, token_encrypted IS NULL "
                    "FROM scim_token ORDER BY id"
                )
            ).all()
        assert [tuple(row) for row in rows] == [
            ("Default", False, False),
            ("Pinned", True, True),
            ("Reporting", True, True),
        ]
        upgrade()
        client = app.test_client()
        assert _get(client, TOKEN).status_code == 200  # the unrestricted one still works
        db.session.remove()
        db.engine.dispose()
