"""SCIM 2.0 benchmark: what an IdP provisioning a large directory sees.

Points at any running server (`--base-url <BASE_URL>/scim/v2/<connector-id>`, `--token`;
or SCIM_BASE_URL / SCIM_TOKEN, as `flask --app app seed-demo --with-scim` prints them) and
measures, in this order:

  lookups@1k   tops the account up to 1,000 users, then times `userName eq` and
               `externalId eq` filters of random existing users (one client, sequential)
  creates      N Okta-like POST /Users with C concurrent clients: creates/s, p50/p99
  scale        tops the account up to 100,000 users (through the API, or `--seed-direct`:
               bulk INSERTs through the app's models, same rows as a SCIM create)
  lookups@100k the same lookups again
  paging       GET /Users?startIndex=1&count=100 vs the last page (startIndex=99,901)
  memory       pages through every user (count=100) while sampling the server's RSS
  teams        a 10-member and a 50,000-member team (built by PATCH add in batches); one
               member added (and removed) by PATCH to each; GET ?excludedAttributes=members

Prints a table and writes every figure to a JSON file (`--json-out`). Standard library and
`requests` only, except `--seed-direct`, which imports the app (run it with the app's
virtualenv and the server's DATABASE_URL / INSTANCE_PATH environment). See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import random
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
PHASES = ["lookups1k", "creates", "scale", "lookups100k", "paging", "memory", "teams"]

GIVEN = ["Ada", "Alan", "Anna", "Ben", "Carla", "Chen", "Dana", "Emil", "Eva", "Farah"]
FAMILY = ["Adams", "Baker", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hughes", "Ito"]


# --- Measurement helpers ----------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(latencies_s: list[float]) -> dict:
    """n, p50, p99, mean and max in milliseconds."""
    ms = [x * 1000 for x in latencies_s]
    if not ms:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "mean_ms": None, "max_ms": None}
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "mean_ms": round(sum(ms) / len(ms), 2),
        "max_ms": round(max(ms), 2),
    }


def code_state(app_dir: Path) -> dict | None:
    """Which product code the server ran (a hash of app.py, models.py, blueprints/), as
    far as this machine can tell: figures are comparable only for the same code."""
    files = sorted(
        [app_dir / "app.py", app_dir / "models.py", *(app_dir / "blueprints").rglob("*.py")]
    )
    files = [f for f in files if f.is_file()]
    if not files:
        return None
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(app_dir)).encode() + b"\0" + f.read_bytes())
    newest = max(files, key=lambda f: f.stat().st_mtime)
    return {
        "sha256": digest.hexdigest()[:16],
        "files": len(files),
        "newest": str(newest.relative_to(app_dir)),
        "newest_mtime": datetime.fromtimestamp(newest.stat().st_mtime, UTC).isoformat(),
    }


def _loadavg() -> float | None:
    """The machine's 1-minute load average: other work on it skews every figure."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _processes():
    """(pid, command name, parent pid, user + system CPU seconds) of each process."""
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name, _, rest = stat.partition(" (")[2].rpartition(")")
        fields = rest.split()  # from the state on: ppid is the 2nd, utime and stime 12th, 13th
        yield int(entry), name, int(fields[1]), (int(fields[11]) + int(fields[12])) / tick


class ProcessWatch:
    """The server's RSS (VmRSS of `pid` and its descendants, i.e. the gunicorn master
    and workers), sampled every `interval` seconds in a thread; and their CPU time."""

    def __init__(self, pid: int | None, interval: float = 0.5):
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int, dict[int, int]]] = []  # (t, total kB, per pid)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pids(self, processes=None) -> list[int]:
        """The server's process and its descendants, from `processes` (`_processes()`'s
        rows; read now when not given)."""
        if self.pid is None:
            return []
        parents: dict[int, list[int]] = {}
        for pid, _, ppid, _ in _processes() if processes is None else processes:
            parents.setdefault(ppid, []).append(pid)
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(parents.get(pid, []))
        return found

    @staticmethod
    def rss_kb(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def sample(self) -> tuple[float, int, dict[int, int]]:
        per = {pid: self.rss_kb(pid) for pid in self.pids()}
        return (time.monotonic(), sum(per.values()), per)

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the server's processes so far."""
        if self.pid is None:
            return None
        processes = list(_processes())  # one reading of /proc for the tree and its CPU
        ours = set(self.pids(processes))
        return sum(cpu for pid, _, _, cpu in processes if pid in ours)

    @staticmethod
    def database_cpu_seconds() -> float:
        """User + system CPU so far of this machine's PostgreSQL processes (its backends,
        WAL writer, checkpointer): the database server's share of a --postgres run,
        which the server's own figure leaves out. About nothing on a SQLite run."""
        return sum(cpu for _, name, _, cpu in _processes() if name == "postgres")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.sample())
            self._stop.wait(self.interval)

    def start(self) -> None:
        if self.pid is None:
            return
        if not Path(f"/proc/{self.pid}/status").exists():
            raise SystemExit(f"--server-pid {self.pid}: no such process")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def window(self, t0: float, t1: float) -> dict | None:
        """RSS at start, max and end of [t0, t1] (MB), from the samples."""
        if self.pid is None:
            return None
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        before = [s for s in self.samples if s[0] < t0]
        if not inside:
            return None
        start = before[-1] if before else inside[0]
        end = inside[-1]
        worker_max = max(max(s[2].values(), default=0) for s in inside)
        return {
            "samples": len(inside),
            "rss_start_mb": round(start[1] / 1024, 1),
            "rss_max_mb": round(max(s[1] for s in [start, *inside]) / 1024, 1),
            "rss_end_mb": round(end[1] / 1024, 1),
            "largest_process_max_mb": round(worker_max / 1024, 1),
            "processes": len(end[2]),
        }


# --- The SCIM client ----------------------------------------------------------------------


class Scim:
    def __init__(self, base_url: str, token: str, timeout: float = 120):
        self.base = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def session(self) -> requests.Session:
        s = requests.Session()
        s.headers.update(
            {
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/scim+json",
                "Content-Type": "application/scim+json",
            }
        )
        s.mount("http://", HTTPAdapter(pool_connections=2, pool_maxsize=2))
        s.mount("https://", HTTPAdapter(pool_connections=2, pool_maxsize=2))
        return s

    def call(self, s: requests.Session, method: str, path: str, **kwargs):
        """(seconds, status, response or None); a connection error is status 0."""
        t0 = time.perf_counter()
        try:
            r = s.request(method, self.base + path, timeout=self.timeout, **kwargs)
            r.content  # noqa: B018  (read the whole body inside the timing)
        except requests.RequestException as exc:
            return time.perf_counter() - t0, 0, exc
        return time.perf_counter() - t0, r.status_code, r


class Directory:
    """The users this run knows: (userName, externalId, id), plus how to make new ones."""

    def __init__(self, run_id: str, domain: str):
        self.run_id = run_id
        self.domain = domain
        self.users: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._next = itertools.count()

    def new_index(self) -> int:
        with self._lock:
            return next(self._next)

    def identity(self, i: int) -> dict:
        given, family = GIVEN[i % len(GIVEN)], FAMILY[(i // len(GIVEN)) % len(FAMILY)]
        user_name = f"{given}.{family}.{self.run_id}{i:06d}@{self.domain}".lower()
        return {
            "given": given,
            "family": family,
            "user_name": user_name,
            "external_id": f"00u{self.run_id}{i:07d}",
        }

    def okta_body(self, i: int) -> dict:
        """A POST /Users body as Okta sends it."""
        who = self.identity(i)
        return {
            "schemas": [CORE_USER],
            "userName": who["user_name"],
            "name": {"givenName": who["given"], "familyName": who["family"]},
            "emails": [{"primary": True, "value": who["user_name"], "type": "work"}],
            "displayName": f"{who['given']} {who['family']}",
            "locale": "en-US",
            "externalId": who["external_id"],
            "groups": [],
            "active": True,
        }

    def add(self, user_name: str, external_id: str, scim_id: str) -> None:
        with self._lock:
            self.users.append((user_name, external_id, scim_id))


def total_users(scim: Scim, s: requests.Session) -> int:
    _, status, r = scim.call(s, "GET", "/Users", params={"count": 0})
    if status != 200:
        raise SystemExit(f"GET /Users?count=0 answered {status}: {getattr(r, 'text', r)}")
    return r.json()["totalResults"]


def create_users(scim: Scim, directory: Directory, n: int, concurrency: int) -> dict:
    """POST n users with `concurrency` clients (a Session each); figures of the run."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    remaining = itertools.count()

    def client() -> None:
        s = scim.session()
        mine, codes = [], {}
        while next(remaining) < n:
            i = directory.new_index()
            body = directory.okta_body(i)
            seconds, status, r = scim.call(s, "POST", "/Users", json=body)
            mine.append(seconds)
            codes[status] = codes.get(status, 0) + 1
            if status == 201:
                directory.add(body["userName"], body["externalId"], r.json()["id"])
            elif codes[status] <= 3:
                log(f"create answered {status}: {getattr(r, 'text', r)!s:.300}")
        with lock:
            latencies.extend(mine)
            for code, count in codes.items():
                statuses[code] = statuses.get(code, 0) + count

    cpu0, t0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return {
        "users": n,
        "concurrency": concurrency,
        "seconds": round(wall, 2),
        "creates_per_s": round(n / wall, 1) if wall else None,
        **summary(latencies),
        "non_201": sum(c for code, c in statuses.items() if code != 201),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "client_cpu_s": round(cpu, 2),
    }


_APP = None


def local_app(app_dir: Path):
    """The app itself, on the server's database (DATABASE_URL etc. in the environment),
    for `--seed-direct` and `--analyze`."""
    global _APP
    if _APP is None:
        sys.path.insert(0, str(app_dir))
        from app import create_app

        _APP = create_app({"SCHEDULER_ENABLED": False})
    return _APP


def analyze(app_dir: Path) -> dict:
    """PostgreSQL: refresh the planner's statistics, as autovacuum does on a default
    server (a server with autovacuum=off never gathers them, and at 100,000 rows the
    planner then picks the wrong index). Nothing on SQLite, which the app never ANALYZEs."""
    from sqlalchemy import text

    app = local_app(app_dir)
    from app import db

    with app.app_context():
        engine = db.engine
        if engine.dialect.name != "postgresql":
            return {"dialect": engine.dialect.name, "analyzed": False}
        t0 = time.perf_counter()
        with engine.connect() as conn:
            autovacuum = conn.execute(text("SHOW autovacuum")).scalar()
            conn.execute(text("ANALYZE"))
            conn.commit()
        return {
            "dialect": "postgresql",
            "server_autovacuum": autovacuum,
            "analyzed": True,
            "seconds": round(time.perf_counter() - t0, 2),
        }


class AutoAnalyze:
    """PostgreSQL with autovacuum off (this machine's server): autovacuum's analyze rule
    applied by a thread while the phases run, so the planner has the statistics a default
    server keeps. Every `interval` seconds a table whose rows changed since its last
    ANALYZE more than autovacuum_analyze_threshold + autovacuum_analyze_scale_factor x
    its rows (50 + 10 % by default) is analyzed. A default server checks every minute
    (autovacuum_naptime) during imports that run for many minutes; the bench compresses
    an import into seconds, so it checks every second. Without it a table that grew from
    empty has no statistics, and the generic plans of prepared statements scan a whole
    account's memberships per create (a create's checks grew from 0.3 to 3 ms over
    8,000 users). Nothing on SQLite or when the server runs autovacuum itself."""

    RULE = """
        SELECT s.relname
        FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
        WHERE s.n_mod_since_analyze >
              current_setting('autovacuum_analyze_threshold')::float
              + current_setting('autovacuum_analyze_scale_factor')::float
                * greatest(c.reltuples, 0)
    """

    def __init__(self, app_dir: Path, interval: float = 1.0):
        self.app_dir, self.interval = app_dir, interval
        self.analyzed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        from sqlalchemy import text

        app = local_app(self.app_dir)
        from app import db

        with app.app_context():
            self.engine = db.engine
        if self.engine.dialect.name != "postgresql":
            return False
        with self.engine.connect() as conn:
            if conn.execute(text("SHOW autovacuum")).scalar() == "on":
                return False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return True

    def _run(self) -> None:
        from sqlalchemy import text

        while not self._stop.wait(self.interval):
            with self.engine.connect() as conn:
                for table in conn.execute(text(self.RULE)).scalars().all():
                    conn.execute(text(f'ANALYZE "{table}"'))
                    self.analyzed += 1
                conn.commit()

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.analyzed


def lookups_phase(scim: Scim, directory: Directory, args, rng: random.Random) -> dict:
    """The lookups; with `--analyze`, first a short sample on the statistics as they are,
    then ANALYZE, then the measurement."""
    result: dict = {}
    if args.analyze:
        if args.stale_lookups:
            result["before_analyze"] = lookups(scim, directory, args.stale_lookups, rng)
        result["analyze"] = analyze(Path(args.app_dir))
    return {**result, **lookups(scim, directory, args.lookups, rng)}


def seed_direct(scim: Scim, directory: Directory, n: int, app_dir: Path, chunk: int = 5000):
    """Insert `n` provisioned users with SQL through the app's models: the rows a SCIM
    create makes (User, Membership with source="scim", its MemberEmail, the welcome
    email in the outbox, the seat), in bulk. Needs the server's database environment."""
    from sqlalchemy import insert, select, update

    app = local_app(app_dir)
    from app import db
    from blueprints.scim_api.filters import fold
    from models import (
        Account,
        MemberEmail,
        Membership,
        OutboxEmail,
        ScimConnector,
        User,
        search_fold,
    )

    public_id = scim.base.rstrip("/").rsplit("/", 1)[-1]
    with app.app_context():
        connector = db.session.scalar(
            select(ScimConnector).where(ScimConnector.public_id == public_id)
        )
        if connector is None:
            raise SystemExit(
                f"--seed-direct: no connector {public_id!r} in "
                f"{app.config['SQLALCHEMY_DATABASE_URI']} (is DATABASE_URL the server's?)"
            )
        account = db.session.get(Account, connector.account_id)
        account_name = account.name
        done = 0
        while done < n:
            size = min(chunk, n - done)
            now = datetime.now(UTC)
            people = [directory.identity(directory.new_index()) for _ in range(size)]
            user_ids = db.session.scalars(
                insert(User).returning(User.id, sort_by_parameter_order=True),
                [
                    {
                        "email": p["user_name"],
                        "email_key": p["user_name"].lower(),
                        "display_name": f"{p['given']} {p['family']}",
                        "passphrase_hash": None,
                        "must_change_passphrase": True,
                        "session_generation": 1,
                        "created_at": now,
                    }
                    for p in people
                ],
            ).all()
            scim_ids = [str(uuid.uuid4()) for _ in people]
            member_ids = db.session.scalars(
                insert(Membership).returning(Membership.id, sort_by_parameter_order=True),
                [
                    {
                        "account_id": account.id,
                        "user_id": user_id,
                        "scim_id": scim_id,
                        "role": "member",
                        "source": "scim",
                        "active": True,
                        "licensed": True,
                        "external_id": p["external_id"],
                        "user_name": p["user_name"],
                        "user_name_key": fold(p["user_name"]),
                        "email": p["user_name"],
                        "display_name": f"{p['given']} {p['family']}",
                        "display_name_key": fold(f"{p['given']} {p['family']}"),
                        "given_name": p["given"],
                        "family_name": p["family"],
                        # The resource as a SCIM create stores it.
                        "scim_resource": {
                            "externalId": p["external_id"],
                            "userName": p["user_name"],
                            "name": {"givenName": p["given"], "familyName": p["family"]},
                            "displayName": f"{p['given']} {p['family']}",
                            "active": True,
                            "emails": [{"value": p["user_name"], "type": "work", "primary": True}],
                        },
                        # The Members page's search columns, as refresh_search writes them.
                        "search_key": search_fold(
                            f"{p['user_name']}\n{p['given']} {p['family']}\n{p['user_name']}"
                        ),
                        "sort_name": search_fold(f"{p['given']} {p['family']}"),
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for p, user_id, scim_id in zip(people, user_ids, scim_ids, strict=True)
                ],
            ).all()
            db.session.execute(
                insert(MemberEmail),
                [
                    {
                        "membership_id": member_id,
                        "position": 0,
                        "value": p["user_name"],
                        "value_key": fold(p["user_name"]),
                        "type": "work",
                        "primary": True,
                    }
                    for p, member_id in zip(people, member_ids, strict=True)
                ],
            )
            db.session.execute(
                insert(OutboxEmail),
                [
                    {
                        "to_addr": p["user_name"],
                        "subject": f"Welcome to {account_name}",
                        "body_text": "(made at delivery: holds a secret, never stored)",
                        "dedupe_key": f"welcome:{user_id}",
                        "kind": "welcome",
                        "user_id": user_id,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                    for p, user_id in zip(people, user_ids, strict=True)
                ],
            )
            db.session.execute(
                update(Account)
                .where(Account.id == account.id)
                .values(seats_used=Account.seats_used + size)
            )
            db.session.commit()
            for p, scim_id in zip(people, scim_ids, strict=True):
                directory.add(p["user_name"], p["external_id"], scim_id)
            done += size
            log(f"  seeded {done:,}/{n:,}")
        db.engine.dispose()


def top_up(
    scim: Scim, directory: Directory, target: int, args, label: str, via_api: bool = False
) -> dict:
    """Add users until the account has `target`: through the API, or by SQL when
    `--seed-direct` (and not `via_api`)."""
    s = scim.session()
    before = total_users(scim, s)
    missing = max(0, target - before)
    log(f"{label}: {before:,} users, adding {missing:,} to reach {target:,}")
    result: dict = {"target": target, "users_before": before, "added": missing}
    t0 = time.perf_counter()
    if missing and args.seed_direct and not via_api:
        seed_direct(scim, directory, missing, Path(args.app_dir))
        result["method"] = "seed-direct (SQL through the app's models)"
    elif missing:
        result["method"] = "POST /Users"
        result["creates"] = create_users(scim, directory, missing, args.concurrency)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    result["users_after"] = total_users(scim, s)
    return result


def warm(scim: Scim, s: requests.Session, path: str, params=None, times: int = 20) -> None:
    """Untimed requests first: each worker imports and caches what it needs once."""
    for _ in range(times):
        scim.call(s, "GET", path, params=params)


def lookups(scim: Scim, directory: Directory, n: int, rng: random.Random) -> dict:
    """`userName eq` and `externalId eq` of random known users, one client, sequential."""
    s = scim.session()
    users = total_users(scim, s)
    known = directory.users
    if not known:
        raise SystemExit("no user known to look up")
    result: dict = {"users": users}
    for attribute, column in (("userName", 0), ("externalId", 1)):
        pick = known[0][column]
        warm(scim, s, "/Users", {"filter": f'{attribute} eq "{pick}"'})
        latencies, wrong = [], 0
        for _ in range(n):
            value = rng.choice(known)[column]
            seconds, status, r = scim.call(
                s, "GET", "/Users", params={"filter": f'{attribute} eq "{value}"'}
            )
            latencies.append(seconds)
            if status != 200 or r.json().get("totalResults") != 1:
                wrong += 1
        result[attribute] = {**summary(latencies), "errors": wrong}
    return result


def paging(scim: Scim, repeats: int) -> dict:
    s = scim.session()
    users = total_users(scim, s)
    last = max(1, users - 99)
    firsts, lasts, errors = [], [], 0
    warm(scim, s, "/Users", {"startIndex": 1, "count": 100}, 5)
    warm(scim, s, "/Users", {"startIndex": last, "count": 100}, 5)
    for _ in range(repeats):  # alternating, so drift affects both alike
        for start, into in ((1, firsts), (last, lasts)):
            seconds, status, r = scim.call(
                s, "GET", "/Users", params={"startIndex": start, "count": 100}
            )
            into.append(seconds)
            if status != 200 or len(r.json().get("Resources", [])) != min(100, users - start + 1):
                errors += 1
    first, end = summary(firsts), summary(lasts)
    return {
        "users": users,
        "first_page": {"startIndex": 1, **first},
        "last_page": {"startIndex": last, **end},
        "ratio_p50": round(end["p50_ms"] / first["p50_ms"], 2) if first["p50_ms"] else None,
        "errors": errors,
    }


def memory(scim: Scim, watch: ProcessWatch) -> dict:
    """Every user, a page of 100 at a time, while `watch` samples the server's RSS."""
    s = scim.session()
    users = total_users(scim, s)
    time.sleep(2 * watch.interval)  # a sample or two before the walk: "start"
    t0m, t0 = time.monotonic(), time.perf_counter()
    latencies, seen, errors = [], 0, 0
    for start in range(1, users + 1, 100):
        seconds, status, r = scim.call(
            s, "GET", "/Users", params={"startIndex": start, "count": 100}
        )
        latencies.append(seconds)
        if status == 200:
            seen += len(r.json().get("Resources", []))
        else:
            errors += 1
    wall = time.perf_counter() - t0
    time.sleep(2 * watch.interval)
    return {
        "users": users,
        "pages": len(latencies),
        "users_seen": seen,
        "errors": errors,
        "seconds": round(wall, 2),
        **summary(latencies),
        "rss": watch.window(t0m, time.monotonic()),
    }


def _collect_ids(scim: Scim, s: requests.Session, need: int) -> list[str]:
    """User ids from the server (when this run knows too few), 1,000 a page."""
    ids: list[str] = []
    start = 1
    while len(ids) < need:
        _, status, r = scim.call(
            s, "GET", "/Users", params={"startIndex": start, "count": 1000, "attributes": "id"}
        )
        page = r.json().get("Resources", []) if status == 200 else []
        if not page:
            break
        ids.extend(u["id"] for u in page)
        start += len(page)
    return ids


def _patch(scim, s, group_id, operations, query=""):
    return scim.call(
        s,
        "PATCH",
        f"/Groups/{group_id}{query}",
        json={"schemas": [PATCH_OP], "Operations": operations},
    )


def teams(scim: Scim, directory: Directory, args, rng: random.Random) -> dict:
    s = scim.session()
    big_size, small_size = args.team_size, args.small_team_size
    ids = [u[2] for u in directory.users]
    if len(ids) < big_size + small_size + 2 * args.team_adds:
        ids = _collect_ids(scim, s, big_size + small_size + 2 * args.team_adds)
    rng.shuffle(ids)
    big_members, small_members = ids[:big_size], ids[big_size : big_size + small_size]
    outsiders = ids[big_size + small_size :]
    if len(big_members) < big_size or not outsiders:
        raise SystemExit(f"the teams phase needs over {big_size + small_size:,} users")
    result: dict = {"big_team_size": big_size, "small_team_size": small_size}

    # The small team in one POST; the big one as Okta builds it: POST, then PATCH adds.
    _, status, r = scim.call(
        s,
        "POST",
        "/Groups",
        json={
            "schemas": [CORE_GROUP],
            "displayName": f"Bench {directory.run_id} small",
            "members": [{"value": i} for i in small_members],
        },
    )
    if status != 201:
        raise SystemExit(f"POST /Groups answered {status}: {getattr(r, 'text', r)!s:.300}")
    small = r.json()["id"]
    _, status, r = scim.call(
        s,
        "POST",
        "/Groups",
        json={"schemas": [CORE_GROUP], "displayName": f"Bench {directory.run_id} big"},
    )
    if status != 201:
        raise SystemExit(f"POST /Groups answered {status}: {getattr(r, 'text', r)!s:.300}")
    big = r.json()["id"]
    log(f"teams: building a team of {big_size:,} by PATCH add, {args.team_batch} a request")
    build, build_errors = [], 0
    t0 = time.perf_counter()
    for at in range(0, big_size, args.team_batch):
        batch = big_members[at : at + args.team_batch]
        seconds, status, r = _patch(
            scim,
            s,
            big,
            [{"op": "add", "path": "members", "value": [{"value": i} for i in batch]}],
            "?excludedAttributes=members",
        )
        build.append(seconds)
        if status != 200:
            build_errors += 1
            log(f"  batch PATCH answered {status}: {getattr(r, 'text', r)!s:.300}")
        if (at // args.team_batch) % 20 == 19:
            log(f"  {at + len(batch):,} members")
    wall = time.perf_counter() - t0
    result["build"] = {
        "batch": args.team_batch,
        "patches": len(build),
        "seconds": round(wall, 2),
        "members_per_s": round(big_size / wall, 1),
        **summary(build),
        "errors": build_errors,
    }
    _, _, r = scim.call(s, "GET", f"/Groups/{big}", params={"excludedAttributes": "members"})
    result["big_team_id"], result["small_team_id"] = big, small

    def single_adds(n: int, query: str) -> dict:
        """`n` adds (each removed again) to each team, alternating between the teams so
        that any drift of the server (WAL growth, caches) affects both alike."""
        out = {size: {"add": [], "remove": []} for size in ("small", "big")}
        errors, statuses = 0, {}
        for _ in range(n):
            for size, group_id in (("small", small), ("big", big)):
                user = rng.choice(outsiders)
                add = [{"op": "add", "path": "members", "value": [{"value": user}]}]
                seconds, status, _r = _patch(scim, s, group_id, add, query)
                out[size]["add"].append(seconds)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                errors += status not in (200, 204)  # 204: RFC 7644 §3.5.2 allows it
                remove = [{"op": "remove", "path": f'members[value eq "{user}"]'}]
                seconds, status, _r = _patch(
                    scim, s, group_id, remove, "?excludedAttributes=members"
                )
                out[size]["remove"].append(seconds)
                errors += status != 200
        return {
            **{
                size: {"add": summary(d["add"]), "remove": summary(d["remove"])}
                for size, d in out.items()
            },
            "add_statuses": statuses,
            "errors": errors,
        }

    for label, query, n in (
        ("member_add", "?excludedAttributes=members", args.team_adds),
        ("member_add_as_idp", "", args.team_adds_idp),
    ):
        if n == 0:
            continue
        warmed = single_adds(3, query)
        if label == "member_add_as_idp" and n is None:
            # As many as the others, unless every answer carries all 50,000 members.
            slow = warmed["big"]["add"]["p50_ms"] > 250
            n = 20 if slow else args.team_adds
        log(f"teams: {n} single-member PATCH adds to each team ({query or 'no query'})")
        result[label] = {
            "query": query or "(none, as IdPs send it: 204, or 200 with every member)",
            **single_adds(n, query),
        }
        b, sm = result[label]["big"]["add"], result[label]["small"]["add"]
        result[label]["ratio_p50"] = round(b["p50_ms"] / sm["p50_ms"], 2)
        result[label]["ratio_p99"] = round(b["p99_ms"] / sm["p99_ms"], 2)

    log(f"teams: {args.group_gets} GET ?excludedAttributes=members of each team")
    gets: dict = {}
    params = {"excludedAttributes": "members"}
    timings: dict = {"small": [], "big": []}
    errors = 0
    for group_id in (small, big):
        warm(scim, s, f"/Groups/{group_id}", params, 5)
    for _ in range(args.group_gets):
        for label, group_id in (("small", small), ("big", big)):
            seconds, status, _r = scim.call(s, "GET", f"/Groups/{group_id}", params=params)
            timings[label].append(seconds)
            errors += status != 200
    gets = {label: summary(values) for label, values in timings.items()}
    gets["errors"] = errors
    gets["ratio_p50"] = round(gets["big"]["p50_ms"] / gets["small"]["p50_ms"], 2)
    result["get_excluding_members"] = gets

    if args.group_full_gets:
        latencies, size = [], 0
        for _ in range(args.group_full_gets):
            seconds, status, r = scim.call(s, "GET", f"/Groups/{big}")
            latencies.append(seconds)
            if status == 200:
                size = len(r.content)
        result["get_big_with_members"] = {**summary(latencies), "response_bytes": size}
    return result


# --- Report -------------------------------------------------------------------------------


def _fmt(value, unit="") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}{unit}" if value >= 100 else f"{value:,.2f}{unit}"
    return f"{value:,}{unit}"


def _k(n: int) -> str:
    """1000 -> 1k, 100000 -> 100k, 10 -> 10."""
    return f"{n / 1000:g}k" if n >= 1000 else str(n)


def targets(results: dict) -> list[dict]:
    """The issue's targets, each with the measured figure and whether it is met."""
    rows = []

    def row(name, measured, goal, ok):
        rows.append({"target": name, "measured": measured, "goal": goal, "met": ok})

    phases = results["phases"]
    if "creates" in phases:
        c = phases["creates"]
        row("creates/s", c["creates_per_s"], ">= 500", c["creates_per_s"] >= 500)
        row("non-201 creates", c["non_201"], "0", c["non_201"] == 0)
    low, high = phases.get("lookups1k"), phases.get("lookups100k")
    for attribute in ("userName", "externalId"):
        for phase in (low, high):
            if phase:
                p50 = phase[attribute]["p50_ms"]
                row(f"{attribute} eq p50 @{_k(phase['users'])} (ms)", p50, "~3 (<= 4)", p50 <= 4)
        if low and high:
            ratio = round(high[attribute]["p99_ms"] / low[attribute]["p99_ms"], 2)
            name = f"{attribute} eq p99 {_k(high['users'])}/{_k(low['users'])}"
            row(name, ratio, "<= 1.5", ratio <= 1.5)
    if "teams" in phases:
        t = phases["teams"]
        sizes = f"{_k(t['big_team_size'])}/{_k(t['small_team_size'])}"
        for label in ("member_add", "member_add_as_idp"):
            if label in t:
                suffix = "" if label == "member_add" else " (no query)"
                for stat in ("p50", "p99"):
                    ratio = t[label][f"ratio_{stat}"]
                    row(f"add 1 member {stat} {sizes}{suffix}", ratio, "<= 1.5", ratio <= 1.5)
    if "paging" in phases:
        ratio = phases["paging"]["ratio_p50"]
        row("last page / first page p50", ratio, "<= 2", ratio is not None and ratio <= 2)
    rss = (phases.get("memory") or {}).get("rss")
    if rss:
        growth = round(rss["rss_end_mb"] - rss["rss_start_mb"], 1)
        row("RSS growth over full walk (MB)", growth, "flat (<= 25)", growth <= 25)
    return rows


def _lookup_rows(lat, p: dict) -> None:
    stale = p.get("before_analyze")
    for attribute in ("userName", "externalId"):
        if stale:
            lat(f"{attribute} eq @ {stale['users']:,} users, before ANALYZE", stale[attribute])
        lat(f"{attribute} eq @ {p['users']:,} users", p[attribute])


def print_report(results: dict) -> None:
    phases = results["phases"]
    lines = [f"SCIM benchmark  {results['base_url']}  run {results['run_id']}"]
    if results.get("code"):
        c = results["code"]
        lines.append(
            f"code {c['sha256']} ({c['files']} files, newest {c['newest']} {c['newest_mtime']})"
        )
    lines.append("")
    table: list[tuple[str, str, str, str]] = []  # what, n, p50, p99 / value

    def lat(name, d, extra=""):
        table.append((name, _fmt(d.get("n")), _fmt(d.get("p50_ms")), _fmt(d.get("p99_ms")) + extra))

    if "lookups1k" in phases:
        p = phases["lookups1k"]
        if "top_up" in p and p["top_up"].get("creates"):
            c = p["top_up"]["creates"]
            lat(f"POST /Users (first {c['users']:,}) {c['creates_per_s']}/s", c)
        _lookup_rows(lat, p)
    if "creates" in phases:
        c = phases["creates"]
        lat(
            f"POST /Users x{c['users']:,}, {c['concurrency']} clients: {c['creates_per_s']}/s",
            c,
            f"  non-201: {c['non_201']}",
        )
    if "lookups100k" in phases:
        _lookup_rows(lat, phases["lookups100k"])
    if "paging" in phases:
        p = phases["paging"]
        lat(f"GET /Users startIndex=1 count=100 @ {p['users']:,}", p["first_page"])
        lat(f"GET /Users startIndex={p['last_page']['startIndex']:,} count=100", p["last_page"])
    if "memory" in phases:
        m = phases["memory"]
        lat(f"walk {m['pages']:,} pages ({m['seconds']} s)", m)
    if "teams" in phases:
        t = phases["teams"]
        b = t["build"]
        lat(f"PATCH add {b['batch']} members (build, {b['members_per_s']}/s)", b)
        for label, title in (("member_add", "add 1 member"), ("member_add_as_idp", "")):
            if label not in t:
                continue
            if not title:
                codes = "/".join(t[label].get("add_statuses", {}))
                title = f"add 1 member, no query ({codes})"
            for size in ("small", "big"):
                n = t["small_team_size"] if size == "small" else t["big_team_size"]
                lat(f"PATCH {title} -> team of {n:,}", t[label][size]["add"])
                lat(f"PATCH remove 1 member <- team of {n:,}", t[label][size]["remove"])
        for size in ("small", "big"):
            n = t["small_team_size"] if size == "small" else t["big_team_size"]
            lat(f"GET team of {n:,} ?excludedAttributes=members", t["get_excluding_members"][size])
        if "get_big_with_members" in t:
            g = t["get_big_with_members"]
            lat(f"GET team of {t['big_team_size']:,} with members ({g['response_bytes']:,} B)", g)
    width = max(len(r[0]) for r in table) if table else 10
    lines.append(f"{'measurement':<{width}}  {'n':>7}  {'p50 ms':>9}  {'p99 ms':>9}")
    lines.append("-" * (width + 32))
    for name, n, p50, p99 in table:
        lines.append(f"{name:<{width}}  {n:>7}  {p50:>9}  {p99:>9}")
    rss = (phases.get("memory") or {}).get("rss")
    if rss:
        lines += [
            "",
            f"server RSS while paging through every user ({rss['processes']} processes): "
            f"start {rss['rss_start_mb']} MB, max {rss['rss_max_mb']} MB, "
            f"end {rss['rss_end_mb']} MB (largest process max {rss['largest_process_max_mb']} MB)",
        ]
    lines += ["", f"{'target':<40}  {'measured':>10}  {'goal':>12}  met"]
    lines.append("-" * 72)
    for t in results["targets"]:
        lines.append(
            f"{t['target']:<40}  {_fmt(t['measured']):>10}  {t['goal']:>12}  "
            + ("yes" if t["met"] else "NO")
        )
    lines += ["", "phase durations (s): "]
    lines.append("  " + ", ".join(f"{name} {d}" for name, d in results["phase_seconds"].items()))
    if results.get("phase_rss"):
        lines.append("server RSS per phase (MB, start/max/end):")
        for name, r in results["phase_rss"].items():
            if r:
                lines.append(
                    f"  {name:<12} {r['rss_start_mb']}/{r['rss_max_mb']}/{r['rss_end_mb']}"
                )
    if results.get("phase_loadavg"):
        lines.append(
            "machine load average (1 min) at start/end of each phase: "
            + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in results["phase_loadavg"].items())
        )
    if results.get("phase_server_cpu_s"):
        lines.append(
            "server CPU seconds per phase: "
            + ", ".join(f"{k} {v}" for k, v in results["phase_server_cpu_s"].items())
        )
    creates = results["phases"].get("creates")
    server = results.get("phase_server_cpu_s", {}).get("creates")
    if creates and creates.get("n") and server is not None:
        # CPU per create, by whom: steadier than the rate on a machine whose speed swings
        # (bench/README.md, eighth pass).
        per = 1000 / creates["n"]
        database = results.get("phase_database_cpu_s", {}).get("creates", 0)
        lines.append(
            f"CPU ms per create: server {server * per:.2f}, database {database * per:.2f}, "
            f"client {creates['client_cpu_s'] * per:.2f}"
        )
    print("\n".join(lines), flush=True)


# --- Main ---------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--base-url", default=os.environ.get("SCIM_BASE_URL"))
    p.add_argument("--token", default=os.environ.get("SCIM_TOKEN"))
    p.add_argument("--users", type=int, default=10_000, help="users created in 'creates'")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent create clients")
    p.add_argument("--small-scale", type=int, default=1_000, help="users for lookups@1k")
    p.add_argument("--scale", type=int, default=100_000, help="users for the scale phase")
    p.add_argument("--seed-direct", action="store_true", help="scale by SQL, not the API")
    p.add_argument("--app-dir", default=str(Path(__file__).resolve().parent.parent))
    p.add_argument("--lookups", type=int, default=2_000, help="lookups per filter")
    p.add_argument(
        "--analyze",
        action="store_true",
        help="PostgreSQL with autovacuum off: ANALYZE before each lookup phase, and "
        "autovacuum's analyze rule applied every second while the phases run, as a default "
        "server would (imports the app, like --seed-direct)",
    )
    p.add_argument(
        "--stale-lookups",
        type=int,
        default=200,
        help="with --analyze: lookups per filter measured before the ANALYZE",
    )
    p.add_argument("--team-size", type=int, default=50_000)
    p.add_argument("--small-team-size", type=int, default=10)
    p.add_argument("--team-batch", type=int, default=500, help="members per building PATCH")
    p.add_argument("--team-adds", type=int, default=200, help="single adds per team")
    p.add_argument(
        "--team-adds-idp",
        type=int,
        default=None,
        help="single adds per team without ?excludedAttributes=members, as an IdP sends "
        "them (the server answers 204, or 200 with the group and all its members); "
        "default: as --team-adds, or 20 when such an answer takes over 250 ms",
    )
    p.add_argument("--group-gets", type=int, default=200)
    p.add_argument("--group-full-gets", type=int, default=5)
    p.add_argument("--page-repeats", type=int, default=50)
    p.add_argument("--server-pid", type=int, help="sample this process tree's RSS and CPU")
    p.add_argument("--sample-interval", type=float, default=0.5)
    p.add_argument("--domain", default="acme.test", help="a verified domain of the account")
    p.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--json-out", default=None, help="results file (default: bench/results/)")
    p.add_argument("--label", default="", help="a note stored in the results (e.g. sqlite)")
    args = p.parse_args(argv)
    if not args.base_url or not args.token:
        p.error("--base-url and --token (or SCIM_BASE_URL and SCIM_TOKEN) are required")
    unknown = set(args.phases.split(",")) - set(PHASES)
    if unknown:
        p.error(f"unknown phases {sorted(unknown)}; choose from {PHASES}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    run_id = uuid.uuid4().hex[:6]
    scim = Scim(args.base_url, args.token)
    directory = Directory(run_id, args.domain)
    watch = ProcessWatch(args.server_pid, args.sample_interval)
    wanted = args.phases.split(",")
    s = scim.session()
    _, status, r = scim.call(s, "GET", "/ServiceProviderConfig")
    if status != 200:
        raise SystemExit(f"GET /ServiceProviderConfig answered {status}: {r}")
    results: dict = {
        "base_url": args.base_url,
        "label": args.label,
        "run_id": run_id,
        "started_at": datetime.now(UTC).isoformat(),
        "config": {k: v for k, v in vars(args).items() if k != "token"},
        "client_cpus": os.cpu_count(),
        "code": code_state(Path(args.app_dir)),
        "phases": {},
        "phase_seconds": {},
        "phase_rss": {},
        "phase_server_cpu_s": {},
        "phase_database_cpu_s": {},
        "phase_loadavg": {},
    }
    watch.start()
    autoanalyze = AutoAnalyze(Path(args.app_dir)) if args.analyze else None
    if autoanalyze is not None:
        results["autoanalyze"] = autoanalyze.start()
    steps = {
        "lookups1k": lambda: {
            "top_up": top_up(scim, directory, args.small_scale, args, "lookups@1k", True),
            **lookups_phase(scim, directory, args, rng),
        },
        "creates": lambda: create_users(scim, directory, args.users, args.concurrency),
        "scale": lambda: top_up(scim, directory, args.scale, args, "scale"),
        "lookups100k": lambda: lookups_phase(scim, directory, args, rng),
        "paging": lambda: paging(scim, args.page_repeats),
        "memory": lambda: memory(scim, watch),
        "teams": lambda: teams(scim, directory, args, rng),
    }
    try:
        for name in PHASES:
            if name not in wanted:
                continue
            log(f"phase {name}")
            cpu0, t0m, t0 = watch.cpu_seconds(), time.monotonic(), time.perf_counter()
            database0 = watch.database_cpu_seconds()
            loadavg0 = _loadavg()
            results["phases"][name] = steps[name]()
            results["phase_seconds"][name] = round(time.perf_counter() - t0, 1)
            results["phase_rss"][name] = watch.window(t0m, time.monotonic())
            results["phase_loadavg"][name] = [loadavg0, _loadavg()]
            if cpu0 is not None:
                results["phase_server_cpu_s"][name] = round(watch.cpu_seconds() - cpu0, 1)
            database = watch.database_cpu_seconds() - database0
            results["phase_database_cpu_s"][name] = round(database, 1)
            log(f"phase {name} done in {results['phase_seconds'][name]} s")
    finally:
        watch.stop()
        if autoanalyze is not None:
            results["autoanalyze_runs"] = autoanalyze.stop()
        results["finished_at"] = datetime.now(UTC).isoformat()
        results["targets"] = targets(results)
        out = Path(args.json_out) if args.json_out else None
        if out is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            out = Path(__file__).resolve().parent / "results" / f"scim-{stamp}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        log(f"results written to {out}")
    print_report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
