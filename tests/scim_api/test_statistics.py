"""PostgreSQL's statistics for tables a first sync grows (blueprints/common/statistics.py):
without them, the generic plans of our prepared statements may read every member of an
account for a lookup by userName; measured, each create then cost 0.6 ms more per 1,000
members until autovacuum's next round."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import create_engine, text

from blueprints.common import statistics
from blueprints.common.extensions import db
from blueprints.scim_api.request_log import RequestLog
from models import Membership, utcnow

_STATS = text(
    "SELECT n_live_tup, last_analyze FROM pg_stat_user_tables WHERE relname = 'membership'"
)
_LOOKUP = (
    "PREPARE taken(int, varchar) AS SELECT 1 FROM membership "
    "WHERE account_id = $1 AND user_name_key = $2"
)


@pytest.fixture
def postgres(app):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's planner statistics (SQLite's planner needs none)")


def grow(session, account, count: int) -> None:
    """`count` members more, as a first sync writes them, and wait until PostgreSQL's
    cumulative statistics count them (a backend reports its counts at most once a
    second)."""
    names = [f"{uuid.uuid4().hex}@example.com" for _ in range(count)]
    session.add_all(
        Membership(
            account_id=account.id,
            user_name=name,
            user_name_key=name,
            scim_id=str(uuid.uuid4()),
            source="scim",
        )
        for name in names
    )
    session.flush()
    session.execute(text("SELECT pg_stat_force_next_flush()"))
    session.commit()
    with db.engine.connect() as conn:
        total = conn.scalar(text("SELECT count(*) FROM membership"))
        for _ in range(50):
            if conn.execute(_STATS).one().n_live_tup >= total:
                return
            conn.rollback()  # a new snapshot of the statistics
            time.sleep(0.1)
    raise AssertionError("PostgreSQL's statistics never counted the new members")


def grown_enough(session) -> int:
    """How many members more make `membership` a table that grew past its statistics."""
    reltuples = session.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'membership'"))
    return statistics.FLOOR + (1 + statistics.GROWTH) * max(int(reltuples), 0) + 100


def lookup_plan() -> str:
    """The generic plan of the lookup a create's checks make (userName within an
    account), as a prepared statement runs it once psycopg has prepared it."""
    with db.engine.connect() as conn:
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        conn.exec_driver_sql(_LOOKUP)
        plan = "\n".join(conn.exec_driver_sql("EXPLAIN EXECUTE taken(1, 'x')").scalars())
        conn.exec_driver_sql("DEALLOCATE taken")
        conn.rollback()
    return plan


def test_a_table_that_grew_is_analyzed_once_and_lookups_use_its_unique_index(
    postgres, session, account
):
    grow(session, account, grown_enough(session))

    assert "membership" in statistics.analyze_grown(db.engine)

    with db.engine.connect() as conn:
        assert conn.execute(_STATS).one().last_analyze is not None
    assert "membership" not in statistics.analyze_grown(db.engine)  # not grown since
    assert "uq_membership_account_user_name" in lookup_plan()


def test_only_the_columns_of_indexes_are_analyzed(postgres, session, account):
    """What the planner weighs to pick an index; the stored documents, which no index
    reads and which cost the most to analyze, are left to autovacuum."""
    grow(session, account, grown_enough(session))

    assert "membership" in statistics.analyze_grown(db.engine)

    with db.engine.connect() as conn:
        analyzed = set(
            conn.scalars(text("SELECT attname FROM pg_stats WHERE tablename = 'membership'"))
        )
    assert {"account_id", "user_name_key", "external_id", "scim_id"} <= analyzed
    assert not analyzed & {"scim_resource", "given_name", "version"}


def test_a_table_that_grew_little_is_left_to_autovacuum(postgres, session, account):
    grow(session, account, statistics.FLOOR + 200)
    statistics.analyze_grown(db.engine)

    grow(session, account, 50)

    assert "membership" not in statistics.analyze_grown(db.engine)


def test_one_process_at_a_time(postgres, session, account):
    """Another process holding the lock (it is analyzing): this one skips its turn."""
    grow(session, account, statistics.FLOOR + 100)
    with db.engine.connect() as other:
        other.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": statistics.LOCK_KEY})

        assert statistics.analyze_grown(db.engine) == []

    assert "membership" in statistics.analyze_grown(db.engine, floor=0)


def test_the_request_log_thread_analyzes_what_scim_traffic_grew(
    postgres, app, session, account, issued
):
    """A process serving SCIM traffic (its request log's thread) analyzes the tables that
    traffic grew, within a second or so, without waiting for autovacuum."""
    grow(session, account, statistics.FLOOR + 100)
    log = RequestLog(app, 0.05)
    row = {
        "connector_id": issued.connector.id,
        "method": "POST",
        "resource": "/Users",
        "status": 201,
        "outcome": "success",
        "created_at": utcnow(),
    }

    log.add(row, None)

    deadline = time.monotonic() + 10
    with db.engine.connect() as conn:
        while conn.execute(_STATS).one().last_analyze is None:
            assert time.monotonic() < deadline, "the table was never analyzed"
            conn.rollback()
            time.sleep(0.1)


def test_sqlite_needs_nothing(app):
    engine = create_engine("sqlite://")

    assert statistics.analyze_grown(engine) == []


def test_a_failure_is_logged_and_the_next_turn_waits_its_interval(app, caplog, monkeypatch):
    """The database away: a warning, no exception (the log's thread goes on), and no new
    attempt before the interval has passed."""
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")
    keeper = statistics.Keeper(interval=60)
    calls = []
    original = statistics.analyze_grown

    def counted(engine):
        calls.append(engine)
        return original(engine)

    monkeypatch.setattr(statistics, "analyze_grown", counted)

    keeper.tick(engine)
    keeper.tick(engine)

    assert len(calls) == 1
    assert "could not analyze" in caplog.text
