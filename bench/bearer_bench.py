"""What the SCIM bearer check costs, alone and in whole requests, this tree against an
earlier revision (issue 18: named tokens must not slow requests down; creates and lookups
within 5% of before). In-process (`app.test_client()`, one thread, no network), so the
figures swing far less than a gunicorn run's; the two trees run in alternating rounds on
fresh databases of their own.

    .venv/bin/python bench/bearer_bench.py f3c3297                # SQLite (temp file)
    .venv/bin/python bench/bearer_bench.py f3c3297 --postgres     # scratch PostgreSQL
    .venv/bin/python bench/bearer_bench.py f3c3297 --rounds 5 --users 2000 --checks 20000

Per round and tree: the bearer check alone (`connector.authenticate` as the SCIM API calls
it, `--checks` times: median of batches of 1,000, µs per check), `--users` creates
(POST /Users, per second) and as many lookups by userName (GET /Users?filter=, median ms).
Prints each round, then the medians of this/old.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GIT = shutil.which("git") or "git"


def body(i: int) -> dict:
    user_name = f"grace.hopper.b{i:06d}@acme.test"
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": "Grace", "familyName": "Hopper"},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "externalId": f"00ub{i:07d}",
        "active": True,
    }


def measure(tree: str, postgres: bool, users: int, checks: int) -> dict:
    """One tree's figures, on a fresh database (runs in a child process: `--measure`)."""
    sys.path.insert(0, tree)
    sys.path.insert(1, str(ROOT / "bench"))
    from scratch import scratch

    with scratch(postgres, "bearer-bench"):
        sys.path.insert(0, tree)  # before the root scratch() put first: the tree's code
        from flask_migrate import upgrade

        from app import create_app, db
        from blueprints.common.demo import seed_demo
        from blueprints.scim_settings import connector as connectors
        from models import utcnow

        app = create_app()
        with app.app_context():
            upgrade(directory=os.path.join(tree, "migrations"))
            seeded = seed_demo(with_scim=True)
            db.session.remove()
        public_id = seeded["SCIM_BASE_URL"].rsplit("/", 1)[-1]
        header = f"Bearer {seeded['SCIM_TOKEN']}"
        path = f"/scim/v2/{public_id}/Users"
        headers = {"Authorization": header, "Content-Type": "application/scim+json"}
        client = app.test_client()

        with app.app_context():
            batches = []
            for _ in range(checks // 1000):
                t0 = time.perf_counter()
                for _ in range(1000):
                    result = connectors.authenticate(db.session, public_id, header, utcnow(), False)
                batches.append((time.perf_counter() - t0) * 1000)  # µs per check
                assert result.reason is None, result
            db.session.remove()

        t0 = time.perf_counter()
        for i in range(users):
            response = client.post(path, json=body(i), headers=headers)
            assert response.status_code == 201, response.get_data()
        creates = users / (time.perf_counter() - t0)

        lookups = []
        for i in range(users):
            query = {"filter": f'userName eq "{body(i)["userName"]}"'}
            t0 = time.perf_counter()
            response = client.get(path, query_string=query, headers=headers)
            lookups.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200 and response.get_json()["totalResults"] == 1
        log = app.extensions.get("scim_request_log")
        if log is not None:
            log.flush()  # before the database goes (its atexit flush would come too late)
        with app.app_context():
            db.engine.dispose()
    return {
        "check_us": statistics.median(batches),
        "creates_per_s": creates,
        "lookup_ms": statistics.median(lookups),
    }


def run_tree(tree: str, args) -> dict:
    command = [sys.executable, __file__, "--measure", tree, "--users", str(args.users)]
    command += ["--checks", str(args.checks)] + (["--postgres"] if args.postgres else [])
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=tree).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rev", nargs="?", help="the earlier revision to compare with")
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--checks", type=int, default=10000)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # a tree, in a child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.postgres, args.users, args.checks)))
        return 0
    if not args.rev:
        parser.error("give the revision to compare with")

    old = tempfile.mkdtemp(prefix="bearer-bench-old.")
    subprocess.run(
        [GIT, "worktree", "add", "--detach", "--force", old, args.rev],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    try:
        ratios = {"check_us": [], "creates_per_s": [], "lookup_ms": []}
        for round_ in range(1, args.rounds + 1):
            before, after = run_tree(old, args), run_tree(str(ROOT), args)
            for name, figures in ((args.rev, before), ("this", after)):
                print(
                    f"round {round_}  {name}: check {figures['check_us']:.1f} µs, creates "
                    f"{figures['creates_per_s']:.1f}/s, lookup p50 {figures['lookup_ms']:.2f} ms",
                    flush=True,
                )
            for key in ratios:
                ratios[key].append(after[key] / before[key])
        for key, values in ratios.items():
            print(
                f"median this/old: {key} {statistics.median(values):.3f}  (rounds: "
                + ", ".join(f"{v:.3f}" for v in values)
                + ")"
            )
    finally:
        subprocess.run([GIT, "worktree", "remove", "--force", old], cwd=ROOT, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
