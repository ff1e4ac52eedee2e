"""The SSO page (SPEC F3). Configuring a connection is issue #3; this shows the state."""

from flask import Blueprint, render_template

from blueprints.common.auth import admin_required

bp = Blueprint("sso", __name__, url_prefix="/enterprise/sso")


@bp.get("")
@admin_required
def index():
    """The account's SSO connection (none can be configured yet)."""
    return render_template("sso/index.html")
