"""The SCIM 2.0 blueprint at /scim/v2/<connector-id> (SPEC F5).

Only discovery is served so far; Users and Groups arrive with the rest of issue #5.
Every other path inside the prefix answers with a SCIM 404 body (scim2-flask's
catch-all), since routing errors never reach blueprint error handlers otherwise. Rules
never redirect (a missing or doubled slash would get werkzeug's HTML 308 page) and never
answer OPTIONS with Flask's empty HTML 200: everything here is a SCIM response.
"""

from __future__ import annotations

from flask import Blueprint

from app import csrf
from blueprints.scim_api import auth, discovery
from blueprints.scim_api.errors import error_response, from_exception, scim_response

bp = Blueprint("scim_api", __name__, url_prefix="/scim/v2/<connector_id>")
csrf.exempt(bp)  # bearer-authenticated; never reads the session
auth.install(bp)
bp.register_error_handler(Exception, from_exception)

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
DISCOVERY = {"ServiceProviderConfig", "ResourceTypes", "Schemas"}


def route(rule: str, methods: list[str]):
    """`bp.route` without slash redirects or automatic OPTIONS answers."""
    return bp.route(
        rule,
        methods=methods,
        strict_slashes=False,
        merge_slashes=False,
        provide_automatic_options=False,
    )


@route("/ServiceProviderConfig", ["GET"])
def service_provider_config():
    """RFC 7644 §4: what this service provider supports."""
    return scim_response(discovery.service_provider_config())


@route("/ResourceTypes", ["GET"])
def resource_types():
    return scim_response(discovery.resource_types())


@route("/ResourceTypes/<name>", ["GET"])
def resource_type(name: str):
    return error_response(404, f"There is no resource type {name!r}.")


@route("/Schemas", ["GET"])
def schemas():
    return scim_response(discovery.schemas())


@route("/Schemas/<path:urn>", ["GET"])
def schema(urn: str):
    return error_response(404, f"There is no schema {urn!r}.")


@route("/", ALL_METHODS)
@route("/<path:anything>", ALL_METHODS)
def not_found(anything: str = ""):
    """Anything else under the prefix: a SCIM 404 (or 405 on a discovery endpoint)."""
    if anything.split("/", 1)[0] in DISCOVERY:
        return error_response(
            405, "Discovery endpoints are read-only: use GET.", headers={"Allow": "GET"}
        )
    return error_response(404, f"There is no SCIM endpoint /{anything}.")
