"""Account settings (SPEC F13): /enterprise/settings, the invite controls. Owners change
them; co-owners see them read-only (403 on save, as for the team rules and the
deprovisioning policy, which ask no passphrase either: none of them reveals a secret)."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_login import current_user

from blueprints.common.auth import admin_required, current_membership
from blueprints.common.extensions import db
from blueprints.common.htmx import is_htmx, render_fragment
from blueprints.domains import policy
from blueprints.settings import services
from blueprints.settings.forms import InviteControlsForm, ScimOnlyForm
from models import Account, utcnow

bp = Blueprint("settings", __name__, url_prefix="/enterprise/settings")


def _account() -> Account:
    return db.session.get(Account, current_membership().account_id)


def _context(account: Account, form: InviteControlsForm | None = None, notice=None) -> dict:
    if form is None:
        form = InviteControlsForm(
            formdata=None,
            policy=account.invite_policy,
            domains="\n".join((account.invite_domains or "").split()),
        )
    return {
        "account": account,
        "invite_form": form,
        "can_edit_invites": current_membership().role == "owner",
        "invite_notice": notice,
        "labels": policy.LABELS,
        "listed": (account.invite_domains or "").split(),
        "max_domains": policy.MAX_DOMAINS,
        "scim_only_form": ScimOnlyForm(formdata=None),
        "scim_only_notice": None,
    }


def _panel(account: Account, status: int = 200, **extra):
    """The invite controls panel for htmx; the whole page for a plain form post."""
    if is_htmx():
        return render_fragment(
            "settings/_invite_controls.html", status, **_context(account, **extra)
        )
    return render_template("settings/index.html", **_context(account, **extra)), status


@bp.get("")
@admin_required
def index():
    """Account settings: the invite controls."""
    return render_template("settings/index.html", **_context(_account()))


@bp.post("/invite-controls")
@admin_required
def invite_controls():
    """Save the invite controls (owners only). A bad domain is shown next to the field,
    nothing changed."""
    if current_membership().role != "owner":
        abort(403)
    account = _account()
    form = InviteControlsForm()
    if not form.validate_on_submit():
        return _panel(account, 422, form=form)
    try:
        changed = services.change_invite_controls(
            db.session,
            account,
            current_user,
            form.policy.data,
            form.domains.data,
            utcnow(),
            request.remote_addr,
        )
    except services.SettingsError as error:
        getattr(form, error.field).errors.append(str(error))
        return _panel(account, 422, form=form)
    return _panel(account, notice="Invite controls saved." if changed else "Nothing changed.")


@bp.post("/scim-only")
@admin_required
def scim_only():
    """Turn "SCIM only" on or off (owners only): capture and SSO just-in-time membership
    are off while it is on."""
    if current_membership().role != "owner":
        abort(403)
    account = _account()
    form = ScimOnlyForm()
    if not form.validate_on_submit():
        abort(400)
    changed = services.set_scim_only(
        db.session, account, current_user, form.on.data == "1", request.remote_addr
    )
    notice = (
        ("SCIM only is on." if account.scim_only else "SCIM only is off.")
        if changed
        else ("Nothing changed.")
    )
    context = _context(account) | {"scim_only_notice": notice}
    if is_htmx():
        return render_fragment("settings/_scim_only.html", **context)
    return render_template("settings/index.html", **context)
