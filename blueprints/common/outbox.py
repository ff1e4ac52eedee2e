"""The durable email outbox (SPEC F7).

`enqueue` adds the email to the caller's session, so it commits (or rolls back) with the
change that causes it. `deliver_due` is the job: it claims each due row with a guarded
UPDATE before sending, so two processes never send the same email, and it reschedules
failures with exponential backoff.

Transactions (the rule is in blueprints/common/unit_of_work.py): `enqueue` never commits.
The delivery loop is job machinery and commits per step: each claim before the email
is sent (other processes must see it), a welcome email's new passphrase hash before the
email carrying the passphrase leaves, and each outcome.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timedelta

from flask import current_app, render_template
from flask_mail import Message
from sqlalchemy import insert, or_, select, update

from blueprints.common.extensions import db, mail
from blueprints.common.sql import (
    Bound,
    Prepared,
    execute,
    insert_or_ignore,
    insert_or_ignore_statement,
)
from models import OutboxEmail, utcnow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
CLAIM_SECONDS = 300
BACKOFF_CAP = timedelta(hours=6)


def backoff(attempts: int) -> timedelta:
    """Delay before attempt `attempts + 1`: 1, 2, 4 … minutes, capped at six hours."""
    # The exponent is bounded so a large count (MAX_ATTEMPTS raised) cannot overflow.
    return min(timedelta(minutes=2 ** min(max(attempts - 1, 0), 20)), BACKOFF_CAP)


def message(
    to: str,
    subject: str,
    template: str,
    *,
    dedupe_key: str | None = None,
    now: datetime | None = None,
    **context,
) -> dict:
    """The outbox row of `emails/<template>.txt` (+ `.html`) for `to`, rendered but not
    written: a hot path renders it before it takes any write lock (`add` writes it)."""
    at = now or utcnow()
    return {
        "to_addr": to,
        "subject": subject,
        "body_text": render_template(f"emails/{template}.txt", **context),
        "body_html": render_template(f"emails/{template}.html", **context),
        "dedupe_key": dedupe_key,
        "attempts": 0,
        "next_attempt_at": at,
        "created_at": at,
    }


_INSERT = Prepared(insert(OutboxEmail.__table__))


def add(session, values: dict) -> bool:
    """Write a `message` in the caller's transaction; False if its `dedupe_key` was used."""
    if values.get("dedupe_key") is None:
        execute(session, _INSERT, values)
        return True
    return insert_or_ignore(session, OutboxEmail.__table__, values, ["dedupe_key"])


def bind_add(dialect, values: dict, late: tuple[str, ...] = ()) -> Bound:
    """`add`'s statement for `values`, bound ahead (`sql.Prepared.bind`)."""
    if values.get("dedupe_key") is None and "dedupe_key" not in late:
        return _INSERT.bind(dialect, values, late)
    statement = insert_or_ignore_statement(dialect.name, OutboxEmail.__table__, ["dedupe_key"])
    return statement.bind(dialect, values, late)


def enqueue(
    session,
    to: str,
    subject: str,
    template: str,
    *,
    dedupe_key: str | None = None,
    now: datetime | None = None,
    **context,
) -> bool:
    """Queue `emails/<template>.txt` (+ `.html`) for `to`; False if `dedupe_key` was used."""
    return add(session, message(to, subject, template, dedupe_key=dedupe_key, now=now, **context))


DELIVERY_RENDERED_BODY = "(made at delivery: holds a secret, never stored)"


def welcome(user_id: int | None, email: str, account_name: str, at: datetime) -> dict:
    """The outbox row of a provisioned person's welcome email (`enqueue_welcome`). Its
    body is made at delivery; `dedupe_key` is "welcome:<user id>" (None until the id is
    known: the SCIM create on PostgreSQL writes it with the person, in one statement)."""
    return {
        "to_addr": email,
        "subject": f"Welcome to {account_name}",
        "body_text": DELIVERY_RENDERED_BODY,
        "body_html": None,
        "dedupe_key": None if user_id is None else _welcome_key(user_id),
        "kind": "welcome",
        "user_id": user_id,
        "attempts": 0,
        "next_attempt_at": at,
        "created_at": at,
    }


def _welcome_key(user_id: int) -> str:
    return f"welcome:{user_id}"


def bind_welcome(dialect, email: str, account_name: str, at: datetime) -> Bound:
    """`enqueue_welcome`'s statement, bound ahead (`sql.Prepared.bind`) for a person not
    inserted yet: run it with `welcome_of(<their id>)`."""
    return bind_add(dialect, welcome(0, email, account_name, at), ("user_id", "dedupe_key"))


def welcome_of(user_id: int) -> dict:
    """The values `bind_welcome`'s statement takes at run time."""
    return {"user_id": user_id, "dedupe_key": _welcome_key(user_id)}


def enqueue_welcome(
    session, user_id: int, email: str, account_name: str, now: datetime | None = None
) -> None:
    """Queue the welcome email of a provisioned person (SPEC F5, F7).

    Its initial passphrase does not exist yet: the delivery job makes it, stores only its
    argon2id hash and sends it, so the slow hash is off the SCIM request path and the
    clear passphrase rests nowhere."""
    insert_or_ignore(  # once per person, however often the IdP re-creates them
        session,
        OutboxEmail.__table__,
        welcome(user_id, email, account_name, now or utcnow()),
        ["dedupe_key"],
    )


def _render_welcome(email: OutboxEmail) -> tuple[str, str]:
    """A fresh initial passphrase for the person (replacing one an earlier, undelivered
    attempt made), committed as a hash before the email leaves."""
    import secrets

    from blueprints.common.passphrases import hash_passphrase
    from blueprints.common.urls import absolute_url
    from models import User

    user = db.session.get(User, email.user_id)
    passphrase = None
    if user.passphrase_hash is None or user.must_change_passphrase:
        passphrase = "-".join(secrets.token_urlsafe(6) for _ in range(4))
        user.passphrase_hash = hash_passphrase(passphrase)
        user.must_change_passphrase = True
        db.session.commit()
    context = {
        "account_name": email.subject.removeprefix("Welcome to "),
        "email": user.email,
        "passphrase": passphrase,
        "login_url": absolute_url("auth.login"),
    }
    return (
        render_template("emails/welcome.txt", **context),
        render_template("emails/welcome.html", **context),
    )


def _send(email: OutboxEmail, body_text: str | None = None, body_html: str | None = None) -> None:
    body_text = body_text or email.body_text
    body_html = body_html or email.body_html
    if not current_app.config.get("MAIL_SERVER"):
        # No SMTP configured (the run command's default): show the email to the developer.
        print(
            f"\n----- email to {email.to_addr} -----\nSubject: {email.subject}\n\n"
            f"{body_text}\n----- end of email -----",
            file=sys.stdout,
            flush=True,
        )
        return
    mail.send(
        Message(
            subject=email.subject,
            recipients=[email.to_addr],
            body=body_text,
            html=body_html,
            sender=current_app.config["MAIL_DEFAULT_SENDER"],
        )
    )


def _claim(email_id: int, now: datetime) -> bool:
    """Take one row for this process; False when another process has it or it is done."""
    table = OutboxEmail.__table__
    result = db.session.execute(
        update(table)
        .where(
            table.c.id == email_id,
            table.c.sent_at.is_(None),
            table.c.failed_at.is_(None),
            or_(table.c.claimed_until.is_(None), table.c.claimed_until <= now),
        )
        .values(claimed_until=now + timedelta(seconds=CLAIM_SECONDS))
    )
    db.session.commit()
    return result.rowcount == 1


def deliver_due(now: datetime, limit: int = 100) -> dict[str, int]:
    """Send the emails that are due at `now`; returns counts of sent, retried, failed."""
    counts = {"sent": 0, "retried": 0, "failed": 0}
    due_ids = db.session.scalars(
        select(OutboxEmail.id)
        .where(
            OutboxEmail.sent_at.is_(None),
            OutboxEmail.failed_at.is_(None),
            OutboxEmail.next_attempt_at <= now,
            or_(OutboxEmail.claimed_until.is_(None), OutboxEmail.claimed_until <= now),
        )
        .order_by(OutboxEmail.id)
        .limit(limit)
    ).all()
    for email_id in due_ids:
        if not _claim(email_id, now):
            continue
        email = db.session.get(OutboxEmail, email_id)
        email.attempts += 1
        try:
            if email.kind == "welcome" and email.user_id is not None:
                _send(email, *_render_welcome(email))
            else:
                _send(email)
        except Exception as exc:  # SMTP errors come in many types; all mean "try later"
            email.last_error = f"{type(exc).__name__}: {exc}"[:500]
            email.claimed_until = None
            if email.attempts >= MAX_ATTEMPTS:
                email.failed_at = now
                counts["failed"] += 1
                log.error("email %s given up after %s attempts", email.id, email.attempts)
            else:
                email.next_attempt_at = now + backoff(email.attempts)
                counts["retried"] += 1
                log.warning("email %s not delivered, retrying: %s", email.id, email.last_error)
        else:
            email.sent_at = now
            email.claimed_until = None
            email.last_error = None
            counts["sent"] += 1
        db.session.commit()
    return counts
