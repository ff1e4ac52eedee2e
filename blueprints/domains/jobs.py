"""Daily re-check of verified domains (SPEC F2, F8)."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from blueprints.common import audit, outbox
from blueprints.common.accounts import admin_contacts
from blueprints.common.extensions import db
from blueprints.common.urls import absolute_url
from blueprints.domains import services
from models import Domain

# How long a verified domain may miss its record before it stops counting as verified.
LOST_GRACE = timedelta(days=7)


def _warn(session, domain: Domain, kind: str, now: datetime, ended: list[str] = ()) -> None:
    shown = services.display_name(domain.name)
    subject = {
        "lost": f"DNS record for {shown} is missing",
        "revoked": f"{shown} is no longer verified",
    }[kind]
    for user_id, email in admin_contacts(session, domain.account_id):
        outbox.enqueue(
            session,
            email,
            subject,
            f"domain_{kind}",
            # The user id, not the email: an address can be longer than the key column.
            dedupe_key=f"domain-{kind}:{domain.id}:{user_id}:{now.date().isoformat()}",
            now=now,
            domain=shown,
            record_name=services.record_name(domain),
            record_value=services.record_value(domain),
            reason=services.REASONS.get(domain.failure_reason or "", ""),
            days=LOST_GRACE.days,
            ended=list(ended),
            link=absolute_url("domains.index"),
        )


def recheck_verified(now: datetime) -> dict[str, int]:
    """Look up every verified domain's record again.

    A definite "not there" (missing, wrong value, no such domain) starts a grace period and
    warns the owners; after `LOST_GRACE` the domain goes back to failed. A lookup that could
    not finish (timeout, server error) changes nothing: DNS hiccups are not lost records.
    """
    cfg = current_app.config
    counts = {"checked": 0, "ok": 0, "lost": 0, "revoked": 0, "inconclusive": 0}
    ids = db.session.scalars(
        select(Domain.id).where(Domain.status == "verified").order_by(Domain.id)
    ).all()
    for domain_id in ids:
        domain = db.session.get(Domain, domain_id)
        if domain is None or domain.status != "verified":
            continue
        counts["checked"] += 1
        result = services.lookup_txt(
            services.record_name(domain),
            services.record_value(domain),
            cfg["DNS_NAMESERVERS"],
            cfg["DNS_TIMEOUT"],
        )
        if result.ok:
            domain.checked_at, domain.lost_since, domain.failure_reason = now, None, None
            counts["ok"] += 1
        elif result.reason not in services.DEFINITE:
            counts["inconclusive"] += 1
        else:
            domain.checked_at, domain.failure_reason = now, result.reason
            if domain.lost_since is None:
                domain.lost_since = now
                _warn(db.session, domain, "lost", now)
                counts["lost"] += 1
            elif now - domain.lost_since >= LOST_GRACE:
                # No longer verified, so no longer a "lost" verified domain either.
                domain.status, domain.verified_at, domain.lost_since = "failed", None, None
                # Capture and lock belong to a verified domain: they end with it (SPEC F13).
                ended = services.controls_off(domain)
                _warn(
                    db.session,
                    domain,
                    "revoked",
                    now,
                    [services.CONTROLS[name][2] for name in ended],
                )
                audit.record(
                    db.session,
                    "domain.verification_lost",
                    account_id=domain.account_id,
                    target=domain.name,
                    detail={"reason": result.reason} | ({"ended": sorted(ended)} if ended else {}),
                )
                counts["revoked"] += 1
            else:
                counts["lost"] += 1
        db.session.commit()
    return counts
