"""The SCIM 2.0 blueprint at /scim/v2/<connector-id> (SPEC F5).

Discovery, Users and Groups (teams), each with GET, POST, PUT, PATCH, DELETE and
POST /.search. Handlers commit what they wrote; any error rolls it back (errors.py). Every
other path inside the prefix answers with a SCIM 404 body (scim2-flask's
catch-all), since routing errors never reach blueprint error handlers otherwise. Rules
never redirect (a missing or doubled slash would get werkzeug's HTML 308 page) and never
answer OPTIONS with Flask's empty HTML 200: everything here is a SCIM response.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, g, request
from scim2_models import InvalidSyntaxException, NotFoundException, UniquenessException
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import BaseConverter

from blueprints.common.extensions import csrf, db
from blueprints.common.sql import several_writes
from blueprints.scim_api import (
    admission,
    auth,
    discovery,
    groups,
    preview,
    search,
    unit_of_work,
    users,
)
from blueprints.scim_api.errors import error_response, from_exception, scim_response
from blueprints.scim_api.query import response_parameters, search_request
from blueprints.scim_api.schemas import Group, UserResource
from blueprints.scim_api.serialize import check_input, etag, not_modified, render
from blueprints.scim_settings import connector as connectors
from blueprints.scim_settings import health
from models import utcnow


class ScimIdConverter(BaseConverter):
    """`<scim_id:name>`: a resource id in a URL. Ids are UUIDs: one longer than 36
    characters or holding a NUL names nothing (the catch-all 404 answers it) and never
    reaches a query. Truncated instead, "<id>x" named the user <id>; a NUL, which
    PostgreSQL refuses in a query, was a 500."""

    regex = "[^/\x00]{1,36}"


bp = Blueprint("scim_api", __name__, url_prefix="/scim/v2/<connector_id>")
bp.record_once(lambda state: state.app.url_map.converters.setdefault("scim_id", ScimIdConverter))
csrf.exempt(bp)  # bearer-authenticated; never reads the session
bp.register_error_handler(Exception, from_exception)
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SEARCHES = frozenset({"scim_api.search_resources", "scim_api.search_all"})  # POST, reads


def read_call() -> None:
    """What the hooks below need of the request (admission.Call), read once."""
    view_args = request.view_args or {}
    g.scim_call = admission.Call(
        method=request.method,
        writes=request.method in _WRITE_METHODS and request.endpoint not in _SEARCHES,
        # Groups (the page, their count, their members) and the root .search (both types'
        # counts, the page, each type's rows).
        several_statements=view_args.get("kind") == "Groups"
        or request.endpoint == "scim_api.search_all",
        one_statement=request.endpoint == "scim_api.create_resource"
        and view_args.get("kind") == "Users",
        resource=request.path.removeprefix(f"/scim/v2/{g.connector_public_id}") or "/",
        remote_addr=request.remote_addr,
        content_length=request.content_length,
    )


# A request's way through the blueprint, in this order (the first answer stops it):
bp.url_value_preprocessor(auth.pop_connector_id)
bp.before_request(read_call)
bp.before_request(unit_of_work.begin)  # how its statements run (reads: no transaction)
bp.before_request(admission.arrive)  # counted in flight, then its turn in this process
bp.before_request(auth.authenticate)  # the bearer token (401)
bp.before_request(admission.admit)  # its connector's rate and its body's size
bp.after_request(unit_of_work.record)  # commit (or roll back an error) and log it
bp.teardown_request(admission.leave)  # the turn and the count in flight

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


def _base() -> str:
    """The connector's SCIM base URL, as the SCIM page shows it (meta.location, $ref)."""
    return connectors.base_url(g.scim_connector)


def _account_id() -> int:
    return g.scim_connector.account_id


def json_body() -> Any:
    """The request body as a JSON object, or 400 invalidSyntax (RFC 7644 §3.12)."""
    raw = request.get_data(cache=True)
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # A chunked body (no Content-Length to check up front) is read up to the limit
        # and cut there: past it, it is too large, not "not valid JSON".
        raise RequestEntityTooLarge()
    if not raw.strip():
        raise InvalidSyntaxException(detail="The request has no body; send a JSON object.")
    try:
        # UTF-8, as RFC 8259 §8.1 requires (a BOM ignored): json.loads would also take
        # UTF-16 and UTF-8-encoded surrogates, which no database can store.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidSyntaxException(detail="The request body is not UTF-8 text.") from None
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidSyntaxException(detail="The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidSyntaxException(detail="The request body must be a JSON object.")
    if _ESCAPED_UNSTORABLE.search(text):
        # Decoded UTF-8 JSON holds a NUL or a lone surrogate only as an escape (a raw NUL
        # is not JSON): a body without one needs no walk.
        check_input(body)
    return body


_ESCAPED_UNSTORABLE = re.compile(r"\\u(?:0000|d[89a-f])", re.IGNORECASE)


def _query() -> dict:
    """The query string's values, checked like a body (`check_input`): a NUL arrives
    there only as %00 (werkzeug decodes anything else undecodable as U+FFFD)."""
    values = request.args.to_dict()
    if b"%00" in request.query_string:
        check_input(values, "The query")
    return values


def _if_match() -> str | None:
    """The If-Match header a write is held to (RFC 7644 §3.14)."""
    return request.headers.get("If-Match")


@route("/ServiceProviderConfig", ["GET"])
def service_provider_config():
    """RFC 7644 §4: what this service provider supports."""
    return scim_response(discovery.service_provider_config(_base()))


@route("/ResourceTypes", ["GET"])
def resource_types():
    return scim_response(discovery.resource_types(_base()))


@route("/ResourceTypes/<name>", ["GET"])
def resource_type(name: str):
    found = discovery.resource_type(name, _base())
    if found is None:
        return error_response(404, f"There is no resource type {name!r}.")
    return scim_response(found)


@route("/Schemas", ["GET"])
def schemas():
    return scim_response(discovery.schemas(_base()))


@route("/Schemas/<path:urn>", ["GET"])
def schema(urn: str):
    found = discovery.schema(urn, _base())
    if found is None:
        return error_response(404, f"There is no schema {urn!r}.")
    return scim_response(found)


# --- Users and Groups ---------------------------------------------------------------------

KINDS = {"Users": (users, UserResource), "Groups": (groups, Group)}


def _parameters(kind: str):
    return response_parameters(KINDS[kind][1], _query())


def _resource_response(kind: str, row, params, status: int = 200):
    service, _ = KINDS[kind]
    body = service.show(db.session, row, _base(), params)
    headers = {"ETag": etag(row.version)}
    if status == 201:
        headers["Location"] = f"{_base()}/{kind}/{row.scim_id}"
    return scim_response(body, status, headers)


def _search(kind: str, values: dict):
    service, model = KINDS[kind]
    req = search_request(model, values)
    found = service.search(db.session, _account_id(), req, _base())
    if _previewing():
        lookup = users.lookup(req) if kind == "Users" else preview.group_lookup(req)
        found = preview.add_lookups(
            db.session, g.scim_connector.id, kind[:-1], lookup, found, model, req
        )
    return scim_response(found)


# --- Preview (SPEC F12, dry run): writes answered, not applied (preview.py) -----------------

PREVIEW_WRITES = {
    ("Users", "POST"): preview.create_user,
    ("Users", "PUT"): preview.replace_user,
    ("Users", "PATCH"): preview.patch_user,
    ("Users", "DELETE"): preview.delete_user,
    ("Groups", "POST"): preview.create_group,
    ("Groups", "PUT"): preview.replace_group,
    ("Groups", "PATCH"): preview.patch_group,
    ("Groups", "DELETE"): preview.delete_group,
}


def _previewing() -> bool:
    return g.scim_connector.mode == "preview"


def _preview_write(kind: str, status: int, *args):
    """A write in preview: the answer live would give, nothing applied. A collision
    (409) is answered as live answers it, and kept for the forecast."""
    write = PREVIEW_WRITES[kind, request.method]
    params = _parameters(kind) if request.method != "DELETE" else None
    try:
        answer = write(
            db.session,
            g.scim_connector,
            *args,
            utcnow(),
            _base(),
            *([_if_match()] if args and request.method != "POST" else []),
        )
    except UniquenessException as error:
        body = request.get_json(silent=True)
        preview.record_collision(
            db.session, g.scim_connector, kind[:-1], body, error.detail or "", utcnow()
        )
        unit_of_work.keep_before_error()
        raise
    if isinstance(answer, tuple):  # a group's, with the member ids skipped as unknown
        answer, skipped = answer
        if answer is not None:
            _written(kind, (preview.named(answer), skipped))
    if answer is None:
        return _empty(204)
    headers = {"ETag": etag(answer.version)}
    if (kind, request.method) == ("Groups", "PATCH") and not (
        request.args.get("attributes") or request.args.get("excludedAttributes")
    ):
        return _empty(204, headers)
    if status == 201:
        headers["Location"] = f"{_base()}/{kind}/{answer.scim_id}"
    return scim_response(render(KINDS[kind][1], answer.payload, params), status, headers)


def _written(kind: str, result):
    """A write service's result: the row, with the group members it skipped as unknown
    noted for the request log (SPEC F5)."""
    if kind == "Users":
        return result
    team, skipped = result
    if skipped:
        shown = ", ".join(skipped[:10]) + (
            f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        )
        g.scim_log_note = (
            f"Skipped {len(skipped)} member id(s) that are no user of this account: {shown}"
        )
        # One problem per group on the health panel, however often the IdP pushes it.
        g.scim_problem = (
            health.UNKNOWN_MEMBERS,
            team.scim_id,
            f"Group {team.display_name!r}: {len(skipped)} unknown member id(s): {shown}"[:500],
        )
    return team


@route("/<any(Users, Groups):kind>", ["GET"])
def list_resources(kind: str):
    return _search(kind, _query())


@route("/<any(Users, Groups):kind>/.search", ["POST"])
def search_resources(kind: str):
    """POST /.search (RFC 7644 §3.4.3): the query in a SearchRequest body."""
    return _search(kind, json_body())


@route("/.search", ["POST"])
def search_all():
    """POST /.search at the root (RFC 7644 §3.4.3): Users and Groups in one list."""
    req = search_request(UserResource | Group, json_body())
    return scim_response(search.search_all(db.session, _account_id(), req, _base()))


@route("/<any(Users, Groups):kind>", ["POST"])
def create_resource(kind: str):
    params = _parameters(kind)  # a bad `attributes` is refused before anything is written
    if _previewing() and (kind, "POST") in PREVIEW_WRITES:
        several_writes(db.session)
        return _preview_write(kind, 201, json_body())
    try:
        confirm = auth.confirm if auth.unconfirmed() else None
        if kind == "Users":
            created = users.create(db.session, g.scim_connector, json_body(), utcnow(), confirm)
        else:
            created = groups.create(db.session, g.scim_connector, json_body(), utcnow())
        if confirm is not None and auth.unconfirmed():
            raise auth.Unconfirmed()  # (a way that wrote without reading the token again)
    except auth.Unconfirmed:
        return auth.check_again() or create_resource(kind)
    row = _written(kind, created)
    db.session.flush()
    # Committed before the body is built: the write locks are held for the writes only.
    failed = unit_of_work.finish(201)
    if failed is not None:
        return failed
    return _resource_response(kind, row, params, 201)


@route("/<any(Users, Groups):kind>/<scim_id:scim_id>", ["GET"])
def get_resource(kind: str, scim_id: str):
    service, model = KINDS[kind]
    try:
        row = service.get(db.session, _account_id(), scim_id)
    except NotFoundException:
        if not _previewing():
            raise
        found = preview.find(db.session, g.scim_connector.id, kind[:-1], scim_id)
        if not_modified(found.version, request.headers.get("If-None-Match")):
            return _empty(304, {"ETag": etag(found.version)})
        params = _parameters(kind)
        return scim_response(
            render(model, found.document, params), 200, {"ETag": etag(found.version)}
        )
    if not_modified(row.version, request.headers.get("If-None-Match")):
        return _empty(304, {"ETag": etag(row.version)})
    return _resource_response(kind, row, _parameters(kind))


@route("/<any(Users, Groups):kind>/<scim_id:scim_id>", ["PUT"])
def replace_resource(kind: str, scim_id: str):
    service, _ = KINDS[kind]
    params = _parameters(kind)
    if _previewing() and (kind, "PUT") in PREVIEW_WRITES:
        return _preview_write(kind, 200, scim_id, json_body())
    row = _written(
        kind,
        service.replace(db.session, g.scim_connector, scim_id, json_body(), utcnow(), _if_match()),
    )
    db.session.flush()
    return _resource_response(kind, row, params)


@route("/<any(Users, Groups):kind>/<scim_id:scim_id>", ["PATCH"])
def patch_resource(kind: str, scim_id: str):
    """Users: 200 with the user as it now is. Groups: 204 No Content (RFC 7644 §3.5.2
    allows it; Entra ID's and Okta's documented exchanges show it), so adding one member
    to a team of 50,000 does not send the 50,000 back; asking for `attributes` or
    `excludedAttributes` gets 200 with the group shaped by them."""
    service, _ = KINDS[kind]
    params = _parameters(kind)
    if _previewing() and (kind, "PATCH") in PREVIEW_WRITES:
        return _preview_write(kind, 200, scim_id, json_body())
    row = _written(
        kind,
        service.patch(db.session, g.scim_connector, scim_id, json_body(), utcnow(), _if_match()),
    )
    db.session.flush()
    if kind == "Groups" and not (
        request.args.get("attributes") or request.args.get("excludedAttributes")
    ):
        return _empty(204, {"ETag": etag(row.version)})
    return _resource_response(kind, row, params)


@route("/<any(Users, Groups):kind>/<scim_id:scim_id>", ["DELETE"])
def delete_resource(kind: str, scim_id: str):
    if _previewing() and (kind, "DELETE") in PREVIEW_WRITES:
        return _preview_write(kind, 204, scim_id)
    if kind == "Users":
        users.delete(db.session, g.scim_connector, scim_id, utcnow(), _if_match())
    else:
        groups.delete_group(db.session, g.scim_connector, scim_id, utcnow(), _if_match())
    db.session.flush()
    return _empty(204)


def _empty(status: int, headers: dict | None = None):
    response = scim_response({}, status, headers)
    response.set_data(b"")
    return response


@route("/", ALL_METHODS)
@route("/<path:anything>", ALL_METHODS)
def not_found(anything: str = ""):
    """Anything else under the prefix: a SCIM 404 (or 405 on a discovery endpoint)."""
    if anything.split("/", 1)[0] in DISCOVERY:
        return error_response(
            405, "Discovery endpoints are read-only: use GET.", headers={"Allow": "GET"}
        )
    return error_response(404, f"There is no SCIM endpoint /{anything}.")
