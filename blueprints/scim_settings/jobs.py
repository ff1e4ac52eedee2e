"""Daily SCIM token sweeps (SPEC F4 "Automatic refresh", F8): plain functions of `now`.

`refresh_tokens` extends the expiry of tokens that are due, keeping the secret so the IdP
keeps working; `warn_expiring` emails the owners and co-owners while a refresh is failing
and the expiry is near. Both walk the live tokens of enabled connectors (each token on
its own, SPEC F11) in batches by id, so an installation with many accounts never loads
them all at once, and commit one token at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.orm import contains_eager

from blueprints.common import audit, outbox
from blueprints.common.accounts import admin_contacts
from blueprints.common.extensions import db
from blueprints.common.urls import absolute_url
from blueprints.scim_settings import connector as service
from blueprints.scim_settings import health
from models import Account, ScimConnector, ScimProblem, ScimRequestLog, ScimToken

BATCH = 200
EXPIRED_REASON = "The token expired before it could be refreshed; only a manual refresh renews it."


def _batches(where: list[ColumnElement]) -> Iterator[list[ScimConnector]]:
    """The connectors matching `where`, `BATCH` at a time in id order (keyset paging)."""
    last_id = 0
    while True:
        batch = list(
            db.session.scalars(
                select(ScimConnector)
                .where(*where, ScimConnector.id > last_id)
                .order_by(ScimConnector.id)
                .limit(BATCH)
            )
        )
        if not batch:
            return
        last_id = batch[-1].id
        yield batch


def _token_batches(where: list[ColumnElement]) -> Iterator[list[ScimToken]]:
    """The live tokens of enabled connectors matching `where`, `BATCH` at a time in id
    order (keyset paging), their connectors loaded with them."""
    last_id = 0
    while True:
        batch = list(
            db.session.scalars(
                select(ScimToken)
                .join(ScimConnector, ScimConnector.id == ScimToken.connector_id)
                .where(
                    ScimConnector.enabled.is_(True),
                    ScimToken.revoked_at.is_(None),
                    *where,
                    ScimToken.id > last_id,
                )
                .options(contains_eager(ScimToken.connector))
                .order_by(ScimToken.id)
                .limit(BATCH)
            )
        )
        if not batch:
            return
        last_id = batch[-1].id
        yield batch


def _write_if_unchanged(token: ScimToken, **values) -> bool:
    """Update the token only if nobody changed it since we read it.

    An owner may refresh or revoke the token, or disable SCIM, while the sweep runs; the
    sweep must then neither overwrite the new expiry nor record a failure the owner just
    fixed.
    """
    table = ScimToken.__table__
    connectors = ScimConnector.__table__
    result = db.session.execute(
        update(table)
        .where(
            table.c.id == token.id,
            table.c.revoked_at.is_(None),
            table.c.token_hash == token.token_hash,
            table.c.expires_at == token.expires_at,
            select(connectors.c.id)
            .where(connectors.c.id == table.c.connector_id, connectors.c.enabled.is_(True))
            .exists(),
        )
        .values(**values)
    )
    return result.rowcount == 1


def _due(now: datetime) -> list[ColumnElement]:
    """Tokens with an expiry whose last refresh is `SCIM_REFRESH_AFTER_DAYS` old, or
    whose expiry is `SCIM_WARNING_DAYS` away or less (expired ones included)."""
    cfg = current_app.config
    return [
        ScimToken.lifetime_days.is_not(None),
        ScimToken.expires_at.is_not(None),
        or_(
            ScimToken.refreshed_at.is_(None),
            ScimToken.refreshed_at <= now - timedelta(days=cfg["SCIM_REFRESH_AFTER_DAYS"]),
            ScimToken.expires_at <= now + timedelta(days=cfg["SCIM_WARNING_DAYS"]),
        ),
    ]


def refresh_tokens(now: datetime) -> dict[str, int]:
    """Attempt an automatic refresh of every live token that is due (SPEC F4, F11: each
    token of a connector on its own).

    Success extends the expiry to `now` + the token's lifetime and keeps the secret (hash
    and ciphertext untouched), so the IdP keeps working; any stored failure is cleared.
    Failure (`connector.refresh_problem`) stores the reason and the time; the token is
    still due tomorrow, so the next daily run retries it. A token without an expiry is
    never due.

    An already expired token is not revived: its IdP has been getting 401s, and bringing
    the same secret back to life without anyone deciding to is what an administrator would
    not expect (nor want, if SCIM was left to lapse on purpose). It gets `EXPIRED_REASON`
    as its failure, so the owners are warned and the pages show it until an owner refreshes
    it by hand (or revokes it, or disables SCIM). A token that expires between two daily
    runs can only do so after twenty days of failed refreshes and warnings.

    Returns counts: due, refreshed, failed, expired.
    """
    counts = {"due": 0, "refreshed": 0, "failed": 0, "expired": 0}
    for batch in _token_batches(_due(now)):
        # Each token as it was found due. After the first commit the batch's other tokens
        # reload fresh: one that an owner (or another process running this job) refreshed
        # meanwhile is no longer the token found due, and is left alone.
        seen = {token.id: (token.token_hash, token.expires_at) for token in batch}
        for token in batch:
            counts["due"] += 1
            if (token.token_hash, token.expires_at) != seen[token.id]:
                continue
            if token.expires_at <= now:
                if _mark_expired(token, now):
                    counts["expired"] += 1
            elif _refresh_one(token, now):
                counts["refreshed"] += 1
            else:
                counts["failed"] += 1
            db.session.commit()
    return counts


def _audit(action: str, token: ScimToken, **detail) -> None:
    """A job's credential event (no actor: "System"), naming the token."""
    audit.record(
        db.session,
        action,
        account_id=token.connector.account_id,
        target=f"SCIM token {token.name}",
        detail={"token": token.name, "token_id": token.id} | detail,
    )


def _mark_expired(token: ScimToken, now: datetime) -> bool:
    """Record that an expired token needs a manual refresh (once); True if it is expired."""
    if token.refresh_failure_reason == EXPIRED_REASON:
        return True
    previous = token.refresh_failure_reason
    if not _write_if_unchanged(token, refresh_failure_reason=EXPIRED_REASON, refresh_failed_at=now):
        return False
    _audit(
        "scim.token_auto_refresh_failed",
        token,
        reason=EXPIRED_REASON,
        previous_reason=previous,
    )
    return True


def _refresh_one(token: ScimToken, now: datetime) -> bool:
    """One automatic refresh attempt; True when the expiry was extended."""
    problem = service.refresh_problem(db.session, token.connector, token)
    if problem is not None:
        if _write_if_unchanged(token, refresh_failure_reason=problem, refresh_failed_at=now):
            _audit("scim.token_auto_refresh_failed", token, reason=problem)
        return False
    was_failing = token.refresh_failure_reason is not None
    expires_at = now + timedelta(days=token.lifetime_days)
    if not _write_if_unchanged(
        token,
        expires_at=expires_at,
        refreshed_at=now,
        # Nobody refreshed it: the page must not credit the last person who did.
        refreshed_by_user_id=None,
        refresh_failure_reason=None,
        refresh_failed_at=None,
    ):
        return False
    _audit("scim.token_auto_refreshed", token, expires_at=expires_at.isoformat())
    if was_failing:
        _notify_recovered(token, expires_at, now)
    return True


def _notify_recovered(token: ScimToken, expires_at: datetime, now: datetime) -> None:
    """Owners who were warned learn that the problem went away and nothing is left to do."""
    connector = token.connector
    account_name = db.session.get(Account, connector.account_id).name
    for user_id, email in admin_contacts(db.session, connector.account_id):
        outbox.enqueue(
            db.session,
            email,
            f'Your SCIM token "{token.name}" was refreshed automatically',
            "scim_auto_refreshed",
            dedupe_key=f"scim-auto-refreshed:{connector.id}:{token.id}:{user_id}:"
            f"{now.date().isoformat()}",
            now=now,
            account=account_name,
            token_name=token.name,
            expires=expires_at.strftime("%Y-%m-%d"),
            link=absolute_url("scim_settings.index"),
        )


# --- warnings --------------------------------------------------------------------------------


def _subject(name: str, days_left: int, expired: bool) -> str:
    if expired:
        return f'Your SCIM token "{name}" has expired'
    if days_left == 0:
        return f'Your SCIM token "{name}" expires in less than a day'
    return f'Your SCIM token "{name}" expires in {days_left} day{"s" if days_left != 1 else ""}'


def warn_expiring(now: datetime) -> dict[str, int]:
    """Email every active owner and co-owner while a live token's automatic refresh is
    failing and its expiry is `SCIM_WARNING_DAYS` away or less (SPEC F4, F11: per token,
    the email naming it).

    At most one email per person, token and day: the outbox's unique dedupe key decides,
    so running the job twice, or in several processes at once, sends no more. Warnings go
    on after the token has expired (saying so), daily, until an owner refreshes or
    revokes the token or disables SCIM: provisioning through it is broken until then, and
    the email says how to stop it either way.

    Returns counts: tokens warned about ("connectors", the name the CLI and tests have
    always read), emails queued, emails already queued today.
    """
    window = timedelta(days=current_app.config["SCIM_WARNING_DAYS"])
    counts = {"connectors": 0, "queued": 0, "already_queued": 0}
    where = [
        ScimToken.refresh_failure_reason.is_not(None),
        ScimToken.expires_at.is_not(None),
        ScimToken.expires_at <= now + window,
    ]
    for batch in _token_batches(where):
        for token in batch:
            counts["connectors"] += 1
            queued = _warn(token, now)
            counts["queued"] += queued[0]
            counts["already_queued"] += queued[1]
            db.session.commit()
    return counts


def _warn(token: ScimToken, now: datetime) -> tuple[int, int]:
    """Queue today's warning about `token` for each owner; (queued, already queued)."""
    connector = token.connector
    state = service.token_state(connector, token, now)
    expired = state.name == "expired"
    days_left = state.days_left or 0
    account_name = db.session.get(Account, connector.account_id).name
    queued = already = 0
    for user_id, email in admin_contacts(db.session, connector.account_id):
        if outbox.enqueue(
            db.session,
            email,
            _subject(token.name, days_left, expired),
            "scim_warning",
            # The user id, not the email: an address can be longer than the key column.
            dedupe_key=f"scim-warning:{connector.id}:{token.id}:{user_id}:{now.date().isoformat()}",
            now=now,
            account=account_name,
            token_name=token.name,
            days_left=days_left,
            expired=expired,
            expires=token.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
            reason=token.refresh_failure_reason,
            link=absolute_url("scim_settings.index"),
        ):
            queued += 1
        else:
            already += 1
    return queued, already


def purge_request_log(now: datetime) -> dict[str, int]:
    """Forget SCIM request-log rows older than SCIM_LOG_RETENTION_DAYS (30): the page
    shows the recent ones, and the table must not grow with every IdP request forever.

    Problems resolved before the cutoff go too. An open one stays, whatever its age
    (nobody has dealt with it yet), without the link to its purged request: its last
    request is no newer than its last occurrence."""
    cutoff = now - timedelta(days=current_app.config["SCIM_LOG_RETENTION_DAYS"])
    result = db.session.execute(delete(ScimRequestLog).where(ScimRequestLog.created_at < cutoff))
    problems = ScimProblem.__table__
    db.session.execute(
        delete(problems).where(problems.c.resolved_at < cutoff, problems.c.last_seen_at < cutoff)
    )
    db.session.execute(
        update(problems)
        .where(problems.c.last_seen_at < cutoff, problems.c.last_request_log_id.is_not(None))
        .values(last_request_log_id=None)
    )
    db.session.commit()
    return {"deleted": result.rowcount}


# --- provisioning health (SPEC F10) ------------------------------------------------------


def alert_provisioning(now: datetime) -> dict[str, int]:
    """Email the owners and co-owners of each account with SCIM on when its IdP has been
    silent longer than SCIM_SILENCE_HOURS (`health.silent_connectors_where`: not before
    that long after enabling, so an IdP still being set up is not nagged), or when seats
    were refused in the last 24 hours and the problem is still open.

    Hourly, so an owner hears of it within the hour; at most one email of each kind per
    person, connector and day (UTC): the outbox's unique dedupe key decides, so every
    run after the first that day, in any process, queues nothing more. Disabled SCIM
    gets nothing. Returns counts: connectors of each kind, emails queued.
    """
    silence = timedelta(hours=current_app.config["SCIM_SILENCE_HOURS"])
    counts = {"silent": 0, "seats_refused": 0, "queued": 0}
    for batch in _batches(health.silent_connectors_where(now, silence)):
        for connector in batch:
            counts["silent"] += 1
            counts["queued"] += _alert_silent(connector, silence, now)
            db.session.commit()
    refusing = [
        ScimConnector.enabled.is_(True),
        ScimConnector.id.in_(
            select(ScimProblem.connector_id).where(
                ScimProblem.kind == health.SEATS,
                ScimProblem.resolved_at.is_(None),
                ScimProblem.last_seen_at >= now - health.WINDOW,
            )
        ),
    ]
    for batch in _batches(refusing):
        for connector in batch:
            problem = health.seats_refused(db.session, connector.id, now)
            if problem is not None:
                counts["seats_refused"] += 1
                counts["queued"] += _alert_seats(connector, problem, now)
            db.session.commit()
    return counts


def _utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _alert(connector: ScimConnector, kind: str, subject: str, now: datetime, **context) -> int:
    """Queue today's `kind` email about `connector` for each owner; how many were new."""
    account = db.session.get(Account, connector.account_id)
    queued = 0
    for user_id, email in admin_contacts(db.session, connector.account_id):
        queued += outbox.enqueue(
            db.session,
            email,
            subject.format(account=account.name),
            kind,
            dedupe_key=f"{kind}:{connector.id}:{user_id}:{now.date().isoformat()}",
            now=now,
            account=account.name,
            link=absolute_url("scim_settings.index") + "#provisioning-health",
            **context,
        )
    return queued


def _alert_silent(connector: ScimConnector, silence: timedelta, now: datetime) -> int:
    last = connector.last_used_at
    never = last is None or last < connector.enabled_at
    return _alert(
        connector,
        "scim_silent",
        "Your identity provider has not connected to {account}"
        if never
        else "Your identity provider has gone silent for {account}",
        now,
        hours=round(silence.total_seconds() / 3600),
        never=never,
        last_request=None if never else _utc(last),
        enabled=_utc(connector.enabled_at),
    )


def _alert_seats(connector: ScimConnector, problem: ScimProblem, now: datetime) -> int:
    account = db.session.get(Account, connector.account_id)
    return _alert(
        connector,
        "scim_seats_refused",
        "No licence seat left: users from your identity provider are refused ({account})",
        now,
        count=problem.count,
        first_seen=_utc(problem.first_seen_at),
        last_seen=_utc(problem.last_seen_at),
        seat_limit=account.seat_limit,
        seats_used=account.seats_used,
    )
