"""Hourly clean-up of SSO state that can no longer be used (SPEC F8)."""

from __future__ import annotations

from datetime import datetime

from blueprints.common.extensions import db
from blueprints.sso import saml, services


def purge_expired(now: datetime) -> dict[str, int]:
    """Delete expired sign-in flows (anyone can start one from /login) and SAML
    assertion ids past their validity (they can't be replayed any more)."""
    flows = services.purge_flows(db.session, now)
    assertions = saml.purge_used_assertions(db.session, now)
    db.session.commit()
    return {"flows": flows, "assertions": assertions}
