"""A gunicorn config file that measures the SQLite writer lock in each worker: how long a
write transaction holds it (from its first write to the end of its commit), how long it
waited for it, and how long the commit itself took. Each worker writes one line to the
server log when it exits:

    LOCKSTATS pid=… transactions=… hold_ms=… wait_ms=… commit_ms=… hold_total_s=…

    BENCH_KEEP=1 \\
    BENCH_GUNICORN_ARGS="-w 2 --threads 4 --reuse-port -c bench/sqlite_lock_stats.py" \\
        bench/run.sh --users 4000 --phases creates
    grep LOCKSTATS /tmp/scim-bench.*/server.log

The sum of `hold_total_s` over the workers, against the phase's length, is how busy the
lock was: near 1, creates are bound by the lock (one writer at a time across processes)
rather than by the CPU. It wraps blueprints/common/sqlite_writer.py's functions, so it
only measures; nothing else changes (SQLite only).
"""

from __future__ import annotations

import os
import sys
import time


def post_fork(server, worker):
    from blueprints.common import sqlite_writer

    stats = {"n": 0, "hold": 0.0, "wait": 0.0, "commit": 0.0}
    before_write, release, end = (
        sqlite_writer._before_write,
        sqlite_writer._release,
        sqlite_writer._end,
    )

    def timed_before_write(conn, cursor, statement, parameters, context, executemany):
        first = "sqlite_writer" not in conn.info
        started = time.perf_counter()
        before_write(conn, cursor, statement, parameters, context, executemany)
        if first and "sqlite_writer" in conn.info:
            taken = time.perf_counter()
            stats["wait"] += taken - started
            conn.info["lock_stats_taken"] = taken

    def timed_release(info):
        taken = info.pop("lock_stats_taken", None)
        release(info)
        if taken is not None:
            stats["n"] += 1
            stats["hold"] += time.perf_counter() - taken

    def timed_end(conn, how):
        if conn.invalidated or "sqlite_writer" not in conn.info:
            return end(conn, how)  # not a write transaction's end (a read's rollback)
        started = time.perf_counter()
        try:
            end(conn, how)
        finally:
            stats["commit"] += time.perf_counter() - started

    # The listeners are attached when the app is made (after the fork, without --preload),
    # and _end / _release are looked up by name when called: the wrappers take their place.
    sqlite_writer._before_write = timed_before_write
    sqlite_writer._release = timed_release
    sqlite_writer._end = timed_end

    def report():
        n = max(stats["n"], 1)
        sys.stderr.write(
            f"LOCKSTATS pid={os.getpid()} transactions={stats['n']} "
            f"hold_ms={1000 * stats['hold'] / n:.3f} wait_ms={1000 * stats['wait'] / n:.3f} "
            f"commit_ms={1000 * stats['commit'] / n:.3f} hold_total_s={stats['hold']:.2f}\n"
        )

    worker.lock_stats_report = report


def worker_exit(server, worker):
    report = getattr(worker, "lock_stats_report", None)
    if report is not None:
        report()
