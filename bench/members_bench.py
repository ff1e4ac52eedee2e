"""The Members page at 100,000 members (SPEC F6, issue 6: "It stays fast at 100,000
members"): list, search, filters, sorts, deep pages, the Teams tab, a 50,000-member team
and the full CSV export, through `app.test_client()` (no gunicorn, no network, one
thread) on a fresh database.

    .venv/bin/python bench/members_bench.py                    # temp SQLite database
    .venv/bin/python bench/members_bench.py --postgres         # scratch PostgreSQL database
    .venv/bin/python bench/members_bench.py --members 20000 --repeats 5 --json-out x.json

It migrates a new database (flask_migrate.upgrade), seeds the demo account
(`seed_demo(with_scim=True)`: SCIM on, so provisioned members are read-only), then inserts
the members with SQL in batches: about 90 % provisioned by SCIM (with their person, as a
SCIM create in a verified domain makes them), 10 % manual, 3 % deactivated, 1 % invited
(no person yet), a last sign-in for 40 % of the people; 20 teams, one of 50,000 members
and 19 of 500; the seats counted in `Account.seats_used`; then ANALYZE (PostgreSQL: VACUUM
ANALYZE, as autovacuum would). The owner signs in
through the real form and each case is requested `--repeats` times (after two untimed
requests): p50/p95 are nearest-rank percentiles of the wall time of the request in the
test client (routing, queries, templates; no HTTP). "sql" is the time spent in the
database driver's execute calls during the same request. The export is timed once per
`--export-repeats`, the body read as it streams, while a thread samples the process's RSS
(psutil) every 20 ms; then once more under tracemalloc for the peak of Python allocations.

Cases whose p50 is over `--explain-over` ms get the EXPLAIN (QUERY PLAN on SQLite,
ANALYZE + BUFFERS on PostgreSQL) of their two slowest statements. Nothing is asserted. The
results go to bench/results/members-<db>-<stamp>.json (or `--json-out`). With `--postgres`
the scratch database `members_bench_<random>` on postgresql+psycopg://postgres@127.0.0.1:5432
(`BENCH_PG_URL` overrides) is dropped at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import resource
import sys
import threading
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scratch import ROOT, scratch  # bench/scratch.py (this script runs from bench/)

HX = {"HX-Request": "true", "HX-Current-URL": "http://localhost/enterprise/members"}
BIG_TEAM, SMALL_TEAMS, SMALL_TEAM_SIZE = 50_000, 19, 500

FIRST = (  # noqa: SIM905
    "Ada Alan Barbara Claude Donald Edsger Frances Grace Hedy John Katherine Leslie "
    "Linus Margaret Niklaus Radia Robin Shafi Sophie Tim Whitfield Yukihiro Ken "
    "Dennis Guido Anita Bjarne Dorothy Erna Fran Joan Karen Lynn Mary Ivan Jean "
    "Sandra Tony Vint Wang"
).split()
LAST = (  # noqa: SIM905
    "Lovelace Turing Liskov Shannon Knuth Dijkstra Allen Hopper Lamarr McCarthy "
    "Johnson Lamport Torvalds Hamilton Wirth Perlman Milner Goldwasser Wilson "
    "Berners-Lee Diffie Matsumoto Thompson Ritchie Rossum Borg Stroustrup Vaughan "
    "Hoover Bilas Clarke Jones Conway Keller Sutherland Sammet Cerf Hoare Kahan "
    "Backus Naur Floyd Iverson"
).split()


def _search_columns(row: dict) -> dict:
    """search_key and sort_name, computed by the model's own refresh_search."""
    from models import Membership

    keys = ("email", "display_name", "given_name", "family_name", "user_name")
    member = Membership(**{key: row[key] for key in keys})
    member.refresh_search()
    return {"search_key": member.search_key, "sort_name": member.sort_name}


def person(i: int) -> tuple[str, str, str]:
    """Member i's given name, family name and email (unique by i)."""
    given = FIRST[i % len(FIRST)]
    family = LAST[(i // len(FIRST)) % len(LAST)]
    return given, family, f"{given}.{family}.{i}@acme.test".lower()


def fingerprint(*extra: str) -> str:
    """A hash of the product code (and the page's templates; `extra`: more globs below
    the project): figures from different code are not comparable."""
    digest = hashlib.sha256()
    files = [ROOT / "app.py", ROOT / "models.py", *sorted((ROOT / "blueprints").rglob("*.py"))]
    for pattern in extra or ("templates/members/*.html",):
        files += sorted(ROOT.glob(pattern))
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]


# --- seeding ----------------------------------------------------------------------------------


def seed(db, account_id: int, n: int, chunk: int, rng: random.Random) -> dict:
    """Insert `n` members of the account with SQL (Core executemany, `chunk` rows a batch),
    the 20 teams and their members, and count the seats."""
    from sqlalchemy import insert, update

    from models import Account, Membership, Team, TeamMember, User

    t0 = time.perf_counter()
    now = datetime.now(UTC)
    counts = {"scim": 0, "manual": 0, "deactivated": 0, "invited": 0, "signed_in": 0}
    member_ids: list[int] = []
    licensed = 0
    for start in range(1, n + 1, chunk):
        batch = range(start, min(start + chunk, n + 1))
        kinds = []
        for _ in batch:
            r = rng.random()
            kind = "manual" if r < 0.10 else "invited" if r < 0.11 else "scim"
            kinds.append((kind, r >= 0.11 and r < 0.14))  # 3 % deactivated
        people = [person(i) for i in batch]
        with_user = [
            (i, p)
            for i, p, (kind, _) in zip(batch, people, kinds, strict=True)
            if kind != "invited"
        ]
        user_rows = []
        for _, (given, family, email) in with_user:
            signed_in = rng.random() < 0.4
            counts["signed_in"] += signed_in
            user_rows.append(
                {
                    "email": email,
                    "email_key": email.lower(),
                    "display_name": f"{given} {family}",
                    "passphrase_hash": None,
                    "must_change_passphrase": False,
                    "session_generation": 1,
                    "last_sign_in_at": now - timedelta(minutes=rng.randrange(90 * 24 * 60))
                    if signed_in
                    else None,
                    "created_at": now,
                }
            )
        ids = db.session.scalars(
            insert(User).returning(User.id, sort_by_parameter_order=True), user_rows
        ).all()
        user_of = dict(zip((i for i, _ in with_user), ids, strict=True))
        rows = []
        for i, (given, family, email), (kind, deactivated) in zip(
            batch, people, kinds, strict=True
        ):
            scim = kind != "manual"
            counts["scim" if scim else "manual"] += 1
            counts["invited"] += kind == "invited"
            counts["deactivated"] += deactivated
            licensed += not deactivated
            created = now - timedelta(minutes=n - i)
            rows.append(
                {
                    "account_id": account_id,
                    "user_id": user_of.get(i),
                    "scim_id": str(uuid.uuid4()) if scim else None,
                    "role": "member",
                    "source": "scim" if scim else "manual",
                    "active": not deactivated,
                    "licensed": not deactivated,
                    "external_id": f"00u{i:09d}" if scim else None,
                    "user_name": email if scim else None,
                    "user_name_key": email.lower() if scim else None,
                    "email": email,
                    # Manual members get their person's name copied, as the app does.
                    "display_name": f"{given} {family} {i}",
                    "display_name_key": f"{given} {family} {i}".lower() if scim else None,
                    "given_name": given if scim else None,
                    "family_name": family if scim else None,
                    "scim_resource": {
                        "externalId": f"00u{i:09d}",
                        "userName": email,
                        "name": {"givenName": given, "familyName": family},
                        "displayName": f"{given} {family} {i}",
                        "active": not deactivated,
                        "emails": [{"value": email, "type": "work", "primary": True}],
                    }
                    if scim
                    else None,
                    "invitation_token_hash": hashlib.sha256(f"invite-{i}".encode()).hexdigest()
                    if kind == "invited"
                    else None,
                    "invited_at": created if kind == "invited" else None,
                    "version": 1,
                    "created_at": created,
                    "updated_at": created,
                }
            )
        for row in rows:  # the Members page's search columns, as the app writes them
            row.update(_search_columns(row))
        member_ids += db.session.scalars(
            insert(Membership).returning(Membership.id, sort_by_parameter_order=True), rows
        ).all()
        db.session.commit()
        print(f"\r  seeded {len(member_ids):,} of {n:,} members", end="", flush=True)
    print()

    sizes = [min(BIG_TEAM, n)] + [min(SMALL_TEAM_SIZE, n)] * SMALL_TEAMS
    names = ["All staff"] + [f"Engineering {k:02d}" for k in range(1, SMALL_TEAMS + 1)]
    team_ids = db.session.scalars(
        insert(Team).returning(Team.id, sort_by_parameter_order=True),
        [
            {
                "scim_id": str(uuid.uuid4()),
                "account_id": account_id,
                "display_name": name,
                "display_name_key": name.lower(),
                "external_id": f"00g{k:09d}",
                "source": "scim",
                "version": 1,
                "created_at": now,
                "updated_at": now,
            }
            for k, name in enumerate(names)
        ],
    ).all()
    team_rows = 0
    for team_id, size in zip(team_ids, sizes, strict=True):
        chosen = rng.sample(member_ids, size)
        for at in range(0, size, chunk):
            db.session.execute(
                insert(TeamMember),
                [
                    {"team_id": team_id, "membership_id": m, "created_at": now}
                    for m in chosen[at : at + chunk]
                ],
            )
        team_rows += size
        db.session.commit()
    db.session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(seats_used=Account.seats_used + licensed)
    )
    db.session.commit()
    seeded = time.perf_counter() - t0
    t0 = time.perf_counter()
    analyze(db)
    return {
        **counts,
        "members": n,
        "team_members": team_rows,
        "big_team": team_ids[0],
        "small_team": team_ids[1],
        "seed_s": round(seeded, 1),
        "analyze_s": round(time.perf_counter() - t0, 1),
    }


def analyze(db) -> None:
    """What autovacuum would have done after a bulk load (the PostgreSQL here runs with it
    off): VACUUM ANALYZE, so the planner has statistics and index-only scans work (the
    visibility map). SQLite: ANALYZE."""
    from sqlalchemy import text

    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        return
    with db.engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()


# --- measuring --------------------------------------------------------------------------------


class SqlLog:
    """The statements one request runs, with the time spent in the driver's execute."""

    def __init__(self, engine):
        from sqlalchemy import event

        self.statements: list[tuple[float, str, object]] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        conn.info.setdefault("bench_t0", []).append(time.perf_counter())

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        elapsed = time.perf_counter() - conn.info["bench_t0"].pop()
        self.statements.append((elapsed * 1000, statement, parameters))

    def take(self) -> list[tuple[float, str, object]]:
        taken, self.statements = self.statements, []
        return taken


def timed_get(client, path: str, headers: dict | None, log: SqlLog, rows=None) -> dict:
    """One request, timed, with its statements; with `rows` (a bytes regex with one
    group), the ids of the rows it listed too."""
    log.take()
    t0 = time.perf_counter()
    response = client.get(path, headers=headers)
    body = response.get_data()
    ms = (time.perf_counter() - t0) * 1000
    statements = log.take()
    return {
        "ms": ms,
        "status": response.status_code,
        "bytes": len(body),
        "sql_ms": sum(s[0] for s in statements),
        "statements": statements,
    } | ({"ids": [int(i) for i in rows.findall(body)]} if rows is not None else {})


def measure(client, name: str, path: str, headers: dict | None, repeats: int, log) -> dict:
    for _ in range(2):
        timed_get(client, path, headers, log)
    runs = [timed_get(client, path, headers, log) for _ in range(repeats)]
    times = [r["ms"] for r in runs]
    sql = [r["sql_ms"] for r in runs]
    slowest = sorted(runs[-1]["statements"], key=lambda s: s[0], reverse=True)[:2]
    return {
        "name": name,
        "path": path,
        "htmx": bool(headers),
        "statuses": sorted({r["status"] for r in runs}),
        "bytes": runs[-1]["bytes"],
        "queries": len(runs[-1]["statements"]),
        "p50_ms": round(percentile(times, 50), 1),
        "p95_ms": round(percentile(times, 95), 1),
        "min_ms": round(min(times), 1),
        "max_ms": round(max(times), 1),
        "sql_p50_ms": round(percentile(sql, 50), 1),
        "slowest_sql_ms": round(slowest[0][0], 1) if slowest else 0.0,
        "_slowest": slowest,
    }


def rss() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:  # pragma: no cover - psutil is in the venv
        with open("/proc/self/status") as status:
            kb = next(line for line in status if line.startswith("VmRSS:")).split()[1]
        return int(kb) * 1024


def export_once(client, path: str, with_tracemalloc: bool = False, header_lines: int = 1) -> dict:
    """GET an export and read it as it streams (nothing kept), sampling RSS meanwhile."""
    samples = [rss()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            samples.append(rss())

    sampler = threading.Thread(target=sample, daemon=True)
    maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if with_tracemalloc:
        tracemalloc.start()
    sampler.start()
    t0 = time.perf_counter()
    response = client.get(path, buffered=False)
    size = lines = 0
    first_byte = error = None
    try:
        for chunk in response.response:
            if first_byte is None:
                first_byte = time.perf_counter() - t0
            size += len(chunk)
            lines += chunk.count(b"\n")
    except Exception as exc:  # reported, not asserted
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    finally:
        response.close()
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    samples.append(rss())
    rows = lines - header_lines
    result = {
        "path": path,
        "status": response.status_code,
        "seconds": round(seconds, 2),
        "first_byte_ms": round((first_byte or 0) * 1000, 1),
        "rows": rows,
        "rows_per_s": round(rows / seconds),
        "mb": round(size / 2**20, 1),
        "rss_start_mb": round(samples[0] / 2**20, 1),
        "rss_peak_growth_mb": round((max(samples) - samples[0]) / 2**20, 1),
        "rss_end_growth_mb": round((samples[-1] - samples[0]) / 2**20, 1),
        # ru_maxrss is the process's lifetime peak (KiB on Linux): it grows only when the
        # export goes above every earlier peak (seeding included).
        "maxrss_growth_mb": round(
            (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss0) / 1024, 1
        ),
    }
    if error:
        result["error"] = error  # the body stopped there (a truncated download)
    if with_tracemalloc:
        result["tracemalloc_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
    return result


def explain(engine, statement: str, parameters, postgres: bool, run: bool = True) -> str:
    """The plan of one statement as the app ran it (same SQL, same parameters); on
    PostgreSQL run too (ANALYZE, BUFFERS) unless `run` is false."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if postgres:
            prefix = "EXPLAIN (ANALYZE, BUFFERS) " if run else "EXPLAIN "
            cursor.execute(prefix + statement, parameters)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            depth: dict[int, int] = {0: 0}
            lines = []
            for node, parent, _, detail in cursor.fetchall():
                depth[node] = depth.get(parent, 0) + 1
                lines.append("  " * (depth[node] - 1) + detail)
            plan = "\n".join(lines)
        raw.rollback()
        return plan
    finally:
        raw.close()


# --- the run ----------------------------------------------------------------------------------


def cases(info: dict, n: int) -> list[tuple[str, str, dict | None]]:
    last_page = max(math.ceil((n + 2) / 50), 1)  # + the owner and the demo member
    _, family, _ = person(777)
    q = f"{family}.777".lower()
    big, small = info["big_team"], info["small_team"]
    m = "/enterprise/members"
    return [
        ("first page", m, None),
        ("first page (htmx fragment)", m, HX),
        (f"last page ({last_page:,})", f"{m}?page={last_page}", None),
        ("page 1,000", f"{m}?page=1000", None),
        (f"search q={q}", f"{m}?q={q}", None),
        ("search, no match", f"{m}?q=nobody-matches-this", None),
        ("source=manual", f"{m}?source=manual", None),
        ("status=deactivated", f"{m}?status=deactivated", None),
        ("team=50k team", f"{m}?team={big}", None),
        ("team=500 team", f"{m}?team={small}", None),
        ("sort=name", f"{m}?sort=name", None),
        ("sort=last_sign_in desc", f"{m}?sort=last_sign_in&order=desc", None),
        ("Teams tab", f"{m}/teams", None),
        ("50k team page", f"{m}/teams/{big}", None),
    ]


def print_table(results: list[dict], export: list[dict], traced: dict | None) -> None:
    head = f"{'case':<30} {'p50 ms':>8} {'p95 ms':>8} {'sql p50':>8} {'queries':>7} {'KB':>6}"
    print("\n" + head + "  status")
    print("-" * (len(head) + 8))
    for r in results:
        print(
            f"{r['name']:<30} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['sql_p50_ms']:>8.1f} "
            f"{r['queries']:>7} {r['bytes'] / 1024:>6.0f}  {','.join(map(str, r['statuses']))}"
        )
    for k, e in enumerate(export, 1):
        print(
            f"\nCSV export #{k}: {e['rows']:,} rows, {e['mb']} MB in {e['seconds']} s "
            f"({e['rows_per_s']:,} rows/s, first byte {e['first_byte_ms']} ms, status "
            f"{e['status']}); RSS {e['rss_start_mb']} MB at start, peak growth "
            f"{e['rss_peak_growth_mb']} MB, {e['rss_end_growth_mb']} MB after; "
            f"ru_maxrss growth {e['maxrss_growth_mb']} MB"
        )
        if "error" in e:
            print(f"  FAILED after {e['rows']:,} rows: {e['error']}")
    if traced:
        print(
            "CSV export under tracemalloc: "
            f"{traced['rows']:,} rows in {traced['seconds']} s, peak of Python "
            f"allocations {traced['tracemalloc_peak_mb']} MB, RSS peak growth "
            f"{traced['rss_peak_growth_mb']} MB"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--export-repeats", type=int, default=1)
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the traced export")
    parser.add_argument("--explain-over", type=float, default=300, help="p50 ms (default 300)")
    parser.add_argument("--chunk", type=int, default=5000, help="rows per insert batch")
    parser.add_argument("--seed", type=int, default=6, help="random seed of the data")
    parser.add_argument("--json-out", help="default: bench/results/members-<db>-<stamp>.json")
    args = parser.parse_args()

    kind = "postgresql" if args.postgres else "sqlite"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.json_out or ROOT / "bench" / "results" / f"members-{kind}-{stamp}.json")
    with scratch(args.postgres, "members-bench"):
        env = {
            "db": kind,
            "database_url": os.environ["DATABASE_URL"],
            "members": args.members,
            "repeats": args.repeats,
            "cores": os.cpu_count(),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "python": platform.python_version(),
            "code": fingerprint(),
            "load_avg_start": [round(x, 2) for x in os.getloadavg()],
            "started": stamp,
        }
        print(
            f"members bench: db={kind} ({env['database_url']}), members={args.members:,}, "
            f"repeats={args.repeats}, cores={env['cores']}, {env['machine']}, "
            f"python {env['python']}, code {env['code']}, load {env['load_avg_start']}"
        )
        from flask_migrate import upgrade
        from sqlalchemy import select

        from app import create_app, db
        from blueprints.common.demo import DEMO_ACCOUNT, seed_demo
        from models import Account

        app = create_app({"WTF_CSRF_ENABLED": False})
        with app.app_context():
            upgrade()
            seeded = seed_demo(with_scim=True)
            account_id = db.session.scalar(select(Account.id).where(Account.name == DEMO_ACCOUNT))
            info = seed(db, account_id, args.members, args.chunk, random.Random(args.seed))
            db.session.remove()
        print(
            f"seeded in {info['seed_s']} s (ANALYZE {info['analyze_s']} s): "
            f"{info['scim']:,} scim, {info['manual']:,} manual, {info['deactivated']:,} "
            f"deactivated, {info['invited']:,} invited, {info['signed_in']:,} signed in; "
            f"{info['team_members']:,} team memberships in 20 teams"
        )

        client = app.test_client()
        login = client.post(
            "/login",
            data={"email": seeded["OWNER_EMAIL"], "passphrase": seeded["OWNER_PASSPHRASE"]},
        )
        if login.status_code != 302:
            raise SystemExit(f"sign-in failed: {login.status_code}")

        # No app context is held around the requests: each pushes its own, as in a
        # server, so the session is new for each request (and removed after it).
        with app.app_context():
            engine = db.engine
        log = SqlLog(engine)
        results = []
        for name, path, headers in cases(info, args.members):
            results.append(measure(client, name, path, headers, args.repeats, log))
            r = results[-1]
            print(f"  {name:<30} p50 {r['p50_ms']:>8.1f} ms  p95 {r['p95_ms']:>8.1f} ms")
        export_path = "/enterprise/members/export.csv"
        export = [export_once(client, export_path) for _ in range(args.export_repeats)]
        traced = None if args.no_tracemalloc else export_once(client, export_path, True)

        explains = {}
        for r in results:
            slowest = r.pop("_slowest")
            if r["p50_ms"] > args.explain_over:
                explains[r["name"]] = [
                    {
                        "statement_ms": round(ms, 1),
                        "sql": sql,
                        "parameters": repr(parameters),
                        "plan": explain(engine, sql, parameters, args.postgres),
                    }
                    for ms, sql, parameters in slowest
                ]
        engine.dispose()

        env["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
        print_table(results, export, traced)
        for name, statements in explains.items():
            for rank, e in enumerate(statements, 1):
                print(f"\n=== {name}: slowest statement #{rank}, {e['statement_ms']} ms ===")
                print(e["sql"])
                print(f"-- parameters: {e['parameters']}")
                print(e["plan"])
        print(f"\nload average: start {env['load_avg_start']}, end {env['load_avg_end']}")

        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "environment": env,
                    "seed": info,
                    "cases": results,
                    "export": export,
                    "export_tracemalloc": traced,
                    "explain": explains,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
