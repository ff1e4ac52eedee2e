"""RFC 7644 §3.12 error bodies for everything the SCIM API answers with an error.

"the service provider SHALL return … the HTTP status code … and a JSON body" with the
Error schema. One mapping covers scim2-models' SCIMException, pydantic's ValidationError,
werkzeug's HTTPException and, last, any other Exception, so no input yields an HTML page
or a traceback.
"""

from __future__ import annotations

import json
import logging

from flask import Response, g
from pydantic import ValidationError
from scim2_models import Error, SCIMException
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/scim+json"

_HTTP_DETAILS = {
    404: "There is no such SCIM endpoint or resource.",
    405: "This method is not allowed on this SCIM endpoint.",
    413: "The request body is too large.",
    415: "Send the body as application/scim+json.",
}


def scim_response(payload: dict, status: int = 200, headers: dict | None = None) -> Response:
    """A SCIM JSON response (`application/scim+json`, RFC 7644 §3.1)."""
    response = Response(json.dumps(payload), status=status, content_type=CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def error_response(
    status: int, detail: str, scim_type: str | None = None, headers: dict | None = None
) -> Response:
    """The Error resource for `status`; the detail is also kept for the request log."""
    g.scim_error_detail = detail
    g.scim_error_type = scim_type  # the health panel's problems (unit_of_work._problem)
    # scimType only where it says something: scim2-models' 404 carries "" (RFC 7644 §3.12
    # lists the scimType values; an empty one is none of them).
    body = Error(status=status, detail=detail, scim_type=scim_type or None).model_dump(
        exclude_none=True
    )
    return scim_response(body, status, headers)


# What the database says when an error will pass if the request is sent again (a lock, a
# lost or refused connection, a conflict with another transaction): PostgreSQL's SQLSTATE
# classes and codes, and SQLite's messages (it has no codes in the Python driver).
_TRANSIENT_CLASSES = ("08", "40", "53", "57")  # connection, rollback, resources, operator
_TRANSIENT_CODES = ("55P03",)  # lock_not_available (lock_timeout)
_TRANSIENT_MESSAGES = (
    "database is locked",
    "database table is locked",
    "database schema has changed",
    "server closed the connection",
    "connection refused",
    "could not connect",
    "connection timed out",
    "terminating connection",
    "the database system is",  # starting up / shutting down / in recovery
    "lock timeout",
    "deadlock detected",
    "could not serialize",
    "too many clients",
)
# What it says when a statement is too complex for it: never passes, and only a simpler
# filter helps (class 54, program_limit_exceeded; SQLite's limits on expressions).
_TOO_COMPLEX_MESSAGES = (
    "expression tree is too large",
    "too many sql variables",
    "parser stack overflow",
    "stack depth limit exceeded",
    "statement is too complex",
    "too many terms",
    "too many arguments",
)


def _database_error(error: OperationalError) -> Response:
    """503 with Retry-After only for what passes; 400 invalidFilter for a statement too
    complex for the database; anything else is a 500: "retry shortly" for an error that
    never passes would have an IdP that honours Retry-After retry it forever."""
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    message = str(error.orig).lower()
    if (
        error.connection_invalidated
        or sqlstate.startswith(_TRANSIENT_CLASSES)
        or sqlstate in _TRANSIENT_CODES
        or (not sqlstate and any(m in message for m in _TRANSIENT_MESSAGES))
    ):
        log.warning("database busy serving a SCIM request: %s", type(error.orig).__name__)
        return error_response(
            503, "The service is busy; retry shortly.", headers={"Retry-After": "1"}
        )
    if sqlstate.startswith("54") or any(m in message for m in _TOO_COMPLEX_MESSAGES):
        log.warning("a SCIM request too complex for the database: %s", message[:200])
        return error_response(
            400,
            "The request is too complex for the database (a filter with fewer terms, or "
            "less nesting, is served).",
            "invalidFilter",
        )
    log.error("database error serving a SCIM request", exc_info=error)
    return error_response(500, "The service provider failed to process the request.")


def from_exception(error: Exception) -> Response:
    """Map any exception raised while serving a SCIM request to its Error body; whatever
    the request had written is rolled back first."""
    from blueprints.common.extensions import db

    db.session.rollback()
    if isinstance(error, IntegrityError):
        # Two requests created the same userName/externalId/displayName at once: the
        # unique constraint decided, and this one lost (SPEC F5 "Concurrency").
        return error_response(
            409,
            "Another resource with the same unique value (userName, externalId or "
            "displayName) was created at the same time.",
            "uniqueness",
        )
    if isinstance(error, StaleDataError):
        return error_response(
            409, "The resource changed while this request was processed; read it and retry."
        )
    if isinstance(error, OperationalError):
        return _database_error(error)
    if isinstance(error, SCIMException):
        return error_response(error.status, error.detail, error.scim_type)
    if isinstance(error, ValidationError):
        # scim2-models raises its SCIM errors inside pydantic validators; it maps them
        # (and plain pydantic errors) back to status and scimType.
        errors = Error.from_validation_errors(error)
        first = errors[0] if errors else Error(status=400, scim_type="invalidValue")
        detail = (first.detail or "The request is not valid.")[:500]
        return error_response(int(first.status or 400), detail, first.scim_type)
    if isinstance(error, HTTPException):
        code = error.code or 500
        headers = (
            {"Allow": ", ".join(error.valid_methods)}
            if getattr(error, "valid_methods", None)
            else None
        )
        return error_response(code, _HTTP_DETAILS.get(code, error.description or ""), None, headers)
    log.exception("unhandled error in the SCIM API")
    return error_response(500, "The service provider failed to process the request.")
