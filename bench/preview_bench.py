"""The SCIM preview's forecast (SPEC F12, dry run) for `--users` pushed users (default
5,000; target: under 2 s), beside a plain COUNT over the same rows as a reference; and
the rate of real preview creates (POST /Users through the app, each a savepoint rolled
back and a forecast row) for `--push` of them (default 500).

    .venv/bin/python bench/preview_bench.py                 # SQLite (temp file)
    .venv/bin/python bench/preview_bench.py --postgres      # scratch PostgreSQL

The first `--push` users go through the API; the rest are inserted as the rows those
requests write (70% new people, 15% matched, 10% invited, 5% collisions), with 1,000
seats fewer than needed, so that the forecast's refusal cut-off has work to do. Prints
one JSON line per phase (the forecast: best and median of 5).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scratch import scratch

USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def document(i: int, scim_id: str, now: str) -> dict:
    """A user as a preview answers it (the size of an Okta create's answer)."""
    name = f"user{i}@example.com"
    return {
        "schemas": [USER],
        "id": scim_id,
        "userName": name,
        "name": {"givenName": f"Given{i}", "familyName": f"Family{i}"},
        "emails": [{"value": name, "type": "work", "primary": True}],
        "displayName": f"Given{i} Family{i}",
        "locale": "en-US",
        "externalId": f"00u{i:010d}",
        "active": True,
        "meta": {
            "resourceType": "User",
            "created": now,
            "lastModified": now,
            "location": f"http://127.0.0.1:5000/scim/v2/x/Users/{scim_id}",
            "version": 'W/"1"',
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--push", type=int, default=500)
    args = parser.parse_args()
    database = "postgresql" if args.postgres else "sqlite"
    with scratch(args.postgres, "preview-bench"):
        from flask_migrate import upgrade
        from sqlalchemy import func, insert, select

        from app import create_app, db
        from blueprints.scim_api import preview
        from blueprints.scim_settings import connector as service
        from models import Account, Domain, Membership, ScimPreview, SsoConnection, User, utcnow

        app = create_app()
        with app.app_context():
            upgrade()
            session = db.session
            now = utcnow()
            account = Account(name="Bench", seat_limit=args.users, seats_used=1)
            session.add(account)
            session.flush()
            owner = User(email="owner@example.com", email_key="owner@example.com")
            session.add(owner)
            session.flush()
            session.add(
                Membership(account_id=account.id, user_id=owner.id, role="owner", source="manual")
            )
            session.add(
                Domain(account_id=account.id, name="example.com", token="t", status="verified")
            )
            session.add(
                SsoConnection(
                    account_id=account.id, public_id="bench", protocol="oidc", enabled=True
                )
            )
            session.flush()
            issued = service.enable(session, account.id, owner, "okta", "90", now, mode="preview")
            session.commit()
            connector_id, token = issued.connector.id, issued.token
            base = f"/scim/v2/{issued.connector.public_id}"

            # Real preview creates through the app.
            client = app.test_client()
            headers = {"Authorization": f"Bearer {token}"}
            push = min(args.push, args.users)
            t0 = time.perf_counter()
            for i in range(push):
                body = document(i, "", "")
                del body["id"], body["meta"]
                response = client.post(f"{base}/Users", json=body, headers=headers)
                assert response.status_code == 201, response.get_data(as_text=True)
            elapsed = time.perf_counter() - t0
            print(
                json.dumps(
                    {
                        "phase": "push",
                        "database": database,
                        "requests": push,
                        "seconds": round(elapsed, 2),
                        "per_second": round(push / elapsed, 1) if push else None,
                    }
                )
            )

            # The rest as the rows those requests write.
            stamp = now.isoformat().replace("+00:00", "Z")
            rows = []
            for i in range(push, args.users):
                scim_id = str(uuid.uuid4())
                share = i % 20
                outcome = (
                    "collision"
                    if share == 0
                    else "invited"
                    if share <= 2
                    else "matched"
                    if share <= 5
                    else "created"
                )
                email = f"user{i}@example.com"
                rows.append(
                    {
                        "connector_id": connector_id,
                        "kind": "User",
                        "scim_id": None if outcome == "collision" else scim_id,
                        "user_name_key": email,
                        "external_id": f"00u{i:010d}",
                        "email_key": email if outcome in ("created", "matched") else None,
                        "document": None if outcome == "collision" else document(i, scim_id, stamp),
                        "outcome": outcome,
                        "detail": {"email": email, "userName": email}
                        if outcome != "collision"
                        else {"name": email, "error": "A user with userName … exists."},
                        "needs_seat": outcome != "collision",
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            for start in range(0, len(rows), 2000):
                session.execute(insert(ScimPreview), rows[start : start + 2000])
            needing = session.scalar(
                select(func.count())
                .select_from(ScimPreview)
                .where(ScimPreview.needs_seat.is_(True))
            )
            account = session.get(Account, account.id)
            account.seat_limit = account.seats_used + max(needing - 1000, 0)
            session.commit()

            def timed(run) -> tuple[float, float]:
                times = []
                for _ in range(5):
                    session.expire_all()
                    t0 = time.perf_counter()
                    run()
                    times.append(time.perf_counter() - t0)
                    session.rollback()
                return min(times), statistics.median(times)

            result = preview.forecast(session, connector_id, account.id)
            best, median = timed(lambda: preview.forecast(session, connector_id, account.id))
            print(
                json.dumps(
                    {
                        "phase": "forecast",
                        "database": database,
                        "rows": args.users,
                        "best_seconds": round(best, 4),
                        "median_seconds": round(median, 4),
                        "counts": result.counts,
                        "seats_needed": result.seats_needed,
                        "seats_free": result.seats_free,
                    }
                )
            )
            best, median = timed(
                lambda: session.scalar(
                    select(func.count())
                    .select_from(ScimPreview)
                    .where(ScimPreview.connector_id == connector_id)
                )
            )
            print(
                json.dumps(
                    {
                        "phase": "reference-count",
                        "database": database,
                        "rows": args.users,
                        "best_seconds": round(best, 4),
                        "median_seconds": round(median, 4),
                    }
                )
            )
            db.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
