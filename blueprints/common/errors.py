"""HTML error pages, the CSRF failure fragment for htmx, /healthz and template helpers."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from blueprints.common.auth import current_membership
from blueprints.common.extensions import db
from blueprints.common.htmx import is_htmx
from blueprints.common.web import API_PREFIX

log = logging.getLogger(__name__)


def register_error_handlers(app: Flask) -> None:
    app.add_template_global(current_membership)

    @app.template_filter("absolute")
    def absolute(path: str) -> str:
        """A site path as the absolute URL people paste elsewhere (from BASE_URL)."""
        return app.config["BASE_URL"] + path

    @app.get("/healthz")
    def healthz():
        """Liveness and database reachability for load balancers (SPEC F9)."""
        try:
            db.session.execute(text("SELECT 1"))
        except Exception:
            log.exception("health check: database unreachable")
            return jsonify(status="error", database="unreachable"), 503
        return jsonify(status="ok", database="ok")

    @app.errorhandler(CSRFError)
    def csrf_failed(error: CSRFError):
        """An expired or missing CSRF token: htmx gets a fragment asking for a reload."""
        if is_htmx():
            response = app.make_response((render_template("errors/_page_expired.html"), 400))
            response.headers["HX-Retarget"] = "#messages"
            response.headers["HX-Reswap"] = "innerHTML"
            return response
        return render_template(
            "errors/error.html",
            code=400,
            title="Page expired",
            message="This page expired. Go back, reload it and try again.",
        ), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if request.path.startswith(API_PREFIX):
            # Routing errors (405, 413 before a view) never reach blueprint handlers.
            from blueprints.scim_api.errors import from_exception

            return from_exception(error)
        titles = {403: "Not allowed", 404: "Not found", 405: "Not allowed", 413: "Too large"}
        messages = {
            403: "Only account owners and co-owners can open this page.",
            404: "There is nothing at this address.",
        }
        code = error.code or 500
        return render_template(
            "errors/error.html",
            code=code,
            title=titles.get(code, error.name),
            message=messages.get(code, error.description),
        ), code

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        if isinstance(error, HTTPException):
            return http_error(error)
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            # The database dropped the connection (a restart): the pool reconnects, and
            # the person retries (SQLAlchemy pings no connection before using it).
            log.warning("database connection lost; reconnecting: %s", type(error.orig).__name__)
            code, title = 503, "Try again"
            message = "The connection to the database was reset. Reload the page."
        else:
            log.exception("unhandled error")
            code, title = 500, "Something went wrong"
            message = "The error has been logged. Nothing was changed; please try again."
        db.session.rollback()
        return render_template("errors/error.html", code=code, title=title, message=message), code
