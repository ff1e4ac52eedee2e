"""The signed-in home page."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from flask_login import login_required

from blueprints.common.auth import current_membership
from blueprints.common.extensions import db
from blueprints.dashboard.services import account_summary
from blueprints.members.services import teams_of

bp = Blueprint("dashboard", __name__)


@bp.get("/")
@login_required
def index():
    """The account at a glance; members without an admin role see only their own."""
    membership = current_membership()
    if membership is not None and not membership.is_admin:
        return redirect(url_for("dashboard.account"))
    summary = account_summary(db.session, membership.account) if membership else None
    return render_template("dashboard/index.html", membership=membership, summary=summary)


@bp.get("/account")
@login_required
def account():
    """A member's own page (SPEC F6): their email, teams and the passphrase change; what
    members who are not owners see instead of the enterprise pages."""
    membership = current_membership()
    teams = teams_of(db.session, [membership.id]).get(membership.id, []) if membership else []
    return render_template("dashboard/account.html", membership=membership, teams=teams)
