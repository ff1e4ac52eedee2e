"""Fairness between connectors (SPEC F5: "a flood from one connector cannot starve
another"): connector B's latency alone, then while connector A floods the same server.

    .venv/bin/python bench/fairness_bench.py                 # temp SQLite database
    .venv/bin/python bench/fairness_bench.py --postgres      # scratch PostgreSQL database
    .venv/bin/python bench/fairness_bench.py --flood-clients 32 --flood creates

A fresh database, two accounts with SCIM on (two connectors), gunicorn (`--gunicorn`,
default `-w 2 --threads 16`: more threads than the flood's connections, as the README
advises) with the default limits. B sends `--requests` lookups (`userName eq`) one at a
time: first alone (idle p50), then while A's `--flood-clients` clients, in another
process, send lookups (or creates) back to back, as fast as answers come, ignoring
Retry-After. Prints B's p50/p99 in both runs and their ratio (the aim: within 2x), and
what A got (answers by status, rate). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from scratch import ROOT, scratch  # bench/scratch.py (this script runs from bench/)

USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def _setup(n_users: int) -> tuple[dict, dict]:
    """Migrate, seed the demo account (A) and another (B), each with SCIM on and
    `n_users` users; returns each connector's base URL path and token."""
    from flask_migrate import upgrade

    from app import create_app, db
    from blueprints.common.demo import seed_demo
    from blueprints.scim_settings import connector as connectors
    from models import Account, Domain, Membership, SsoConnection, User, utcnow

    app = create_app()
    with app.app_context():
        upgrade()
        seeded = seed_demo(with_scim=True)
        b = Account(name="Other (bench)", seat_limit=1_000_000)
        db.session.add(b)
        db.session.flush()
        owner = User(email="owner@other.test", email_key="owner@other.test", session_generation=1)
        db.session.add(owner)
        db.session.flush()
        db.session.add(
            Membership(account_id=b.id, user_id=owner.id, role="owner", email=owner.email)
        )
        db.session.add(
            Domain(
                account_id=b.id,
                name="other.test",
                token="x",
                status="verified",
                verified_at=utcnow(),
            )
        )
        db.session.add(
            SsoConnection(account_id=b.id, public_id="bench-other", protocol="oidc", enabled=True)
        )
        db.session.commit()
        issued = connectors.enable(db.session, b.id, owner, "other", "365", utcnow())
        a = {
            "path": "/scim/v2/" + seeded["SCIM_BASE_URL"].rsplit("/", 1)[-1],
            "token": seeded["SCIM_TOKEN"],
            "domain": "acme.test",
        }
        other = {
            "path": f"/scim/v2/{issued.connector.public_id}",
            "token": issued.token,
            "domain": "other.test",
        }
        db.session.remove()
        db.engine.dispose()
    return a, other


def _create_users(base: str, connector: dict, n: int) -> list[str]:
    import requests

    names = [f"fair-{secrets.token_hex(4)}-{i}@{connector['domain']}" for i in range(n)]
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {connector['token']}"
        for name in names:
            body = {"schemas": [USER], "userName": name, "active": False}
            response = http.post(f"{base}{connector['path']}/Users", json=body, timeout=30)
            response.raise_for_status()
    return names


def _lookups(base: str, connector: dict, names: list[str], n: int) -> tuple[list[float], dict]:
    import requests

    latencies, statuses = [], {}
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {connector['token']}"
        for i in range(n):
            name = names[i % len(names)]
            t0 = time.perf_counter()
            response = http.get(
                f"{base}{connector['path']}/Users",
                params={"filter": f'userName eq "{name}"'},
                timeout=30,
            )
            latencies.append(time.perf_counter() - t0)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    return latencies, statuses


def _flood(base: str, connector: dict, names: list[str], clients: int, kind: str, stop, out):
    """Another process: `clients` threads sending back to back until `stop` is set."""
    import requests

    counts: dict[int, int] = {}
    lock = threading.Lock()

    def client(k: int) -> None:
        mine: dict[int, int] = {}
        with requests.Session() as http:
            http.headers["Authorization"] = f"Bearer {connector['token']}"
            i = 0
            while not stop.is_set():
                i += 1
                if kind == "creates":
                    body = {
                        "schemas": [USER],
                        "userName": f"flood-{k}-{i}-{secrets.token_hex(3)}",
                        "active": False,
                    }
                    response = http.post(f"{base}{connector['path']}/Users", json=body, timeout=60)
                else:
                    name = names[(k * 7919 + i) % len(names)]
                    response = http.get(
                        f"{base}{connector['path']}/Users",
                        params={"filter": f'userName eq "{name}"'},
                        timeout=60,
                    )
                mine[response.status_code] = mine.get(response.status_code, 0) + 1
        with lock:
            for code, n in mine.items():
                counts[code] = counts.get(code, 0) + n

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put({"statuses": counts, "seconds": time.perf_counter() - t0})


def _summary(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    return {
        "n": len(ordered),
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--users", type=int, default=200, help="users per connector")
    parser.add_argument("--requests", type=int, default=1000, help="B's lookups per run")
    parser.add_argument("--flood-clients", type=int, default=16)
    parser.add_argument("--flood", choices=["lookups", "creates"], default="lookups")
    parser.add_argument("--gunicorn", default="-w 2 --threads 16")
    parser.add_argument("--json-out")
    args = parser.parse_args()

    with scratch(args.postgres, "scim-fairness"):
        env = dict(os.environ)  # what scratch set, for the server too
        server = None
        try:
            a, b = _setup(args.users)
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            base = f"http://127.0.0.1:{port}"
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    *args.gunicorn.split(),
                    "-b",
                    f"127.0.0.1:{port}",
                    "--no-control-socket",
                    "app:create_app()",
                ],
                env=env | {"BASE_URL": base},
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            import requests

            for _ in range(200):
                try:
                    requests.get(f"{base}/healthz", timeout=1)
                    break
                except requests.RequestException:
                    time.sleep(0.1)
            names_a = _create_users(base, a, args.users)
            names_b = _create_users(base, b, args.users)
            _lookups(base, b, names_b, 50)  # warm both workers
            idle, idle_statuses = _lookups(base, b, names_b, args.requests)

            stop, out = multiprocessing.Event(), multiprocessing.Queue()
            flood = multiprocessing.Process(
                target=_flood, args=(base, a, names_a, args.flood_clients, args.flood, stop, out)
            )
            flood.start()
            time.sleep(2)  # the flood at full speed
            busy, busy_statuses = _lookups(base, b, names_b, args.requests)
            stop.set()
            flood_result = out.get(timeout=120)
            flood.join(30)

            report = {
                "database": "postgresql" if args.postgres else "sqlite",
                "gunicorn": args.gunicorn,
                "flood": {"clients": args.flood_clients, "kind": args.flood, **flood_result},
                "b_idle": {**_summary(idle), "statuses": idle_statuses},
                "b_during_flood": {**_summary(busy), "statuses": busy_statuses},
            }
            report["ratio_p50"] = round(
                report["b_during_flood"]["p50_ms"] / report["b_idle"]["p50_ms"], 2
            )
            seconds = flood_result["seconds"]
            total = sum(flood_result["statuses"].values())
            print(f"database {report['database']}, gunicorn {args.gunicorn}")
            idle_report = report["b_idle"]
            print(f"B alone:        p50 {idle_report['p50_ms']} ms, p99 {idle_report['p99_ms']} ms")
            print(
                f"B during flood: p50 {report['b_during_flood']['p50_ms']} ms, "
                f"p99 {report['b_during_flood']['p99_ms']} ms, statuses {busy_statuses}"
            )
            print(f"ratio of the p50s: {report['ratio_p50']} (aim: within 2)")
            print(
                f"A's flood: {args.flood_clients} clients of {args.flood}, {total / seconds:.0f} "
                f"answers/s, statuses {flood_result['statuses']}"
            )
            if args.json_out:
                Path(args.json_out).write_text(json.dumps(report, indent=2))
        finally:
            if server is not None:
                server.send_signal(signal.SIGTERM)
                server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
