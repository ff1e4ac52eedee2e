"""Unclaimed accounts at 100,000 people of a domain (issue 20, SPEC F13: "the tab's first
and last page fast, the CSV streamed with flat memory"), through `app.test_client()` (no
HTTP, one thread) on a fresh database.

    .venv/bin/python bench/unclaimed_bench.py                 # temp SQLite database
    .venv/bin/python bench/unclaimed_bench.py --postgres      # scratch PostgreSQL database
    .venv/bin/python bench/unclaimed_bench.py --people 20000 --repeats 5

It migrates a new database, seeds the demo account (`seed_demo(with_scim=True)`: acme.test
verified), then inserts with SQL: `--people` people of acme.test, `--others` people of
other domains (half of them in a subdomain, eu.acme.test, which is not covered), and makes
10 % of the acme.test people members of the account (1 % of them invited, by email, not
linked), and 5 % members of another account (still unclaimed here); then ANALYZE
(PostgreSQL: VACUUM ANALYZE). The owner signs in through the real form.

Each case is requested `--repeats` times after two untimed ones; p50/p95 are nearest-rank
percentiles of the request's wall time (routing, queries, template). Beside them, the
reference: the thinnest read of a page, `SELECT id, email, … FROM user WHERE id > ? ORDER
BY id LIMIT 50` on the primary key, timed the same way in the same process; "x ref" is the
case's p50 over the reference's p50 (the service's SQL alone, `list_unclaimed`, is shown
too). The CSV is read as it streams, timed, with the process's peak RSS before and after
(resource.getrusage) and, in a second run, the peak of Python allocations (tracemalloc).
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import resource
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scratch import scratch  # bench/scratch.py

HX = {"HX-Request": "true", "HX-Current-URL": "http://localhost/enterprise/domains"}
ROWS = re.compile(rb'<td class="email">([^<]*)</td>')


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]


def seed(db, account_id: int, people: int, others: int, chunk: int = 5000) -> dict:
    """The people (Core inserts, as SCIM's create does: email_domain set by hand), the
    memberships, another account; then ANALYZE."""
    from sqlalchemy import insert, text

    from blueprints.domains.services import email_domain
    from models import Account, Membership, User

    t0 = time.perf_counter()
    now = datetime.now(UTC)
    other = db.session.scalars(
        insert(Account).returning(Account.id), [{"name": "Other Corp", "seat_limit": 10**7}]
    ).one()

    def rows(emails):
        return [
            {
                "email": e,
                "email_key": e.lower(),
                "email_domain": email_domain(e),
                "display_name": f"Person {i}",
                "must_change_passphrase": False,
                "session_generation": 1,
                "last_sign_in_at": now - timedelta(hours=i % 1000) if i % 3 else None,
                "created_at": now - timedelta(minutes=i),
            }
            for i, e in emails
        ]

    counts = {"members": 0, "invited": 0, "other_account": 0}
    domain_ids: list[int] = []
    for start in range(0, people, chunk):
        batch = [(i, f"p{i:07d}@acme.test") for i in range(start, min(start + chunk, people))]
        ids = db.session.scalars(
            insert(User).returning(User.id, sort_by_parameter_order=True), rows(batch)
        ).all()
        domain_ids += ids
        members, elsewhere = [], []
        for (i, email), user_id in zip(batch, ids, strict=True):
            if i % 10 == 0:  # a member here: linked, or (1 in 10 of them) invited
                invited = i % 100 == 0
                counts["invited" if invited else "members"] += 1
                members.append(
                    {
                        "account_id": account_id,
                        "user_id": None if invited else user_id,
                        "email": email,
                        "source": "manual",
                        "role": "member",
                        "active": True,
                        "licensed": True,
                        "invitation_token_hash": f"{i:064d}" if invited else None,
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            elif i % 20 == 1:
                counts["other_account"] += 1
                elsewhere.append(
                    {
                        "account_id": other,
                        "user_id": user_id,
                        "email": email,
                        "source": "manual",
                        "role": "member",
                        "active": True,
                        "licensed": True,
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
        db.session.execute(insert(Membership), members + elsewhere)
        db.session.commit()
        print(f"\r  seeded {start + len(batch):,} of {people:,} people", end="", flush=True)
    for start in range(0, others, chunk):
        batch = [
            (i, f"o{i:07d}@{'eu.acme.test' if i % 2 else 'other.test'}")
            for i in range(start, min(start + chunk, others))
        ]
        db.session.execute(insert(User), rows(batch))
        db.session.commit()
    print()
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with db.engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
    unclaimed = people - counts["members"] - counts["invited"]
    return counts | {
        "people": people,
        "others": others,
        "unclaimed": unclaimed,
        "first_id": domain_ids[0],
        "seed_s": round(time.perf_counter() - t0, 1),
    }


def timed(call, repeats: int) -> list[float]:
    for _ in range(2):
        call()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def get(client, path: str, headers=None) -> bytes:
    response = client.get(path, headers=headers)
    body = response.get_data()
    if response.status_code != 200:
        raise SystemExit(f"{path}: {response.status_code}")
    return body


def stream_csv(client, path: str, traced: bool) -> dict:
    if traced:
        tracemalloc.start()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    response = client.get(path)
    size = lines = 0
    for chunk in response.response:
        size += len(chunk)
        lines += chunk.count(b"\n") if isinstance(chunk, bytes) else chunk.count("\n")
    response.close()
    ms = (time.perf_counter() - t0) * 1000
    out = {
        "ms": ms,
        "rows": lines - 1,
        "mb": size / 1e6,
        "rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024,
    }
    if traced:
        out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--others", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    with scratch(args.postgres, "unclaimed-bench") as env:
        from flask_migrate import upgrade
        from sqlalchemy import select

        from app import create_app, db
        from blueprints.common.demo import DEMO_ACCOUNT, DEMO_DOMAIN, seed_demo
        from blueprints.domains import unclaimed
        from models import Account, Domain, User

        kind = "postgresql" if args.postgres else "sqlite"
        print(
            f"unclaimed bench: db={kind}, people={args.people:,} (+{args.others:,} elsewhere), "
            f"repeats={args.repeats}, cores={os.cpu_count()}, {platform.machine()}, "
            f"python {platform.python_version()}, load {[round(x, 2) for x in os.getloadavg()]}"
        )
        app = create_app({"WTF_CSRF_ENABLED": False})
        with app.app_context():
            upgrade()
            seeded = seed_demo(with_scim=True)
            account_id = db.session.scalar(select(Account.id).where(Account.name == DEMO_ACCOUNT))
            domain_id = db.session.scalar(
                select(Domain.id).where(Domain.account_id == account_id, Domain.name == DEMO_DOMAIN)
            )
            info = seed(db, account_id, args.people, args.others)
            db.session.remove()
        print(
            f"seeded in {info['seed_s']} s: {info['unclaimed']:,} unclaimed of {info['people']:,}"
            f" ({info['members']:,} members, {info['invited']:,} invited, "
            f"{info['other_account']:,} members of another account)"
        )
        client = app.test_client()
        login = client.post(
            "/login",
            data={"email": seeded["OWNER_EMAIL"], "passphrase": seeded["OWNER_PASSPHRASE"]},
        )
        if login.status_code != 302:
            raise SystemExit(f"sign-in failed: {login.status_code}")

        base = f"/enterprise/domains/{domain_id}/unclaimed"
        last_page = ROWS.findall(get(client, f"{base}?last=1", HX))
        cases = [
            ("first page (full page)", base, None),
            ("first page (htmx)", base, HX),
            ("page 2 (Next)", f"{base}?after=p0000058@acme.test", HX),
            ("last page (Last)", f"{base}?last=1", HX),
            ("Previous from the last", f"{base}?before={last_page[0].decode()}", HX),
            ("middle (after p0050000)", f"{base}?after=p0050000@acme.test", HX),
            ("search email prefix p00123", f"{base}?q=p00123", HX),
            ("search name 'person 99999'", f"{base}?q=person+99999", HX),
            ("search, no match (whole walk)", f"{base}?q=nobody", HX),
        ]

        def reference():
            with app.app_context():
                db.session.execute(
                    select(User.id, User.email, User.display_name, User.created_at)
                    .where(User.id > info["first_id"] + args.people // 2)
                    .order_by(User.id)
                    .limit(50)
                ).all()
                db.session.remove()

        def service(cursor):
            def call():
                with app.app_context():
                    unclaimed.list_unclaimed(db.session, account_id, DEMO_DOMAIN, cursor)
                    db.session.remove()

            return call

        ref = percentile(timed(reference, args.repeats), 50)
        print(f"\n  reference: 50 users by id (primary key)   p50 {ref:7.2f} ms")
        for label, cursor in (
            ("first", unclaimed.Cursor()),
            ("last", unclaimed.Cursor(last=True)),
            ("no-match search", unclaimed.Cursor(q="nobody")),
        ):
            p50 = percentile(timed(service(cursor), args.repeats), 50)
            ratio = p50 / ref
            print(f"  service list_unclaimed, {label:<16}  p50 {p50:7.2f} ms  {ratio:6.1f} x ref")
        print()
        print(f"  {'case':<32} {'p50 ms':>8} {'p95 ms':>8} {'x ref':>7} {'rows':>5}")
        for name, path, headers in cases:
            shown = len(ROWS.findall(get(client, path, headers)))
            times = timed(
                lambda path=path, headers=headers: get(client, path, headers), args.repeats
            )
            p50, p95 = percentile(times, 50), percentile(times, 95)
            print(f"  {name:<32} {p50:8.1f} {p95:8.1f} {p50 / ref:7.1f} {shown:5d}")

        plain = stream_csv(client, f"{base}.csv", traced=False)
        traced = stream_csv(client, f"{base}.csv", traced=True)
        print(
            f"\n  CSV: {plain['rows']:,} rows, {plain['mb']:.1f} MB in {plain['ms'] / 1000:.2f} s "
            f"({plain['rows'] / plain['ms'] * 1000:,.0f} rows/s); peak RSS growth "
            f"{plain['rss_growth_mb']:.1f} MB; "
            f"tracemalloc peak {traced['tracemalloc_peak_mb']:.1f} MB"
            f" (traced run {traced['ms'] / 1000:.2f} s)"
        )
        with app.app_context():
            db.engine.dispose()
        load = [round(x, 2) for x in os.getloadavg()]
        print(f"load average at the end: {load}; {env['DATABASE_URL']}")


if __name__ == "__main__":
    main()
