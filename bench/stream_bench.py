"""Audit log streaming and retention, measured (SPEC F10; issue "[4 of 7]").

Three figures, each beside a thin reference run in the same process:

1. The trigger that queues events: inserting audit events one statement each (as the
   app writes them), with no stream (every account's case until one is configured), with
   a stream (each insert also queues a delivery), against the same table with the
   trigger dropped (reference).
2. Delivery: N queued events sent by the `deliver-audit-streams` job to a receiver on
   loopback that checks every signature, against a bare loop POSTing the same signed
   bodies with urllib3 (no database, no address checks: the reference). Both open a
   connection per event.
3. The retention purge: `purge_events` over --purge-events events, half of them past
   the retention, in batches; seconds and peak RSS growth.

    cd bench && ../.venv/bin/python stream_bench.py [--postgres] [--deliveries 2000]
"""

from __future__ import annotations

import argparse
import hmac
import os
import resource
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta

from scratch import scratch  # bench/scratch.py (this script runs from bench/)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Receiver:
    """A threaded werkzeug server that verifies each signature and counts."""

    def __init__(self, secret: str):
        from werkzeug.serving import make_server
        from werkzeug.wrappers import Request, Response

        self.secret, self.ok, self.bad = secret.encode(), 0, 0

        def app(environ, start_response):
            request = Request(environ)
            stamp = request.headers.get("X-Timestamp", "")
            mac = hmac.new(self.secret, stamp.encode() + b"." + request.get_data(), "sha256")
            good = hmac.compare_digest(
                "sha256=" + mac.hexdigest(), request.headers.get("X-Signature", "")
            )
            self.ok, self.bad = self.ok + good, self.bad + (not good)
            return Response("", 204 if good else 401)(environ, start_response)

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/ingest"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def insert_events(db, account_id: int, n: int, at: datetime) -> float:
    """µs per event, one INSERT each, committed every 100 (the statement's cost, not the
    disk's)."""
    from sqlalchemy import insert

    from models import AuditEvent

    statement = insert(AuditEvent.__table__)
    started = time.perf_counter()
    for i in range(n):
        db.session.execute(
            statement,
            {
                "account_id": account_id,
                "action": "scim.user_updated",
                "target": f"user:u{i}@example.com",
                "detail": {"via": "scim", "changes": {"title": ["A", "B"]}},
                "created_at": at,
            },
        )
        if i % 100 == 99:
            db.session.commit()
    db.session.commit()
    return (time.perf_counter() - started) / n * 1e6


def load_migration():
    """The streaming migration, for its trigger's SQL (migrations/ is not a package)."""
    import importlib.util

    from scratch import ROOT

    path = ROOT / "migrations" / "versions" / "d2e3f4a5b6c7_audit_streaming.py"
    spec = importlib.util.spec_from_file_location("streaming_migration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trigger_cost(db, account_id: int, n: int, postgres: bool) -> dict:
    from sqlalchemy import text

    migration = load_migration()

    results = {}
    for _round in range(3):  # alternate, to spread the machine's noise over all three
        for case in ("no trigger (reference)", "trigger, no stream", "trigger, stream on"):
            if case.startswith("no trigger"):
                db.session.execute(
                    text(
                        "DROP TRIGGER audit_event_stream" + (" ON audit_event" if postgres else "")
                    )
                )
            db.session.execute(
                text("UPDATE audit_stream SET enabled = :on"), {"on": case.endswith("on")}
            )
            db.session.commit()
            results.setdefault(case, []).append(insert_events(db, account_id, n, NOW))
            if case.startswith("no trigger"):
                db.session.execute(
                    text(migration.POSTGRES_TRIGGER if postgres else migration.SQLITE_TRIGGER)
                )
            db.session.execute(text("DELETE FROM audit_delivery"))
            db.session.commit()
    return {case: round(statistics.median(us), 1) for case, us in results.items()}


def delivery(db, account_id: int, receiver: Receiver, n: int) -> dict:
    import urllib3

    from blueprints.audit import jobs, streaming

    insert_events(db, account_id, n, NOW)
    started = time.perf_counter()
    result = jobs.deliver_streams(NOW)
    ours = time.perf_counter() - started
    body = b'{"id":1,"action":"scim.user_updated","detail":{"via":"scim"}}'
    key = receiver.secret.decode()
    started = time.perf_counter()
    for i in range(n):
        stamp = int(time.time())
        pool = urllib3.HTTPConnectionPool("127.0.0.1", receiver.server.server_port, maxsize=1)
        with pool:
            pool.urlopen(
                "POST",
                "/ingest",
                body=body,
                headers={
                    "X-Event-Id": str(i),
                    "X-Timestamp": str(stamp),
                    "X-Signature": streaming.signature(key, stamp, body),
                },
                retries=False,
            )
    thin = time.perf_counter() - started
    return {
        "events": n,
        "delivered": result["delivered"],
        "ours_per_s": round(result["delivered"] / ours),
        "reference_per_s": round(n / thin),
        "ratio": round((result["delivered"] / ours) / (n / thin), 2),
        "bad_signatures": receiver.bad,
    }


def purge(db, accounts: list[int], n: int) -> dict:
    from sqlalchemy import func, insert, select, text

    from blueprints.audit import jobs
    from models import AuditEvent

    db.session.execute(text("UPDATE audit_stream SET enabled = false"))
    db.session.commit()
    statement = insert(AuditEvent.__table__)
    old, new = NOW - timedelta(days=400), NOW - timedelta(days=10)
    chunk = 20_000
    for start in range(0, n, chunk):
        rows = [
            {
                "account_id": accounts[i % len(accounts)],
                "action": "user.sign_in",
                "target": None,
                "detail": None,
                "created_at": (old if i % 2 else new) + timedelta(seconds=i),
            }
            for i in range(start, min(start + chunk, n))
        ]
        db.session.execute(statement, rows)
        db.session.commit()
    before = db.session.scalar(select(func.count()).select_from(AuditEvent))
    rss = rss_mb()
    started = time.perf_counter()
    result = jobs.purge_events(NOW)
    seconds = time.perf_counter() - started
    after = db.session.scalar(select(func.count()).select_from(AuditEvent))
    return {
        "events_before": before,
        "deleted": result["deleted"],
        "events_after": after,
        "seconds": round(seconds, 1),
        "deleted_per_s": round(result["deleted"] / seconds),
        "peak_rss_growth_mb": round(rss_mb() - rss, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--inserts", type=int, default=3000, help="per trigger case and round")
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--purge-events", type=int, default=1_000_000)
    args = parser.parse_args()
    with scratch(args.postgres, "stream-bench"):
        os.environ["OUTBOUND_ALLOW_PRIVATE"] = "1"
        from flask_migrate import upgrade

        from app import create_app, db
        from blueprints.audit import streaming
        from blueprints.auth.services import email_key
        from models import Account, User

        app = create_app({"ARGON2_TIME_COST": 1})
        with app.app_context():
            upgrade()
            account, other = Account(name="Bench Inc"), Account(name="Other Inc")
            user = User(email="owner@example.com", email_key=email_key("owner@example.com"))
            db.session.add_all([account, other, user])
            db.session.commit()
            receiver = Receiver("pending")
            _, secret = streaming.configure(db.session, account.id, user, receiver.url, NOW)
            receiver.secret = secret.encode()
            db.session.commit()
            kind = "PostgreSQL" if args.postgres else "SQLite"
            print(f"stream bench on {kind}, load {os.getloadavg()[0]:.2f}")
            costs = trigger_cost(db, account.id, args.inserts, args.postgres)
            reference = costs["no trigger (reference)"]
            for case, us in costs.items():
                print(f"  insert, {case:24} {us:8.1f} µs/event  {us / reference:5.2f}x")
            sent = delivery(db, account.id, receiver, args.deliveries)
            print(
                f"  delivery: {sent['delivered']:,}/{sent['events']:,} events, "
                f"{sent['ours_per_s']:,}/s vs reference {sent['reference_per_s']:,}/s "
                f"= {sent['ratio']}x, bad signatures {sent['bad_signatures']}"
            )
            receiver.stop()
            purged = purge(db, [account.id, other.id], args.purge_events)
            print(
                f"  purge: {purged['deleted']:,} of {purged['events_before']:,} events in "
                f"{purged['seconds']} s ({purged['deleted_per_s']:,}/s), "
                f"{purged['events_after']:,} kept, peak RSS +{purged['peak_rss_growth_mb']} MB"
            )
            db.session.remove()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
