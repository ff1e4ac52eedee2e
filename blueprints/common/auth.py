"""Flask-Login wiring, the owner guard and the safe `next` redirect (SPEC F1, F7)."""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlsplit

from flask import abort, g, make_response, redirect, request, session, url_for
from flask_login import current_user, login_required, user_logged_in

from blueprints.common.extensions import db, login_manager
from models import Membership, User, utcnow


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """Session ids are "<id>:<generation>"; an old generation is a signed-out session."""
    uid, _, generation = user_id.partition(":")
    if not (uid.isdigit() and generation.isdigit()):
        return None
    user = db.session.get(User, int(uid))
    if user is None or user.session_generation != int(generation):
        return None
    return user


@user_logged_in.connect
def remember_sign_in(sender, user: User, **extra) -> None:
    """Every way in (passphrase, SSO, reset, invitation) ends in login_user: the Members
    page's "last sign-in" is stamped here, and saved with the sign-in request's work."""
    user.last_sign_in_at = utcnow()


def reauthenticated(form) -> bool:
    """The passphrase re-authentication every sensitive action goes through (SPEC F1):
    True when `form` (a ConfirmPassphraseForm) was posted valid with the signed-in
    user's passphrase. Otherwise the error is on its passphrase field, and a wrong
    passphrase counts toward the sign-in lock-out, kept although the answer is an error."""
    if not form.validate_on_submit():
        return False
    from blueprints.auth.services import confirm_passphrase
    from blueprints.common import unit_of_work

    problem = confirm_passphrase(
        db.session, current_user, form.passphrase.data, request.remote_addr, utcnow()
    )
    if problem is None:
        return True
    form.passphrase.errors.append(problem)
    unit_of_work.keep_on_error()
    return False


@login_manager.unauthorized_handler
def unauthorized():
    """Full pages go to the sign-in page; htmx requests get 401 + HX-Redirect (STYLE §3)."""
    if request.headers.get("HX-Request") == "true":
        current = urlsplit(request.headers.get("HX-Current-URL", ""))
        target = url_for("auth.login", next=safe_next(current.path) or None)
        response = make_response("Your session has ended. Please sign in again.", 401)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(url_for("auth.login", next=safe_next(request.full_path.rstrip("?"))))


def safe_next(target: str | None) -> str | None:
    """`target` if it is a path on this site (relative, no scheme or host), else None."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 32 or ord(c) == 127 for c in target):
        return None
    return target


def current_membership() -> Membership | None:
    """The signed-in user's membership for this request (cached on `g`)."""
    if not current_user.is_authenticated:
        return None
    if "membership" not in g:
        from blueprints.auth.services import current_membership as pick

        g.membership = pick(db.session, current_user, session.get("account_id"))
    return g.membership


def admin_required(view):
    """Owners and co-owners only; others get 403 (SPEC F1)."""

    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        membership = current_membership()
        if membership is None or not membership.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped
