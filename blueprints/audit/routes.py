"""The Audit log page (SPEC F10): an account's events, filtered and paged with htmx (the
URL pushed, so a filtered page is bookmarkable and reloads whole), a detail view per
event, the filtered events as CSV or JSON Lines, and the stream to a SIEM."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request, url_for
from flask_login import current_user

from blueprints.audit import services, streaming
from blueprints.audit.forms import StreamForm
from blueprints.audit.services import ACTIONS, Filters
from blueprints.auth.forms import ConfirmPassphraseForm
from blueprints.common import outbound
from blueprints.common.auth import admin_required, current_membership, reauthenticated
from blueprints.common.export import csv_download, jsonl_download
from blueprints.common.extensions import db
from blueprints.common.htmx import render_list, render_page_or_fragment, request_is_partial
from models import utcnow

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


@bp.get("/export.csv")
@admin_required
def export_csv():
    """The filtered events as CSV, streamed (flat memory for a million events)."""
    filters, account_id = Filters.from_args(request.args), _account_id()

    def rows():
        for event, email in services.export_rows(db.session, account_id, filters):
            record = services.record(event, email)
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
            yield services.record(event, email)

    return jsonl_download("audit", records)


# --- Streaming to a SIEM (SPEC F10) ----------------------------------------------------------
# One panel, #stream-panel, swapped by each action. Starting, changing or stopping the
# stream and revealing its secret ask for the passphrase; a test event does not.


def _stream_panel(status: int = 200, **extra):
    stream = extra.pop("stream", None) or streaming.get(db.session, _account_id())
    context = {
        "stream": stream,
        "queued": streaming.queued(db.session, stream) if stream else 0,
        "form": None,
        "mode": None,
        "secret": None,
        "answer": None,
    } | extra
    return render_page_or_fragment(
        "audit/streaming.html", "audit/_stream_panel.html", status, **context
    )


def _stream_or_404():
    stream = streaming.get(db.session, _account_id())
    if stream is None:
        abort(404)
    return stream


@bp.get("/streaming")
@admin_required
def stream():
    """The stream's endpoint and state, or the form that starts one."""
    stream = streaming.get(db.session, _account_id())
    form = None if stream else StreamForm(formdata=None)
    return _stream_panel(stream=stream, form=form)


@bp.get("/streaming/edit")
@admin_required
def edit_stream():
    """The endpoint form, filled with the current URL (Change endpoint)."""
    stream = _stream_or_404()
    form = StreamForm(formdata=None, endpoint_url=stream.endpoint_url)
    return _stream_panel(stream=stream, form=form, mode="edit")


@bp.post("/streaming")
@admin_required
def save_stream():
    """Start streaming (a new secret, shown once) or send the events somewhere else."""
    form = StreamForm()
    existing = streaming.get(db.session, _account_id())
    mode = "edit" if existing else None
    if not reauthenticated(form):
        return _stream_panel(422, stream=existing, form=form, mode=mode)
    try:
        saved, secret = streaming.configure(
            db.session, _account_id(), current_user, form.endpoint_url.data, utcnow()
        )
    except outbound.Refused as refused:
        form.endpoint_url.errors.append(str(refused))
        return _stream_panel(422, stream=existing, form=form, mode=mode)
    return _stream_panel(stream=saved, secret=secret, mode="issued" if secret else "saved")


def _after_passphrase(mode: str, act):
    """GET: the passphrase form in the panel. POST: `act(stream)` once it is right."""
    stream = _stream_or_404()
    form = ConfirmPassphraseForm()
    if request.method == "GET":
        return _stream_panel(stream=stream, form=form, mode=mode)
    if not reauthenticated(form):
        return _stream_panel(422, stream=stream, form=form, mode=mode)
    return act(stream)


@bp.route("/streaming/reveal", methods=["GET", "POST"])
@admin_required
def reveal_stream_secret():
    """Reveal secret: the signing secret shown again, after the passphrase."""

    def reveal(stream):
        secret = streaming.reveal(db.session, stream, current_user)
        return _stream_panel(stream=stream, secret=secret, mode="revealed")

    return _after_passphrase("reveal", reveal)


@bp.route("/streaming/remove", methods=["GET", "POST"])
@admin_required
def remove_stream():
    """Stop streaming: the endpoint, its secret and what was not yet sent are dropped."""

    def remove(stream):
        streaming.remove(db.session, stream, current_user)
        return _stream_panel(stream=None, form=StreamForm(formdata=None), mode="removed")

    return _after_passphrase("remove", remove)


@bp.post("/streaming/test")
@admin_required
def test_stream():
    """Send test event: one signed delivery now, its outcome on the panel."""
    stream = _stream_or_404()
    answer = streaming.send_test(db.session, stream, current_user, utcnow())
    return _stream_panel(stream=stream, answer=answer, mode="tested")


@bp.get("/streaming/panel")
@admin_required
def stream_panel():
    """The panel without a form (Cancel)."""
    return _stream_panel(stream=_stream_or_404())
