"""Re-applying team rules (SPEC F12) to many SCIM members: the `apply-team-rules` job over
`--members` members (default 100,000), and the SCIM path's re-evaluation of a 50,000-member
team write (rules.apply_to_ids, as a PUT of a ruled group runs it), with time and
statements.

    .venv/bin/python bench/rules_bench.py                 # SQLite (temp file)
    .venv/bin/python bench/rules_bench.py --postgres      # scratch PostgreSQL

Every member is in "Staff" (rule 2: member, licensed); every tenth also in "Admins" (rule 1:
co-owner, no licence). Prints one JSON line per phase.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scratch import scratch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--members", type=int, default=100_000)
    args = parser.parse_args()
    with scratch(args.postgres, "rules-bench"):
        from flask_migrate import upgrade
        from sqlalchemy import event, insert, select

        from app import create_app, db
        from blueprints.members import rules
        from blueprints.members.jobs import apply_team_rules
        from models import Account, Membership, Team, TeamMember, utcnow

        app = create_app()
        with app.app_context():
            upgrade()
            session = db.session
            now = utcnow()
            account = Account(name="Bench", seat_limit=10 * args.members, seats_used=0)
            session.add(account)
            session.flush()
            owner = Membership(account_id=account.id, role="owner", source="manual")
            session.add(owner)
            teams = {}
            for name in ("Admins", "Staff"):
                teams[name] = Team(
                    account_id=account.id,
                    scim_id=f"bench-{name}",
                    display_name=name,
                    display_name_key=name.lower(),
                    source="scim",
                )
                session.add(teams[name])
            session.flush()
            rows = [
                {
                    "account_id": account.id,
                    "scim_id": f"u-{i}",
                    # A document as an IdP writes it (rules also read its `roles`).
                    "scim_resource": {"userName": f"u-{i}@example.com", "active": True},
                    "source": "scim",
                    "role": "member",
                    "active": True,
                    "licensed": True,
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(args.members)
            ]
            for start in range(0, len(rows), 5000):
                session.execute(insert(Membership), rows[start : start + 5000])
            ids = session.scalars(
                select(Membership.id).where(Membership.source == "scim").order_by(Membership.id)
            ).all()
            links = [{"team_id": teams["Staff"].id, "membership_id": i} for i in ids]
            links += [{"team_id": teams["Admins"].id, "membership_id": i} for i in ids[::10]]
            for start in range(0, len(links), 5000):
                session.execute(insert(TeamMember), links[start : start + 5000])
            account.seats_used = args.members
            session.commit()
            rules.add_rule(session, owner, teams["Admins"].id, "co-owner", False, now)
            rules.add_rule(session, owner, teams["Staff"].id, "member", True, now)
            session.commit()

            statements = [0]

            @event.listens_for(db.engine, "before_cursor_execute")
            def count(*_):
                statements[0] += 1

            t0 = time.perf_counter()
            apply_team_rules(now)
            report("job", args, t0, statements)
            session.expire_all()
            assert session.get(Account, account.id).seats_used == args.members - len(ids[::10])

            # The SCIM path: a PUT's 50,000 added members re-evaluated in its transaction.
            statements[0] = 0
            t0 = time.perf_counter()
            rules.apply_to_ids(session, account.id, ids[:50_000], strict=True)
            session.commit()
            report("scim-50000", args, t0, statements)
            db.engine.dispose()
    return 0


def report(phase: str, args, t0: float, statements: list[int]) -> None:
    elapsed = time.perf_counter() - t0
    database = "postgresql" if args.postgres else "sqlite"
    print(
        json.dumps(
            {
                "phase": phase,
                "database": database,
                "members": args.members,
                "seconds": round(elapsed, 2),
                "statements": statements[0],
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
