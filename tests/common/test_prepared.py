"""`sql.Prepared`: the SCIM hot paths' statements run on the driver's cursor must read and
write exactly what SQLAlchemy's own execution does (types, errors, listeners), on both
databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import bindparam, event, insert, select
from sqlalchemy.exc import IntegrityError, InvalidRequestError, NoResultFound

from blueprints.common.extensions import db
from blueprints.common.sql import Prepared, execute
from models import AuditEvent, OutboxEmail, User, utcnow

_AUDIT = AuditEvent.__table__
_READ = select(_AUDIT.c.id, _AUDIT.c.action, _AUDIT.c.detail, _AUDIT.c.created_at).where(
    _AUDIT.c.account_id == bindparam("account_id")
)


def _event(account_id: int, action: str, detail: dict, at) -> dict:
    return {
        "account_id": account_id,
        "actor_user_id": None,
        "action": action,
        "target": "user:ada@example.com",
        "detail": detail,
        "remote_addr": None,
        "created_at": at,
    }


def test_rows_written_and_read_as_sqlalchemy_does(session, account):
    """JSON, aware datetimes and ids come back as SQLAlchemy's own execution gives them."""
    at = utcnow().replace(microsecond=123456)
    detail = {"via": "scim", "names": ["Ada", "Zoë"], "n": 2, "ok": True}
    written = Prepared(insert(_AUDIT).returning(_AUDIT.c.id))
    first = execute(session, written, _event(account.id, "scim.user_created", detail, at))
    first_id = first.scalar_one()
    second_id = (
        execute(session, written, _event(account.id, "scim.user_updated", {}, at))
        .scalars()
        .all()[0]
    )
    assert second_id > first_id

    mine = execute(session, Prepared(_READ), {"account_id": account.id}).all()
    theirs = session.execute(_READ, {"account_id": account.id}).all()
    assert [tuple(row) for row in mine] == [tuple(row) for row in theirs]
    one = next(row for row in mine if row.id == first_id)
    assert one.detail == detail
    assert one.created_at == at and one.created_at.utcoffset() == timedelta(0)
    assert one.action == "scim.user_created"


def test_results_answer_as_sqlalchemy_results(session, account):
    read = Prepared(_READ)
    nothing = execute(session, read, {"account_id": account.id + 1000})
    assert nothing.first() is None and nothing.scalar() is None and nothing.all() == []
    with pytest.raises(NoResultFound):
        nothing.one()


def test_a_broken_constraint_is_sqlalchemys_integrity_error(session):
    """The SCIM create's 409 under a race rests on it; the session stays usable."""
    person = Prepared(insert(User.__table__).returning(User.__table__.c.id))
    now = utcnow()
    row = {
        "email": "grace@example.com",
        "email_key": "grace@example.com",
        "email_domain": "example.com",
        "display_name": "Grace",
        "passphrase_hash": None,
        "must_change_passphrase": False,
        "session_generation": 1,
        "created_at": now,
    }
    execute(session, person, row)
    with pytest.raises(IntegrityError), session.begin_nested():
        execute(session, person, dict(row))
    assert session.scalar(select(User.id).where(User.email_key == "grace@example.com"))
    # The connection's cursor (kept for these statements) serves the next one.
    other = dict(row, email="alan@example.com", email_key="alan@example.com")
    assert execute(session, person, other).scalar_one()


def test_listeners_see_the_statement(session, account):
    """The writer lock (SQLite) and the tests' write tracking are cursor listeners."""
    seen = []

    def listen(conn, cursor, statement, parameters, context, executemany):
        seen.append(" ".join(statement.split()[:3]).upper())

    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        execute(session, Prepared(_READ), {"account_id": account.id})
        execute(
            session,
            Prepared(insert(_AUDIT)),
            _event(account.id, "scim.user_created", {}, utcnow()),
        )
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
    assert "SELECT AUDIT_EVENT.ID, AUDIT_EVENT.ACTION," in seen
    assert "INSERT INTO AUDIT_EVENT" in seen


def test_python_side_defaults_still_apply(session, monkeypatch):
    """A statement that needs SQLAlchemy's execution (a column's Python default: here
    the outbox's `attempts`, `next_attempt_at` and `created_at` left out) runs through
    it, defaults filled, every time; it is looked at once, not compiled again on every
    run to find out again."""
    from blueprints.common import sql

    looked = []
    real = sql._Form.of
    monkeypatch.setattr(sql._Form, "of", lambda *args: looked.append(1) or real(*args))
    table = OutboxEmail.__table__
    defaulted = [c.name for c in table.columns if c.default is not None]
    assert defaulted, "the outbox has no Python-side default left to test with"
    row = {
        "to_addr": "ada@example.com",
        "subject": "Hello",
        "body_text": "Hi",
        "body_html": None,
        "dedupe_key": None,
        "attempts": 0,
        "next_attempt_at": utcnow(),
        "created_at": utcnow(),
    }
    for name in defaulted:
        row.pop(name, None)
    statement = Prepared(insert(table).returning(table.c.id))
    for _ in range(2):
        new_id = execute(session, statement, dict(row)).scalar_one()
        stored = session.get(OutboxEmail, new_id)
        for name in defaulted:
            assert getattr(stored, name) is not None, name
    assert len(looked) == 1


def test_literals_named_parameters_and_a_missing_one(session, account):
    """A statement's own literals go with the caller's values; a missing value is
    SQLAlchemy's error, not a NULL bound in its place."""
    at = utcnow()
    for action in ("scim.user_created", "scim.user_updated"):
        execute(session, Prepared(insert(_AUDIT)), _event(account.id, action, {}, at))
    created = Prepared(
        select(_AUDIT.c.action).where(
            _AUDIT.c.account_id == bindparam("account_id"),
            _AUDIT.c.action == "scim.user_created",
            _AUDIT.c.created_at <= bindparam("until"),
        )
    )
    found = execute(session, created, {"account_id": account.id, "until": at}).scalars().all()
    assert found == ["scim.user_created"]
    with pytest.raises(InvalidRequestError, match="until"):
        execute(session, created, {"account_id": account.id})


def test_a_list_of_rows_writes_each_and_returns_all(session, account):
    """A list of parameter sets (a user's emails) writes every row; RETURNING gives each
    one's id and the count adds up."""
    written = Prepared(insert(_AUDIT).returning(_AUDIT.c.id))
    rows = [_event(account.id, f"scim.user_{n}", {}, utcnow()) for n in ("a", "b", "c")]
    result = execute(session, written, rows)
    ids = result.scalars().all()
    assert len(ids) == 3 and len(set(ids)) == 3
    assert result.rowcount == 3
    stored = execute(session, Prepared(_READ), {"account_id": account.id}).all()
    assert sorted(row.id for row in stored) == sorted(ids)


def test_bound_values_are_written_and_late_ones_go_in_at_run(session, account):
    """What `bind` was given is written, and the `late` values (an id an earlier INSERT
    returned) go in at run time, converted by their column's type, in every row of a
    list."""
    dialect = session.get_bind().dialect
    at = utcnow().replace(microsecond=0)
    detail = {"via": "scim", "n": 1}
    row = _event(account.id, "scim.user_created", detail, at)
    bound = Prepared(insert(_AUDIT).returning(_AUDIT.c.id)).bind(
        dialect, row, ("created_at", "target")
    )
    later = at + timedelta(hours=1)
    new_id = bound.run(session.connection(), created_at=later, target="user:1").scalar_one()

    rows = [_event(account.id, f"scim.user_{n}", {}, at) for n in ("a", "b")]
    many = Prepared(insert(_AUDIT)).bind(dialect, rows, ("target",))
    assert many.run(session.connection(), target="user:2").rowcount == 2

    stored = session.execute(
        select(_AUDIT.c.id, _AUDIT.c.detail, _AUDIT.c.created_at, _AUDIT.c.target).where(
            _AUDIT.c.account_id == account.id
        )
    ).all()
    first = next(r for r in stored if r.id == new_id)
    assert first.detail == {"via": "scim", "n": 1}
    assert first.created_at == later and first.target == "user:1"
    assert sorted(r.target for r in stored if r.id != new_id) == ["user:2", "user:2"]


def test_bound_falls_back_to_sqlalchemy_with_its_late_values(session):
    """A statement SQLAlchemy must run (a Python-side default) takes its late values too."""
    table = OutboxEmail.__table__
    row = {"to_addr": "ada@example.com", "subject": "Hello", "body_text": "Hi"}
    row |= {"body_html": None, "dedupe_key": None}
    bound = Prepared(insert(table).returning(table.c.id)).bind(
        session.get_bind().dialect, row, ("subject",)
    )
    new_id = bound.run(session.connection(), subject="Welcome").scalar_one()
    stored = session.get(OutboxEmail, new_id)
    assert stored.subject == "Welcome" and stored.attempts is not None


def test_late_names_are_checked_when_bound_and_when_run(session, account):
    """A late name the statement does not take is refused when bound; a run without every
    late value is refused before anything is written (its placeholder never is)."""
    dialect = session.get_bind().dialect
    row = _event(account.id, "scim.user_created", {}, utcnow())
    with pytest.raises(KeyError, match="membership_id"):
        Prepared(insert(_AUDIT)).bind(dialect, row, ("membership_id",))
    bound = Prepared(insert(_AUDIT)).bind(dialect, row, ("target",))
    with pytest.raises(TypeError, match="target"):
        bound.run(session.connection())
    assert execute(session, Prepared(_READ), {"account_id": account.id}).all() == []
