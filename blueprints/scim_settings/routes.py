"""The SCIM page and its HTMX fragments (SPEC F4)."""

from __future__ import annotations

from flask import Blueprint, abort, make_response, render_template, request
from flask_login import current_user
from sqlalchemy import select

from blueprints.auth.forms import ConfirmPassphraseForm
from blueprints.auth.services import confirm_passphrase
from blueprints.common import unit_of_work
from blueprints.common.auth import admin_required, current_membership
from blueprints.common.extensions import db
from blueprints.common.htmx import render_fragment, render_page_or_fragment
from blueprints.scim_settings import connector as service
from blueprints.scim_settings.forms import EnableForm
from models import ScimRequestLog, utcnow

bp = Blueprint("scim_settings", __name__, url_prefix="/enterprise/scim")
LOG_SIZE = 50
OUTCOMES = ("success", "failure")


def _account_id() -> int:
    return current_membership().account_id


def _context(**extra) -> dict:
    account_id = _account_id()
    connector = service.get_connector(db.session, account_id)
    now = utcnow()
    return {
        "connector": connector,
        "missing": service.missing_prerequisites(db.session, account_id),
        "state": service.token_state(connector, now) if connector else None,
        "warning": service.shows_warning(connector, now),
        "base_url": service.base_url(connector) if connector else None,
        "form": EnableForm(formdata=None),
        "idps": service.IDPS,
        "token": None,
        "mode": None,
        "error": None,
        "log": _log(connector, None),
        "outcome": None,
        "log_oob": False,
        "now": now,
    } | extra


def _log(connector, outcome: str | None) -> list[ScimRequestLog]:
    if connector is None:
        return []
    query = select(ScimRequestLog).where(ScimRequestLog.connector_id == connector.id)
    if outcome in OUTCOMES:
        query = query.where(ScimRequestLog.outcome == outcome)
    return list(db.session.scalars(query.order_by(ScimRequestLog.id.desc()).limit(LOG_SIZE)))


@bp.get("")
@admin_required
def index():
    """The seed's four steps, the connector, its token and the request log."""
    return render_page_or_fragment(
        "scim_settings/index.html", "scim_settings/_connector_panel.html", **_context()
    )


@bp.post("/enable")
@admin_required
def enable():
    """Enable SCIM: the panel comes back with the URL, the new token and the IdP steps."""
    form = EnableForm()
    if not form.validate_on_submit():
        return render_fragment(
            "scim_settings/_connector_panel.html",
            422,
            **_context(form=form, error="Choose an IdP and a lifetime."),
        )
    try:
        issued = service.enable(
            db.session, _account_id(), current_user, form.idp.data, form.lifetime.data, utcnow()
        )
    except service.ConnectorError as error:
        return render_fragment(
            "scim_settings/_connector_panel.html", 422, **_context(form=form, error=str(error))
        )
    # The request log was rendered without a connector, so it doesn't poll yet: swap in
    # one that does (out of band), so the IdP's first requests show up as they come.
    context = _context(token=issued.token, mode="issued")
    return make_response(
        render_template("scim_settings/_connector_panel.html", **context)
        + render_template("scim_settings/_request_log.html", **context | {"log_oob": True})
    )


def _enabled_connector():
    connector = service.get_connector(db.session, _account_id())
    if connector is None or not connector.enabled:
        abort(404)
    return connector


@bp.route("/<any(reveal, refresh, disable):action>", methods=["GET", "POST"])
@admin_required
def token_action(action: str):
    """Reveal token, Refresh Token, Disable: each asks for the passphrase first (F1).

    GET swaps the passphrase form into #token-panel; POST answers with the token panel
    (the token shown once more) or, for disable, the whole connector panel.
    """
    connector = _enabled_connector()
    form = ConfirmPassphraseForm()
    if request.method == "GET":
        return render_fragment(
            "scim_settings/_token_panel.html", **_context(mode=action, passphrase_form=form)
        )
    if not form.validate_on_submit():
        return _passphrase_refused(action, form)
    now = utcnow()
    problem = confirm_passphrase(
        db.session, current_user, form.passphrase.data, request.remote_addr, now
    )
    if problem:
        form.passphrase.errors.append(problem)
        unit_of_work.keep_on_error()  # a wrong passphrase counts toward the lock-out
        return _passphrase_refused(action, form)
    if action == "reveal":
        token = service.reveal(db.session, connector, current_user, now)
        return render_fragment(
            "scim_settings/_token_panel.html", **_context(mode="revealed", token=token)
        )
    if action == "refresh":
        issued = service.refresh(db.session, connector, current_user, now)
        # The whole panel: the badge, times and the banner all change with a refresh.
        return render_fragment(
            "scim_settings/_connector_panel.html", **_context(mode="refreshed", token=issued.token)
        )
    service.disable(db.session, connector, current_user, now)
    return render_fragment("scim_settings/_connector_panel.html", **_context())


def _passphrase_refused(action: str, form: ConfirmPassphraseForm):
    """The passphrase form again, with its error, in place of itself: refresh and disable
    post to the whole connector panel, which a 422 must not replace with the form."""
    response = render_fragment(
        "scim_settings/_token_panel.html", 422, **_context(mode=action, passphrase_form=form)
    )
    response.headers["HX-Retarget"] = "#token-panel"
    response.headers["HX-Reswap"] = "outerHTML"
    return response


@bp.get("/token")
@admin_required
def token_panel():
    """The token panel's buttons again (Cancel)."""
    _enabled_connector()
    return render_fragment("scim_settings/_token_panel.html", **_context())


@bp.get("/log")
@admin_required
def request_log():
    """The request log, newest first, optionally one outcome; polled every 10 s."""
    outcome = request.args.get("outcome")
    connector = service.get_connector(db.session, _account_id())
    return render_page_or_fragment(
        "scim_settings/index.html",
        "scim_settings/_request_log.html",
        **_context(log=_log(connector, outcome), outcome=outcome if outcome in OUTCOMES else None),
    )
