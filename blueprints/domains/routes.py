"""The Domains page and its HTMX fragments (SPEC F2)."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_login import current_user

from blueprints.auth.forms import ConfirmPassphraseForm
from blueprints.common.auth import admin_required, current_membership, reauthenticated
from blueprints.common.export import csv_download
from blueprints.common.extensions import db
from blueprints.common.htmx import (
    is_htmx,
    render_fragment,
    render_page_or_fragment,
    request_is_partial,
)
from blueprints.domains import services, unclaimed
from blueprints.domains.forms import AddDomainForm
from models import Account, utcnow

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


def _verified_or_404(domain_id: int):
    """The account's domain `domain_id` if verified (its switches, lists and exports), or
    404."""
    domain = _domain_or_404(domain_id)
    if domain.status != "verified":
        abort(404)
    return domain


def _is_owner() -> bool:
    return current_membership().role == "owner"


def _row_context() -> dict:
    """What every domain row needs besides the domain: who may flip its switches, and
    whether the account is SCIM only (capture is off then; the row says so)."""
    account = db.session.get(Account, _account_id())
    return {"can_edit_controls": _is_owner(), "scim_only": account.scim_only}


def _row(domain, status: int = 200):
    return render_fragment("domains/_domain_row.html", status, domain=domain, **_row_context())


def _panel(form: AddDomainForm, status: int = 200):
    domains = services.list_domains(db.session, _account_id())
    return render_page_or_fragment(
        "domains/index.html",
        "domains/_domains_panel.html",
        status,
        form=form,
        domains=domains,
        **_row_context(),
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
    return _row(_domain_or_404(domain_id))


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
    return _row(domain)


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


@bp.route("/<id:domain_id>/<any(capture, lock):control>", methods=["GET", "POST"])
@admin_required
def control(domain_id: int, control: str):
    """Turn a verified domain's capture or lock on or off (SPEC F13): owners only (co-owners
    see the switches read-only), after the passphrase."""
    if not _is_owner():
        abort(403)
    domain = _verified_or_404(domain_id)
    form = ConfirmPassphraseForm()
    on = (request.form if request.method == "POST" else request.args).get("on") == "1"
    if request.method == "POST" and reauthenticated(form):
        services.set_control(db.session, domain, control, on, current_user.id, request.remote_addr)
        if not is_htmx():
            return redirect(url_for("domains.index"))
        return _row(domain)
    status = 422 if form.errors else 200
    return render_page_or_fragment(
        "domains/control.html",
        "domains/_control_form.html",
        status,
        domain=domain,
        form=form,
        control=control,
        label=services.CONTROLS[control][2],
        on=on,
    )


@bp.get("/<id:domain_id>/outside")
@admin_required
def outside(domain_id: int):
    """A locked domain's people who are members of other accounts (count, first 50)."""
    domain = _verified_or_404(domain_id)
    count, rows = services.outside_memberships(db.session, domain)
    return render_template(
        "domains/outside.html", domain=domain, count=count, rows=rows, shown=len(rows)
    )


# --- unclaimed accounts (SPEC F13) -------------------------------------------------------------


def _unclaimed_context(domain, cursor: unclaimed.Cursor) -> dict:
    verified = domain.status == "verified"
    return {
        "domain": domain,
        "verified": verified,
        "cursor": cursor,
        "result": unclaimed.list_unclaimed(db.session, domain.account_id, domain.name, cursor)
        if verified
        else None,
        "summary": None,
        "partial": request_is_partial(),
        "list_url": lambda **args: url_for("domains.unclaimed_list", domain_id=domain.id, **args),
    }


def _cursor_args(cursor: unclaimed.Cursor) -> dict:
    args = {"q": cursor.q} if cursor.q else {}
    if cursor.last:
        return args | {"last": "1"}
    if cursor.after:
        return args | {"after": cursor.after}
    return args | ({"before": cursor.before} if cursor.before else {})


@bp.get("/<id:domain_id>/unclaimed")
@admin_required
def unclaimed_list(domain_id: int):
    """The domain's people who have an identity here but no membership: search, pages."""
    domain = _domain_or_404(domain_id)
    cursor = unclaimed.Cursor.from_args(request.args)
    response = render_page_or_fragment(
        "domains/unclaimed.html",
        "domains/_unclaimed_results.html",
        **_unclaimed_context(domain, cursor),
    )
    if request_is_partial():  # the search form sends an empty q: push the canonical URL
        response.headers["HX-Push-Url"] = url_for(
            "domains.unclaimed_list", domain_id=domain.id, **_cursor_args(cursor)
        )
    return response


@bp.get("/<id:domain_id>/unclaimed.csv")
@admin_required
def unclaimed_export(domain_id: int):
    """The whole list (under the search) as CSV, streamed in keyset batches."""
    domain = _verified_or_404(domain_id)
    account_id, name = domain.account_id, domain.name
    q = unclaimed.Cursor.from_args(request.args).q

    def rows():
        for person in unclaimed.export_unclaimed(db.session, account_id, name, q):
            yield (
                person.email,
                person.name,
                _stamp(person.created_at),
                _stamp(person.last_sign_in_at),
            )

    header = ["email", "name", "signed_up", "last_sign_in"]
    return csv_download(f"unclaimed-{name}", header, rows)


def _stamp(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def _ids(values: list[str]) -> list[int]:
    """The person ids of a form (checkboxes, or one row's button); others are dropped."""
    return [int(v) for v in values if v.isascii() and v.isdigit() and len(v) <= 10]


@bp.post("/<id:domain_id>/unclaimed/invite")
@admin_required
def unclaimed_invite(domain_id: int):
    """Invite one person, the ones ticked, or everyone on the page; the list comes back
    without them, with a summary of what happened."""
    domain = _verified_or_404(domain_id)
    cursor = unclaimed.Cursor.from_args(request.form)
    if request.form.get("one"):
        ids = _ids([request.form["one"]])
    elif request.form.get("all") == "1":
        page = unclaimed.list_unclaimed(db.session, domain.account_id, domain.name, cursor)
        ids = [person.id for person in page.people]
    else:
        ids = _ids(request.form.getlist("id"))
    status, summary = 200, None
    try:
        summary = unclaimed.invite_unclaimed(
            db.session,
            domain.account_id,
            domain.name,
            current_membership(),
            ids,
            utcnow(),
            request.remote_addr,
        )
    except unclaimed.NothingChosen as problem:
        status, summary = 422, str(problem)
    context = _unclaimed_context(domain, cursor) | {"summary": summary}
    return render_page_or_fragment(
        "domains/unclaimed.html", "domains/_unclaimed_results.html", status, **context
    )
