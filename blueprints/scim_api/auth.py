"""Bearer authentication, rate limits and the request log for the SCIM blueprint.

The connector id is popped from the URL into `g` (Flask's URL-processor pattern); every
request is checked against that connector's token only (SPEC F5), counted against its
rate limit, and recorded for the log on the SCIM page, without its body (personal data).
"""

from __future__ import annotations

import logging
import re
import threading
import time

from flask import Blueprint, current_app, g, request
from sqlalchemy import insert

from app import db
from blueprints.common.sql import execute
from blueprints.scim_api.errors import error_response
from blueprints.scim_settings import connector as connectors
from models import ScimRequestLog, utcnow

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


class _Window:
    """Counts per key (connector or client address) in the current one-second window, in
    this process.

    Each worker process counts on its own, so the effective limit is per process; that
    bounds a runaway IdP without a database write per request. Only the current second is
    kept, so a stream of distinct client addresses cannot grow it without bound.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._second = 0
        self._counts: dict[str, int] = {}

    def _roll(self) -> None:
        second = int(time.monotonic())
        if second != self._second:
            self._second, self._counts = second, {}

    def add(self, key: str) -> int:
        """Count one more for `key`; returns the count in the current second."""
        with self._lock:
            self._roll()
            self._counts[key] = self._counts.get(key, 0) + 1
            return self._counts[key]

    def current(self, key: str) -> int:
        with self._lock:
            self._roll()
            return self._counts.get(key, 0)

    def reset(self) -> None:
        """Forget every count (tests start from a clean window)."""
        with self._lock:
            self._second, self._counts = 0, {}


_INSERT_LOG = insert(ScimRequestLog.__table__)
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SEARCHES = frozenset({"scim_api.search_resources", "scim_api.search_all"})  # POST, reads
_GATES: dict[int, threading.BoundedSemaphore] = {}
_GATES_LOCK = threading.Lock()


def writers_gate(limit: int) -> threading.BoundedSemaphore:
    """The semaphore that lets `limit` SCIM writes at a time into this process."""
    gate = _GATES.get(limit)
    if gate is None:
        with _GATES_LOCK:
            gate = _GATES.setdefault(limit, threading.BoundedSemaphore(limit))
    return gate


def _enter_writers(cfg) -> bool:
    """Wait for this process's turn to serve a SCIM write; False when the wait is over.

    A worker's threads share one interpreter lock, so two writes in one process never
    compute at once anyway; letting four in meant that whichever held a database lock
    (SQLite's writer, or PostgreSQL's lock on the account's seat counter) also waited
    for the interpreter behind the others between its statements: each create held the
    writer three times as long, and every process queued behind it. Measured with
    gunicorn 2 x 4 (bench/README.md): one writer per process took creates from 340/s
    to 490/s on SQLite and from 220/s to 240/s on PostgreSQL. Reads are not gated."""
    limit = cfg["SCIM_WRITERS_PER_PROCESS"]
    if limit <= 0:
        return True
    gate = writers_gate(limit)
    if not gate.acquire(timeout=cfg["SCIM_WRITERS_WAIT_SECONDS"]):
        return False
    g.scim_writers = gate
    return True


_requests = _Window()
_failures = _Window()


def install(bp: Blueprint) -> None:
    """Attach the URL processor, the authentication check and the log to `bp`."""

    @bp.url_value_preprocessor
    def pop_connector_id(endpoint, values):
        g.connector_public_id = (values or {}).pop("connector_id", None)

    @bp.before_request
    def authenticate():
        public_id = g.connector_public_id or ""
        cfg = current_app.config
        address = request.remote_addr or ""
        if _failures.current(address) >= cfg["SCIM_FAILED_AUTH_PER_SECOND"]:
            # A client guessing tokens: refuse before even looking the token up (and
            # without a log row, so a flood costs no database writes), and before it
            # queues with the writes.
            return error_response(
                429,
                "Too many failed authentications. Retry after a second.",
                headers={"Retry-After": "1"},
            )
        # A write's turn comes before its first statement: the bearer check may write
        # (last used), and no thread may hold the database's write lock while it waits.
        writes = request.method in _WRITE_METHODS and request.endpoint not in _SEARCHES
        if writes and not _enter_writers(cfg):
            return error_response(
                503, "The service is busy; retry shortly.", headers={"Retry-After": "1"}
            )
        if _PUBLIC_ID.fullmatch(public_id):
            result = connectors.authenticate(
                db.session, public_id, request.headers.get("Authorization"), utcnow()
            )
        else:
            result = connectors.Authentication(None, "unknown")
        if result.reason is not None:
            _failures.add(address)
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
        if _requests.add(result.connector.public_id) > cfg["SCIM_REQUESTS_PER_SECOND"]:
            return error_response(
                429,
                "Too many requests for this connector. Retry after a second.",
                headers={"Retry-After": "1"},
            )
        if (request.content_length or 0) > cfg["MAX_CONTENT_LENGTH"]:
            return error_response(
                413, f"The request body is over {cfg['MAX_CONTENT_LENGTH']} bytes."
            )
        return None

    @bp.teardown_request
    def leave_writers(_error=None):
        gate = g.pop("scim_writers", None)
        if gate is not None:
            gate.release()

    @bp.after_request
    def record(response):
        """Commit the request's work together with its log row, unless the handler did
        so already (`finish`). An error response rolls the work back first."""
        if g.get("scim_finished"):
            return response
        if response.status_code >= 400:
            db.session.rollback()  # an error changes nothing (SPEC F5, "Errors")
        return finish(response.status_code) or response


def finish(status: int):
    """Commit the request's work with its log row (method, resource, `status`): one
    transaction, one commit per request. Returns None once saved, or the 503 to answer
    when the commit failed (the work is rolled back, the failure logged).

    `record` calls it after every response; a create calls it before building its
    response body, so SQLite's write lock (and PostgreSQL's lock on the account's seat
    counter) is held for the writes and the commit only, not while the body is rendered.
    """
    g.scim_finished = True
    connector = g.get("scim_log_connector")
    if connector is not None:
        _add_log_row(connector, status)
    try:
        db.session.commit()
        return None
    except Exception:
        db.session.rollback()
        log.exception("could not commit a SCIM request")
    failed = error_response(
        503, "The change could not be saved; retry shortly.", headers={"Retry-After": "1"}
    )
    if connector is not None:
        try:  # the log must never turn an answer into another error
            _add_log_row(connector, failed.status_code)
            db.session.commit()
        except Exception:
            db.session.rollback()
            log.exception("could not record a SCIM request")
    return failed


def _add_log_row(connector: connectors.Caller, status: int) -> None:
    resource = request.path.split(f"/scim/v2/{connector.public_id}", 1)[-1] or "/"
    detail = g.get("scim_error_detail") or g.get("scim_log_note")
    # A Core INSERT: the row is never read back in this request, so the ORM's unit of
    # work (identity map, flush ordering) would be pure overhead on every SCIM call.
    execute(
        db.session,
        _INSERT_LOG,
        {
            "connector_id": connector.id,
            "method": request.method[:10],
            "resource": _printable(resource, 300),
            "status": status,
            "outcome": "success" if status < 400 else "failure",
            "detail": _printable(detail, 500) if detail else None,
            "remote_addr": _printable(request.remote_addr, 45) if request.remote_addr else None,
            "created_at": utcnow(),
        },
    )
