"""The Audit log page (SPEC F10): an account's events, filtered and paged with htmx (the
URL pushed, so a filtered page is bookmarkable and reloads whole), a detail view per
event, and the filtered events as CSV or JSON Lines."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request, url_for

from blueprints.audit import services
from blueprints.audit.services import ACTIONS, Filters
from blueprints.common.auth import admin_required, current_membership
from blueprints.common.export import csv_download, jsonl_download
from blueprints.common.extensions import db
from blueprints.common.htmx import render_list, request_is_partial

bp = Blueprint("audit", __name__, url_prefix="/enterprise/audit")


def _account_id() -> int:
    return current_membership().account_id


@bp.get("")
@admin_required
def index():
    """The newest events, or the page the filters and cursor ask for."""
    filters = Filters.from_args(request.args)
    result = services.page(db.session, _account_id(), filters)
    status = 422 if filters.errors else 200
    return render_list(
        "audit/index.html",
        "audit/_results.html",
        status,
        filters=filters,
        result=result,
        actions=ACTIONS,
        label=services.label,
        actor_name=services.actor_name,
        partial=request_is_partial(),
        list_url=lambda **changes: url_for("audit.index", **filters.args(**changes)),
    )


@bp.get("/<id:event_id>")
@admin_required
def event(event_id: int):
    """One event: who, what, when, from where, and what it changed."""
    found = services.get(db.session, _account_id(), event_id)
    if found is None:
        abort(404)
    shown, email = found
    actor = services.actor_name(shown, {shown.actor_user_id: email} if email else {})
    return render_template(
        "audit/event.html", event=shown, actor=actor, label=services.label(shown.action)
    )


def _record(event, email) -> dict:
    return {
        "id": event.id,
        "time": event.created_at.isoformat().replace("+00:00", "Z"),
        "actor": email or services.actor_name(event, {}),
        "action": event.action,
        "resource": event.target,
        "address": event.remote_addr,
        "detail": event.detail,
    }


@bp.get("/export.csv")
@admin_required
def export_csv():
    """The filtered events as CSV, streamed (flat memory for a million events)."""
    filters, account_id = Filters.from_args(request.args), _account_id()

    def rows():
        for event, email in services.export_rows(db.session, account_id, filters):
            record = _record(event, email)
            record["detail"] = services.detail_text(event.detail)
            yield record.values()

    header = ["id", "time", "actor", "action", "resource", "address", "detail"]
    return csv_download("audit", header, rows)


@bp.get("/export.jsonl")
@admin_required
def export_jsonl():
    """The filtered events as JSON Lines, streamed."""
    filters, account_id = Filters.from_args(request.args), _account_id()

    def records():
        for event, email in services.export_rows(db.session, account_id, filters):
            yield _record(event, email)

    return jsonl_download("audit", records)
