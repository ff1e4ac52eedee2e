"""What Users and Groups have in common: parsing bodies, ETags, lists, rendering.

Rendering goes through scim2-models, so `attributes`/`excludedAttributes` and each
attribute's `returned` characteristic (password: never) are applied by the library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from flask import request
from scim2_models import (
    Context,
    InvalidPathException,
    InvalidSyntaxException,
    InvalidValueException,
    PreconditionFailedException,
    SCIMException,
    SearchRequest,
)
from werkzeug.exceptions import RequestEntityTooLarge

from blueprints.scim_api.schemas import DEFAULT_COUNT, MAX_LENGTH, MAX_RESULTS, PROVIDER


def json_body() -> Any:
    """The request body as JSON, or 400 invalidSyntax (RFC 7644 §3.12)."""
    raw = request.get_data(cache=True)
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # A chunked body (no Content-Length to check up front) is read up to the limit
        # and cut there: past it, it is too large, not "not valid JSON".
        raise RequestEntityTooLarge()
    if not raw.strip():
        raise InvalidSyntaxException(detail="The request has no body; send a JSON object.")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidSyntaxException(detail="The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidSyntaxException(detail="The request body must be a JSON object.")
    return body


def _known(urn: str, schemas: tuple[str, ...]) -> bool:
    """Whether `urn` is one of `schemas`, or an attribute inside one (URN-qualified)."""
    lowered = urn.lower()
    return any(lowered == s.lower() or lowered.startswith(s.lower() + ":") for s in schemas)


def _unknown_schema(urn: str, schemas: tuple[str, ...], scim_type: str) -> SCIMException:
    served = ", ".join(schemas)
    exception = InvalidPathException if scim_type == "invalidPath" else InvalidValueException
    return exception(
        detail=f"This service provider has no schema {urn[:200]!r}; it serves {served} "
        "(see /Schemas). Remove that extension's attributes from the identity provider's "
        "mapping."
    )


def refuse_unknown_schemas(body: dict, schemas: tuple[str, ...]) -> None:
    """400 for attributes of an extension schema we don't serve (SPEC F5): they would
    otherwise be dropped without a word, and the IdP admin would never learn that their
    mapping writes nowhere. Only data counts: a URN merely listed in `schemas` drops
    nothing, and Entra ID's documented requests list some (its ADSCIM Group schema, and
    "…:enterprise:2.0User" without its colon)."""
    for key in body:
        if isinstance(key, str) and key[:4].lower() == "urn:" and not _known(key, schemas):
            raise _unknown_schema(key, schemas, "invalidValue")


def refuse_unknown_patch_schemas(body: dict, schemas: tuple[str, ...]) -> None:
    """The same for PATCH: an operation's path, or a key of a path-less operation's
    value, in a schema we don't serve is a 400 (invalidPath, invalidValue)."""
    operations = next((v for k, v in body.items() if str(k).lower() == "operations"), None)
    for op in operations if isinstance(operations, list) else []:
        if not isinstance(op, dict):
            continue
        path = next((v for k, v in op.items() if str(k).lower() == "path"), None)
        if isinstance(path, str) and path[:4].lower() == "urn:" and not _known(path, schemas):
            raise _unknown_schema(path, schemas, "invalidPath")
        value = next((v for k, v in op.items() if str(k).lower() == "value"), None)
        if path is None and isinstance(value, dict):
            refuse_unknown_schemas({k: v for k, v in value.items() if k != "schemas"}, schemas)


def usable_id(scim_id: str) -> bool:
    """Whether `scim_id` can name a resource: ids are UUIDs (36 characters), so anything
    longer or holding a NUL is unknown without a query."""
    return len(scim_id) <= 36 and "\x00" not in scim_id


def validate(model, body: dict, context: Context):
    """`model` from `body` in a SCIM `context`, under our policy (scim2-models)."""
    with PROVIDER:
        return model.model_validate(body, scim_ctx=context)


def storable(value: str, attribute: str) -> str:
    """400 for a string no database can hold: a NUL (PostgreSQL refuses it in text) or a
    lone surrogate (JSON can escape "\\ud800"; it is not Unicode)."""
    if "\x00" in value:
        raise InvalidValueException(detail=f"{attribute} contains a NUL character.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValueException(
            detail=f"{attribute} is not valid Unicode (a lone surrogate)."
        ) from None
    return value


def text(value: str | None, attribute: str) -> str | None:
    """A string fit for a column: storable, at most MAX_LENGTH characters."""
    if value is None:
        return None
    if len(value) > MAX_LENGTH:
        raise InvalidValueException(
            detail=f"{attribute} is longer than {MAX_LENGTH} characters ({len(value)})."
        )
    return storable(value, attribute)


def etag(version: int) -> str:
    return f'W/"{version}"'


def _tags(header: str) -> list[str]:
    return [part.strip() for part in header.split(",") if part.strip()]


def check_if_match(version: int) -> None:
    """If-Match on PUT/PATCH/DELETE: 412 when it names another version (RFC 7644 §3.14)."""
    header = request.headers.get("If-Match")
    if header is None:
        return
    tags = _tags(header)
    current = etag(version)
    strong = current.removeprefix("W/")
    if "*" in tags or current in tags or strong in tags:
        return
    raise PreconditionFailedException(
        detail=f"The resource is at version {current}, not {header.strip()}; read it again."
    )


def not_modified(version: int) -> bool:
    """If-None-Match on GET names the current version: answer 304."""
    header = request.headers.get("If-None-Match")
    if header is None:
        return False
    tags = _tags(header)
    current = etag(version)
    return "*" in tags or current in tags or current.removeprefix("W/") in tags


MAX_START_INDEX = 2**31 - 1
# attributes / excludedAttributes: a resource has fewer than 100 attribute paths.
MAX_ATTRIBUTE_PATHS = 100


@dataclass
class Page:
    start: int
    count: int


def search_request(model, values: dict) -> SearchRequest:
    """The query (GET parameters or a POST /.search body) as a SearchRequest."""
    known = {
        "filter",
        "sortBy",
        "sortOrder",
        "startIndex",
        "count",
        "attributes",
        "excludedAttributes",
        "schemas",
    }
    data = {key: value for key, value in values.items() if key in known}
    for key in ("startIndex", "count"):
        raw = data.get(key)
        if isinstance(raw, str):
            try:
                data[key] = int(raw.strip())
            except ValueError:
                raise InvalidValueException(detail=f"{key} must be an integer.") from None
        elif raw is not None and (isinstance(raw, bool) or not isinstance(raw, int)):
            raise InvalidValueException(detail=f"{key} must be an integer.")
    for key in ("attributes", "excludedAttributes"):
        raw = data.get(key)
        paths = (
            raw.count(",") + 1 if isinstance(raw, str) else len(raw) if isinstance(raw, list) else 0
        )
        if paths > MAX_ATTRIBUTE_PATHS:
            # Each path is parsed and bound to the schema: 5,000 of them took seconds.
            raise InvalidValueException(
                detail=f"{key} lists {paths} attributes; at most {MAX_ATTRIBUTE_PATHS} "
                "are served (a resource has fewer)."
            )
    if isinstance(data.get("sortOrder"), str):
        data["sortOrder"] = data["sortOrder"].strip().lower()
    data.setdefault("schemas", ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"])
    with PROVIDER:
        return searching(model).model_validate(data)


@lru_cache(maxsize=8)
def searching(model) -> type[SearchRequest]:
    """SearchRequest[model], made once: parametrising it costs more than a lookup."""
    return SearchRequest[model]


def response_parameters(model, values: dict) -> SearchRequest | None:
    """`attributes`/`excludedAttributes` of a single read or write (RFC 7644 §3.9)."""
    if not values.get("attributes") and not values.get("excludedAttributes"):
        return None
    return search_request(
        model,
        {k: v for k, v in values.items() if k in ("attributes", "excludedAttributes")},
    )


def page(req: SearchRequest) -> Page:
    """startIndex/count: 1-based, count capped at MAX_RESULTS, 0 gives totals only."""
    start = req.start_index if req.start_index and req.start_index > 0 else 1
    count = DEFAULT_COUNT if req.count is None else max(0, min(req.count, MAX_RESULTS))
    if start > MAX_START_INDEX:
        # Past any list we could hold; an OFFSET that large overflows SQLite's integers.
        count = 0
    return Page(start, count)


def wants(req: SearchRequest | None, attribute: str) -> bool:
    """Whether a response includes `attribute` (a top-level name, like "members")."""
    if req is None:
        return True
    name = attribute.lower()

    def names(paths) -> set[str]:
        found = set()
        for path in paths or ():
            text_path = str(path).lower()
            found.add(text_path.rsplit(":", 1)[-1].split(".", 1)[0].split("[", 1)[0])
        return found

    if req.attributes:
        return name in names(req.attributes)
    return name not in names(req.excluded_attributes)


def render(model, payload: dict, params: SearchRequest | None) -> dict:
    """The resource as the client asked for it. Without attributes/excludedAttributes
    the payload (built from stored, already validated values, with the attributes the
    schema returns by default, no empty value: see `prune`) is the answer: the pydantic
    round trip cost more than the rest of a create. tests/scim_api/test_render.py holds
    both paths to the same output."""
    if params is None or not (params.attributes or params.excluded_attributes):
        return payload
    with PROVIDER:
        resource = model.model_validate(payload)
        return resource.model_dump(
            scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=params
        )


def prune(value):
    """`value` without None, empty lists and empty objects (SCIM omits unassigned
    attributes, RFC 7643 §2.5). Stored documents are pruned when written, and payloads
    are built without empty values, so nothing is pruned on the way out."""
    if isinstance(value, dict):
        pruned = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v is not None and v != [] and v != {}}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


def meta(resource_type: str, row, location: str) -> dict:
    """A resource's `meta` (RFC 7643 §3.1) from its row's times and version."""
    return {
        "resourceType": resource_type,
        "created": timestamp(row.created_at),
        "lastModified": timestamp(row.updated_at),
        "location": location,
        "version": etag(row.version),
    }


def timestamp(moment) -> str:
    """RFC 3339 in UTC with a Z, as scim2-models writes meta dates."""
    return moment.isoformat().replace("+00:00", "Z")


LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def list_response(total: int, start: int, resources: list[dict]) -> dict:
    """RFC 7644 §3.4.2 ListResponse (written out: parametrising scim2-models' generic
    ListResponse for every answer cost more than a lookup)."""
    return {
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }
