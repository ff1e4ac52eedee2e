"""The `apply-team-rules` job (SPEC F12): after a rule change, every SCIM member of the
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

from sqlalchemy import and_, func, select, true, update

from blueprints.common.extensions import db
from blueprints.members import rules
from models import Membership, TeamRuleRun

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
