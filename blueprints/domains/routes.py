"""The Domains page and its HTMX fragments (SPEC F2)."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, request, url_for
from flask_login import current_user

from blueprints.auth.forms import ConfirmPassphraseForm
from blueprints.common.auth import admin_required, current_membership, reauthenticated
from blueprints.common.extensions import db
from blueprints.common.htmx import is_htmx, render_fragment, render_page_or_fragment
from blueprints.domains import services
from blueprints.domains.forms import AddDomainForm
from models import utcnow

bp = Blueprint("domains", __name__, url_prefix="/enterprise/domains")


@bp.app_template_filter("idna_display")
def idna_display(name: str) -> str:
    return services.display_name(name)


@bp.app_template_filter("record_name")
def record_name(domain) -> str:
    return services.record_name(domain)


@bp.app_template_filter("record_value")
def record_value(domain) -> str:
    return services.record_value(domain)


@bp.app_template_filter("failure_text")
def failure_text(reason: str | None) -> str:
    return services.REASONS.get(reason or "", "Verification failed.")


def _account_id() -> int:
    return current_membership().account_id


def _domain_or_404(domain_id: int):
    domain = services.get_domain(db.session, _account_id(), domain_id)
    if domain is None:
        abort(404)
    return domain


def _panel(form: AddDomainForm, status: int = 200):
    domains = services.list_domains(db.session, _account_id())
    return render_page_or_fragment(
        "domains/index.html", "domains/_domains_panel.html", status, form=form, domains=domains
    )


@bp.get("")
@admin_required
def index():
    """The account's domains with the TXT record each one needs."""
    return _panel(AddDomainForm(formdata=None))


@bp.post("")
@admin_required
def add():
    """Add a domain; errors come back next to the field, and no row is created."""
    form = AddDomainForm()
    if form.validate_on_submit():
        try:
            services.add_domain(
                db.session, _account_id(), form.name.data, current_user.id, utcnow()
            )
        except services.DomainError as error:
            form.name.errors.append(str(error))
        else:
            if not is_htmx():
                return redirect(url_for("domains.index"))
            return _panel(AddDomainForm(formdata=None))
    return _panel(form, 422)


@bp.get("/<id:domain_id>")
@admin_required
def domain_row(domain_id: int):
    """One row (used by Cancel on the remove form)."""
    return render_fragment("domains/_domain_row.html", domain=_domain_or_404(domain_id))


@bp.post("/<id:domain_id>/verify")
@admin_required
def verify(domain_id: int):
    """Look the TXT record up now; the row comes back verified or failed with the reason."""
    domain = services.verify_domain(
        db.session,
        _domain_or_404(domain_id),
        current_app.config["DNS_NAMESERVERS"],
        current_app.config["DNS_TIMEOUT"],
        current_user.id,
        utcnow(),
    )
    if not is_htmx():
        return redirect(url_for("domains.index"))
    return render_fragment("domains/_domain_row.html", domain=domain)


@bp.route("/<id:domain_id>/remove", methods=["GET", "POST"])
@admin_required
def remove(domain_id: int):
    """Removing a domain asks for the passphrase again (SPEC F1)."""
    domain = _domain_or_404(domain_id)
    form = ConfirmPassphraseForm()
    if request.method == "POST" and reauthenticated(form):
        services.remove_domain(db.session, domain, current_user.id)
        if not is_htmx():
            return redirect(url_for("domains.index"))
        # The row's outerHTML swap with nothing removes it; the last one leaves the
        # table's empty state in its place.
        if services.list_domains(db.session, _account_id()):
            return "", 200
        return render_fragment("domains/_no_domains.html")
    status = 422 if form.errors else 200
    return render_page_or_fragment(
        "domains/remove.html", "domains/_remove_form.html", status, domain=domain, form=form
    )
