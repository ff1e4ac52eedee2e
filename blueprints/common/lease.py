"""Database leases so each scheduled job runs in one process at a time (SPEC F8).

A lease is one row per job name. Taking it is a single guarded UPDATE, which the database
serialises, so whichever process's UPDATE matches first runs the job; the others skip.
A lease that outlives its TTL (a crashed worker) can be taken over.

Taking and giving back a lease each commit at once: this is job machinery (the rule is in
blueprints/common/unit_of_work.py), and other processes must see the lease before the job
starts and after it ends, whatever the job's own transactions do.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, update

from blueprints.common.extensions import db
from blueprints.common.sql import insert_or_ignore
from models import JobLease, utcnow


def new_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire(
    name: str,
    holder: str,
    ttl: timedelta,
    now: datetime | None = None,
    due: datetime | None = None,
) -> bool:
    """Take the lease for `name` until now + `ttl`; False if another holder has it or,
    given the time the run fell `due`, if a run started since then: every process
    schedules every job, and one whose tick comes a moment after another's run ended
    must not run it again."""
    now = now or utcnow()
    insert_or_ignore(db.session, JobLease.__table__, {"name": name, "runs": 0}, ["name"])
    table = JobLease.__table__
    free = or_(table.c.holder.is_(None), table.c.expires_at <= now)
    if due is not None:
        free = and_(free, or_(table.c.last_started_at.is_(None), table.c.last_started_at < due))
    result = db.session.execute(
        update(table)
        .where(table.c.name == name, free)
        .values(holder=holder, expires_at=now + ttl, last_started_at=now)
    )
    db.session.commit()
    return result.rowcount == 1


def release(name: str, holder: str, error: str | None = None, now: datetime | None = None) -> None:
    """Give the lease back and record how the run ended; only its holder can."""
    table = JobLease.__table__
    db.session.execute(
        update(table)
        .where(table.c.name == name, table.c.holder == holder)
        .values(
            holder=None,
            expires_at=None,
            last_finished_at=now or utcnow(),
            last_error=error,
            runs=table.c.runs + 1,
        )
    )
    db.session.commit()
