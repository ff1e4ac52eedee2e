"""Bearer authentication, limits and the request log for the SCIM blueprint.

The connector id is popped from the URL into `g` (Flask's URL-processor pattern); every
request is checked against that connector's token only (SPEC F5), admitted by the limits
(blueprints.scim_api.limits: in flight, rate, turns), and recorded for the log on the SCIM
page, without its body (personal data).

The bearer check only reads: the connector's last use is stamped by the batched request
log (request_log.py) with the request's log row, so no request holds the database's write
lock (SQLite's is one for all processes) while it waits for its turn.
"""

from __future__ import annotations

import logging
import re
import threading

from flask import Blueprint, current_app, g, request

from blueprints.common.extensions import db
from blueprints.scim_api.errors import error_response
from blueprints.scim_api.limits import Limits
from blueprints.scim_api.request_log import RequestLog
from blueprints.scim_settings import connector as connectors
from models import utcnow

log = logging.getLogger(__name__)

_DETAILS = {
    "missing": "Authentication is required: send 'Authorization: Bearer <token>'.",
    "unknown": "The bearer token is not valid for this SCIM connector.",
    "disabled": "SCIM provisioning is disabled for this account.",
}
# What `secrets.token_urlsafe(16)` produces, with room to spare: anything else (a NUL
# byte, which PostgreSQL refuses in text, or a 10 kB id) is unknown without a query.
_PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def _known_connector(public_id: str) -> connectors.Caller | None:
    """The connector a refused request was addressed to, so the log on its page shows it."""
    if not _PUBLIC_ID.fullmatch(public_id):
        return None
    return connectors.find_caller(db.session, public_id)


def _printable(text: str, limit: int) -> str:
    """`text` fit for a text column: PostgreSQL refuses NUL bytes."""
    return text.replace("\x00", "\\0")[:limit]


_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SEARCHES = frozenset({"scim_api.search_resources", "scim_api.search_all"})  # POST, reads
_PER_APP_LOCK = threading.Lock()


def _per_app(name: str, make):
    """The application's `name` object (`current_app.extensions`), made once by `make()`."""
    extensions = current_app.extensions
    found = extensions.get(name)
    if found is None:
        with _PER_APP_LOCK:
            found = extensions.get(name)
            if found is None:
                found = extensions[name] = make()
    return found


def limits() -> Limits:
    """This application's SCIM limits, made on first use from its configuration."""
    return _per_app("scim_limits", lambda: Limits(current_app.config))


def request_log() -> RequestLog:
    """This application's queue of request-log rows (request_log.py)."""
    app = current_app._get_current_object()
    return _per_app(
        "scim_request_log", lambda: RequestLog(app, app.config["SCIM_LOG_FLUSH_SECONDS"])
    )


def _writes() -> bool:
    """Whether this request may change something (POST /.search only reads)."""
    return request.method in _WRITE_METHODS and request.endpoint not in _SEARCHES


def _without_transaction() -> bool:
    """Whether this read runs its statements outside a transaction (PostgreSQL, and one
    statement: not a read of several, `_several_statements`)."""
    return (
        not db.session().in_transaction()  # (a test client sharing its caller's session)
        and not _several_statements()
        and db.session.get_bind().dialect.name == "postgresql"
    )


def _several_statements() -> bool:
    """Whether this read takes several statements: groups (the page, their count, their
    members) and the root .search (both types' counts, the page, each type's rows)."""
    view_args = request.view_args or {}
    return view_args.get("kind") == "Groups" or request.endpoint == "scim_api.search_all"


def _read_snapshot() -> None:
    """Run this read's statements on one snapshot, so that what it answers is one
    consistent state (a count that matches its page, members of the groups listed) while
    other requests write: REPEATABLE READ on PostgreSQL (a read-only transaction there
    never fails to serialize), a deferred transaction on SQLite (its snapshot is taken at
    the first read, and WAL lets writers go on meanwhile)."""
    if db.session().in_transaction():
        return  # (a test client sharing its caller's session)
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    else:
        db.session.connection().exec_driver_sql("BEGIN")


def _too_many(refusal) -> object:
    return error_response(429, refusal.detail, headers={"Retry-After": str(refusal.retry_after)})


def install(bp: Blueprint) -> None:
    """Attach the URL processor, the authentication check and the log to `bp`."""

    @bp.url_value_preprocessor
    def pop_connector_id(endpoint, values):
        g.connector_public_id = (values or {}).pop("connector_id", None)

    @bp.before_request
    def authenticate():
        public_id = g.connector_public_id or ""
        cfg = current_app.config
        writes = _writes()
        if not writes and _without_transaction():
            # A read of users commits nothing: on PostgreSQL its statements run without a
            # transaction (no BEGIN and ROLLBACK round trips; each statement is one
            # snapshot, and a page is one statement). SQLite's driver reads outside
            # transactions already. Groups stream their members through a server-side
            # cursor, which needs a transaction.
            db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        elif not writes and _several_statements():
            _read_snapshot()
        # In flight from its arrival (its wait included), then its turn, then the token.
        key = public_id if _PUBLIC_ID.fullmatch(public_id) else "-"
        admission, refusal = limits().arrive(key)
        if refusal is not None:
            return _too_many(refusal)  # not logged: a flood must cost no writes
        g.scim_admission = admission
        gate = limits().writes if writes else limits().reads
        if not gate.enter(key, limits().wait):
            return error_response(
                503, "The service is busy; retry shortly.", headers={"Retry-After": "1"}
            )
        g.scim_turn = gate
        if key != "-":
            result = connectors.authenticate(
                db.session, public_id, request.headers.get("Authorization"), utcnow(), False
            )
        else:
            result = connectors.Authentication(None, "unknown")
        if result.reason is not None:
            address = request.remote_addr or ""
            throttled = limits().failed_authentication(address, key)
            if throttled is not None:
                # A client guessing tokens: no log row, so a flood costs no writes.
                return _too_many(throttled)
            # Refused requests to a known connector are logged too: a misconfigured IdP
            # shows up on the SCIM page. Only an accepted one sets `g.scim_connector`.
            g.scim_log_connector = result.connector or _known_connector(public_id)
            if result.reason == "expired":
                expired = result.connector.expires_at.strftime("%Y-%m-%d %H:%M UTC")
                detail = (
                    f"The SCIM token expired on {expired}. An account owner must refresh it "
                    "on the SCIM page (Refresh Token); nothing was provisioned."
                )
            else:
                detail = _DETAILS.get(result.reason, _DETAILS["unknown"])
            return error_response(401, detail, headers={"WWW-Authenticate": 'Bearer realm="SCIM"'})
        g.scim_connector = g.scim_log_connector = result.connector
        refusal = limits().check_rate(admission)
        if refusal is not None:
            g.scim_log_connector = None  # not logged: a flood must cost no writes
            return _too_many(refusal)
        if (request.content_length or 0) > cfg["MAX_CONTENT_LENGTH"]:
            return error_response(
                413, f"The request body is over {cfg['MAX_CONTENT_LENGTH']} bytes."
            )
        return None

    @bp.teardown_request
    def leave(_error=None):
        _leave_turn()
        admission = g.pop("scim_admission", None)
        if admission is not None:
            limits().leave(admission)

    @bp.after_request
    def record(response):
        """Save the request's work and log it (`finish`), unless the handler did so
        already. An error response rolls the work back first."""
        if g.get("scim_finished"):
            return response
        if response.status_code >= 400:
            db.session.rollback()  # an error changes nothing (SPEC F5, "Errors")
        return finish(response.status_code) or response


def _leave_turn() -> None:
    """Give the process's turn (read or write) to the next request waiting for it."""
    gate = g.pop("scim_turn", None)
    if gate is not None:
        gate.leave()


def finish(status: int):
    """Save the request: commit its changes, if any (one transaction, one commit), and
    hand its log row and the connector's use to the batched request log. Returns None once
    saved, or the 503 to answer when the commit failed (the work is rolled back, the
    failure logged).

    `record` calls it after every response; a create calls it before building its
    response body, so SQLite's write lock (and PostgreSQL's lock on the account's seat
    counter) is held for the writes and the commit only, not while the body is rendered.
    """
    g.scim_finished = True
    connector = g.get("scim_log_connector")
    caller = g.get("scim_connector")
    now = utcnow()
    use = (caller.id, now) if caller is not None and connectors.use_due(caller, now) else None
    if status < 400 and _writes():
        try:
            db.session.commit()
            _leave_turn()  # the answer is rendered outside the process's write turn
        except Exception:
            db.session.rollback()
            log.exception("could not commit a SCIM request")
            failed = error_response(
                503, "The change could not be saved; retry shortly.", headers={"Retry-After": "1"}
            )
            if connector is not None:
                request_log().add(_log_row(connector, failed.status_code), use)
            return failed
    # A read's transaction ends when Flask-SQLAlchemy removes the session.
    request_log().add(_log_row(connector, status) if connector is not None else None, use)
    return None


def _log_row(connector: connectors.Caller, status: int) -> dict:
    resource = request.path.split(f"/scim/v2/{connector.public_id}", 1)[-1] or "/"
    detail = g.get("scim_error_detail") or g.get("scim_log_note")
    return {
        "connector_id": connector.id,
        "method": request.method[:10],
        "resource": _printable(resource, 300),
        "status": status,
        "outcome": "success" if status < 400 else "failure",
        "detail": _printable(detail, 500) if detail else None,
        "remote_addr": _printable(request.remote_addr, 45) if request.remote_addr else None,
        "created_at": utcnow(),
    }
