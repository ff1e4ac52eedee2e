"""The audit log's jobs (SPEC F10): deliver the streams' queues, purge old events.

Delivery: a database trigger queues each event of an account whose stream is on
(`AuditDelivery`, in the event's transaction). Each run claims every stream that is due
with a guarded UPDATE (two processes never send one stream's events at once), then sends
its queue oldest first, one event at a time, deleting each row in its own commit once
the receiver said 2xx: a receiver that is down loses nothing, and an event is sent again
only if this process dies between the answer and that commit (the receiver's de-dup on
`X-Event-Id` covers it). The first failure stops the stream, so the receiver gets the
events in order, until `next_attempt_at` (backoff from 30 s to 15 min: a receiver back
after an hour is caught up within a quarter of an hour).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm.exc import StaleDataError

from blueprints.audit import services, streaming
from blueprints.common import crypto
from blueprints.common.extensions import db
from models import Account, AuditDelivery, AuditEvent, AuditStream, User

log = logging.getLogger(__name__)

CLAIM = timedelta(minutes=5)
STREAM_SECONDS = 60.0  # of sending per stream and run: one slow receiver can't hog a run
BATCH = 100
PURGE_BATCH = 5000
BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_CAP = timedelta(minutes=15)


def backoff(failures: int) -> timedelta:
    """Delay after the `failures`th failure in a row: 30 s, 1 min, 2 min … 15 min."""
    return min(BACKOFF_FIRST * 2 ** min(max(failures - 1, 0), 20), BACKOFF_CAP)


def _due(now: datetime) -> list[int]:
    queued = select(AuditDelivery.id).where(AuditDelivery.stream_id == AuditStream.id)
    return list(
        db.session.scalars(
            select(AuditStream.id).where(
                AuditStream.enabled.is_(True),
                or_(AuditStream.next_attempt_at.is_(None), AuditStream.next_attempt_at <= now),
                or_(AuditStream.claimed_until.is_(None), AuditStream.claimed_until < now),
                queued.exists(),
            )
        )
    )


def _claim(stream_id: int, now: datetime) -> bool:
    claimed = db.session.execute(
        update(AuditStream)
        .where(
            AuditStream.id == stream_id,
            or_(AuditStream.claimed_until.is_(None), AuditStream.claimed_until < now),
        )
        .values(claimed_until=now + CLAIM)
    ).rowcount
    db.session.commit()
    return claimed == 1


def deliver_streams(now: datetime) -> dict[str, int]:
    """Send what every due stream has queued; returns counts for the job's log."""
    counts = {"streams": 0, "delivered": 0, "failed": 0}
    for stream_id in _due(now):
        if not _claim(stream_id, now):
            continue
        counts["streams"] += 1
        try:
            sent, failed = _deliver(stream_id, now)
        except StaleDataError:  # the owner removed the stream while it was sending
            db.session.rollback()
            continue
        counts["delivered"] += sent
        counts["failed"] += failed
    return counts


def _queue(stream_id: int) -> list:
    return list(
        db.session.execute(
            select(AuditDelivery.id, AuditEvent, User.email)
            .join(AuditEvent, AuditEvent.id == AuditDelivery.event_id)
            .outerjoin(User, User.id == AuditEvent.actor_user_id)
            .where(AuditDelivery.stream_id == stream_id)
            .order_by(AuditDelivery.id)
            .limit(BATCH)
        )
    )


def _deliver(stream_id: int, now: datetime) -> tuple[int, int]:
    """Send one claimed stream's queue until it is empty, a send fails or its time is up."""
    stream = db.session.get(AuditStream, stream_id)
    if stream is None:  # removed since it was found due
        return 0, 0
    try:
        key = streaming.secret(stream)
    except crypto.DecryptionError:
        stream.last_error = "The signing secret cannot be read (ENCRYPTION_KEYS changed)."
        stream.next_attempt_at, stream.claimed_until = now + BACKOFF_CAP, None
        db.session.commit()
        return 0, 1
    started, sent = time.monotonic(), 0
    while time.monotonic() - started < STREAM_SECONDS:
        queue = _queue(stream_id)
        if not queue:
            break
        for delivery_id, event, email in queue:
            answer = streaming.send(stream, key, str(event.id), services.record(event, email))
            streaming.note(stream, answer, now)
            if not answer.ok:
                stream.failures += 1
                stream.next_attempt_at = now + backoff(stream.failures)
                stream.claimed_until = None
                db.session.commit()
                log.info("audit stream %s: event %s refused: %s", stream_id, event.id, answer.error)
                return sent, 1
            db.session.execute(delete(AuditDelivery).where(AuditDelivery.id == delivery_id))
            stream.failures, stream.next_attempt_at = 0, None
            stream.delivered += 1
            db.session.commit()
            sent += 1
            if time.monotonic() - started >= STREAM_SECONDS:
                break
    stream.claimed_until = None
    db.session.commit()
    return sent, 0


def purge_events(now: datetime) -> dict[str, int]:
    """Forget audit events older than AUDIT_RETENTION_DAYS (365), an account at a time
    along its (account_id, created_at, id) index, a batch per commit: no transaction holds
    a million rows' locks, and no batch scans the table (events not yet streamed go too)."""
    cutoff = now - timedelta(days=current_app.config["AUDIT_RETENTION_DAYS"])
    deleted = 0
    for account_id in [None, *db.session.scalars(select(Account.id).order_by(Account.id))]:
        whose = (
            AuditEvent.account_id.is_(None)
            if account_id is None
            else AuditEvent.account_id == account_id
        )
        while True:
            batch = (
                select(AuditEvent.id)
                .where(whose, AuditEvent.created_at < cutoff)
                .order_by(AuditEvent.created_at)
                .limit(PURGE_BATCH)
            )
            count = db.session.execute(delete(AuditEvent).where(AuditEvent.id.in_(batch))).rowcount
            db.session.commit()
            deleted += count
            if count < PURGE_BATCH:
                break
    return {"deleted": deleted}
