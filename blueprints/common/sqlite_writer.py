"""SQLite as a server database (SPEC F9: the embedded default must take concurrent IdP
traffic): the pragmas every connection gets, and the writer lock. `install(engine)` attaches
both to one engine (the app's, in `create_app`), not to every engine in the process.

Writers:
- The driver runs reads outside any transaction (each sees the latest commit, nothing is
  locked) and opens BEGIN IMMEDIATE before the first INSERT/UPDATE/DELETE
  (isolation_level="IMMEDIATE"): the write lock is taken up front, because a deferred
  transaction that read first cannot be upgraded once another connection has written
  (SQLITE_BUSY at once, whatever the busy timeout), and it is held only from the first
  write to the commit, not across a whole request.
- Writers queue on a lock in this process and then on an flock() of a file beside the
  database, which the kernel hands to the next process the moment it is released;
  waiting on SQLite's own lock means polling with growing sleeps (1, 2, 5 … 100 ms).
  Uniqueness and seats stay correct without a read lock: constraints and guarded
  UPDATEs decide. The timeout only guards against a lock never released.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError


def _fold(value):
    """SQLite's lower() folds ASCII only; SCIM compares caseExact=false strings folded
    like Python does (blueprints.scim_api.filters), so the database must agree."""
    return value.lower() if isinstance(value, str) else value


def _pragmas(dbapi_connection, connection_record) -> None:
    """SQLite as a server database: foreign keys enforced (ON DELETE CASCADE), WAL so
    readers never wait for the writer, every commit synced to disk, a busy timeout
    instead of 'database is locked', LIKE case-sensitive as on PostgreSQL, and a
    Unicode-aware lower()."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a commit is on disk (SQLite's default, said)
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA case_sensitive_like=ON")
    cursor.close()
    dbapi_connection.create_function("lower", 1, _fold, deterministic=True)
    dbapi_connection.isolation_level = "IMMEDIATE"


_WRITER = threading.Lock()
_LOCK_FILES: dict[str, int] = {}
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLAC")


def _lock_file(database: str | None) -> int | None:
    if not database or database == ":memory:":
        return None
    fd = _LOCK_FILES.get(database)
    if fd is None:
        fd = os.open(database + ".writer-lock", os.O_RDWR | os.O_CREAT, 0o600)
        _LOCK_FILES[database] = fd
    return fd


def _before_write(conn, cursor, statement, parameters, context, executemany) -> None:
    if "sqlite_writer" in conn.info or statement.lstrip()[:6].upper() not in _WRITES:
        return
    held = _WRITER.acquire(timeout=30)
    fd = _lock_file(conn.engine.url.database) if held else None
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)
    conn.info["sqlite_writer"] = (held, fd)


def _release(info: dict) -> None:
    held, fd = info.pop("sqlite_writer", (False, None))
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    if held:
        _WRITER.release()


def _end(conn, end: str) -> None:
    """End the transaction (`end` is "commit" or "rollback"), then give the locks back.

    SQLAlchemy fires its commit and rollback events before it calls the driver, so the
    listeners below end the transaction themselves: released any earlier, the locks let
    the next writer in while our commit was still writing, its BEGIN IMMEDIATE found
    SQLite locked and fell into SQLite's busy loop (sleeps of 1, 2, 5 … ms), and each
    create held the lock twice as long. SQLAlchemy's own call follows, a no-op by then.

    A commit that fails raises here, as SQLAlchemy's error for it: a failed COMMIT may
    have rolled the transaction back, and the second COMMIT would then succeed on nothing
    and report the lost work as saved. A failed rollback is left to SQLAlchemy's own."""
    # A connection invalidated under us (whose info can't be read:
    # the pool's "invalidate" event gives its locks back).
    if conn.invalidated or "sqlite_writer" not in conn.info:
        return
    dbapi_connection = None
    try:
        dbapi_connection = conn.connection.dbapi_connection
        getattr(dbapi_connection, end)()
    except Exception as error:
        if end != "commit":
            return  # (the finally clause releases)
        if dbapi_connection is not None:
            with contextlib.suppress(sqlite3.Error):
                dbapi_connection.rollback()  # a failed COMMIT can leave it open, locked
        if isinstance(error, sqlite3.Error):
            raise DBAPIError.instance("COMMIT", None, error, sqlite3.Error) from error
        raise
    finally:
        _release(conn.info)


def _commit(conn) -> None:
    _end(conn, "commit")


def _rollback(conn) -> None:
    _end(conn, "rollback")


def _reset(dbapi_connection, connection_record, reset_state) -> None:
    """A connection returned with its transaction still open gives the locks back too."""
    if "sqlite_writer" in connection_record.info:
        _release(connection_record.info)


def _invalidated(dbapi_connection, connection_record, exception) -> None:
    """So does a connection thrown away after an error."""
    if connection_record is not None and "sqlite_writer" in connection_record.info:
        _release(connection_record.info)


def install(engine: Engine) -> None:
    """Attach the pragmas and the writer lock to `engine` (a SQLite one)."""
    event.listen(engine, "connect", _pragmas)
    event.listen(engine, "before_cursor_execute", _before_write)
    event.listen(engine, "commit", _commit)
    event.listen(engine, "rollback", _rollback)
    event.listen(engine.pool, "reset", _reset)
    event.listen(engine.pool, "invalidate", _invalidated)
