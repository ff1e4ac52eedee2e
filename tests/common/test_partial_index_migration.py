"""The partial-index migration (1b2c3d4e5f6a), on the database the suite runs on (SQLite,
or PostgreSQL with TEST_DATABASE=postgresql): upgraded, every row and child row is kept,
an invitation token is still unique and found by its index, and the three indexes hold
only the rows with a value; downgraded, the plain constraint and indexes come back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from models import utcnow
from tests.conftest import _test_config
from tests.scim_api.test_migration import (  # noqa: F401 (scratch_url: a fixture)
    insert_account,
    scratch_url,
)

BEFORE = "0a1b2c3d4e5f"
PARTIAL = {
    "uq_membership_invitation_token_hash": "invitation_token_hash",
    "ix_membership_removal_due_at": "removal_due_at",
    "ix_audit_event_account_actor": "actor_user_id",
}


def _definitions(conn) -> dict[str, str]:
    """The SQL that defines each of the three indexes, as the database holds it."""
    if conn.dialect.name == "postgresql":
        query = "SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(:names)"
        rows = conn.execute(text(query), {"names": list(PARTIAL)})
    else:
        query = "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
        rows = conn.execute(text(query))
    return {name: sql or "" for name, sql in rows if name in PARTIAL}


def _is_partial(definition: str, column: str) -> bool:
    """Whether the index holds only the rows where `column` has a value (PostgreSQL
    writes the condition in parentheses, SQLite as it was given)."""
    _, where, condition = definition.partition(" WHERE ")
    return bool(where) and condition.strip("()") == f"{column} IS NOT NULL"


def _insert_member(conn, member_id: int, token_hash: str | None, now) -> None:
    conn.execute(
        text(
            "INSERT INTO membership (id, account_id, role, source, active, licensed, version, "
            "invitation_token_hash, created_at, updated_at) "
            "VALUES (:id, 1, 'member', 'invite', :yes, :yes, 1, :hash, :t, :t)"
        ),
        {"id": member_id, "hash": token_hash, "t": now, "yes": True},
    )


def _token_lookup_plan(conn) -> str:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        query = "EXPLAIN SELECT id FROM membership WHERE invitation_token_hash = :h"
    else:
        query = "EXPLAIN QUERY PLAN SELECT id FROM membership WHERE invitation_token_hash = :h"
    return " ".join(str(row[-1]) for row in conn.execute(text(query), {"h": "hash-1"}))


def test_partial_indexes_migrate_up_and_down(scratch_url):  # noqa: F811
    from app import create_app, db

    app = create_app(_test_config(scratch_url))
    now = utcnow().replace(tzinfo=None)
    with app.app_context():
        upgrade(revision=BEFORE)
        with db.engine.begin() as conn:
            insert_account(conn, now)
            _insert_member(conn, 1, "hash-1", now)  # an invitation waiting
            _insert_member(conn, 2, None, now)
            conn.execute(
                text("UPDATE membership SET removal_due_at = :due WHERE id = 2"),
                {"due": now + timedelta(days=7)},
            )
            conn.execute(
                text(
                    'INSERT INTO member_email (membership_id, position, value, "primary") '
                    "VALUES (2, 0, 'b@example.com', :yes)"
                ),
                {"yes": True},
            )
            conn.execute(
                text(
                    "INSERT INTO audit_event (account_id, action, target, created_at) "
                    "VALUES (1, 'scim.user.created', 'user:b', :t)"
                ),
                {"t": now},
            )

        upgrade()
        with db.engine.begin() as conn:
            definitions = _definitions(conn)
            assert set(definitions) == set(PARTIAL)
            for name, column in PARTIAL.items():
                assert _is_partial(definitions[name], column), definitions[name]
            # The table SQLite rebuilt kept its rows, and the rows that point at them.
            assert conn.execute(text("SELECT count(*) FROM membership")).scalar() == 2
            emails = conn.execute(text("SELECT membership_id FROM member_email")).scalars()
            assert emails.all() == [2]
            due = text("SELECT id FROM membership WHERE removal_due_at <= :t")
            assert conn.execute(due, {"t": now}).scalars().all() == []
            later = {"t": now + timedelta(days=8)}
            assert conn.execute(due, later).scalars().all() == [2]
            # An invitation's link finds its member through the index.
            assert "uq_membership_invitation_token_hash" in _token_lookup_plan(conn)
            # Any number of members without an invitation; two with one token, never.
            _insert_member(conn, 3, None, now)
        with pytest.raises(IntegrityError), db.engine.begin() as conn:
            _insert_member(conn, 4, "hash-1", now)

        downgrade(revision=BEFORE)
        with db.engine.begin() as conn:
            definitions = _definitions(conn)
            for name, column in PARTIAL.items():
                assert not _is_partial(definitions.get(name, ""), column)
            assert conn.execute(text("SELECT count(*) FROM membership")).scalar() == 3
            assert conn.execute(text("SELECT count(*) FROM member_email")).scalar() == 1
        with pytest.raises(IntegrityError), db.engine.begin() as conn:
            _insert_member(conn, 4, "hash-1", now)
        upgrade()
        db.engine.dispose()
