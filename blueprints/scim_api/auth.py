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

On PostgreSQL, a create (POST /Users, which IdPs send by the thousand) skips the
statement when this process accepted the same token, for the same connector and address,
before: the create's own first statement reads the connector and token again
(users._BEFORE_CREATE_CONFIRMING), and `confirm` gives the verdict on that row before
anything is written. A token revoked, expired, restricted or made read-only meanwhile, a
connector disabled or put in preview, is caught there (`Unconfirmed`: the full check
answers, or the create starts again), and an error answered before that read is replaced
by the full check's refusal, if any (`refusal_instead`): such a request gets exactly the
answer it would have got. SQLite runs statements in process: there the check costs less
than the columns it would add to the create's read, so it stays a statement of its own.
"""

from __future__ import annotations

import re

from flask import g, request

from blueprints.common.extensions import db
from blueprints.scim_api import admission
from blueprints.scim_api.admission import call, per_app
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


_REMEMBERED = 1000  # accepted (connector, token, address) triples kept per process


class Unconfirmed(Exception):
    """The create's read found the token no longer good for what was assumed of it."""


def _remembered() -> dict:
    """This process's accepted triples: (connector id in the URL, token hash, address) ->
    the Caller the full check gave."""
    return per_app("scim_callers", dict)


def _key(public_id: str) -> tuple:
    presented = connectors.presented_hash(request.headers.get("Authorization"))
    return public_id, presented, request.remote_addr


def _folds() -> bool:
    """Whether this request's bearer check may be left to its first statement: a create,
    on a server database (where a statement fewer is a round trip fewer)."""
    return call().one_statement and per_app("scim_folds", _server_database)


def _server_database() -> bool:
    return db.engine.dialect.name != "sqlite"


def unconfirmed() -> bool:
    """Whether this request left its bearer check to its first statement (`confirm`)."""
    return g.get("scim_unconfirmed") is not None


def authenticate():
    """before_request: the bearer check; 401 with a SCIM error when refused. A create
    with a token accepted before leaves it to the create's read (`confirm`)."""
    public_id = g.connector_public_id
    key = _key(public_id) if public_id is not None and _folds() else None
    if key is not None:
        caller = _remembered().get(key)
        if caller is not None and (caller.expires_at is None or utcnow() < caller.expires_at):
            g.scim_connector = g.scim_log_connector = caller
            g.scim_unconfirmed = key
            return None
    return _check(key)


def confirm(row) -> None:
    """The bearer check's verdict on the create's read (`row`, of
    users._BEFORE_CREATE_CONFIRMING) for a create that skipped the check; called before
    it writes anything. Raises `Unconfirmed` unless the token is still accepted for the
    same connector, writable and live; else the request goes on with the connector as
    now read."""
    key = g.get("scim_unconfirmed")
    if key is None:
        return
    # (The row's connector and token are the assumed ones: the read joins them by id.)
    result = connectors.decide(row, key[1], utcnow(), key[2])
    if result.reason is not None or not _rememberable(result.connector):
        raise Unconfirmed()
    caller = result.connector
    del g.scim_unconfirmed
    g.scim_connector = g.scim_log_connector = caller
    _remember(key, caller)


def check_again():
    """The full bearer check for a create whose read did not confirm its token (or that
    got to its writes without that read): None when accepted (the create starts again),
    else the refusal to answer. What the create wrote is rolled back."""
    db.session.rollback()
    return _check(g.pop("scim_unconfirmed"))


def refusal_instead(response):
    """The answer to give instead of `response`, an error answered before the token was
    confirmed: the full check's refusal when the token is not good (a revoked token's
    malformed create gets 401, not 400), else `response`. Throttling and busy answers
    (429, 503) stand: they only ask the client to come back."""
    if not unconfirmed() or response.status_code in (429, 503):
        return response
    return check_again() or response


def _rememberable(caller: connectors.Caller) -> bool:
    """Whether a create may skip the check for this caller next time: not when its
    token is read-only (403) or the connector previews (the writes are not applied)."""
    return not caller.read_only and caller.mode == "live"


def _remember(key: tuple, caller: connectors.Caller) -> None:
    remembered = _remembered()
    if len(remembered) >= _REMEMBERED and key not in remembered:
        remembered.clear()  # (an IdP uses a few addresses; a flood of them starts over)
    remembered[key] = caller


def _check(key: tuple | None):
    """The bearer check, in full: one statement (connectors.authenticate). With `key`
    (`_key`: a create that may fold its next check), an accepted caller is remembered
    under it for the next create, a refused one forgotten."""
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
        if key is not None and _rememberable(result.connector):
            _remember(key, result.connector)
        return None
    if key is not None:
        _remembered().pop(key, None)
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
