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
    body = Error(status=status, detail=detail, scim_type=scim_type).model_dump(exclude_none=True)
    return scim_response(body, status, headers)


def from_exception(error: Exception) -> Response:
    """Map any exception raised while serving a SCIM request to its Error body; whatever
    the request had written is rolled back first."""
    from app import db  # late: app imports the blueprints

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
        log.warning("database busy serving a SCIM request: %s", type(error).__name__)
        return error_response(
            503, "The service is busy; retry shortly.", headers={"Retry-After": "1"}
        )
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
