"""The Members page (SPEC F6). Search, filters and seats come with issue #6."""

from flask import Blueprint, render_template, request
from sqlalchemy import select

from app import db
from blueprints.common.auth import admin_required, current_membership
from models import Membership, User

bp = Blueprint("members", __name__, url_prefix="/enterprise/members")
PAGE_SIZE = 50


@bp.get("")
@admin_required
def index():
    """The account's members, a page at a time, by email."""
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    rows = db.session.execute(
        select(Membership, User)
        .outerjoin(User, User.id == Membership.user_id)
        .where(Membership.account_id == current_membership().account_id)
        .order_by(Membership.id)
        .limit(PAGE_SIZE + 1)
        .offset((page - 1) * PAGE_SIZE)
    ).all()
    return render_template(
        "members/index.html", rows=rows[:PAGE_SIZE], page=page, has_next=len(rows) > PAGE_SIZE
    )
