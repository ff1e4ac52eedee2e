"""SQL both of our databases speak, where SQLAlchemy's portable API has no word for it,
and the way hot paths run a statement.

Hot paths (the SCIM API, where an IdP sends thousands of requests) build each statement
once, at import, with `bindparam`s, and run it through `execute`: SQLAlchemy then neither
rebuilds the statement nor recomputes its cache key on every request, and the ORM's
session layer is skipped for statements that load no ORM objects. The hottest (a SCIM
create's, the bearer check, lookups, a plain page) are `Prepared`: run on the driver's
cursor, without SQLAlchemy's execution context.
"""

from __future__ import annotations

import json
from collections import namedtuple
from functools import lru_cache

from sqlalchemy import Boolean, Executable, String, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import MultipleResultsFound, NoResultFound
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


def execute(session, statement: Executable | Prepared, params: dict | list | None = None):
    """Run a Core statement on the session's connection (its transaction): no autoflush
    and no ORM bookkeeping. Only for statements that load no ORM objects. A `Prepared`
    one runs on the driver's cursor."""
    if isinstance(statement, Prepared):
        return statement.run(session.connection(), params)
    return session.connection().execute(statement, params)


def several_writes(session) -> None:
    """Before a second write of a request whose statements run each on its own (a
    PostgreSQL create, unit_of_work.begin): open a transaction, so that its writes are
    kept or rolled back together. Anything else is in one already, or nothing to do."""
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        return
    from psycopg.pq import TransactionStatus

    raw = conn.connection.dbapi_connection
    if raw.autocommit and raw.info.transaction_status == TransactionStatus.IDLE:
        # psycopg's commit and rollback follow the server's state: they end this one.
        conn.exec_driver_sql("BEGIN")


class Prepared:
    """A hot path's Core statement, compiled once per dialect (and, for an INSERT, per set
    of columns given) and run on the driver's cursor.

    SQLAlchemy's execution of an already compiled statement (an execution context, the
    parameters processed by name, the result's metadata, the session's connection) cost
    a SCIM create more than the database took to run its statements: on SQLite about
    70 µs against 40 per statement. This keeps what matters of it: the statement and its
    types' bind and result processing are SQLAlchemy's own compilation, every
    before/after_cursor_execute listener sees the statement (SQLite's writer lock is
    one), and a driver's error is SQLAlchemy's (IntegrityError, a lost connection
    invalidated). A statement needing what this skips (Python-side column defaults,
    expanding IN lists) runs through SQLAlchemy as before.

    The result (`Rows`) answers what the hot paths ask: `one`, `first`, `all`, `scalar`,
    `scalar_one`, `scalars().all()`, `rowcount`; rows are named tuples."""

    __slots__ = ("_by_columns", "_forms", "statement")

    def __init__(self, statement: Executable):
        self.statement = statement
        self._forms: dict = {}
        self._by_columns = statement.is_dml  # an INSERT's or UPDATE's columns: the params' keys

    def _form(self, dialect, params):
        keys = None
        if self._by_columns and params:
            keys = tuple((params[0] if isinstance(params, list) else params).keys())
        form = self._forms.get((dialect.name, keys), _UNKNOWN)
        if form is _UNKNOWN:  # (None, kept too: SQLAlchemy's own execution)
            form = _Form.of(self.statement, dialect, keys)
            self._forms[(dialect.name, keys)] = form
        return form

    def run(self, conn, params: dict | list | None = None) -> Rows:
        form = self._form(conn.dialect, params)
        if form is None:
            return conn.execute(self.statement, params)
        many = params if isinstance(params, list) else [params or {}]
        return form.run(conn, [form.parameters(one) for one in many])

    def bind(self, dialect, params: dict | list, late: tuple[str, ...] = ()) -> Bound:
        """This statement with `params` processed now by its columns' types, to run later
        (`Bound.run`). A hot path binds its writes before the first one takes SQLite's
        write lock, so the lock is held while the statements run, not while their values
        are converted (psycopg still serializes JSON when it sends it).
        `late` names values known only at run time (an id that an earlier INSERT returns):
        give them any placeholder here and their value to `run`."""
        return Bound(self, self._form(dialect, params), params, late)


class Bound:
    """A `Prepared` statement with its parameters processed (`Prepared.bind`)."""

    __slots__ = ("_form", "_late", "_listed", "_many", "_prepared", "_values")

    def __init__(self, prepared: Prepared, form, params: dict | list, late: tuple[str, ...]):
        self._prepared, self._form = prepared, form
        self._listed = isinstance(params, list)
        self._many = params if self._listed else [params]
        if form is None:  # (SQLAlchemy's own execution, at run time)
            self._late = dict.fromkeys(late)
            return
        self._values = [form.parameters(one) for one in self._many]
        self._late = {name: form.slots(name) for name in late}

    def run(self, conn, **late) -> Rows:
        if late.keys() != self._late.keys():  # a placeholder is never written
            raise TypeError(f"give exactly the late values {sorted(self._late)}")
        form = self._form
        if form is None:
            many = [dict(one, **late) for one in self._many]
            return self._prepared.run(conn, many if self._listed else many[0])
        values = self._values
        if late:
            values = [form.replace(one, self._late, late) for one in values]
        return form.run(conn, values)


class _Form:
    """One compiled form of a `Prepared` statement: its SQL, parameter order and the
    processors of its binds and result columns."""

    __slots__ = ("binds", "compiled", "names", "results", "row", "sql")

    @classmethod
    def of(cls, statement, dialect, keys):
        compiled = statement.compile(dialect=dialect, column_keys=list(keys) if keys else None)
        if (
            compiled.insert_prefetch
            or compiled.update_prefetch
            or compiled.post_compile_params
            or compiled.literal_execute_params
        ):
            return None
        return cls(compiled, dialect)

    def __init__(self, compiled, dialect):
        self.compiled = compiled
        self.sql = compiled.string
        self.names = compiled.positiontup if dialect.positional else None
        self.binds = compiled._bind_processors
        columns = compiled._result_columns or []
        self.row = namedtuple("Row", [c.keyname for c in columns], rename=True) if columns else None
        self.results = [c.type._cached_result_processor(dialect, None) for c in columns]

    def parameters(self, params: dict):
        values = self.compiled.construct_params(params)
        for name, process in self.binds.items():
            if name in values:
                values[name] = process(values[name])
        if self.names is None:
            return values
        return tuple(values[name] for name in self.names)

    def slots(self, name: str) -> tuple:
        """Where the value of bind parameter `name` goes in `parameters`' result."""
        if name not in self.compiled.binds:
            raise KeyError(f"no bind parameter {name!r} in {self.sql!r}")
        if self.names is None:
            return (name,)
        return tuple(i for i, n in enumerate(self.names) if n == name)

    def replace(self, values, slots: dict, late: dict):
        """`parameters`' result with the `late` values put in their `slots`, processed."""
        changed = dict(values) if self.names is None else list(values)
        for name, value in late.items():
            process = self.binds.get(name)
            if process is not None:
                value = process(value)
            for slot in slots[name]:
                changed[slot] = value
        return changed if self.names is None else tuple(changed)

    def run(self, conn, many: list) -> Rows:
        """Execute with each of `many` (processed parameters) on one cursor; a list's rows
        and counts are added up."""
        rows, rowcount = [], 0
        returns = self.row is not None  # (psycopg builds `cursor.description` when asked)
        pooled = conn.connection
        cursor = _cursor(pooled)
        try:
            for values in many:
                conn._cursor_execute(cursor, self.sql, values)
                if returns:
                    rows.extend(cursor.fetchall())
                rowcount += max(cursor.rowcount, 0)
        except BaseException:
            # SQLAlchemy closes the cursor of a failed statement: the next one gets a new one.
            pooled.info.pop("prepared_cursor", None)
            raise
        return Rows(self, rows, rowcount)


_UNKNOWN = object()


def _cursor(pooled):
    """The driver cursor `Prepared` statements run on, one per pooled connection, kept
    with it across requests: a new psycopg cursor looks up its parameters' adapters
    afresh on its first statement, 25 µs of each (a create runs three). Each statement's
    rows are fetched before the next runs, and a connection serves one thread at a time;
    a connection replaced (invalidated, reconnected) gets a new cursor. `pooled`: the
    Connection's pooled connection, whose `info` keeps it."""
    raw = pooled.dbapi_connection
    cursor = pooled.info.get("prepared_cursor")
    if cursor is None or cursor.connection is not raw:
        cursor = pooled.info["prepared_cursor"] = raw.cursor()
    return cursor


class Rows:
    """A `Prepared` statement's rows, fetched."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, form: _Form, raw: list, rowcount: int):
        self.rowcount = rowcount
        if raw and form.row is not None:
            processors = form.results
            make = form.row._make
            if any(processors):
                raw = [
                    make(p(v) if p else v for p, v in zip(processors, r, strict=True)) for r in raw
                ]
            else:
                raw = [make(r) for r in raw]
        self._rows = raw

    def all(self) -> list:
        return self._rows

    def first(self):
        return self._rows[0] if self._rows else None

    def one(self):
        if len(self._rows) != 1:
            raise (
                NoResultFound("No row was found")
                if not self._rows
                else MultipleResultsFound("Multiple rows were found")
            )
        return self._rows[0]

    def scalar(self):
        return self._rows[0][0] if self._rows else None

    def scalar_one(self):
        return self.one()[0]

    def scalars(self) -> Rows:
        scalars = Rows.__new__(Rows)
        scalars.rowcount = self.rowcount
        scalars._rows = [row[0] for row in self._rows]
        return scalars


def _insert(dialect: str):
    """The dialect's INSERT, which knows ON CONFLICT."""
    return pg_insert if dialect == "postgresql" else sqlite_insert


@lru_cache(maxsize=64)
def _insert_or_ignore(dialect: str, table: Table, key: tuple[str, ...]):
    insert = _insert(dialect)
    first_pk = next(iter(table.primary_key.columns))
    return Prepared(
        insert(table).on_conflict_do_nothing(index_elements=list(key)).returning(first_pk)
    )


def insert_or_ignore(session, table: Table, values: dict, key: list[str]) -> bool:
    """INSERT … ON CONFLICT (key) DO NOTHING; True when the row went in.

    The database decides, so it holds across processes. RETURNING tells whether a row was
    inserted: the rowcount of such an insert is not reliable (psycopg reports none)."""
    statement = insert_or_ignore_statement(session.get_bind().dialect.name, table, key)
    return execute(session, statement, values).first() is not None


def insert_or_ignore_statement(dialect: str, table: Table, key: list[str]) -> Prepared:
    """`insert_or_ignore`'s statement (to bind ahead: `Prepared.bind`); it returns a row
    when the row went in."""
    return _insert_or_ignore(dialect, table, tuple(key))


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
