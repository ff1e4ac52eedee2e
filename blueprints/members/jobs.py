"""The `apply-team-rules` and `remove-suspended-members` jobs (SPEC F12).

The `apply-team-rules` job: after a rule change, every SCIM member of the
account gets what the rules now say, a batch at a time.

Each batch is the next BATCH ruled memberships by id (keyset: `id > last_id`), applied by
rules.apply (leniently: members the seats can't cover stay unlicensed and are counted) and
committed with the run's progress. The progress UPDATE is guarded by the `last_id` it
started from and by the generation, so a second process doing the same batch (or a batch
of a pass a newer rule change has replaced) rolls back instead of counting twice; the
lease (app.run_job) normally keeps the second process away anyway. Running it again when
nothing changed does nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, delete, func, insert, select, true, update

from blueprints.common.extensions import db
from blueprints.members import rules
from models import Account, AuditEvent, Membership, Team, TeamMember, TeamRuleRun

BATCH = 1000


def _start(session, run: TeamRuleRun, now: datetime) -> bool:
    """Begin a pass of the run's newest generation; False if another process did."""
    total = session.scalar(
        select(func.count()).where(rules._ruled(Membership, run.account_id, true()))
    )
    started = session.execute(
        update(TeamRuleRun)
        .where(
            TeamRuleRun.account_id == run.account_id,
            TeamRuleRun.generation == run.generation,
            TeamRuleRun.running_generation == run.running_generation,
        )
        .values(
            running_generation=run.generation,
            last_id=0,
            done=0,
            total=total,
            unlicensed=0,
            started_at=now,
            finished_at=None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return started == 1


def _batch(session, run: TeamRuleRun, now: datetime, size: int) -> bool:
    """Apply the rules to the next batch; False when the pass is over (or was taken
    over by a newer generation or another process)."""
    account_id, generation, last = run.account_id, run.running_generation, run.last_id
    ids = (
        select(Membership.id)
        .where(rules._ruled(Membership, account_id, Membership.id > last))
        .order_by(Membership.id)
        .limit(size)
        .subquery()
    )
    upper, count = session.execute(select(func.max(ids.c.id), func.count()).select_from(ids)).one()
    guard = and_(
        TeamRuleRun.account_id == account_id,
        TeamRuleRun.generation == generation,
        TeamRuleRun.running_generation == generation,
        TeamRuleRun.last_id == last,
    )
    if not count:
        session.execute(
            update(TeamRuleRun)
            .where(guard)
            .values(applied_generation=generation, finished_at=now)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        return False
    try:
        applied = rules.apply(
            session,
            account_id,
            lambda member: and_(member.id > last, member.id <= upper),
            strict=False,
        )
    except rules.NoSeats:
        # A concurrent writer took the seats counted for this batch: the next run retries.
        session.rollback()
        return False
    moved = session.execute(
        update(TeamRuleRun)
        .where(guard)
        .values(
            last_id=upper,
            done=TeamRuleRun.done + count,
            unlicensed=TeamRuleRun.unlicensed + applied.unlicensed,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved != 1:
        session.rollback()  # a newer rule change, or another process did this batch
        return False
    session.commit()
    return True


def apply_team_rules(now: datetime, batch: int = BATCH, max_batches: int | None = None) -> dict:
    """Re-apply the rules of every account with a change not yet applied to everyone.
    Returns how many batches ran per account id. `max_batches` stops early (tests)."""
    session = db.session
    pending = session.scalars(
        select(TeamRuleRun.account_id).where(
            TeamRuleRun.applied_generation < TeamRuleRun.generation
        )
    ).all()
    session.commit()
    ran: dict[int, int] = {}
    for account_id in pending:
        ran[account_id] = 0
        while max_batches is None or ran[account_id] < max_batches:
            run = session.get(TeamRuleRun, account_id, populate_existing=True)
            if run is None or run.applied_generation >= run.generation:
                break
            if run.running_generation != run.generation:
                if not _start(session, run, now):
                    continue
                run = session.get(TeamRuleRun, account_id, populate_existing=True)
            if not _batch(session, run, now, batch):
                again = session.get(TeamRuleRun, account_id, populate_existing=True)
                if again.last_id == run.last_id and again.generation == run.generation:
                    break  # finished (or nothing moved: don't spin)
                continue
            ran[account_id] += 1
    return ran


# --- remove-suspended-members (SPEC F12 deprovisioning policy) -------------------------------

REMOVAL_BATCH = 500


def remove_suspended_members(now: datetime, batch: int = REMOVAL_BATCH) -> int:
    """Remove the memberships whose removal date has come (deactivated or deleted by the
    IdP under the "suspend" policy), `batch` per commit: their teams' ETags change, each
    gets an audit event (no actor: the system), and a seat still held is given back.
    Returns how many were removed.

    The DELETE repeats `removal_due_at <= now` and what it returns is what is counted, so
    a member reactivated or restored in between (no date any more) stays, and a second
    run (or process) removing the same rows counts nothing. On PostgreSQL the batch's rows
    are locked first (SKIP LOCKED: a concurrent run takes the next ones), so the teams
    bumped are those of the rows deleted."""
    session = db.session
    removed = 0
    while True:
        ids = session.scalars(
            select(Membership.id)
            .where(Membership.removal_due_at <= now)
            .order_by(Membership.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        if not ids:
            session.commit()
            return removed
        due = and_(Membership.id.in_(ids), Membership.removal_due_at <= now)
        session.execute(
            update(Team)
            .where(
                Team.id.in_(
                    select(TeamMember.team_id)
                    .join(Membership, Membership.id == TeamMember.membership_id)
                    .where(due)
                )
            )
            .values(version=Team.version + 1)
            .execution_options(synchronize_session=False)
        )
        gone = session.execute(
            delete(Membership)
            .where(due)
            .returning(
                Membership.id,
                Membership.account_id,
                Membership.licensed,
                Membership.source,
                Membership.email,
                Membership.user_name,
                Membership.removal_due_at,
            )
            .execution_options(synchronize_session=False)
        ).all()
        seats: dict[int, int] = {}
        for row in gone:
            if row.licensed:
                seats[row.account_id] = seats.get(row.account_id, 0) + 1
        for account_id, count in seats.items():
            session.execute(
                update(Account)
                .where(Account.id == account_id, Account.seats_used >= count)
                .values(seats_used=Account.seats_used - count)
                .execution_options(synchronize_session=False)
            )
        if gone:
            session.execute(
                insert(AuditEvent),
                [
                    {
                        "account_id": row.account_id,
                        "actor_user_id": None,
                        "action": "member.removed_on_schedule",
                        "target": (row.email or row.user_name or f"member {row.id}")[:400],
                        "detail": {
                            "deprovisioned_by": "delete"
                            if row.source == "suspended"
                            else "deactivation",
                            "removal_due_at": row.removal_due_at.isoformat(),
                        },
                        "remote_addr": None,
                        "created_at": now,
                    }
                    for row in gone
                ],
            )
        session.commit()
        removed += len(gone)
        if len(ids) < batch:
            return removed
