"""The SCIM page (SPEC F4): the seed's four-step checklist. Enabling SCIM is issue #4."""

from flask import Blueprint, render_template
from sqlalchemy import exists, select

from app import db
from blueprints.common.auth import admin_required, current_membership
from models import Domain, SsoConnection

bp = Blueprint("scim_settings", __name__, url_prefix="/enterprise/scim")


@bp.get("")
@admin_required
def index():
    """Which of the seed's prerequisites hold for this account."""
    account_id = current_membership().account_id
    domain_verified = db.session.scalar(
        select(exists().where(Domain.account_id == account_id, Domain.status == "verified"))
    )
    sso_enabled = db.session.scalar(
        select(exists().where(SsoConnection.account_id == account_id, SsoConnection.enabled))
    )
    return render_template(
        "scim_settings/index.html", domain_verified=domain_verified, sso_enabled=sso_enabled
    )
