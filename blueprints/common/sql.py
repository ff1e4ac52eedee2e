"""SQL both of our databases speak, where SQLAlchemy's portable API has no word for it,
and the way hot paths run a statement.

Hot paths (the SCIM API, where an IdP sends thousands of requests) build each statement
once, at import, with `bindparam`s, and run it through `execute`: SQLAlchemy then neither
rebuilds the statement nor recomputes its cache key on every request, and the ORM's
session layer is skipped for statements that load no ORM objects.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Executable, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert


def execute(session, statement: Executable, params: dict | list | None = None):
    """Run a Core statement on the session's connection (its transaction): no autoflush
    and no ORM bookkeeping. Only for statements that load no ORM objects."""
    return session.connection().execute(statement, params)


@lru_cache(maxsize=64)
def _insert_or_ignore(dialect: str, table: Table, key: tuple[str, ...]):
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    first_pk = next(iter(table.primary_key.columns))
    return insert(table).on_conflict_do_nothing(index_elements=list(key)).returning(first_pk)


def insert_or_ignore(session, table: Table, values: dict, key: list[str]) -> bool:
    """INSERT … ON CONFLICT (key) DO NOTHING; True when the row went in.

    The database decides, so it holds across processes. RETURNING tells whether a row was
    inserted: the rowcount of such an insert is not reliable (psycopg reports none)."""
    statement = _insert_or_ignore(session.get_bind().dialect.name, table, tuple(key))
    return execute(session, statement, values).first() is not None
