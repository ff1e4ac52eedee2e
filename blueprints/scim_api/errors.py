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
    """Map any exception raised while serving a SCIM request to its Error body."""
    if isinstance(error, SCIMException):
        return error_response(error.status, error.detail, error.scim_type)
    if isinstance(error, ValidationError):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        detail = f"{where}: {first.get('msg', 'invalid value')}" if where else str(error)
        return error_response(400, detail[:500], "invalidValue")
    if isinstance(error, HTTPException):
        code = error.code or 500
        headers = (
            {"Allow": ", ".join(error.valid_methods)}
            if getattr(error, "valid_methods", None)
            else None
        )
        return error_response(code, _HTTP_DETAILS.get(code, error.description or ""), None, headers)
    log.exception("unhandled error in the SCIM API")
    from app import db  # late: app imports the blueprints

    db.session.rollback()  # so the request log can still be written
    return error_response(500, "The service provider failed to process the request.")
