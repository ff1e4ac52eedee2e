"""SQL both of our databases speak, where SQLAlchemy's portable API has no word for it,
and the way hot paths run a statement.

Hot paths (the SCIM API, where an IdP sends thousands of requests) build each statement
once, at import, with `bindparam`s, and run it through `execute`: SQLAlchemy then neither
rebuilds the statement nor recomputes its cache key on every request, and the ORM's
session layer is skipped for statements that load no ORM objects.
"""

from __future__ import annotations

import json
from functools import lru_cache

from sqlalchemy import Boolean, Executable, String, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal


def unstorable(text: str) -> str | None:
    """Why neither database can hold `text`, or None: a NUL (PostgreSQL refuses it in
    text and in JSON) or a lone surrogate (JSON can escape "\\ud800"; it is not Unicode,
    and no driver can encode it)."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    return None


def execute(session, statement: Executable, params: dict | list | None = None):
    """Run a Core statement on the session's connection (its transaction): no autoflush
    and no ORM bookkeeping. Only for statements that load no ORM objects."""
    return session.connection().execute(statement, params)


def _insert(dialect: str):
    """The dialect's INSERT, which knows ON CONFLICT."""
    return pg_insert if dialect == "postgresql" else sqlite_insert


@lru_cache(maxsize=64)
def _insert_or_ignore(dialect: str, table: Table, key: tuple[str, ...]):
    insert = _insert(dialect)
    first_pk = next(iter(table.primary_key.columns))
    return insert(table).on_conflict_do_nothing(index_elements=list(key)).returning(first_pk)


def insert_or_ignore(session, table: Table, values: dict, key: list[str]) -> bool:
    """INSERT … ON CONFLICT (key) DO NOTHING; True when the row went in.

    The database decides, so it holds across processes. RETURNING tells whether a row was
    inserted: the rowcount of such an insert is not reliable (psycopg reports none)."""
    statement = _insert_or_ignore(session.get_bind().dialect.name, table, tuple(key))
    return execute(session, statement, values).first() is not None


def upsert_rows(
    session, table: Table, rows: list[dict], key: list[str], update, where, collect=None
) -> int:
    """INSERT … ON CONFLICT (key) DO UPDATE SET update(excluded) WHERE where(excluded), in
    multi-row statements. Returns how many rows went in or were changed (RETURNING counts
    them: the rowcount of such a statement is not reliable on psycopg). `collect`, a
    list, gets the last key column of each of those rows."""
    insert = _insert(session.get_bind().dialect.name)
    returned = table.c[key[-1]] if collect is not None else next(iter(table.primary_key.columns))
    changed = 0
    for start in range(0, len(rows), 500):
        statement = insert(table).values(rows[start : start + 500])
        statement = statement.on_conflict_do_update(
            index_elements=key, set_=update(statement.excluded), where=where(statement.excluded)
        )
        values = execute(session, statement.returning(returned)).scalars().all()
        changed += len(values)
        if collect is not None:
            collect.extend(values)
    return changed


def upsert(conn, table: Table, rows: list[dict], key: list[str], update, where=None) -> None:
    """INSERT … ON CONFLICT (key) DO UPDATE SET update(excluded) [WHERE where(excluded)] on
    a Core connection (a batch writer's own transaction, no session). `update` may refer
    to the row in place through `table.c`: SQLite and PostgreSQL both name it so. The
    rows must have distinct keys (PostgreSQL refuses to update one row twice in one
    statement), and come in key order, so two writers lock the rows in the same order."""
    insert = _insert(conn.dialect.name)
    for start in range(0, len(rows), 500):
        statement = insert(table).values(rows[start : start + 500])
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=key,
                set_=update(statement.excluded),
                where=None if where is None else where(statement.excluded),
            )
        )


# --- JSON documents (SCIM attributes kept in `membership.scim_resource`) ----------------
# A single value inside a document is SQLAlchemy's own JSON indexing (`column[path]`,
# JSON_EXTRACT on SQLite, `#>>` on PostgreSQL). What it has no word for is the rows of an
# array inside a document, which a filter on a multi-valued attribute (phoneNumbers,
# roles…) needs as an EXISTS over its elements: json_each() on SQLite,
# jsonb_array_elements() on PostgreSQL.


class json_elements(FunctionElement):
    """The elements of the array under top-level `key` of a JSON document, as rows with a
    `value` column: `json_elements(doc, "phoneNumbers").table_valued("value")`. `key` is a
    schema name (letters and digits), never a client's string."""

    name = "json_elements"
    inherit_cache = True
    _traverse_internals = [
        *FunctionElement._traverse_internals,
        ("key", InternalTraversal.dp_string),
    ]

    def __init__(self, document, key: str):
        if not key.isalnum():
            raise ValueError(f"not an attribute name: {key!r}")
        self.key = key
        super().__init__(document)


@compiles(json_elements, "sqlite")
def _json_elements_sqlite(element, compiler, **kw):
    (document,) = element.clauses
    return f"json_each({compiler.process(document, **kw)}, '$.\"{element.key}\"')"


@compiles(json_elements, "postgresql")
def _json_elements_postgresql(element, compiler, **kw):
    (document,) = element.clauses
    # A document always holds an array there (the schema says so); CASE keeps a stray
    # scalar from failing the whole query ("cannot extract elements from a scalar").
    value = f"({compiler.process(document, **kw)} -> '{element.key}')"
    return f"jsonb_array_elements(CASE WHEN jsonb_typeof({value}) = 'array' THEN {value} END)"


class json_field(ColumnElement):
    """Member `key` of the JSON object `source` (an element from `json_elements`), as
    text, or as a boolean when `type_` is Boolean."""

    inherit_cache = True
    _traverse_internals = [
        ("source", InternalTraversal.dp_clauseelement),
        ("key", InternalTraversal.dp_string),
        ("type", InternalTraversal.dp_type),
    ]

    def __init__(self, source, key: str, type_=None):
        if not key.replace("$", "").isalnum():
            raise ValueError(f"not an attribute name: {key!r}")
        self.source = source
        self.key = key
        self.type = type_ if type_ is not None else String()


@compiles(json_field, "sqlite")
def _json_field_sqlite(element, compiler, **kw):
    # JSON true/false come back as 1/0, which is how SQLite binds a boolean.
    return f"json_extract({compiler.process(element.source, **kw)}, '$.\"{element.key}\"')"


@compiles(json_field, "postgresql")
def _json_field_postgresql(element, compiler, **kw):
    text = f"({compiler.process(element.source, **kw)} ->> '{element.key}')"
    return f"CAST({text} AS BOOLEAN)" if isinstance(element.type, Boolean) else text


class json_rows(FunctionElement):
    """An aggregate: the rows of its group as one JSON array of arrays, one per row, of
    the given columns (`[[1, "a"], [2, "b"]]`); NULL, or "[]", over no rows. It lets a
    page of users carry each one's teams in the page's own statement (a correlated
    subquery) instead of a second round trip."""

    name = "json_rows"
    inherit_cache = True


@compiles(json_rows, "sqlite")
def _json_rows_sqlite(element, compiler, **kw):
    return f"json_group_array(json_array({compiler.process(element.clauses, **kw)}))"


@compiles(json_rows, "postgresql")
def _json_rows_postgresql(element, compiler, **kw):
    return f"json_agg(json_build_array({compiler.process(element.clauses, **kw)}))"


def json_value(value):
    """A JSON column or aggregate as Python: psycopg parses it, SQLite hands back text."""
    return json.loads(value) if isinstance(value, str) else value
