"""One owner per transaction (issue 16): a page request's writes are committed once, at
its end, here. One place decides what is saved, and an error answer changes nothing.

- Services (services.py, connector.py, the common modules) never commit: they change the
  session and `flush()` when they need ids. Whoever calls them owns the transaction.
- A page request owns it: `install(app)` commits after the view when the answer is a
  success or a redirect (status < 400) and rolls back otherwise, so bad input, a refusal
  or an error page leaves the database as it was.
- A write that must outlive its error answer (a failed sign-in or a wrong passphrase
  counted toward the lock-out, a spent SSO flow, the SSO connection whose URLs the page
  showed) is marked by its route with `keep_on_error()`. A route commits in the middle
  only so that SQLite's writer lock isn't held while it waits on something slow (the
  SSO callbacks, before the IdP's token endpoint or xmlsec1), and says so where it does.
- A commit that fails is rolled back and logged, and the person gets an error page
  instead of the success already built: 503 (try again) when the database was
  unreachable or locked, else 500. Nor is the request's session cookie saved.
- Jobs commit per item, in their jobs.py functions and in the job machinery (the
  outbox's delivery loop, the lease); CLI commands commit once, at their end.
- The SCIM API (blueprint `scim_api`) has its own unit of work, by the same rule
  (blueprints/scim_api/unit_of_work.py: reads commit nothing, and a create commits before
  its body is rendered): this module leaves its requests alone.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, make_response, render_template, request
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from blueprints.common.extensions import db

log = logging.getLogger(__name__)

_KEEP = "unit_of_work_keep"
_FAILED = "unit_of_work_failed"


def keep_on_error() -> None:
    """Commit this request's writes although its answer is a client error (4xx), for a
    write that must outlive the refusal it leads to. It keeps all the request's writes,
    so call it where the refusal is decided; a server error (5xx) keeps nothing."""
    g.setdefault(_KEEP, True)


def failed() -> bool:
    """Whether this request's commit failed (its session must not be saved either)."""
    return bool(g.get(_FAILED))


def _transient(error: Exception) -> bool:
    """A database that was unreachable, busy or locked: retrying may well succeed."""
    return isinstance(error, (OperationalError, PoolTimeout)) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )


def _failure_page(error: Exception) -> Response:
    if _transient(error):
        code, title = 503, "Try again"
        message = "Your change could not be saved just now. Nothing was changed; try again."
    else:
        code, title = 500, "Something went wrong"
        message = "The error has been logged. Nothing was changed; please try again."
    try:
        body = render_template("errors/error.html", code=code, title=title, message=message)
    except Exception:  # the page reads the database (the signed-in user), which failed
        log.exception("could not render the error page")
        body = f"{title}. {message}"
    response = make_response(body, code)
    if code == 503:
        response.headers["Retry-After"] = "1"
    return response


def _own_session() -> bool:
    """Whether this request is a page's and has a database session to end."""
    return request.blueprint != "scim_api" and db.session.registry.has()


def end(response: Response) -> Response:
    """Commit the request's work (status < 400, or a 4xx marked `keep_on_error`), else
    roll it back; an error page replaces `response` when the commit fails."""
    if not _own_session():
        return response
    status = response.status_code
    if status >= 400 and not (status < 500 and g.get(_KEEP)):
        db.session.rollback()
        return response
    try:
        db.session.commit()
    except Exception as error:
        db.session.rollback()
        log.exception("could not commit the request's work")
        g.setdefault(_FAILED, True)
        return _failure_page(error)
    return response


def install(app: Flask) -> None:
    """Commit or roll back every page request's work when its answer is ready."""
    app.after_request(end)

    @app.teardown_request
    def roll_back_on_exception(error: BaseException | None) -> None:
        # An exception no handler turned into a response never reached `end`.
        if error is not None and _own_session():
            db.session.rollback()
