"""The SQLite writer lock (blueprints/common/sqlite_writer.py): writers queue in the
process and on a file lock, and give both back only once their transaction is over, so
the next writer's BEGIN IMMEDIATE never finds SQLite still locked (and never falls into
SQLite's sleeping busy loop)."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from blueprints.common import sqlite_writer


@pytest.fixture
def engine(tmp_path):
    path = tmp_path / "writer.db"
    engine = create_engine(f"sqlite:///{path}")
    sqlite_writer.install(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE item (value INTEGER)"))
    yield engine, path
    engine.dispose()


@pytest.fixture
def at_release(monkeypatch, engine):
    """What another connection, refusing to wait, finds each time the locks are given
    back: "free" when it can start writing at once."""
    _, path = engine
    seen: list[str] = []
    release = sqlite_writer._release

    def probe(info):
        if "sqlite_writer" in info:
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
                seen.append("free")
            except sqlite3.OperationalError as error:
                seen.append(str(error))
            finally:
                other.close()
        release(info)

    monkeypatch.setattr(sqlite_writer, "_release", probe)
    return seen


def _values(engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.scalars(text("SELECT value FROM item ORDER BY value")))


def test_writer_gives_its_locks_back_after_the_commit(engine, at_release):
    engine, _ = engine
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO item VALUES (1)"))

    assert at_release == ["free"]
    assert _values(engine) == [1]


def test_writer_gives_its_locks_back_after_the_rollback(engine, at_release):
    engine, _ = engine
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(text("INSERT INTO item VALUES (2)"))
        raise RuntimeError("the request failed")

    assert at_release == ["free"]
    assert _values(engine) == []


def test_next_writer_goes_in_after_a_commit(engine, at_release):
    engine, _ = engine
    for value in (1, 2, 3):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO item VALUES (:v)"), {"v": value})

    assert at_release == ["free"] * 3
    assert _values(engine) == [1, 2, 3]


def test_failed_commit_raises_keeps_nothing_and_frees_the_lock(engine, at_release):
    """A COMMIT that fails (here a deferred foreign key) is reported as SQLAlchemy's
    error, never as a success, and the next writer is not locked out."""
    engine, _ = engine
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        conn.execute(
            text(
                "CREATE TABLE child (parent_id INTEGER REFERENCES parent (id) "
                "DEFERRABLE INITIALLY DEFERRED)"
            )
        )

    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("INSERT INTO child VALUES (42)"))

    assert at_release == ["free"]
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM child")) == 0
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO item VALUES (7)"))
    assert _values(engine) == [7]


def test_only_the_apps_engine_gets_the_pragmas_and_the_lock(app, tmp_path):
    """Attached in create_app to the app's engine, not to every engine of the process (a
    tool's or a test's own engine keeps SQLite's defaults)."""
    from app import db

    if db.engine.dialect.name != "sqlite":
        pytest.skip("the app runs on PostgreSQL here")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    other = create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        with other.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
    finally:
        other.dispose()
