"""Admission of SCIM requests: the limits (blueprints.scim_api.limits) applied to each
request of the blueprint — in flight from its arrival (its wait included), then its turn
in this process, and once its bearer token is known good, the rate and the body's size.
A refusal here costs no database write (a flood must not), and a request with a valid
token is never throttled for other tokens' failures."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from flask import current_app, g

from blueprints.scim_api.errors import error_response
from blueprints.scim_api.limits import Limits

_PER_APP_LOCK = threading.Lock()


@dataclass(frozen=True)
class Call:
    """What the blueprint's hooks know of a request, read from it once by routes.py (the
    only module here that reads the request object, with auth.py and errors.py)."""

    method: str
    writes: bool  # it may change something (POST /.search only reads)
    several_statements: bool  # a read of several statements (unit_of_work._read_snapshot)
    one_statement: bool  # a write that is one statement as a rule (POST /Users)
    resource: str  # the path below the connector's URL, for the request log
    remote_addr: str | None
    content_length: int | None


def call() -> Call:
    return g.scim_call


def per_app(name: str, make):
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
    return per_app("scim_limits", lambda: Limits(current_app.config))


def limit_key() -> str:
    """Whom a request counts against: the connector id in its URL ("-" for none that
    could be one: refused without a query)."""
    return g.connector_public_id or "-"


def _too_many(refusal):
    return error_response(429, refusal.detail, headers={"Retry-After": str(refusal.retry_after)})


def arrive():
    """before_request: count the request in flight, then wait for its turn (reads and
    writes each have their own, per process). 429 past the connector's cap; 503 when no
    turn came in time."""
    key = limit_key()
    admission, refusal = limits().arrive(key)
    if refusal is not None:
        return _too_many(refusal)  # not logged: a flood must cost no writes
    g.scim_admission = admission
    gate = limits().writes if call().writes else limits().reads
    if not gate.enter(key, limits().wait):
        return error_response(
            503, "The service is busy; retry shortly.", headers={"Retry-After": "1"}
        )
    g.scim_turn = gate
    return None


def failed_authentication(address: str):
    """A refused token from `address` to this connector: the 429 once they are too many
    (counted per address and connector, never against a valid token), else None."""
    throttled = limits().failed_authentication(address, limit_key())
    return _too_many(throttled) if throttled is not None else None


def admit():
    """before_request, after the bearer check: the connector's rate (past its free
    parallelism) and the body's size."""
    refusal = limits().check_rate(g.scim_admission)
    if refusal is not None:
        g.scim_log_connector = None  # not logged: a flood must cost no writes
        return _too_many(refusal)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if (call().content_length or 0) > limit:
        return error_response(413, f"The request body is over {limit} bytes.")
    return None


def leave_turn() -> None:
    """Give the process's turn (read or write) to the next request waiting for it."""
    gate = g.pop("scim_turn", None)
    if gate is not None:
        gate.leave()


def leave(_error=None) -> None:
    """teardown_request: the turn, then the count in flight."""
    leave_turn()
    admission = g.pop("scim_admission", None)
    if admission is not None:
        limits().leave(admission)
