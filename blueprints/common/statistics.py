"""PostgreSQL's planner statistics for tables that an identity provider grows quickly.

A first sync writes thousands of members a minute into `membership` and its neighbours.
Until autovacuum analyzes them (at its next round, up to `autovacuum_naptime` later: a
minute by default), the planner has no statistics for them, and the generic plans of
our prepared statements may use any index that starts with `account_id`. Measured on a
fresh database (bench/README.md, "Fifth pass"): a create's checks read every member of
the account, and each create cost PostgreSQL 0.6 ms more per 1,000 members; lookups
slowed down as well.

`analyze_grown` analyzes the tables that have grown fivefold (plus `FLOOR` rows) since
their last analysis, and only the columns their indexes hold: what the planner weighs
when it picks an index. So a table growing to n rows is analyzed about log5(n) times,
each in a few milliseconds up to about 0.1 s at 100,000 rows (ANALYZE reads a sample of
at most 30,000 rows). The planner scales what it knows to the table's current size, so
statistics from a fifth of the rows still choose the same indexes; autovacuum, where it
runs, analyzes every column later. Measured during a first sync of 12,000 users
(bench/README.md, eighth pass): analyzing every column of the grown tables at each
doubling took an eighth of PostgreSQL's CPU, and the columns that no index reads (the
JSON document among them) more than half of `membership`'s analysis.

Updates don't count: the account row whose seat counter every create raises would
otherwise be analyzed every second, and every plan that reads it made again. ANALYZE
does not block reads or writes. Every connection's cached plans for the table are
invalidated, so the next execution plans again with the statistics.

Only tables the database user owns are analyzed (PostgreSQL skips the others with a
warning). One process at a time (an advisory lock); the others skip their turn.
SQLite needs none of this: its planner chooses the index that an equality matches in
full, with or without statistics.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import text

log = logging.getLogger(__name__)

FLOOR = 500  # rows changed before a table's first analysis
GROWTH = 4  # then rows added, as a multiple of those at the last analysis
LOCK_KEY = 7_305_114_921  # pg_try_advisory_xact_lock: one process analyzes at a time
_GROWN = text(
    """
    SELECT s.relname
    FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
    WHERE s.schemaname = current_schema()
      AND pg_has_role(c.relowner, 'USAGE')
      AND s.n_live_tup > :floor + (1 + :growth) * greatest(c.reltuples, 0)
    ORDER BY s.relname
    """
)
# The columns of each table's indexes (an expression index's own columns are not listed:
# attnum 0), in table order.
_INDEXED = text(
    """
    SELECT c.relname, a.attname
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE c.relname = ANY(:names)
      AND EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid AND a.attnum = ANY(i.indkey))
    ORDER BY c.relname, a.attnum
    """
)


def analyze_grown(engine, floor: int = FLOOR) -> list[str]:
    """Analyze the tables that grew past their statistics (PostgreSQL); the names of
    those analyzed. Nothing on SQLite, or while another process is at it."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.begin() as conn:
        if not conn.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": LOCK_KEY}):
            return []
        grown = list(conn.scalars(_GROWN, {"floor": floor, "growth": GROWTH}))
        indexed: dict[str, list[str]] = {}
        for table, column in conn.execute(_INDEXED, {"names": grown}) if grown else ():
            indexed.setdefault(table, []).append(column)
        quote = conn.dialect.identifier_preparer.quote
        for name in grown:
            columns = ", ".join(quote(column) for column in indexed.get(name, ()))
            started = time.perf_counter()
            conn.exec_driver_sql(f"ANALYZE {quote(name)}" + (f" ({columns})" if columns else ""))
            log.info("analyzed %s in %.0f ms", name, 1000 * (time.perf_counter() - started))
    return grown


class Keeper:
    """`analyze_grown` at most once every `interval` seconds, for a thread that runs
    often (the SCIM request log's). Its failure (the database away) is logged, never
    raised: the statistics are an optimisation, and autovacuum catches up anyway."""

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self._next = 0.0

    def tick(self, engine) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval
        try:
            analyze_grown(engine)
        except Exception:
            log.warning("could not analyze the tables that grew", exc_info=True)
