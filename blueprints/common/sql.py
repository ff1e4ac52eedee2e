"""SQL both of our databases speak, where SQLAlchemy's portable API has no word for it."""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert


def insert_or_ignore(session, table: Table, values: dict, key: list[str]) -> bool:
    """INSERT … ON CONFLICT (key) DO NOTHING; True when the row went in.

    The database decides, so it holds across processes. RETURNING tells whether a row was
    inserted: the rowcount of such an insert is not reliable (psycopg reports none)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    first_pk = next(iter(table.primary_key.columns))
    stmt = insert(table).values(**values).on_conflict_do_nothing(index_elements=key)
    return session.execute(stmt.returning(first_pk)).first() is not None
