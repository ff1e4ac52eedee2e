"""Whether a create slows down as the account grows: creates in batches (one thread,
`app.test_client()`, a fresh database), and per batch the wall time and this process's
CPU per create, and on PostgreSQL the CPU its server processes spent per create (read
from /proc: run it on the database's machine).

    .venv/bin/python bench/create_growth.py                  # temp SQLite database
    .venv/bin/python bench/create_growth.py --postgres       # scratch PostgreSQL database
    .venv/bin/python bench/create_growth.py --postgres --batches 10 --size 2000

Flat figures are the aim. This is how the missing statistics of a fresh PostgreSQL
database showed (bench/README.md, "Fifth pass"): its CPU per create grew by 0.6 ms per
1,000 members.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from profile_scim import body
from scratch import close, demo_app, scratch

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids) -> float:
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--size", type=int, default=1000)
    args = parser.parse_args()

    with scratch(args.postgres, "create-growth") as env:
        app, client, path, headers = demo_app()
        server_pids = lambda: []  # noqa: E731 (SQLite: no server)
        monitor = None
        if args.postgres:
            import psycopg

            name = env["DATABASE_URL"].rsplit("/", 1)[-1]
            url = env["DATABASE_URL"].rsplit("/", 1)[0].replace("postgresql+psycopg", "postgresql")
            monitor = psycopg.connect(f"{url}/postgres", autocommit=True)

            def server_pids():
                query = "SELECT pid FROM pg_stat_activity WHERE datname = %s"
                return [row[0] for row in monitor.execute(query, (name,))]

        print(f"database: {env['DATABASE_URL']}")
        print("batch  members  wall ms/create  our CPU ms/create  server CPU ms/create")
        done = 0
        for batch in range(args.batches):
            pids = set(server_pids())
            server0, cpu0, wall0 = cpu_seconds(pids), time.process_time(), time.perf_counter()
            for i in range(done, done + args.size):
                response = client.post(path, json=body(i), headers=headers)
                if response.status_code != 201:
                    raise SystemExit(f"create {i}: {response.status_code} {response.get_data()!r}")
            wall = time.perf_counter() - wall0
            cpu = time.process_time() - cpu0
            time.sleep(0.6)  # the request log's batch (SCIM_LOG_FLUSH_SECONDS)
            server = cpu_seconds(pids | set(server_pids())) - server0
            done += args.size
            per = 1000 / args.size
            shown = f"{server * per:19.3f}" if args.postgres else f"{'-':>19}"
            print(f"{batch:5}  {done:7}  {wall * per:14.3f}  {cpu * per:17.3f}  {shown}")
        if monitor is not None:
            monitor.close()
        close(app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
