"""The SSO page, its HTMX fragments, and the IdP endpoints (SPEC F3)."""

from __future__ import annotations

import logging

from flask import (
    Blueprint,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user

from blueprints.auth.forms import ConfirmPassphraseForm
from blueprints.common import unit_of_work
from blueprints.common.auth import (
    admin_required,
    current_membership,
    reauthenticated,
    safe_next,
)
from blueprints.common.extensions import csrf, db
from blueprints.common.htmx import is_htmx, render_page_or_fragment, request_is_partial
from blueprints.sso import oidc, saml, services
from blueprints.sso.forms import OidcForm, SamlForm
from models import SsoConnection, utcnow

bp = Blueprint("sso", __name__)
log = logging.getLogger(__name__)


# --- the owner's page ------------------------------------------------------------------


def _connection():
    account_id = current_membership().account_id
    connection = services.get_connection(db.session, account_id)
    if connection is None:
        connection = services.ensure_connection(db.session, account_id, utcnow())
        # Made on first sight and kept whatever the answer: the page shows its public id
        # in the SAML URLs an owner may already be copying to the IdP.
        unit_of_work.keep_on_error()
    return connection


def _panel(
    status: int = 200, *, saml_form=None, oidc_form=None, protocol=None, error=None, confirm=None
):
    connection = _connection()
    # The protocol of the connection there is; none yet, the owner chooses (the page
    # opened on OpenID Connect while it lists SAML 2.0 first).
    protocol = protocol or connection.protocol
    return render_page_or_fragment(
        "sso/index.html",
        "sso/_connection_panel.html",
        status,
        connection=connection,
        protocol=protocol,
        saml_form=saml_form or SamlForm(formdata=None),
        oidc_form=oidc_form or OidcForm(formdata=None, obj=_oidc_defaults(connection)),
        domain_verified=services.has_verified_domain(db.session, current_membership().account_id),
        error=error,
        confirm=confirm,
    )


def _oidc_defaults(connection):
    if connection.protocol != "oidc":
        return None
    return type(
        "Defaults", (), {"issuer": connection.oidc_issuer, "client_id": connection.oidc_client_id}
    )


@bp.get("/enterprise/sso")
@admin_required
def index():
    """The account's SSO connection: configure, test, enable."""
    return _panel(
        protocol=request.args.get("protocol")
        if request.args.get("protocol") in ("saml", "oidc")
        else None
    )


@bp.post("/enterprise/sso/saml")
@admin_required
def save_saml():
    """Save SAML settings from pasted metadata or the three fields; errors inline."""
    if refusal := _locked():
        return refusal
    form = SamlForm()
    if form.validate_on_submit():
        try:
            if form.metadata_xml.data and form.metadata_xml.data.strip():
                settings = saml.parse_idp_metadata(form.metadata_xml.data)
                xml = form.metadata_xml.data
            else:
                settings = saml.check_idp_settings(
                    form.entity_id.data or "", form.sso_url.data or "", form.certificate.data or ""
                )
                xml = None
            services.save_saml(
                db.session,
                current_membership().account_id,
                settings,
                xml,
                current_user.id,
                utcnow(),
            )
        except saml.SamlConfigError as error:
            getattr(form, error.field, form.metadata_xml).errors.append(str(error))
        except services.SsoError as error:
            return _panel(422, saml_form=form, protocol="saml", error=str(error))
        else:
            return _saved()
    return _panel(422, saml_form=form, protocol="saml")


@bp.post("/enterprise/sso/oidc")
@admin_required
def save_oidc():
    """Save an OIDC client after fetching and checking the issuer's discovery document."""
    if refusal := _locked():
        return refusal
    form = OidcForm()
    if form.validate_on_submit():
        try:
            discovery = oidc.discover(form.issuer.data)
            services.save_oidc(
                db.session,
                current_membership().account_id,
                form.issuer.data.strip(),
                discovery,
                form.client_id.data.strip(),
                form.client_secret.data or None,
                current_user.id,
                utcnow(),
            )
        except oidc.OidcConfigError as error:
            form.issuer.errors.append(str(error))
        except services.SsoError as error:
            if error.field:
                getattr(form, error.field).errors.append(str(error))
            else:
                return _panel(422, oidc_form=form, protocol="oidc", error=str(error))
        else:
            return _saved()
    return _panel(422, oidc_form=form, protocol="oidc")


def _locked():
    """The configuration is read-only while SSO is on; say so before fetching anything."""
    if _connection().enabled:
        return _panel(422, error=services.LOCKED_WHILE_ENABLED)
    return None


def _saved():
    if not is_htmx():
        flash("SSO settings saved. Run a test sign-in next.", "success")
        return redirect(url_for("sso.index"))
    return _panel()


@bp.post("/enterprise/sso/test")
@admin_required
def test_sign_in():
    """Start a test sign-in through the IdP as the owner (a full-page redirect)."""
    connection = _connection()
    if connection.protocol is None:
        abort(404)
    return _redirect_to_idp(connection, "test", user_id=current_user.id)


@bp.route("/enterprise/sso/<any(enable, disable):action>", methods=["GET", "POST"])
@admin_required
def toggle(action: str):
    """Enable or disable SSO; both ask for the passphrase again (SPEC F1)."""
    connection = _connection()
    form = ConfirmPassphraseForm()
    error = None
    if request.method == "POST" and reauthenticated(form):
        try:
            if action == "enable":
                services.enable(db.session, connection, current_user.id, utcnow())
            else:
                services.disable(db.session, connection, current_user.id)
        except services.SsoError as refusal:
            error = str(refusal)
        else:
            if not is_htmx():
                return redirect(url_for("sso.index"))
            return _panel()
    if request.method == "POST" and request_is_partial():
        # The form posts to the whole panel: a refusal is that panel with the form, its
        # error and the passphrase's, in the action slot.
        return _panel(422, confirm={"action": action, "form": form, "error": error})
    status = 422 if request.method == "POST" else 200
    return render_page_or_fragment(
        "sso/confirm.html", "sso/_confirm_form.html", status, action=action, form=form, error=error
    )


# --- the sign-in round trip ------------------------------------------------------------


_FLOW_KEY = "sso_flow"
_FLOW_GONE = (
    "This sign-in link expired, was already used, or was started in another browser. Start again."
)


def _redirect_to_idp(connection: SsoConnection, purpose: str, *, user_id=None, next_url=None):
    """Record a flow for this browser and send it on to the IdP, by way of /sso/continue.

    The flow id is kept in the session: the callback must come back to the browser that
    started (RFC 6749 §10.12), or anyone could send a victim their own callback URL and
    sign the victim in as themselves. Forms can't be answered with a redirect to the IdP:
    the CSP's `form-action 'self'` also covers the redirects that follow a submission.
    """
    flow = services.start_flow(
        db.session, connection, purpose, utcnow(), user_id=user_id, next_url=next_url
    )
    session[_FLOW_KEY] = flow.id
    return redirect(url_for("sso.continue_to_idp"), code=303)


@bp.get("/sso/continue")
def continue_to_idp():
    """A page that takes the browser to the IdP by itself (Refresh), with a link too."""
    flow = services.pending_flow(db.session, session.get(_FLOW_KEY), utcnow())
    connection = flow and db.session.get(SsoConnection, flow.connection_id)
    if connection is None or connection.protocol not in ("oidc", "saml"):
        return render_template("sso/sign_in_failed.html", message=_FLOW_GONE), 400
    if connection.protocol == "oidc":
        url = oidc.authorization_url(connection, flow.id, flow.oidc_nonce, flow.oidc_code_verifier)
    else:
        url, flow.saml_request_id = saml.build_authn_request(
            connection, relay_state=flow.id, request_id=flow.saml_request_id
        )
    response = make_response(render_template("sso/continue.html", url=url))
    response.headers["Refresh"] = f"0; url={url}"
    response.headers["Cache-Control"] = "no-store"
    return response


def begin_sign_in(connection: SsoConnection, next_url: str | None):
    """The sign-in page sends a member of an SSO domain here."""
    return _redirect_to_idp(connection, "login", next_url=safe_next(next_url))


def _finish(flow, connection: SsoConnection, email: str | None, failure: str | None):
    """Common end of both protocols: a test result for the owner, or a signed-in member."""
    now = utcnow()
    if flow.purpose == "test":
        if failure is None and flow.created_at < connection.updated_at:
            failure = "The settings changed while this test was running. Run it again."
        if failure:
            services.record_test(db.session, connection, flow, False, failure, now)
        else:
            services.record_test(db.session, connection, flow, True, f"Signed in as {email}.", now)
        return redirect(url_for("sso.index"), code=303)
    if failure is None and not connection.enabled:
        # Turned off while this member was at the IdP: the passphrase is the way in again.
        failure = "Single sign-on is turned off for this account. Sign in with your passphrase."
    if failure is None:
        outcome = services.user_for_identity(
            db.session, connection, email, now, request.remote_addr
        )
        if outcome.user is not None:
            session.clear()
            login_user(outcome.user)
            # The IdP vouched for them: an initial passphrase they never use needn't change.
            session["signed_in_via"] = "sso"
            services.audit.record(
                db.session,
                "user.sso_sign_in",
                account_id=connection.account_id,
                actor_user_id=outcome.user.id,
                remote_addr=request.remote_addr,
            )
            return redirect(safe_next(flow.next_url) or url_for("dashboard.index"), code=303)
        failure = outcome.message
    services.audit.record(
        db.session,
        "user.sso_sign_in_failed",
        account_id=connection.account_id,
        target=email[:400] if email else None,
        detail={"reason": failure},
        remote_addr=request.remote_addr,
    )
    unit_of_work.keep_on_error()  # the flow stays spent: a refused sign-in is not retried
    return render_template("sso/sign_in_failed.html", message=failure), 403


@bp.get("/sso/oidc/callback")
def oidc_callback():
    """The IdP sends the browser back here with `code` and `state` (or an error)."""
    state = request.args.get("state")
    flow = None
    if state and session.get(_FLOW_KEY) == state:
        session.pop(_FLOW_KEY)
        flow = services.take_flow(db.session, state, utcnow())
        db.session.commit()  # spent for good now: SQLite's writer lock must not wait on the IdP
    if flow is None:
        return render_template("sso/sign_in_failed.html", message=_FLOW_GONE), 400
    connection = db.session.get(SsoConnection, flow.connection_id)
    if connection.protocol != "oidc":
        abort(400)
    if request.args.get("error"):
        # RFC 6749 §4.1.2.1: the IdP's error code, and maybe a description for people.
        reason = request.args["error"][:100]
        if description := request.args.get("error_description", "")[:200]:
            reason += f" ({description})"
        return _finish(flow, connection, None, f"The provider refused the sign-in: {reason}.")
    try:
        identity = oidc.finish(
            connection,
            request.args.get("code", ""),
            flow.oidc_nonce,
            flow.oidc_code_verifier,
            utcnow(),
        )
    except oidc.OidcSignInError as error:
        return _finish(flow, connection, None, str(error))
    return _finish(flow, connection, identity.email, None)


@bp.get("/sso/saml/<public_id>/metadata")
def saml_metadata(public_id: str):
    """Our SP metadata for the IdP administrator (public, like every SP's)."""
    connection = services.connection_by_public_id(db.session, public_id)
    if connection is None:
        abort(404)
    return saml.sp_metadata_xml(connection), 200, {"Content-Type": "application/samlmetadata+xml"}


@bp.post("/sso/saml/<public_id>/acs")
@csrf.exempt  # the IdP posts here from its own origin; the signed response is the proof
def saml_acs(public_id: str):
    """Assertion consumer service: verify the IdP's response, park the outcome on the
    flow, and send the browser on to a same-site page that checks it is the browser
    that started (the IdP's cross-site POST carries no SameSite=Lax cookie of ours)."""
    now = utcnow()
    flow = services.take_flow(db.session, request.form.get("RelayState"), now)
    db.session.commit()  # spent for good now: SQLite's writer lock must not wait on xmlsec1
    connection = services.connection_by_public_id(db.session, public_id)
    if flow is None or connection is None or flow.connection_id != connection.id:
        return render_template(
            "sso/sign_in_failed.html",
            message="This sign-in is unknown, expired or was already used "
            "(IdP-initiated sign-in is not supported). Start again.",
        ), 400
    try:
        identity = saml.parse_response(
            connection, request.form.get("SAMLResponse", ""), flow.saml_request_id, now
        )
        if not saml.mark_assertion_used(
            db.session, connection, identity.assertion_id, identity.not_on_or_after
        ):
            raise saml.SamlResponseError("replayed", "This SAML assertion was already used.")
    except saml.SamlResponseError as error:
        db.session.rollback()
        log.info("SAML response refused for connection %s: %s", connection.id, error.code)
        services.park_result(db.session, flow, None, str(error))
    else:
        services.park_result(db.session, flow, identity.email, None)
    return redirect(url_for("sso.saml_finish"), code=303)


@bp.get("/sso/saml/finish")
def saml_finish():
    """Finish a SAML sign-in in the browser that started it (login CSRF protection)."""
    flow = services.collect_result(db.session, session.pop(_FLOW_KEY, None), utcnow())
    if flow is None:
        return render_template("sso/sign_in_failed.html", message=_FLOW_GONE), 400
    connection = db.session.get(SsoConnection, flow.connection_id)
    return _finish(flow, connection, flow.result_email, flow.result_error)
