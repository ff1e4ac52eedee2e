"""The SCIM request log's rows (SPEC F4, F5: every request is recorded, without its body).

Written in its own transaction, a row would cost every read a transaction of its own (on
SQLite a turn of the one write lock and a sync to disk: the largest part of a lookup's
time), and every write a statement inside its lock. The rows, and the connectors' last
use, are handed to a thread of the process instead, which writes whatever has gathered in
one transaction every `SCIM_LOG_FLUSH_SECONDS`. A token's last use (time and client
address, SPEC F11) goes the same way. The page polls the log every 10 s, so the
delay goes unseen. This is an operational log, not the audit trail: a process killed
outright loses at most that interval of rows (a normal shutdown writes them). With the
setting at 0 (the tests), each row is written at once, after the request's own commit.

A row may carry a provisioning problem (`problem_of`, or a note such as the unknown group
members): the same transaction folds it into the health panel's open problems
(blueprints/scim_settings/health.py), so no SCIM request writes a problem itself.
"""

from __future__ import annotations

import atexit
import logging
import threading
from datetime import datetime

from sqlalchemy import insert, select

from blueprints.common import statistics
from blueprints.common.extensions import db
from blueprints.scim_settings import health
from blueprints.scim_settings.connector import TOKEN_USED, USED
from models import ScimConnector, ScimRequestLog

log = logging.getLogger(__name__)

INSERT = insert(ScimRequestLog.__table__)
INSERT_RETURNING_IDS = INSERT.returning(ScimRequestLog.__table__.c.id, sort_by_parameter_order=True)
CONNECTORS = ScimConnector.__table__
MAX_PENDING = 20_000  # rows kept while the database can't be written; then the oldest go


class RequestLog:
    """Rows waiting to be written, and the thread that writes them, for one app."""

    def __init__(self, app, interval: float):
        self.app = app
        self.interval = interval
        self._lock = threading.Lock()
        self._rows: list[dict] = []
        self._uses: dict[int, datetime] = {}
        self._token_uses: dict[int, tuple[datetime, str | None]] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._dropped = 0
        self._statistics = statistics.Keeper()

    def add(
        self, row: dict | None, use: tuple[int, int | None, datetime, str | None] | None
    ) -> None:
        """Queue a log row and a use: (connector id, token id, time, client address);
        either may be None. The latest use of each connector and token wins."""
        with self._lock:
            if row is not None:
                self._rows.append(row)
                if len(self._rows) > MAX_PENDING:
                    del self._rows[0]
                    self._dropped += 1
            if use is not None:
                connector_id, token_id, now, addr = use
                self._uses[connector_id] = now
                if token_id is not None:
                    self._token_uses[token_id] = (now, addr)
            if self.interval > 0 and self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="scim-request-log", daemon=True
                )
                self._thread.start()
                atexit.register(self.flush)
        if self.interval <= 0:
            self.flush()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self.flush():  # SCIM traffic: the tables it grows may need statistics
                with self.app.app_context():
                    self._statistics.tick(db.engine)

    def flush(self) -> int:
        """Write what has gathered, in one transaction; returns the rows written. On
        failure the rows stay queued for the next turn."""
        with self._lock:
            rows, uses, token_uses = self._rows, self._uses, self._token_uses
            self._rows, self._uses, self._token_uses = [], {}, {}
            dropped, self._dropped = self._dropped, 0
        if dropped:
            log.warning("SCIM request log: %s rows dropped while the database was down", dropped)
        if not rows and not uses and not token_uses:
            return 0
        try:
            with self.app.app_context(), db.engine.begin() as conn:
                if rows:
                    # A connector deleted since (its account gone) takes its rows along.
                    wanted = {row["connector_id"] for row in rows}
                    known = set(
                        conn.scalars(select(CONNECTORS.c.id).where(CONNECTORS.c.id.in_(wanted)))
                    )
                    rows = [row for row in rows if row["connector_id"] in known]
                if rows:
                    _write_rows(conn, rows)
                for connector_id, now in uses.items():
                    conn.execute(USED, {"connector_id": connector_id, "now": now})
                for token_id, (now, addr) in token_uses.items():
                    conn.execute(TOKEN_USED, {"token_id": token_id, "now": now, "addr": addr})
        except Exception:
            log.exception("could not write %s SCIM request log rows; retrying", len(rows))
            with self._lock:
                self._rows[:0] = rows
                for connector_id, now in uses.items():
                    self._uses.setdefault(connector_id, now)
                for token_id, used in token_uses.items():
                    self._token_uses.setdefault(token_id, used)
            return 0
        return len(rows)


def _write_rows(conn, rows: list[dict]) -> None:
    """Insert the log rows; the problems some of them carry go to the health panel with
    the ids of their rows (for its links), in the same transaction. A batch without a
    problem, the usual one, is the plain multi-row insert."""
    if not any("problem" in row for row in rows):
        conn.execute(INSERT, rows)
        return
    plain = [{k: v for k, v in row.items() if k != "problem"} for row in rows]
    ids = conn.execute(INSERT_RETURNING_IDS, plain).scalars().all()
    health.record(
        conn,
        [
            {
                "connector_id": row["connector_id"],
                "kind": row["problem"][0],
                "key": row["problem"][1],
                "detail": row["problem"][2],
                "at": row["created_at"],
                "log_id": log_id,
            }
            for row, log_id in zip(rows, ids, strict=True)
            if "problem" in row
        ],
    )


# --- which problem a refused request shows (SPEC F10) --------------------------------------

LICENCE_LIMIT = "Licence limit reached"  # provisioning.licence_limit()'s detail starts so
# domains.policy.refusal()'s detail: "Invitations to <domain> are not allowed by this
# account's invite controls; …" (SPEC F13), one problem per domain.
INVITATIONS, INVITE_CONTROLS = "Invitations to ", "invite controls"
# domains.policy.managed_elsewhere()'s detail (domain lock), one problem per domain.
MANAGED_ELSEWHERE = " is managed by another organisation."
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def problem_of(
    method: str, resource: str, status: int, scim_type: str | None, detail: str, writes: bool
) -> tuple[str, str, str] | None:
    """(kind, key, detail) of the provisioning problem an error answer shows, or None
    (a 404 for a resource the IdP asked about, a 401, a 429… are no provisioning problem
    an owner can act on here). The key is what repeats when the IdP retries the same
    thing: the conflicting value (in the detail), or the kind of resource and the reason a
    body was refused (not the resource id, so one bad mapping is one problem)."""
    if status == 409 and scim_type == "uniqueness":
        return health.UNIQUENESS, detail[:300], detail[:500]
    if status == 403 and detail.startswith(LICENCE_LIMIT):
        return health.SEATS, "licence limit", f"{method} {resource}"[:500]
    if status == 403 and detail.startswith(INVITATIONS) and INVITE_CONTROLS in detail:
        return health.INVITES, detail[:300], f"{method} {resource}: {detail}"[:500]
    if status == 403 and detail.endswith(MANAGED_ELSEWHERE):
        return health.LOCKED, detail[:300], f"{method} {resource}: {detail}"[:500]
    if writes and method in _BODY_METHODS and status in (400, 413):
        kind = resource.strip("/").split("/", 1)[0] or "/"
        key = f"{method} {kind}: {scim_type or status}: {detail}"[:300]
        return health.REJECTED, key, detail[:500]
    return None
