"""The signed-in home page."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import login_required

from app import db
from blueprints.common.auth import current_membership
from blueprints.dashboard.services import account_summary

bp = Blueprint("dashboard", __name__)


@bp.get("/")
@login_required
def index():
    """The account at a glance; members without an admin role see only their own."""
    membership = current_membership()
    summary = account_summary(db.session, membership.account) if membership else None
    return render_template("dashboard/index.html", membership=membership, summary=summary)
