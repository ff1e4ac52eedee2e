"""Where a SCIM request spends its time: through `app.test_client()` (no gunicorn, no
network, one thread) under cProfile, on a fresh database.

    .venv/bin/python bench/profile_scim.py                    # creates, temp SQLite database
    .venv/bin/python bench/profile_scim.py --case lookup      # GET /Users?filter=userName eq
    .venv/bin/python bench/profile_scim.py --case page        # GET /Users?count=100
    .venv/bin/python bench/profile_scim.py --postgres         # scratch PostgreSQL database
    .venv/bin/python bench/profile_scim.py --users 2000 --top 40 --dump creates.prof
    .venv/bin/python bench/profile_scim.py --postgres --cpu   # CPU time, not waits

`--users` requests of the case (the reads run over as many users, created first). Prints
the single-thread rate with and without the profiler, then the top functions by
cumulative and by own time (pstats).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time

from scratch import close, demo_app, scratch  # bench/scratch.py (this script runs from bench/)


def body(i: int) -> dict:
    user_name = f"ada.lovelace.prof{i:06d}@acme.test"
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "displayName": "Ada Lovelace",
        "locale": "en-US",
        "externalId": f"00uprof{i:07d}",
        "groups": [],
        "active": True,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--dump", help="also write the raw profile here (for snakeviz etc.)")
    parser.add_argument("--cpu", action="store_true", help="profile CPU time, not wall time")
    parser.add_argument("--case", choices=["create", "lookup", "page"], default="create")
    args = parser.parse_args()

    with scratch(args.postgres, "scim-profile"):
        app, client, path, headers = demo_app()

        def create(i: int) -> None:
            response = client.post(path, json=body(i), headers=headers)
            if response.status_code != 201:
                raise SystemExit(f"create {i}: {response.status_code} {response.get_data()!r}")

        def lookup(i: int) -> None:
            user_name = body(i % args.users)["userName"]
            response = client.get(
                path, query_string={"filter": f'userName eq "{user_name}"'}, headers=headers
            )
            if response.status_code != 200 or response.get_json()["totalResults"] != 1:
                raise SystemExit(f"lookup {i}: {response.status_code} {response.get_data()!r}")

        def page(i: int) -> None:
            response = client.get(path, query_string={"count": 100}, headers=headers)
            if response.status_code != 200:
                raise SystemExit(f"page {i}: {response.status_code} {response.get_data()!r}")

        run = {"create": create, "lookup": lookup, "page": page}[args.case]
        if args.case != "create":
            for i in range(args.users):
                create(i)
        for i in range(50):  # warm: imports, caches, first compilations
            run(args.users + i if args.case == "create" else i)
        start = 2 * args.users
        t0 = time.perf_counter()
        for i in range(start, start + args.users):
            run(i)
        plain = time.perf_counter() - t0

        # --cpu: the process's CPU time only (what costs under load), not waits on the database.
        profiler = cProfile.Profile(time.process_time) if args.cpu else cProfile.Profile()
        t0 = time.perf_counter()
        profiler.enable()
        for i in range(start + args.users, start + 2 * args.users):
            run(i)
        profiler.disable()
        profiled = time.perf_counter() - t0

        print(f"database: {os.environ['DATABASE_URL']}")
        print(
            f"{args.users} {args.case}s, one thread, no profiler: {plain:.2f} s "
            f"({args.users / plain:.0f}/s, {1000 * plain / args.users:.2f} ms each)"
        )
        print(
            f"{args.users} {args.case}s under cProfile: {profiled:.2f} s "
            f"({args.users / profiled:.0f}/s, {1000 * profiled / args.users:.2f} ms each)"
        )
        if args.dump:
            profiler.dump_stats(args.dump)
        for key in ("cumulative", "tottime"):
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(key)
            stats.print_stats(args.top)
            print(f"\n=== top {args.top} by {key} ===")
            print(out.getvalue().split("\n", 4)[-1].rstrip())
        close(app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
