"""What a list or a response asks for (RFC 7644 §3.4.2, §3.9): the query of GET /Users,
GET /Groups and POST …/.search as a scim2-models SearchRequest, its page window, and the
`attributes`/`excludedAttributes` of a single read or write. Flask-free: the routes pass
the query's values in."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from scim2_models import InvalidValueException, SearchRequest

from blueprints.scim_api.schemas import DEFAULT_COUNT, MAX_RESULTS, PROVIDER

MAX_START_INDEX = 2**31 - 1
# attributes / excludedAttributes: a resource has fewer than 100 attribute paths.
MAX_ATTRIBUTE_PATHS = 100
_KNOWN = frozenset(
    {
        "filter",
        "sortBy",
        "sortOrder",
        "startIndex",
        "count",
        "attributes",
        "excludedAttributes",
        "schemas",
    }
)


@dataclass
class Page:
    start: int
    count: int


def search_request(model, values: dict) -> SearchRequest:
    """The query (GET parameters or a POST /.search body) as a SearchRequest."""
    data = {key: value for key, value in values.items() if key in _KNOWN}
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


def descending(req: SearchRequest) -> bool:
    return req.sort_order is not None and req.sort_order.value == "descending"


def wants(req: SearchRequest | None, attribute: str) -> bool:
    """Whether a response includes `attribute` (a top-level name, like "members")."""
    if req is None:
        return True
    name = attribute.lower()

    def names(paths, whole: bool) -> set[str]:
        """The top-level attributes `paths` name; with `whole`, only those named whole
        (excluding `members.display` still shows the members)."""
        found = set()
        for path in paths or ():
            local = str(path).lower().rsplit(":", 1)[-1]
            top = local.split(".", 1)[0].split("[", 1)[0]
            if not whole or top == local:
                found.add(top)
        return found

    if req.attributes:
        return name in names(req.attributes, whole=False)
    return name not in names(req.excluded_attributes, whole=True)
