"""The page an invitation email links to: /invitations/<token>."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user
from flask_wtf import FlaskForm

from blueprints.auth.forms import NewPassphraseForm
from blueprints.auth.services import email_key, find_user, set_passphrase
from blueprints.common.extensions import db
from blueprints.common.passphrases import passphrase_problem
from blueprints.domains import policy
from blueprints.invitations import services
from models import User

bp = Blueprint("invitations", __name__, url_prefix="/invitations")


@bp.route("/<token>", methods=["GET", "POST"])
def accept(token: str):
    """Signed in as the invited address: confirm. Not signed in: sign in first if the
    person has an account here, else choose a passphrase (which creates it)."""
    member = services.find(db.session, token)
    if member is None:
        return render_template("invitations/invalid.html"), 410
    # Sent before another account locked the domain (SPEC F13): it no longer opens.
    decision = policy.may_join_elsewhere(db.session, member.account_id, member.email or "")
    if not decision:
        return render_template("auth/signup_refused.html", message=decision.reason), 403
    context = {"member": member, "account": member.account, "token": token}
    if current_user.is_authenticated:
        if not services.is_for(member, current_user):
            return render_template("invitations/accept.html", mode="other_user", **context), 403
        form = FlaskForm()
        if form.validate_on_submit():
            services.accept(db.session, member, current_user, request.remote_addr)
            flash(f"You joined {member.account.name}.", "success")
            return redirect(url_for("dashboard.index"))
        return render_template("invitations/accept.html", mode="confirm", form=form, **context)
    person = find_user(db.session, member.email)
    if person is not None and person.passphrase_hash:
        return render_template("invitations/accept.html", mode="sign_in", **context)
    form = NewPassphraseForm()
    if form.validate_on_submit():
        problem = passphrase_problem(form.passphrase.data, member.email)
        if problem is None:
            if person is None:
                person = User(
                    email=member.email, email_key=email_key(member.email), session_generation=1
                )
                db.session.add(person)
            set_passphrase(db.session, person, form.passphrase.data)
            services.accept(db.session, member, person, request.remote_addr)
            login_user(person)
            flash(f"You joined {member.account.name}.", "success")
            return redirect(url_for("dashboard.index"))
        form.passphrase.errors.append(problem)
    status = 422 if form.errors else 200
    return render_template("invitations/accept.html", mode="new", form=form, **context), status
