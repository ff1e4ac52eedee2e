"""Sign-in, sign-out and passphrase pages (SPEC F1)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from blueprints.auth import services, signup
from blueprints.auth.forms import (
    ChangePassphraseForm,
    ForgotForm,
    NewPassphraseForm,
    SignInForm,
    SignUpForm,
)
from blueprints.common import unit_of_work
from blueprints.common.auth import safe_next
from blueprints.common.extensions import db
from blueprints.common.passphrases import passphrase_problem
from blueprints.domains import capture
from blueprints.sso import services as sso_services
from blueprints.sso.routes import begin_sign_in
from models import utcnow

bp = Blueprint("auth", __name__)

# Endpoints a user who must change an initial passphrase may still reach.
_OPEN_WHILE_CHANGE_REQUIRED = {"auth.change_passphrase", "auth.logout", "static", "healthz"}


@bp.before_app_request
def require_passphrase_change():
    """A user holding an initial passphrase changes it before anything else (SPEC F1),
    unless they signed in through SSO, where the passphrase plays no part. The SCIM API
    has no signed-in user (a bearer token, no session): nothing to check there."""
    if request.blueprint == "scim_api":
        return None
    if (
        current_user.is_authenticated
        and current_user.must_change_passphrase
        and session.get("signed_in_via") != "sso"
        and request.endpoint not in _OPEN_WHILE_CHANGE_REQUIRED
    ):
        return redirect(
            url_for("auth.change_passphrase", next=safe_next(request.full_path.rstrip("?")))
        )
    return None


def _land(next_url: str | None):
    return redirect(safe_next(next_url) or url_for("dashboard.index"))


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Email + passphrase sign-in with lock-out after repeated failures."""
    form = SignInForm(next=request.args.get("next", ""))
    if current_user.is_authenticated and request.method == "GET":
        return _land(form.next.data)
    status = 200
    if form.validate_on_submit():
        # A member of an SSO domain goes to the IdP; owners keep the passphrase (SPEC F3).
        connection = sso_services.connection_for_email(db.session, form.email.data)
        if connection is not None and not (
            form.passphrase.data
            and sso_services.is_break_glass(db.session, connection, form.email.data)
        ):
            return begin_sign_in(connection, form.next.data)
        if not form.passphrase.data:
            form.passphrase.errors.append("Enter your passphrase.")
            return render_template("auth/login.html", form=form), 422
        result = services.sign_in(
            db.session, form.email.data, form.passphrase.data, request.remote_addr, utcnow()
        )
        if result.user is not None:
            session.clear()
            login_user(result.user)
            if result.user.must_change_passphrase:
                return redirect(url_for("auth.change_passphrase", next=safe_next(form.next.data)))
            return _land(form.next.data)
        if result.locked_until:
            minutes = max(1, round((result.locked_until - utcnow()).total_seconds() / 60))
            form.form_errors.append(
                f"Too many failed sign-ins. Try again in {minutes} minute"
                f"{'s' if minutes != 1 else ''}, or reset your passphrase."
            )
            status = 429
        else:
            if signup.pending(db.session, form.email.data, form.passphrase.data, utcnow()):
                form.form_errors.append(
                    "Confirm your email address first: open the link we emailed you when "
                    "you signed up."
                )
            else:
                form.form_errors.append(result.error)
            status = 401
            unit_of_work.keep_on_error()  # the failure counts toward the lock-out
    elif request.method == "POST":
        status = 422
    return render_template("auth/login.html", form=form), status


@bp.route("/signup", methods=["GET", "POST"])
def sign_up():
    """Self sign-up (SPEC F13): the same "check your email" answer whether or not the
    address has an account; a locked domain is refused next to the email field."""
    if current_user.is_authenticated and request.method == "GET":
        return _land(None)
    form = SignUpForm()
    if not form.validate_on_submit():
        return render_template("auth/signup.html", form=form), 422 if form.errors else 200
    now = utcnow()
    until = signup.throttled(db.session, request.remote_addr, now)
    if until:
        minutes = max(1, round((until - now).total_seconds() / 60))
        form.form_errors.append(f"Too many sign-ups from your address. Try again in {minutes} min.")
        return render_template("auth/signup.html", form=form), 429
    if problem := passphrase_problem(form.passphrase.data, form.email.data):
        form.passphrase.errors.append(problem)
        return render_template("auth/signup.html", form=form), 422
    try:
        signup.start(db.session, form.email.data, form.passphrase.data, request.remote_addr, now)
    except signup.SignupRefused as refused:
        form.email.errors.append(str(refused))
        return render_template("auth/signup.html", form=form), 422
    return render_template("auth/signup_sent.html", email=form.email.data.strip())


@bp.route("/signup/confirm/<token>", methods=["GET", "POST"])
def confirm_signup(token: str):
    """Open the emailed link: GET asks for a click (mail scanners follow links), POST
    makes the person, who joins the account capturing their domain if there is one."""
    pending = signup.for_token(db.session, token, utcnow())
    if pending is None:
        return render_template("auth/signup_invalid.html"), 410
    if request.method == "GET":
        return render_template("auth/signup_confirm.html", email=pending.email, token=token)
    done = signup.confirm(db.session, pending, utcnow(), request.remote_addr)
    if done.problem == "spent":
        return render_template("auth/signup_invalid.html"), 410
    if done.problem == "exists":
        flash("This address already has an account: sign in, or reset your passphrase.", "info")
        return redirect(url_for("auth.login"))
    if done.problem:
        return render_template("auth/signup_refused.html", message=done.problem), 403
    if done.refused_by is not None:
        unit_of_work.keep_on_error()  # the person, and the refusal the owners are told of
        return render_template(
            "auth/signup_refused.html", message=capture.no_seat(done.refused_by.name)
        ), 403
    session.clear()
    login_user(done.user)
    if done.member is not None:
        flash(f"Your email is confirmed. You joined {done.member.account.name}.", "success")
    else:
        flash("Your email is confirmed. Welcome!", "success")
    return redirect(url_for("dashboard.index"))


@bp.route("/logout", methods=["GET", "POST"])
def logout():
    """POST signs out; GET asks first, so a link elsewhere cannot sign anyone out."""
    if request.method == "POST":
        logout_user()
        session.clear()
        flash("You are signed out.", "info")
        return redirect(url_for("auth.login"))
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    return render_template("auth/logout.html")


@bp.route("/passphrase/forgot", methods=["GET", "POST"])
def forgot_passphrase():
    """Email a single-use reset link; the answer never tells whether the address exists."""
    form = ForgotForm()
    if form.validate_on_submit():
        services.start_reset(db.session, form.email.data, utcnow())
        return render_template("auth/forgot_sent.html", email=form.email.data)
    return render_template("auth/forgot.html", form=form), 422 if form.errors else 200


@bp.route("/passphrase/reset/<token>", methods=["GET", "POST"])
def reset_passphrase(token: str):
    """Set a new passphrase from an emailed link; ends the user's other sessions."""
    reset = services.reset_for_token(db.session, token, utcnow())
    if reset is None:
        return render_template("auth/reset_invalid.html"), 410
    form = NewPassphraseForm()
    if form.validate_on_submit():
        problem = passphrase_problem(form.passphrase.data, reset.user.email)
        if problem is None:
            user = services.complete_reset(db.session, reset, form.passphrase.data, utcnow())
            if user is None:
                return render_template("auth/reset_invalid.html"), 410
            logout_user()
            session.clear()
            login_user(user)
            flash("Your passphrase is changed. Other sessions have been signed out.", "success")
            return redirect(url_for("dashboard.index"))
        form.passphrase.errors.append(problem)
    status = 422 if form.errors else 200
    return render_template("auth/reset.html", form=form, token=token), status


@bp.route("/passphrase/change", methods=["GET", "POST"])
@login_required
def change_passphrase():
    """Change the passphrase (required after an initial one); ends other sessions."""
    form = ChangePassphraseForm()
    if form.validate_on_submit():
        problem = services.confirm_passphrase(
            db.session, current_user, form.current.data, request.remote_addr, utcnow()
        )
        if problem:
            form.current.errors.append(problem)
            unit_of_work.keep_on_error()  # a wrong passphrase counts toward the lock-out
        elif form.current.data == form.passphrase.data:
            form.passphrase.errors.append("Choose a passphrase different from the current one.")
        elif problem := passphrase_problem(form.passphrase.data, current_user.email):
            form.passphrase.errors.append(problem)
        else:
            services.set_passphrase(db.session, current_user, form.passphrase.data)
            services.audit.record_for_person(
                db.session,
                "user.passphrase_changed",
                current_user.id,
                remote_addr=request.remote_addr,
            )
            # Re-issue this session under the new generation (the user, not the proxy).
            login_user(current_user._get_current_object())
            flash("Your passphrase is changed. Other sessions have been signed out.", "success")
            return _land(request.args.get("next"))
    status = 422 if form.errors else 200
    return render_template("auth/change.html", form=form), status
