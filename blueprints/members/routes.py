"""The Members page (SPEC F6): members, teams, the seat meter, member actions and the CSV
export; and every member's own account page.

The list is one URL (`/enterprise/members?q=…&source=…&status=…&team=…&sort=…&page=…`):
htmx asks it for the results fragment and pushes the URL, so a filtered page can be
bookmarked and reloads as the full page. Member actions ask for the passphrase in the
member's row and answer with the row as it now is.
"""

from __future__ import annotations

from functools import partial

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from blueprints.auth.forms import ConfirmPassphraseForm
from blueprints.common.auth import admin_required, current_membership, reauthenticated
from blueprints.common.export import csv_download
from blueprints.common.extensions import db
from blueprints.common.htmx import (
    is_htmx,
    render_fragment,
    render_list,
    render_page_or_fragment,
    request_is_partial,
)
from blueprints.invitations import services as invitations
from blueprints.members import rules, services
from blueprints.members.forms import (
    AddRuleForm,
    ChangeRuleForm,
    InviteForm,
    MoveRuleForm,
    RemoveRuleForm,
)
from blueprints.members.services import ActionRefused, Filters
from models import Account, utcnow

bp = Blueprint("members", __name__, url_prefix="/enterprise/members")

LABELS = {
    "deactivate": "Deactivate",
    "reactivate": "Reactivate",
    "remove": "Remove",
    "make-co-owner": "Make co-owner",
    "revoke-co-owner": "Take back co-owner",
    "remove-now": "Remove now",
    "keep": "Keep",
}


# What a row shows when no action is under way (the templates read every name).
ROW_DEFAULTS = {"confirm": None, "form": None, "problem": None, "message": None}


def _actor():
    return current_membership()


def _account_id() -> int:
    return _actor().account_id


def _scim_enabled() -> bool:
    """Whether the IdP manages the account's SCIM members: asked once per request."""
    if "members_scim_enabled" not in g:
        g.members_scim_enabled = services.scim_on(db.session, _account_id())
    return g.members_scim_enabled


def _ruled() -> bool:
    """Whether team rules decide the SCIM members' roles: asked once per request."""
    if "members_ruled" not in g:
        g.members_ruled = rules.has_rules(db.session, _account_id())
    return g.members_ruled


def _actions():
    """The row buttons' function, knowing whether team rules are on."""
    return partial(services.actions, ruled=_ruled())


def _list_context(filters: Filters, team=None) -> dict:
    session = db.session
    account = session.get(Account, _account_id())
    endpoint, fixed = ("members.team", {"team_id": team.id}) if team else ("members.index", {})
    return {
        "result": services.list_members(session, account.id, filters, _scim_enabled()),
        "filters": filters,
        "team_choices": services.team_choices(session, account.id),
        "partial": request_is_partial(),
        "actions": _actions(),
        "meter": services.seat_meter(account),
        "scim_enabled": _scim_enabled(),
        "team": team,
        "actor": _actor(),
        "labels": LABELS,
        "oob": False,
        "invite_form": InviteForm(formdata=None),
        "invite_result": None,
        **ROW_DEFAULTS,
        "list_url": lambda **changes: url_for(endpoint, **fixed, **_args(filters, team, changes)),
    }


def _args(filters: Filters, team, changes: dict) -> dict:
    """The list's URL parameters; a team's page has the team in its path already."""
    args = filters.args(**changes)
    if team is not None:
        args.pop("team", None)
    return args


@bp.get("")
@admin_required
def index():
    """Every member: search, filters, sort and pages (SPEC F6)."""
    filters = Filters.from_args(request.args)
    return render_list("members/index.html", "members/_results.html", **_list_context(filters))


# --- invitations (SPEC F13) -------------------------------------------------------------------


def _invite_problem(emails: list[str]) -> str | None:
    """What is wrong with the addresses typed, for the field; None when they can go."""
    if not emails:
        return "Enter one or more email addresses."
    if len(emails) > invitations.MAX_INVITES:
        return (
            f"Invite at most {invitations.MAX_INVITES} people at a time "
            f"(you entered {len(emails):,})."
        )
    bad = [email for email in emails if not invitations.valid_email(email)]
    if bad:
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        return f"Not email addresses: {shown}. Correct or remove them; nobody was invited."
    return None


def _invite_answer(form: InviteForm, result=None, status: int = 200):
    """The invite panel (and, after invitations, the seat meter out of band) for htmx;
    the whole page for a plain form post."""
    account = db.session.get(Account, _account_id())
    db.session.refresh(account)  # seats taken with Core UPDATEs
    context = {
        "invite_form": form,
        "invite_result": result,
        "meter": services.seat_meter(account),
    }
    if is_htmx():
        response = render_fragment("members/_invite_panel.html", status, oob=True, **context)
        if result is not None and result.invited:
            response.headers["HX-Trigger"] = "members-changed"  # the list shows them
        return response
    filters = Filters.from_args({})
    return render_template("members/index.html", **(_list_context(filters) | context)), status


@bp.post("/invite")
@admin_required
def invite():
    """Invite people by email (owners and co-owners): each one allowed by the invite
    controls and not a member yet gets an invitation; the panel says what happened to
    every address. Any address that isn't one is shown next to the field, nobody invited."""
    form = InviteForm()
    emails = invitations.split_emails(form.emails.data) if form.validate_on_submit() else []
    problem = None if form.errors else _invite_problem(emails)
    if form.errors or problem:
        if problem:
            form.emails.errors.append(problem)
        return _invite_answer(form, status=422)
    result = invitations.invite(
        db.session, _account_id(), _actor(), emails, utcnow(), request.remote_addr
    )
    return _invite_answer(InviteForm(formdata=None), result)


@bp.get("/teams")
@admin_required
def teams():
    """The account's teams, and the team rules (SPEC F12: owners change them)."""
    return render_template(
        "members/teams.html",
        teams=services.list_teams(db.session, _account_id()),
        scim_enabled=_scim_enabled(),
        **_rules_context(),
    )


# --- team rules (SPEC F12) --------------------------------------------------------------------


def _owner_only() -> None:
    """Team rules are the owners' (not co-owners'): others get 403, as for the owner-only
    member actions."""
    if _actor().role != "owner":
        abort(403)


def _add_form(bound: bool = False) -> AddRuleForm:
    """The Add rule form: bound to the request's form data (to check it), or empty."""
    form = AddRuleForm() if bound else AddRuleForm(formdata=None)
    form.team.choices = [
        (str(team_id), name) for team_id, name in rules.team_choices(db.session, _account_id())
    ]
    return form


def _change_form(rule, formdata=None) -> ChangeRuleForm:
    return ChangeRuleForm(
        formdata=formdata,
        prefix=f"rule-{rule.id}",
        role=rule.role,
        licence="licensed" if rule.licensed else "none",
    )


def _rules_context(add_form=None, changed=None, problem=None) -> dict:
    """What the rules panel shows; `changed` is a (rule id, form) whose errors it shows."""
    session = db.session
    listed = rules.list_rules(session, _account_id())
    forms = {rule.id: _change_form(rule) for rule in listed}
    if changed is not None:
        forms[changed[0]] = changed[1]
    return {
        "rules": listed,
        "rule_forms": forms,
        "add_form": add_form or _add_form(),
        "progress": rules.progress(session, _account_id()),
        "can_edit_rules": _actor().role == "owner",
        "rule_problem": problem,
    }


def _rules_panel(status: int = 200, **context):
    return render_fragment("members/_team_rules.html", status, **_rules_context(**context))


def _rule_or_404(rule_id: int):
    rule = rules.get_rule(db.session, _account_id(), rule_id)
    if rule is None:
        abort(404)
    return rule


@bp.get("/teams/rules")
@admin_required
def team_rules():
    """The rules panel again (Cancel, and after a change elsewhere)."""
    return _rules_panel()


@bp.get("/teams/rules/progress")
@admin_required
def rule_progress():
    """Where re-applying the rules stands; htmx polls it while it runs."""
    return render_fragment(
        "members/_rule_progress.html", progress=rules.progress(db.session, _account_id())
    )


def _accepted(form, change) -> bool:
    """Whether `form` is valid and `change()` (a rules service call) accepted it; a
    refusal goes next to the field it names, nothing changed."""
    if not form.validate():
        return False
    try:
        change()
    except rules.RuleRefused as refused:
        db.session.rollback()
        getattr(form, refused.field).errors.append(str(refused))
        return False
    return True


@bp.post("/teams/rules")
@admin_required
def add_rule():
    """A new rule, last in the list; the job applies it to everyone."""
    _owner_only()
    form = _add_form(bound=True)
    if _accepted(
        form,
        lambda: rules.add_rule(
            db.session,
            _actor(),
            int(form.team.data),
            form.role.data,
            form.licensed,
            utcnow(),
            request.remote_addr,
        ),
    ):
        return _rules_panel()
    return _rules_panel(422, add_form=form)


@bp.post("/teams/rules/<id:rule_id>")
@admin_required
def change_rule(rule_id: int):
    """A rule's role and licence use."""
    _owner_only()
    rule = _rule_or_404(rule_id)
    form = _change_form(rule, request.form)
    if _accepted(
        form,
        lambda: rules.change_rule(
            db.session, _actor(), rule, form.role.data, form.licensed, utcnow(), request.remote_addr
        ),
    ):
        return _rules_panel()
    return _rules_panel(422, changed=(rule_id, form))


@bp.post("/teams/rules/<id:rule_id>/move")
@admin_required
def move_rule(rule_id: int):
    """Up or down one place: the first rule whose team a member is in wins."""
    _owner_only()
    rule = _rule_or_404(rule_id)
    form = MoveRuleForm()
    if not form.validate():
        return _rules_panel(422, problem="Move a rule up or down.")
    rules.move_rule(
        db.session, _actor(), rule, form.direction.data == "up", utcnow(), request.remote_addr
    )
    return _rules_panel()


@bp.post("/teams/rules/<id:rule_id>/remove")
@admin_required
def remove_rule(rule_id: int):
    """The rule goes; its team's members get what the other rules say (by the job)."""
    _owner_only()
    rule = _rule_or_404(rule_id)
    if not RemoveRuleForm().validate():
        return _rules_panel(422, problem="The page expired: reload it and try again.")
    rules.remove_rule(db.session, _actor(), rule, utcnow(), request.remote_addr)
    return _rules_panel()


@bp.get("/teams/<id:team_id>")
@admin_required
def team(team_id: int):
    """A team's members: the members list with the team filter fixed."""
    found = services.get_team(db.session, _account_id(), team_id)
    if found is None:
        abort(404)
    args = request.args.to_dict() | {"team": str(team_id)}
    filters = Filters.from_args(args)
    return render_list(
        "members/team.html", "members/_results.html", **_list_context(filters, team=found)
    )


@bp.get("/export.csv")
@admin_required
def export():
    """The list under the current filters as CSV, streamed: rows are fetched and written a
    batch at a time, so 100,000 members never sit in memory."""
    filters = Filters.from_args(request.args)
    account_id, scim_enabled = _account_id(), _scim_enabled()

    def rows():
        for row in services.export_rows(db.session, account_id, filters, scim_enabled):
            m = row.membership
            yield (
                row.email,
                row.name,
                m.role,
                m.source,
                m.status,
                "yes" if m.licensed else "no",
                "; ".join(row.teams),
                row.last_sign_in_at.strftime("%Y-%m-%d %H:%M UTC") if row.last_sign_in_at else "",
            )

    header = ["email", "name", "role", "source", "status", "licence", "teams", "last_sign_in"]
    return csv_download("members", header, rows)


# --- member actions ---------------------------------------------------------------------------


def _member_or_404(membership_id: int):
    member = services.get_member(db.session, _account_id(), membership_id)
    if member is None:
        abort(404)
    return member


def _row_context(member, **extra) -> dict:
    return (
        ROW_DEFAULTS
        | {
            "row": services.member_row(db.session, member, _scim_enabled()),
            "actor": _actor(),
            "labels": LABELS,
            "actions": _actions(),
            "scim_enabled": _scim_enabled(),
        }
        | extra
    )


@bp.get("/<id:membership_id>/row")
@admin_required
def row(membership_id: int):
    """The member's row again (Cancel)."""
    return render_fragment("members/_row.html", **_row_context(_member_or_404(membership_id)))


def _member_action(membership_id: int, action: str):
    """A member action: GET asks for the passphrase in the member's row; POST checks it
    (common.auth.reauthenticated), does the action and answers with the row as it now is
    (or why it was refused, in the row)."""
    member = _member_or_404(membership_id)
    form = ConfirmPassphraseForm()
    problem = services.allowed(_actor(), member, action, _scim_enabled(), _ruled())
    status = 200
    if request.method == "POST":
        status = 422
        if problem is None and reauthenticated(form):
            email = member.email or (member.user.email if member.user else "the member")
            try:
                services.perform(
                    db.session, _actor(), member, action, _scim_enabled(), request.remote_addr
                )
            except ActionRefused as refused:
                db.session.rollback()
                problem = str(refused)
                member = _member_or_404(membership_id)
            else:
                return _done(member, membership_id, action, email)
    return render_page_or_fragment(
        "members/confirm.html",
        "members/_row.html",
        status,
        **_row_context(member, confirm=action, form=form, problem=problem),
    )


# One view per action (the URL names it), each through `_member_action`.


@bp.route("/<id:membership_id>/deactivate", methods=["GET", "POST"])
@admin_required
def deactivate(membership_id: int):
    """Deactivate: the member keeps their data, frees their seat, is signed out."""
    return _member_action(membership_id, "deactivate")


@bp.route("/<id:membership_id>/reactivate", methods=["GET", "POST"])
@admin_required
def reactivate(membership_id: int):
    """Reactivate: active again, taking a seat."""
    return _member_action(membership_id, "reactivate")


@bp.route("/<id:membership_id>/remove", methods=["GET", "POST"])
@admin_required
def remove(membership_id: int):
    """Remove from the account (the person keeps their sign-in)."""
    return _member_action(membership_id, "remove")


@bp.route("/<id:membership_id>/make-co-owner", methods=["GET", "POST"])
@admin_required
def make_co_owner(membership_id: int):
    """Make a member a co-owner (owners only)."""
    return _member_action(membership_id, "make-co-owner")


@bp.route("/<id:membership_id>/revoke-co-owner", methods=["GET", "POST"])
@admin_required
def revoke_co_owner(membership_id: int):
    """Take back co-owner: a member again (owners only)."""
    return _member_action(membership_id, "revoke-co-owner")


@bp.route("/<id:membership_id>/remove-now", methods=["GET", "POST"])
@admin_required
def remove_now(membership_id: int):
    """Remove now a member scheduled for removal (SPEC F12; owners only)."""
    _owner_only()
    return _member_action(membership_id, "remove-now")


@bp.route("/<id:membership_id>/keep", methods=["GET", "POST"])
@admin_required
def keep(membership_id: int):
    """Keep a member scheduled for removal: the removal is cancelled (owners only)."""
    _owner_only()
    return _member_action(membership_id, "keep")


def _done(member, membership_id: int, action: str, email: str):
    messages = {
        "deactivate": f"{email} is deactivated; their seat is free.",
        "reactivate": f"{email} is active again.",
        "remove": f"{email} was removed from the account.",
        "make-co-owner": f"{email} is now a co-owner.",
        "revoke-co-owner": f"{email} is a member again (no longer a co-owner).",
        "remove-now": f"{email} was removed from the account.",
        "keep": f"{email} is no longer scheduled for removal.",
    }
    if not is_htmx():
        flash(messages[action], "success")
        return redirect(url_for("members.index"))
    # The row as it now is, and the seat meter out of band (a seat was freed or taken).
    meter = services.seat_meter(db.session.get(Account, _account_id()))
    if action in ("remove", "remove-now"):
        return render_fragment(
            "members/_action_done.html",
            removed=True,
            member_id=membership_id,
            message=messages[action],
            meter=meter,
        )
    db.session.expire_all()
    return render_fragment(
        "members/_action_done.html",
        removed=False,
        meter=meter,
        **_row_context(member, message=messages[action]),
    )
