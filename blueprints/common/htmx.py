"""Page-or-fragment rendering for URLs htmx and browsers both load (canaille style)."""

from __future__ import annotations

from flask import make_response, render_template, request


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def request_is_partial() -> bool:
    """True when htmx asked for a fragment (an htmx request that is not a boosted page)."""
    return (
        is_htmx()
        and request.headers.get("HX-Boosted") != "true"
        # Back to a pushed URL htmx has no snapshot of: it wants the whole page.
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def render_page_or_fragment(page: str, fragment: str, status: int = 200, **context):
    """Render `fragment` for htmx, `page` otherwise, and tell caches they differ."""
    template = fragment if request_is_partial() else page
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return response


def render_list(page: str, fragment: str, status: int = 200, **context):
    """A list whose filters are in its URL (Members, Audit log): the page, or for htmx
    its results fragment, with the URL htmx pushes made canonical by
    `context["list_url"]()` (the filter form sends every field, empty ones included)."""
    response = render_page_or_fragment(page, fragment, status, **context)
    if request_is_partial():
        response.headers["HX-Push-Url"] = context["list_url"]()
    return response


def render_fragment(template: str, status: int = 200, **context):
    """Render an action endpoint's fragment."""
    return make_response(render_template(template, **context), status)
