"""What every request of the application gets, pages and API alike: a request id in the
logs, security headers, browser sessions for the pages only, and the `<id:…>` URL
converter. Installed by `create_app` (app.py)."""

from __future__ import annotations

import logging
import sys
import uuid

from flask import Flask, g, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.routing import IntegerConverter

from blueprints.common import unit_of_work


class RequestIdFilter(logging.Filter):
    """Put the current request id on every log record (SPEC F9)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.request_id = g.get("request_id", "-")
        except RuntimeError:  # outside a request or app context
            record.request_id = "-"
        return True


def configure_logging(app: Flask) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")
    )
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    if not any(isinstance(f, RequestIdFilter) for h in root.handlers for f in h.filters):
        root.addHandler(handler)
    root.setLevel(logging.INFO if not app.testing else logging.WARNING)
    # APScheduler logs every run at INFO (every 30 s for the outbox); keep its warnings.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # pysaml2 logs xmlsec1's output at ERROR for every refused signature; the SSO routes
    # log each refusal with its reason code instead.
    logging.getLogger("saml2").setLevel(logging.CRITICAL)
    logging.getLogger("xmlschema").setLevel(logging.WARNING)  # pysaml2 loads its schemas


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# The SCIM API's answers are JSON for IdPs, never a document a browser renders: what the
# OWASP REST Security Cheat Sheet lists for an API. A CSP that allows nothing (the pages'
# CSP allows their scripts), no framing, no sniffing, and no copy kept by a cache or a
# proxy (they carry people's names and addresses). The pages' document-only headers
# (Referrer-Policy, Permissions-Policy, COOP) say nothing to an API client.
API_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}
API_PREFIX = "/scim/"  # every URL of the SCIM API, a 404 below it included


def install_request_hooks(app: Flask) -> None:
    csp = (
        "default-src 'self'; script-src 'self' https://unpkg.com; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )

    @app.before_request
    def assign_request_id() -> None:
        incoming = request.headers.get("X-Request-Id", "")
        ok = 0 < len(incoming) <= 64 and all(
            (c.isascii() and c.isalnum()) or c in "-_." for c in incoming
        )
        g.request_id = incoming if ok else uuid.uuid4().hex

    transport = []
    if app.config["SESSION_COOKIE_SECURE"]:
        transport.append(("Strict-Transport-Security", "max-age=31536000"))
    pages = _defaults([*SECURITY_HEADERS.items(), ("Content-Security-Policy", csp), *transport])
    api = _defaults([*API_SECURITY_HEADERS.items(), *transport])

    @app.after_request
    def security_headers(response):
        # Those the view did not set, added at once (a setdefault each scanned the
        # headers each time: 20 µs of every SCIM request).
        defaults = api if request.path.startswith(API_PREFIX) else pages
        headers = response.headers
        present = {name.lower() for name, _ in headers}
        headers.extend([(name, value) for key, name, value in defaults if key not in present])
        headers["X-Request-Id"] = g.get("request_id", "-")
        return response


def _defaults(headers: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(lower-case name, name, value) of each header, for `security_headers`."""
    return [(name.lower(), name, value) for name, value in headers]


class BrowserSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, for the pages only: the SCIM API is bearer-
    authenticated and never reads a session (STYLE §2), so its requests neither open
    one (an IdP sends no cookie) nor ever set one. A page whose work was not saved
    (unit_of_work) keeps the cookie it had."""

    def open_session(self, app, request):
        if request.path.startswith(API_PREFIX):
            return self.null_session_class()
        return super().open_session(app, request)

    def save_session(self, app, session, response) -> None:
        # A request whose writes could not be committed signs nobody in or out either.
        if unit_of_work.failed():
            return
        super().save_session(app, session, response)


class IdConverter(IntegerConverter):
    """`<id:name>`: a row id in a URL. Beyond what an integer key holds is no row (404);
    werkzeug's `int` took 99999999999, which PostgreSQL refused in the query: a 500."""

    def __init__(self, url_map) -> None:
        super().__init__(url_map, min=1, max=2**31 - 1)
