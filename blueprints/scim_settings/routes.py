"""The SCIM page and its HTMX fragments (SPEC F4)."""

from __future__ import annotations

from flask import Blueprint, abort, make_response, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from blueprints.auth.forms import ConfirmPassphraseForm
from blueprints.common.auth import admin_required, current_membership, reauthenticated
from blueprints.common.extensions import db
from blueprints.common.htmx import render_fragment, render_page_or_fragment, request_is_partial
from blueprints.scim_api import preview
from blueprints.scim_settings import connector as service
from blueprints.scim_settings import health
from blueprints.scim_settings.forms import (
    AccessForm,
    DeprovisionForm,
    EnableForm,
    NewTokenForm,
)
from models import ScimRequestLog, utcnow

bp = Blueprint("scim_settings", __name__, url_prefix="/enterprise/scim")
LOG_SIZE = 50
OUTCOMES = ("success", "failure")


def _account_id() -> int:
    return current_membership().account_id


def _panel_context(connector=None, **extra) -> dict:
    """What the connector panel (its tokens table, each token's panel and the connector's
    actions) shows; never the request log (a fragment gets its own context: asking for
    the passphrase runs no log query).

    One token at most is "active" (`active_id`): the one whose panel shows `mode` (a
    passphrase form, or its secret once); `actions_mode` is the connector actions' ('new'
    or 'disable')."""
    account_id = _account_id()
    if connector is None:
        connector = service.get_connector(db.session, account_id)
    now = utcnow()
    warning = service.warning_token(connector, now)
    return (
        {
            "connector": connector,
            "missing": service.missing_prerequisites(db.session, account_id),
            "tokens": service.listed_tokens(connector) if connector else [],
            "live": service.live_tokens(connector) if connector else [],
            "state_of": lambda token: service.token_state(connector, token, now),
            "warning": warning,
            "warning_state": service.token_state(connector, warning, now) if warning else None,
            "base_url": service.base_url(connector) if connector else None,
            "form": EnableForm(formdata=None),
            "new_form": NewTokenForm(formdata=None),
            "idps": service.IDPS,
            "token": None,
            "active_id": None,
            "mode": None,
            "actions_mode": None,
            "notice": None,
            "new_error": None,
            "error": None,
            "now": now,
        }
        | _policy_context(connector)
        | extra
    )


def _policy_form(connector) -> DeprovisionForm:
    """The deprovisioning policy form as the connector has it (not bound to a request)."""
    return DeprovisionForm(
        formdata=None,
        mode=connector.deprovision_mode if connector else "remove",
        days=str(connector.suspend_days) if connector else "30",
    )


def _policy_context(connector, form=None, notice=None, oob: bool = False) -> dict:
    """What the deprovisioning policy panel shows (SPEC F12): the form for owners, the
    policy read-only for co-owners (as the team rules are the owners')."""
    return {
        "connector": connector,
        "policy_form": form or _policy_form(connector),
        "can_edit_policy": current_membership().role == "owner",
        "policy_notice": notice,
        "policy_oob": oob,
        "modes": service.DEPROVISION_MODES,
    }


def _log_context(connector, outcome: str | None = None, oob: bool = False) -> dict:
    """What the request log shows: its newest rows, optionally of one outcome."""
    outcome = outcome if outcome in OUTCOMES else None
    log = _log(connector, outcome)
    return {"connector": connector, "log": log, "outcome": outcome, "log_oob": oob}


def _log(connector, outcome: str | None) -> list[ScimRequestLog]:
    if connector is None:
        return []
    query = select(ScimRequestLog).where(ScimRequestLog.connector_id == connector.id)
    if outcome in OUTCOMES:
        query = query.where(ScimRequestLog.outcome == outcome)
    return list(db.session.scalars(query.order_by(ScimRequestLog.id.desc()).limit(LOG_SIZE)))


def _health_context(connector, oob: bool = False) -> dict:
    """What the provisioning health panel shows (nothing before SCIM was ever enabled)."""
    now = utcnow()
    return {
        "connector": connector,
        "health": health.health(db.session, connector, now) if connector else None,
        "ago": health.ago,
        "now": now,
        "health_oob": oob,
    }


def _preview_context(connector, **extra) -> dict:
    """What the preview panel shows (SPEC F12): in preview, the forecast."""
    forecast = None
    if connector is not None and connector.enabled and connector.mode == "preview":
        forecast = preview.forecast(db.session, connector.id, connector.account_id)
    return {
        "connector": connector,
        "forecast": forecast,
        "labels": preview.LABELS,
        "restart": None,
        "preview_error": None,
        "preview_oob": False,
    } | extra


def _other_panels(connector) -> dict:
    """The page's panels besides the one a route is about, for a full page."""
    return _log_context(connector) | _health_context(connector) | _preview_context(connector)


@bp.get("")
@admin_required
def index():
    """The seed's four steps, the connector, its token, the preview's forecast,
    provisioning health and the request log."""
    context = _panel_context()
    if not request_is_partial():
        context |= _other_panels(context["connector"])
    return render_page_or_fragment(
        "scim_settings/index.html", "scim_settings/_connector_panel.html", **context
    )


@bp.post("/enable")
@admin_required
def enable():
    """Enable SCIM: the panel comes back with the URL, the new token and the IdP steps."""
    form = EnableForm()
    if not form.validate_on_submit():
        return _panel(422, form=form, error="Choose an IdP and a lifetime.")
    try:
        issued = service.enable(
            db.session,
            _account_id(),
            current_user,
            form.idp.data,
            form.lifetime.data,
            utcnow(),
            mode="preview" if form.preview.data else "live",
        )
    except service.ConnectorError as error:
        return _panel(422, form=form, error=str(error))
    # The request log was rendered without a connector, so it doesn't poll yet: swap in
    # one that does (out of band), so the IdP's first requests show up as they come.
    panel = _panel_context(
        issued.connector, token=issued.token, active_id=issued.scim_token.id, mode="issued"
    )
    return make_response(
        render_template("scim_settings/_connector_panel.html", **panel)
        + render_template(
            "scim_settings/_request_log.html", **_log_context(issued.connector, oob=True)
        )
        + render_template(
            "scim_settings/_health_panel.html", **_health_context(issued.connector, oob=True)
        )
        + render_template(
            "scim_settings/_deprovision_panel.html", **_policy_context(issued.connector, oob=True)
        )
        + render_template(
            "scim_settings/_preview_panel.html",
            **_preview_context(issued.connector, preview_oob=True),
        )
    )


def _panel(status: int = 200, **extra):
    return render_fragment("scim_settings/_connector_panel.html", status, **_panel_context(**extra))


def _token_panel(scim_token, status: int = 200, **extra):
    """One token's panel (its actions, a passphrase form, or its secret once)."""
    context = _panel_context(scim_token.connector, active_id=scim_token.id, **extra)
    context["t"] = scim_token
    return render_fragment("scim_settings/_token_panel.html", status, **context)


def _actions(status: int = 200, **extra):
    """The connector's actions (New token, Disable SCIM), or the form of one of them."""
    context = _panel_context(**extra)
    return render_fragment("scim_settings/_connector_actions.html", status, **context)


def _enabled_connector():
    connector = service.get_connector(db.session, _account_id())
    if connector is None or not connector.enabled:
        abort(404)
    return connector


def _live_token(token_id: int):
    """A live token of this account's connector, else 404 (another account's included)."""
    token = service.get_token(_enabled_connector(), token_id)
    if token is None:
        abort(404)
    return token


# --- A token's actions: each asks for the passphrase first (SPEC F1, F11) -------------------
# GET swaps the passphrase form into that token's panel (#token-panel-<id>). Reveal posts
# to the token panel; refresh and revoke change the whole connector panel (badge, times,
# banner), so their form posts to it, and a wrong passphrase comes back as that panel with
# the form in place.


@bp.route("/tokens/<id:token_id>/reveal", methods=["GET", "POST"])
@admin_required
def reveal_token(token_id: int):
    """Reveal token: the token shown once more, after the passphrase."""
    token = _live_token(token_id)
    form = ConfirmPassphraseForm()
    if request.method == "GET":
        return _token_panel(token, mode="reveal", passphrase_form=form)
    if not reauthenticated(form):
        return _token_panel(token, 422, mode="reveal", passphrase_form=form)
    secret = service.reveal(db.session, token.connector, token, current_user, utcnow())
    return _token_panel(token, mode="revealed", token=secret)


def _passphrase_first(token, mode: str):
    """What a token action answers until the passphrase is confirmed: its form in the
    token's panel (GET), or the connector panel with the form and its error (a wrong
    one); None once it is right."""
    form = ConfirmPassphraseForm()
    if request.method == "GET":
        return _token_panel(token, mode=mode, passphrase_form=form)
    if not reauthenticated(form):
        return _panel(
            422, connector=token.connector, active_id=token.id, mode=mode, passphrase_form=form
        )
    return None


@bp.route("/tokens/<id:token_id>/refresh", methods=["GET", "POST"])
@admin_required
def refresh_token(token_id: int):
    """Refresh Token: a new secret on the same URL, the old one kept for the grace period;
    the connector's other tokens are untouched."""
    token = _live_token(token_id)
    if (asked := _passphrase_first(token, "refresh")) is not None:
        return asked
    connector = token.connector
    issued = service.refresh(db.session, connector, token, current_user, utcnow())
    return _panel(connector=connector, active_id=token.id, mode="refreshed", token=issued.token)


@bp.route("/tokens/<id:token_id>/revoke", methods=["GET", "POST"])
@admin_required
def revoke_token(token_id: int):
    """Revoke: the token is refused at once; the others keep working."""
    token = _live_token(token_id)
    if (asked := _passphrase_first(token, "revoke")) is not None:
        return asked
    service.revoke(db.session, token.connector, token, current_user, utcnow())
    return _panel(
        connector=token.connector, notice=f"Token “{token.name}” revoked: it is refused now."
    )


@bp.route("/tokens/<id:token_id>/access", methods=["GET", "POST"])
@admin_required
def token_access(token_id: int):
    """Change access: a token's IP allow-list and read-only scope, with the passphrase;
    the secret stays. A bad range is shown next to the field, nothing changed."""
    token = _live_token(token_id)
    if request.method == "GET":
        form = AccessForm(
            prefix="access",
            formdata=None,
            allowed_networks=token.allowed_networks or "",
            read_only=token.read_only,
        )
        return _token_panel(token, mode="access", access_form=form)
    form = AccessForm(prefix="access")
    connector = token.connector
    refused = {"connector": connector, "active_id": token.id, "mode": "access"}
    if not reauthenticated(form):
        return _panel(422, access_form=form, **refused)
    try:
        changed = service.change_access(
            db.session,
            connector,
            token,
            current_user,
            form.allowed_networks.data,
            form.read_only.data,
            utcnow(),
        )
    except service.TokenError as error:
        form.allowed_networks.errors.append(str(error))
        return _panel(422, access_form=form, **refused)
    notice = (
        f"Access of “{token.name}” changed: {service.describe_access(token)}."
        if changed
        else f"Access of “{token.name}” unchanged."
    )
    return _panel(connector=connector, notice=notice)


@bp.get("/tokens/<id:token_id>")
@admin_required
def token_panel(token_id: int):
    """A token panel's buttons again (Cancel, Hide token)."""
    return _token_panel(_live_token(token_id))


# --- The connector's actions -----------------------------------------------------------------


@bp.route("/tokens/new", methods=["GET", "POST"])
@admin_required
def new_token():
    """New token: name, lifetime and passphrase; the panel comes back with the token shown
    once in its row. Errors stay next to their fields."""
    connector = _enabled_connector()
    form = NewTokenForm()
    if request.method == "GET":
        return _actions(connector=connector, actions_mode="new", new_form=form)
    refused = {"connector": connector, "actions_mode": "new", "new_form": form}
    if not reauthenticated(form):
        return _panel(422, **refused)
    try:
        issued = service.create_token(
            db.session,
            connector,
            current_user,
            form.name.data,
            form.lifetime.data,
            utcnow(),
            form.allowed_networks.data,
            form.read_only.data,
        )
    except service.TokenError as error:
        if error.field is None:
            return _panel(422, new_error=str(error), **refused)
        getattr(form, error.field).errors.append(str(error))
        return _panel(422, **refused)
    return _panel(
        connector=connector, active_id=issued.scim_token.id, mode="created", token=issued.token
    )


@bp.route("/disable", methods=["GET", "POST"])
@admin_required
def disable():
    """Disable SCIM: the IdP is refused (every token revoked); the connector URL is kept
    for a later enable."""
    connector = _enabled_connector()
    form = ConfirmPassphraseForm()
    if request.method == "GET":
        return _actions(connector=connector, actions_mode="disable", passphrase_form=form)
    if not reauthenticated(form):
        return _panel(422, connector=connector, actions_mode="disable", passphrase_form=form)
    service.disable(db.session, connector, current_user, utcnow())
    return _panel()


@bp.get("/actions")
@admin_required
def connector_actions():
    """The connector actions' buttons again (Cancel)."""
    return _actions(connector=_enabled_connector())


@bp.get("/log")
@admin_required
def request_log():
    """The request log, newest first, optionally one outcome; polled every 10 s."""
    connector = service.get_connector(db.session, _account_id())
    context = _log_context(connector, request.args.get("outcome"))
    if not request_is_partial():
        context = _panel_context(connector) | _other_panels(connector) | context
    return render_page_or_fragment(
        "scim_settings/index.html", "scim_settings/_request_log.html", **context
    )


# --- The deprovisioning policy (SPEC F12) ------------------------------------------------


def _policy_panel(connector, status: int = 200, **extra):
    return render_fragment(
        "scim_settings/_deprovision_panel.html", status, **_policy_context(connector, **extra)
    )


def _connector_or_404():
    connector = service.get_connector(db.session, _account_id())
    if connector is None:
        abort(404)
    return connector


@bp.get("/deprovisioning")
@admin_required
def deprovision_panel():
    """The deprovisioning policy panel (its form again)."""
    return _policy_panel(_connector_or_404())


@bp.post("/deprovisioning")
@admin_required
def deprovision_policy():
    """Save what the IdP's `active: false` and DELETE do (owners only; co-owners 403, as
    for the team rules). A bad number of days is shown next to the field, nothing changed."""
    connector = _connector_or_404()
    if current_membership().role != "owner":
        abort(403)
    form = DeprovisionForm()
    if not form.validate_on_submit():
        return _policy_panel(connector, 422, form=form)
    try:
        changed = service.change_deprovision_policy(
            db.session,
            connector,
            current_user,
            form.mode.data,
            form.days.data,
            utcnow(),
            request.remote_addr,
        )
    except service.PolicyError as error:
        getattr(form, error.field).errors.append(str(error))
        return _policy_panel(connector, 422, form=form)
    notice = "Policy saved." if changed else "Policy unchanged."
    return _policy_panel(connector, notice=notice)


# --- Provisioning health (SPEC F10) ---------------------------------------------------------


@bp.get("/health")
@admin_required
def health_panel():
    """The provisioning health panel: last success, 24-hour counts, open problems; polled."""
    connector = service.get_connector(db.session, _account_id())
    context = _health_context(connector)
    if not request_is_partial():
        context = _panel_context(connector) | _other_panels(connector) | context
    return render_page_or_fragment(
        "scim_settings/index.html", "scim_settings/_health_panel.html", **context
    )


@bp.post("/problems/<id:problem_id>/resolve")
@admin_required
def resolve_problem(problem_id: int):
    """Mark resolved: the problem leaves the open list until it happens again."""
    account_id = _account_id()
    problem = health.find_problem(db.session, account_id, problem_id)
    if problem is None:
        abort(404)
    health.resolve(db.session, problem, current_user.id, account_id, utcnow())
    if not request_is_partial():
        return redirect(url_for("scim_settings.index", _anchor="provisioning-health"))
    connector = service.get_connector(db.session, account_id)
    return render_fragment("scim_settings/_health_panel.html", **_health_context(connector))


@bp.get("/log/<id:entry_id>")
@admin_required
def log_entry(entry_id: int):
    """One request of the log, which a problem links to (it may be past the log's 50)."""
    entry = health.log_entry(db.session, _account_id(), entry_id)
    if entry is None:
        abort(404)
    return render_template("scim_settings/log_entry.html", entry=entry)


# --- Preview, a dry run before go-live (SPEC F12) -------------------------------------------


def _preview_panel(connector, status: int = 200, **extra):
    """The preview panel (htmx), or the forecast page."""
    return render_page_or_fragment(
        "scim_settings/preview.html",
        "scim_settings/_preview_panel.html",
        status,
        **_preview_context(connector, **extra),
    )


@bp.get("/preview")
@admin_required
def preview_page():
    """The forecast of what the IdP's writes in preview would do."""
    return _preview_panel(service.get_connector(db.session, _account_id()))


@bp.post("/preview/start")
@admin_required
def start_preview():
    """Switch to preview: the IdP's writes are answered and forecast, not applied."""
    connector = _enabled_connector()
    try:
        service.start_preview(db.session, connector, current_user, utcnow())
    except service.ConnectorError as error:
        return _preview_panel(connector, 422, preview_error=str(error))
    return _preview_panel(connector)


@bp.post("/preview/go-live")
@admin_required
def go_live():
    """Go live: nothing of the preview applied; the page says to restart provisioning."""
    connector = _enabled_connector()
    try:
        service.go_live(db.session, connector, current_user, utcnow())
    except service.ConnectorError as error:
        return _preview_panel(connector, 422, preview_error=str(error))
    return _preview_panel(connector, restart=service.restart_hint(connector.idp))
