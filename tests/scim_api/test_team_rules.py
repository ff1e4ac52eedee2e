"""Team rules (SPEC F12) through the SCIM API and the `apply-team-rules` job: an IdP's
group write gives the members it adds or removes their rule's role and licence at once (or
is refused whole for lack of seats); a rule change reaches everyone through the job."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select, update

from blueprints.members import rules
from blueprints.members.jobs import apply_team_rules
from models import Account, AuditEvent, Membership, Team, TeamMember, TeamRuleRun, utcnow
from tests.scim_api.conftest import assert_scim_error
from tests.scim_api.test_groups import new_group, new_user, patch


def owner_of(session, account) -> Membership:
    return session.scalar(
        select(Membership).where(Membership.account_id == account.id, Membership.role == "owner")
    )


def member(session, scim_id: str) -> Membership:
    session.expire_all()
    return session.scalar(select(Membership).where(Membership.scim_id == scim_id))


def team_id(session, group: dict) -> int:
    return session.scalar(select(Team.id).where(Team.scim_id == group["id"]))


def add_rule(session, account, group: dict, role: str, licensed: bool):
    rule = rules.add_rule(
        session, owner_of(session, account), team_id(session, group), role, licensed, utcnow()
    )
    session.commit()
    return rule


def seats_consistent(session, account_id: int) -> tuple[int, int]:
    """(Account.seats_used, licensed active memberships): they must always be equal."""
    session.expire_all()
    used = session.get(Account, account_id).seats_used
    licensed = session.scalar(
        select(func.count()).where(
            Membership.account_id == account_id,
            Membership.licensed.is_(True),
            Membership.active.is_(True),
        )
    )
    return used, licensed


def add(value):
    return {"op": "add", "path": "members", "value": [{"value": value}]}


def remove(value):
    return {"op": "remove", "path": f'members[value eq "{value}"]'}


def run_job(app, **kwargs):
    with app.app_context():
        return apply_team_rules(utcnow(), **kwargs)


# --- Through the SCIM API, at once --------------------------------------------------------


def test_joining_a_ruled_team_makes_a_co_owner_at_once_and_leaving_takes_it_back(
    scim, session, ready
):
    alan = new_user(scim, "alan")
    admins = new_group(scim, "Admins")
    add_rule(session, ready, admins, "co-owner", True)

    assert patch(scim, admins["id"], add(alan)).status_code in (200, 204)
    assert member(session, alan).role == "co-owner"

    assert patch(scim, admins["id"], remove(alan)).status_code in (200, 204)
    assert member(session, alan).role == "member"
    assert seats_consistent(session, ready.id)[0] == seats_consistent(session, ready.id)[1]


def test_put_of_a_ruled_team_applies_to_added_and_removed_members(scim, session, ready):
    alan, grace = new_user(scim, "alan"), new_user(scim, "grace")
    admins = new_group(scim, "Admins", members=[alan])
    add_rule(session, ready, admins, "co-owner", False)
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Admins",
        "members": [{"value": grace}],
    }
    assert scim("PUT", f"/Groups/{admins['id']}", json=body).status_code == 200
    assert (member(session, grace).role, member(session, grace).licensed) == ("co-owner", False)
    # Alan left the ruled team: the default (member, licensed).
    assert (member(session, alan).role, member(session, alan).licensed) == ("member", True)
    used, licensed = seats_consistent(session, ready.id)
    assert used == licensed


def test_no_seat_for_a_licensing_rule_refuses_the_whole_patch(scim, session, ready):
    alan, grace = new_user(scim, "alan"), new_user(scim, "grace")
    free = new_group(scim, "Contractors", members=[alan])
    paid = new_group(scim, "Staff")
    add_rule(session, ready, paid, "co-owner", True)  # first: it wins over Contractors
    add_rule(session, ready, free, "member", False)
    assert patch(scim, free["id"], add(grace)).status_code in (200, 204)  # grace: seat freed
    run_job(scim.client.application)  # alan's seat freed too
    account = session.get(Account, ready.id)
    session.execute(
        update(Account).where(Account.id == ready.id).values(seat_limit=account.seats_used)
    )
    session.commit()
    before = seats_consistent(session, ready.id)

    response = patch(scim, paid["id"], add(alan))

    body = assert_scim_error(response, 403)
    assert body["detail"].startswith("Licence limit reached")
    assert member(session, alan).role == "member" and not member(session, alan).licensed
    in_staff = select(func.count()).where(TeamMember.team_id == team_id(session, paid))
    assert session.scalar(in_staff) == 0
    assert seats_consistent(session, ready.id) == before


def test_writes_to_an_unruled_team_change_no_role_or_licence(scim, session, ready):
    alan = new_user(scim, "alan")
    admins, other = new_group(scim, "Admins"), new_group(scim, "Other")
    add_rule(session, ready, admins, "co-owner", True)
    session.execute(update(Membership).where(Membership.scim_id == alan).values(role="co-owner"))
    session.commit()
    assert patch(scim, other["id"], add(alan)).status_code in (200, 204)
    assert member(session, alan).role == "co-owner"  # the job would decide; this write doesn't


def test_without_rules_group_writes_behave_as_before(scim, session, ready):
    alan = new_user(scim, "alan")
    session.execute(update(Membership).where(Membership.scim_id == alan).values(role="co-owner"))
    session.commit()
    admins = new_group(scim, "Admins", members=[alan])
    assert patch(scim, admins["id"], remove(alan)).status_code in (200, 204)
    assert member(session, alan).role == "co-owner" and member(session, alan).licensed


def test_deleting_a_ruled_group_removes_its_rule_and_its_members_role(scim, session, ready):
    alan = new_user(scim, "alan")
    admins = new_group(scim, "Admins", members=[alan])
    add_rule(session, ready, admins, "co-owner", True)
    run_job(scim.client.application)
    assert member(session, alan).role == "co-owner"

    assert scim("DELETE", f"/Groups/{admins['id']}").status_code == 204

    assert member(session, alan).role == "member"
    assert rules.list_rules(session, ready.id) == []
    removed = session.scalar(select(AuditEvent).where(AuditEvent.action == "team_rule.removed"))
    assert removed.detail["via"] == "scim"


def test_reactivation_by_scim_gets_the_rules_licence(scim, session, ready):
    alan = new_user(scim, "alan")
    free = new_group(scim, "Contractors", members=[alan])
    add_rule(session, ready, free, "member", False)
    run_job(scim.client.application)
    off = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}
    off["Operations"] = [{"op": "replace", "value": {"active": False}}]
    assert scim("PATCH", f"/Users/{alan}", json=off).status_code == 200
    off["Operations"] = [{"op": "replace", "value": {"active": True}}]
    assert scim("PATCH", f"/Users/{alan}", json=off).status_code == 200
    alan_now = member(session, alan)
    assert alan_now.active and not alan_now.licensed
    assert seats_consistent(session, ready.id)[0] == seats_consistent(session, ready.id)[1]


# --- Precedence, owners, manual members ----------------------------------------------------


def test_first_rule_wins_and_reordering_changes_it_after_the_job(app, scim, session, ready):
    alan = new_user(scim, "alan")
    admins = new_group(scim, "Admins", members=[alan])
    contractors = new_group(scim, "Contractors", members=[alan])
    first = add_rule(session, ready, admins, "co-owner", True)
    add_rule(session, ready, contractors, "member", False)
    run_job(app)
    assert (member(session, alan).role, member(session, alan).licensed) == ("co-owner", True)

    first = rules.get_rule(session, ready.id, first.id)
    assert rules.move_rule(session, owner_of(session, ready), first, up=False, now=utcnow())
    session.commit()
    assert member(session, alan).role == "co-owner"  # not before the job
    run_job(app)
    assert (member(session, alan).role, member(session, alan).licensed) == ("member", False)
    assert seats_consistent(session, ready.id)[0] == seats_consistent(session, ready.id)[1]


def test_owners_and_manual_members_are_never_changed_by_rules(app, scim, session, ready, owner):
    from tests import factories

    hand = factories.make_user(session, ready, "hand@example.com", role="co-owner")
    admins = new_group(scim, "Admins")
    add_rule(session, ready, admins, "member", False)
    boss = owner_of(session, ready)
    # An owner the IdP manages, in the ruled team.
    session.execute(update(Membership).where(Membership.id == boss.id).values(source="scim"))
    session.add(TeamMember(team_id=team_id(session, admins), membership_id=boss.id))
    session.commit()
    run_job(app)
    session.expire_all()
    boss = session.get(Membership, boss.id)
    assert (boss.role, boss.licensed) == ("owner", True)
    manual = session.scalar(select(Membership).where(Membership.user_id == hand.id))
    assert (manual.role, manual.licensed) == ("co-owner", True)


def test_removing_the_last_rule_gives_everyone_the_default_after_the_job(app, scim, session, ready):
    alan = new_user(scim, "alan")
    admins = new_group(scim, "Admins", members=[alan])
    rule = add_rule(session, ready, admins, "co-owner", False)
    run_job(app)
    assert (member(session, alan).role, member(session, alan).licensed) == ("co-owner", False)
    rule = rules.get_rule(session, ready.id, rule.id)
    rules.remove_rule(session, owner_of(session, ready), rule, utcnow())
    session.commit()
    run_job(app)
    assert (member(session, alan).role, member(session, alan).licensed) == ("member", True)


# --- The job ------------------------------------------------------------------------------


def _bulk_members(session, account, team: int, count: int) -> None:
    """`count` active licensed SCIM members, all in `team`, in one commit."""
    for i in range(count):
        session.add(
            Membership(
                account_id=account.id,
                scim_id=f"bulk-{i}",
                source="scim",
                role="member",
                active=True,
                licensed=True,
                user_name=f"bulk{i}@example.com",
                user_name_key=f"bulk{i}@example.com",
            )
        )
    session.flush()
    ids = session.scalars(select(Membership.id).where(Membership.scim_id.like("bulk-%"))).all()
    session.add_all(TeamMember(team_id=team, membership_id=i) for i in ids)
    session.execute(
        update(Account)
        .where(Account.id == account.id)
        .values(seats_used=Account.seats_used + count, seat_limit=10_000)
    )
    session.commit()


def test_job_applies_in_batches_with_progress_and_is_idempotent(app, scim, session, ready):
    staff = new_group(scim, "Staff")
    _bulk_members(session, ready, team_id(session, staff), 25)
    add_rule(session, ready, staff, "member", False)
    shown = rules.progress(session, ready.id)
    assert shown.pending and shown.total == 25 and shown.done == 0

    assert run_job(app, batch=10, max_batches=2) == {ready.id: 2}
    shown = rules.progress(session, ready.id)
    assert shown.pending and (shown.done, shown.total) == (20, 25) and shown.started_at
    assert seats_consistent(session, ready.id)[0] == seats_consistent(session, ready.id)[1]

    run_job(app, batch=10)
    shown = rules.progress(session, ready.id)
    assert not shown.pending and shown.done == 25 and shown.finished_at
    used, licensed = seats_consistent(session, ready.id)
    assert used == licensed == 1  # the owner

    assert run_job(app, batch=10) == {}  # nothing pending: nothing more
    assert seats_consistent(session, ready.id) == (1, 1)


def test_job_leaves_members_unlicensed_when_seats_run_out_and_counts_them(
    app, scim, session, ready
):
    staff = new_group(scim, "Staff")
    _bulk_members(session, ready, team_id(session, staff), 10)
    rule = add_rule(session, ready, staff, "member", False)
    run_job(app)
    session.execute(update(Account).where(Account.id == ready.id).values(seat_limit=5))
    rule = rules.get_rule(session, ready.id, rule.id)
    rules.change_rule(session, owner_of(session, ready), rule, "member", True, utcnow())
    session.commit()
    run_job(app, batch=3)
    shown = rules.progress(session, ready.id)
    assert not shown.pending and shown.unlicensed == 6  # 5 seats: the owner and 4 members
    assert seats_consistent(session, ready.id) == (5, 5)


@pytest.mark.parametrize("runs", [2])
def test_two_runs_at_once_do_not_count_seats_twice(app, scim, session, ready, runs):
    staff = new_group(scim, "Staff")
    _bulk_members(session, ready, team_id(session, staff), 40)
    add_rule(session, ready, staff, "co-owner", False)
    start = threading.Barrier(runs)
    errors: list[BaseException] = []

    def run():
        try:
            with app.app_context():
                start.wait()
                apply_team_rules(utcnow(), batch=7)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert seats_consistent(session, ready.id) == (1, 1)
    shown = rules.progress(session, ready.id)
    assert not shown.pending and shown.done == 40
    roles = session.scalars(select(Membership.role).where(Membership.scim_id.like("bulk-%")))
    assert set(roles) == {"co-owner"}
    assert session.scalar(select(TeamRuleRun.applied_generation)) == 1


def test_re_evaluating_a_group_write_costs_the_same_statements_for_30_or_3000_members(
    app, scim, session, ready
):
    """No loop over members in Python: a ruled team's write re-evaluates its members in a
    fixed number of statements (per 5,000 ids)."""
    from sqlalchemy import event

    from app import db

    staff = new_group(scim, "Staff")
    _bulk_members(session, ready, team_id(session, staff), 3000)
    add_rule(session, ready, staff, "co-owner", False)
    ids = session.scalars(
        select(Membership.id).where(Membership.scim_id.like("bulk-%")).order_by(Membership.id)
    ).all()
    counted = [0]

    def count(*_):
        counted[0] += 1

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        costs = []
        for chosen in (ids[:30], ids[30:]):
            counted[0] = 0
            done = rules.apply_to_ids(session, ready.id, chosen, strict=True)
            costs.append(counted[0])
            assert done.roles == len(chosen) and done.lost == len(chosen)
        session.commit()
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert costs[1] <= costs[0] <= 5  # the first also opens the write transaction
    assert seats_consistent(session, ready.id) == (1, 1)
