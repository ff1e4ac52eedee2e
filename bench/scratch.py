"""A throwaway place for a benchmark that runs the app itself: a temp directory and a
fresh database (SQLite inside it, or a scratch PostgreSQL database dropped afterwards),
set in the environment the app reads (DATABASE_URL, INSTANCE_PATH, BASE_URL)."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")


def pg(statement: str) -> None:
    """Run one statement on the server's maintenance database, outside a transaction."""
    import psycopg

    url = PG_URL.replace("postgresql+psycopg://", "postgresql://", 1) + "/postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


@contextmanager
def scratch(postgres: bool, name: str) -> Iterator[dict]:
    """The environment of a fresh database named after `name`; removed on the way out."""
    work = tempfile.mkdtemp(prefix=f"{name}.")
    database = None
    env = {
        "INSTANCE_PATH": f"{work}/instance",
        "BASE_URL": "http://127.0.0.1:5000",
        "SCHEDULER_ENABLED": "0",
        "DATABASE_URL": f"sqlite:///{work}/{name}.db",
    }
    if postgres:
        database = f"{name.replace('-', '_')}_{secrets.token_hex(4)}"
        pg(f"CREATE DATABASE {database}")
        env["DATABASE_URL"] = f"{PG_URL}/{database}"
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    try:
        yield env
    finally:
        if database:
            pg(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        shutil.rmtree(work, ignore_errors=True)


def demo_app():
    """The app on the scratch database (inside `scratch`): migrated, the demo account seeded
    with SCIM on. Returns the app, a test client, the Users URL path and the SCIM headers."""
    from flask_migrate import upgrade

    from app import create_app, db
    from blueprints.common.demo import seed_demo

    app = create_app()
    with app.app_context():
        upgrade()
        seeded = seed_demo(with_scim=True)
        db.session.remove()
    path = "/scim/v2/" + seeded["SCIM_BASE_URL"].rsplit("/", 1)[-1] + "/Users"
    headers = {
        "Authorization": f"Bearer {seeded['SCIM_TOKEN']}",
        "Content-Type": "application/scim+json",
    }
    return app, app.test_client(), path, headers


def close(app) -> None:
    """Before the scratch database goes: the request log's queued rows written now (at
    exit the database would be gone), the connections closed."""
    from app import db
    from blueprints.scim_api.unit_of_work import request_log

    with app.app_context():
        request_log().flush()
        db.engine.dispose()
