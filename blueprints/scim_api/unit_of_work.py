"""A SCIM request's unit of work: one transaction, committed once by `finish` (or rolled
back when the answer is an error: an error changes nothing), and its row for the request
log on the SCIM page, handed to the batched log (request_log.py) without its body.

Reads commit nothing. On PostgreSQL a read of one statement runs without a transaction
(no BEGIN and ROLLBACK round trips; each statement is one snapshot, and a page of users
is one statement); a read of several statements runs on one snapshot (`_read_snapshot`).
"""

from __future__ import annotations

import logging

from flask import current_app, g

from blueprints.common.extensions import db
from blueprints.scim_api import auth
from blueprints.scim_api.admission import call, leave_turn, per_app
from blueprints.scim_api.errors import error_response
from blueprints.scim_api.request_log import RequestLog, problem_of
from blueprints.scim_settings import connector as connectors
from models import utcnow

log = logging.getLogger(__name__)


def request_log() -> RequestLog:
    """This application's queue of request-log rows (request_log.py)."""
    app = current_app._get_current_object()
    return per_app(
        "scim_request_log", lambda: RequestLog(app, app.config["SCIM_LOG_FLUSH_SECONDS"])
    )


def _read_snapshot() -> None:
    """Run this read's statements on one snapshot, so that what it answers is one
    consistent state (a count that matches its page, members of the groups listed) while
    other requests write: REPEATABLE READ on PostgreSQL (a read-only transaction there
    never fails to serialize), a deferred transaction on SQLite (its snapshot is taken at
    the first read, and WAL lets writers go on meanwhile)."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    else:
        db.session.connection().exec_driver_sql("BEGIN")


def begin() -> None:
    """before_request, first of all: how this request's statements run."""
    session = db.session()
    if session.in_transaction():  # (a test client sharing its session)
        return
    # Nothing reads an ORM object after the commit (a create's answer is built from its
    # values; the others are built before `record` commits): not expiring every object
    # in the session at the commit spares each write the ORM's walk of its identity map.
    session.expire_on_commit = False
    postgres = session.get_bind().dialect.name == "postgresql"
    if call().writes:
        if call().one_statement and postgres:
            # A create is one statement as a rule (users._one_statement), atomic on its
            # own: no BEGIN and COMMIT round trips. Its other ways (a restore, a manual
            # member adopted, team rules) open a transaction first (sql.several_writes).
            _autocommit()
        return
    if call().several_statements:
        _read_snapshot()
    elif postgres:  # (SQLite's driver reads outside transactions already)
        _autocommit()


def _autocommit() -> None:
    """Each statement of this request on its own (PostgreSQL)."""
    db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def record(response):
    """after_request: save the request's work and log it (`finish`), unless the handler
    did so already. An error response rolls the work back first."""
    if g.get("scim_finished"):
        return response
    if response.status_code >= 400:
        db.session.rollback()  # an error changes nothing (SPEC F5, "Errors")
        response = auth.refusal_instead(response)  # (a create that skipped the bearer check)
    return finish(response.status_code) or response


def keep_before_error() -> None:
    """Commit what the request wrote so far, before it answers an error: a preview
    collision's forecast row (preview.py), whose dry run's writes are rolled back
    already. The error then rolls back nothing more."""
    db.session.commit()


def finish(status: int):
    """Save the request: commit its changes, if any (one transaction, one commit), and
    hand its log row and the connector's and token's use to the batched request log.
    Returns None once saved, or the 503 to answer when the commit failed (the work is
    rolled back, the failure logged).

    `record` calls it after every response; a create calls it before building its
    response body, so SQLite's write lock (and PostgreSQL's lock on the account's seat
    counter) is held for the writes and the commit only, not while the body is rendered.
    """
    g.scim_finished = True
    failed = None
    if status < 400 and call().writes:
        # The commit comes first: on SQLite the write lock is held until it ends.
        try:
            db.session.commit()
            leave_turn()  # the answer is rendered outside the process's write turn
        except Exception:
            db.session.rollback()
            log.exception("could not commit a SCIM request")
            failed = error_response(
                503, "The change could not be saved; retry shortly.", headers={"Retry-After": "1"}
            )
    # A read's transaction ends when Flask-SQLAlchemy removes the session.
    connector = g.get("scim_log_connector")
    use = _use(g.get("scim_connector"))
    if failed is not None:
        if connector is not None:
            request_log().add(_log_row(connector, failed.status_code), use)
        return failed
    request_log().add(_log_row(connector, status) if connector is not None else None, use)
    return None


def _use(caller: connectors.Caller | None) -> tuple | None:
    """The connector's and token's use to stamp (request_log.RequestLog.add), if due."""
    now = utcnow()
    if caller is None or not connectors.use_due(caller, now):
        return None
    addr = call().remote_addr
    return (caller.id, caller.token_id, now, _printable(addr, 45) if addr else None)


def _printable(text: str, limit: int) -> str:
    """`text` fit for a text column: PostgreSQL refuses NUL bytes."""
    return text.replace("\x00", "\\0")[:limit]


def _log_row(connector: connectors.Caller, status: int) -> dict:
    request = call()
    detail = g.get("scim_error_detail") or g.get("scim_log_note")
    row = {
        "connector_id": connector.id,
        "method": request.method[:10],
        "resource": _printable(request.resource, 300),
        "status": status,
        "outcome": "success" if status < 400 else "failure",
        "detail": _printable(detail, 500) if detail else None,
        "remote_addr": _printable(request.remote_addr, 45) if request.remote_addr else None,
        "created_at": utcnow(),
    }
    if detail:  # an error or a note: a plain success has neither and does nothing more
        problem = _problem(request, status, row["detail"])
        if problem is not None:
            row["problem"] = problem  # the health panel's (request_log.py writes it)
    return row


def _problem(request, status: int, detail: str) -> tuple[str, str, str] | None:
    """The provisioning problem this answer shows (SPEC F10), if any: a success's note
    (the unknown group members it skipped), a refusal by a token's restrictions (auth.py),
    or what the error says."""
    problem = g.get("scim_problem")  # a note, or a refusal that named its own problem
    if problem is None and status >= 400:
        problem = problem_of(
            request.method,
            request.resource,
            status,
            g.get("scim_error_type"),
            detail,
            request.writes,
        )
    if problem is None:
        return None
    return problem[0], _printable(problem[1], 300), _printable(problem[2], 500)
