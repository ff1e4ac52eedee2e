"""Bearer authentication for the SCIM blueprint (SPEC F4, F5).

The connector id is popped from the URL into `g` (Flask's URL-processor pattern); every
request is checked against that connector's tokens only: one indexed statement (the
token by the presented hash, joined to its connector, which must be the URL's), a
constant-time compare of the hash, the token's revocation, expiry and IP allow-list, and
whether SCIM is on (scim_settings/connector.py); a read-only token's writes get 403. A
refused request to a known connector is logged too (`g.scim_log_connector`), so a
misconfigured IdP shows up on the SCIM page; only an accepted one sets `g.scim_connector`.

The check only reads: the connector's and the token's last use are stamped by the
batched request log with the request's log row, so no request holds the database's write
lock (SQLite's is one for all processes) while it waits for its turn.
"""

from __future__ import annotations

import re

from flask import g, request

from blueprints.common.extensions import db
from blueprints.scim_api import admission
from blueprints.scim_api.admission import call
from blueprints.scim_api.errors import error_response
from blueprints.scim_settings import connector as connectors
from blueprints.scim_settings import health
from models import utcnow

_DETAILS = {
    "missing": "Authentication is required: send 'Authorization: Bearer <token>'.",
    "unknown": "The bearer token is not valid for this SCIM connector.",
    "disabled": "SCIM provisioning is disabled for this account.",
}
# What `secrets.token_urlsafe(16)` produces, with room to spare: anything else (a NUL
# byte, which PostgreSQL refuses in text, or a 10 kB id) is unknown without a query.
_PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def pop_connector_id(endpoint, values) -> None:
    """url_value_preprocessor: the connector id of the URL into `g` (None when it could
    not be one)."""
    public_id = (values or {}).pop("connector_id", None) or ""
    g.connector_public_id = public_id if _PUBLIC_ID.fullmatch(public_id) else None


def authenticate():
    """before_request: the bearer check; 401 with a SCIM error when refused."""
    public_id = g.connector_public_id
    if public_id is not None:
        result = connectors.authenticate(
            db.session,
            public_id,
            request.headers.get("Authorization"),
            utcnow(),
            False,
            request.remote_addr,
        )
    else:
        result = connectors.Authentication(None, "unknown")
    if result.reason is None:
        g.scim_connector = g.scim_log_connector = result.connector
        if result.connector.read_only and call().writes:
            return _read_only(result.connector)
        return None
    throttled = admission.failed_authentication(request.remote_addr or "")
    if throttled is not None:
        return throttled  # a client guessing tokens: no log row, so a flood costs no writes
    known = result.connector or result.known
    if known is None and public_id is not None:
        known = connectors.find_caller(db.session, public_id)
    g.scim_log_connector = known
    if result.reason == "expired":
        expired = result.connector.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        # Today's wording (IdP admins and our docs quote it), naming the token.
        detail = (
            f"The SCIM token expired on {expired}. An account owner must refresh it (the "
            f'token "{result.connector.token_name}") on the SCIM page (Refresh Token); '
            "nothing was provisioned."
        )
    elif result.reason == "address":
        detail = _address_refused(result.connector, request.remote_addr)
    elif result.reason == "revoked":
        revoked = result.connector.revoked_at.strftime("%Y-%m-%d %H:%M UTC")
        detail = (
            f'The SCIM token "{result.connector.token_name}" was revoked on {revoked}. Use '
            "another token of this connector; nothing was provisioned."
        )
    else:
        detail = _DETAILS.get(result.reason, _DETAILS["unknown"])
    return error_response(401, detail, headers={"WWW-Authenticate": 'Bearer realm="SCIM"'})


def _address_refused(caller: connectors.Caller, addr: str | None) -> str:
    """401 for a good token from an address outside its allow-list; on the SCIM page as a
    provisioning problem (an IdP whose egress addresses changed stops provisioning)."""
    shown = addr or "an unknown address"
    detail = (
        f'Requests from {shown} are not allowed with the SCIM token "{caller.token_name}": '
        "its IP allow-list does not include that address. An account owner can change "
        "the allow-list on the SCIM page; nothing was provisioned."
    )
    g.scim_problem = (health.ACCESS, f"{caller.token_name}: address {shown}", detail)
    return detail


def _read_only(caller: connectors.Caller):
    """403 for a write with a read-only token (RFC 7644 §3.12: not permitted)."""
    detail = (
        f'The SCIM token "{caller.token_name}" is read-only: it may read (GET, POST '
        "/.search) but not create, change or delete anything; nothing was changed."
    )
    g.scim_problem = (health.ACCESS, f"{caller.token_name}: read-only", detail)
    return error_response(403, detail)
