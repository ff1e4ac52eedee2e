"""Fixtures shared by every test (flaskr style).

The database is real: a throwaway SQLite file by default, or, with TEST_DATABASE=postgresql,
a scratch PostgreSQL database on 127.0.0.1:5432 created for this run and dropped after it.
Either way the schema comes from the Alembic migrations, so they are tested too.

A test is a caller like a job: services flush and never commit (the rule is in
blueprints/common/unit_of_work.py), so what a fixture or the test wrote through its
session is committed before the app runs a request on a connection of its own
(`save_test_work`: after each fixture is set up, and before each test-client request).
A test that talks to a live server after calling a service commits itself.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
from flask.testing import FlaskClient
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import DBAPIError
from werkzeug.serving import WSGIRequestHandler, make_server

from tests import factories

# Keep the app's instance folder (its dev secret key, the dev database) out of the checkout.
os.environ.setdefault("INSTANCE_PATH", tempfile.mkdtemp(prefix="identity-test-"))

# The OpenID provider fixtures (oidc_client, idp_user) serve tests/sso and tests/browser.
pytest_plugins = ["tests.sso.iam"]

PG_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
CSRF_INPUT = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_url() -> Iterator[str]:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL does not answer at 127.0.0.1:5432 ({type(exc).__name__})")
    name = f"scim_test_{secrets.token_hex(6)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


_WRITES = ("INSERT", "UPDATE", "DELETE")
_WROTE = "test_wrote"


def _track_writes(engine) -> None:
    """Mark the connections that wrote in their open transaction (`save_test_work`)."""

    def wrote(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip()[:6].upper() in _WRITES:
            conn.info[_WROTE] = True

    def ended(conn) -> None:
        if not conn.invalidated:  # (a connection thrown away gets a new, empty info)
            conn.info.pop(_WROTE, None)

    event.listen(engine, "before_cursor_execute", wrote)
    event.listen(engine, "commit", ended)
    event.listen(engine, "rollback", ended)
    event.listen(engine.pool, "reset", lambda dbapi, record, state: record.info.pop(_WROTE, None))


def save_test_work() -> None:
    """Commit what the test (or a fixture) wrote through its session and left pending,
    as a job commits its work: nothing else is committed, so objects it holds aren't
    expired for nothing."""
    from flask import has_app_context

    if not has_app_context():
        return
    from app import db

    if not db.session.registry.has():
        return
    session = db.session()
    pending = bool(session.new or session.dirty or session.deleted)
    if not pending and session.in_transaction():
        pending = session.connection().info.get(_WROTE, False)
    if pending:
        session.commit()


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    value = yield
    save_test_work()
    return value


REDIS = "redis://127.0.0.1:6379"


def redis_db():
    """A Redis database of the calling test's own, emptied, as (client, URL); the test
    is skipped where no Redis answers on 127.0.0.1:6379."""
    redis = pytest.importorskip("redis")
    number = secrets.randbelow(14) + 1
    client = redis.Redis.from_url(f"{REDIS}/{number}")
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis does not answer at 127.0.0.1:6379 ({type(exc).__name__})")
    client.flushdb()
    return client, f"{REDIS}/{number}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> Iterator[str]:
    """A migrated, empty database for this test run."""
    if os.environ.get("TEST_DATABASE", "sqlite") == "postgresql":
        gen = _postgres_url()
        url = next(gen)
    else:
        gen, url = None, f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    from flask_migrate import upgrade

    from app import create_app

    migrator = create_app(_test_config(url))
    with migrator.app_context():
        upgrade()
        from app import db

        db.engine.dispose()
    yield url
    if gen is not None:
        with pytest.raises(StopIteration):
            next(gen)


def _test_config(url: str) -> dict:
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "SQLALCHEMY_DATABASE_URI": url,
        "BASE_URL": "http://localhost",
        "MAIL_SERVER": None,
        "MAIL_SUPPRESS_SEND": False,
        "SCHEDULER_ENABLED": False,
        "DNS_NAMESERVERS": ["127.0.0.1:9"],  # nothing answers unless a test starts a server
        "DNS_TIMEOUT": 1.0,
        "ARGON2_TIME_COST": 1,
        "ARGON2_MEMORY_COST": 1024,
        "SSO_ALLOW_LOCAL_IDP": True,  # the test OpenID provider runs on http://localhost
        "OUTBOUND_ALLOW_PRIVATE": True,  # the SIEM receiver of the tests is on loopback
        "SCIM_LOG_FLUSH_SECONDS": 0,  # the request log written at once: tests read it next
    }


class Client(FlaskClient):
    """A test client that sends a valid CSRF token with every unsafe request, as the
    pages do, unless the test passes `csrf=False` to see the protection work.

    Each request runs in its own application context, as in production: the `app`
    fixture keeps one context pushed for the test, and Flask would otherwise reuse it, so
    `g` (Flask-Login's user, the CSRF token, the membership) would leak between requests
    and clients. Requests use their own database session too: what the test wrote is
    committed first (`save_test_work`), and what a request wrote is read after
    `session.expire_all()`.
    """

    def run_wsgi_app(self, environ, buffered=False):
        with self.application.app_context():
            return super().run_wsgi_app(environ, buffered=buffered)

    def open(self, *args, **kwargs):
        save_test_work()
        csrf = kwargs.pop("csrf", True)
        method = kwargs.get("method", "GET").upper()
        if csrf and method in {"POST", "PUT", "PATCH", "DELETE"}:
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("X-CSRFToken", self.csrf_token())
            kwargs["headers"] = headers
        return super().open(*args, **kwargs)

    def csrf_token(self) -> str:
        """The token a page rendered for this client's session right now."""
        page = super().open("/passphrase/forgot", follow_redirects=True)
        match = CSRF_INPUT.search(page.get_data(as_text=True))
        assert match, "no CSRF token on the page"
        return match.group(1)


@pytest.fixture
def config_overrides() -> dict:
    """Folder conftests override this to change the app's configuration."""
    return {}


@pytest.fixture
def app(database_url, config_overrides):
    from app import create_app, db

    flask_app = create_app(_test_config(database_url) | config_overrides)
    flask_app.test_client_class = Client
    flask_app.jinja_env.undefined = __import__("jinja2").StrictUndefined
    with flask_app.app_context():
        _track_writes(db.engine)
        yield flask_app
        try:
            db.session.remove()
        except DBAPIError as error:  # the test had the server drop the session's connection
            if not error.connection_invalidated:
                raise
        _empty_tables(db)
        db.engine.dispose()


def _empty_tables(db) -> None:
    tables = list(reversed(db.metadata.sorted_tables))
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(table.delete())


@pytest.fixture
def session(app):
    from app import db

    return db.session


@pytest.fixture
def client(app) -> Client:
    return app.test_client()


@pytest.fixture
def htmx(client):
    """Headers htmx sends with its requests."""
    return {"HX-Request": "true", "HX-Current-URL": "http://localhost/enterprise/domains"}


@pytest.fixture
def account(session):
    return factories.make_account(session)


@pytest.fixture
def owner(session, account):
    return factories.make_user(session, account=account, email="owner@example.com", role="owner")


@pytest.fixture
def login_as(client):
    """Sign `user` in through the real sign-in form."""

    def sign_in(user, passphrase: str = factories.PASSPHRASE, follow_redirects=False):
        response = client.post(
            "/login",
            data={"email": user.email, "passphrase": passphrase},
            follow_redirects=follow_redirects,
        )
        assert response.status_code in (200, 302), response.get_data(as_text=True)
        return response

    return sign_in


@pytest.fixture
def as_owner(client, owner, login_as):
    """The client, signed in as the account's owner."""
    login_as(owner)
    return client


@pytest.fixture
def smtp_server(app):
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives; the app's
    MAIL_SERVER/MAIL_PORT point at it."""
    from aiosmtpd.controller import Controller

    class Keep:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append(envelope)
            return "250 OK"

    handler = Keep()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=controller.port)
    from app import mail

    mail.init_app(app)
    try:
        yield handler
    finally:
        controller.stop()


class QuietHandler(WSGIRequestHandler):
    """No access log line per request (the test output is for failures)."""

    def log_request(self, code="-", size="-") -> None:
        pass


@pytest.fixture
def live_server(app) -> Iterator[str]:
    """The app on 127.0.0.1 and a free port, in a thread (its own database sessions: what
    a test sets up must be committed); yields its base URL, which is also BASE_URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def drop_database_connections(app):
    """A function that has PostgreSQL drop every connection the app holds (as a restart
    does); skips on SQLite, which has no server."""
    from app import db

    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server to drop connections")
    name = db.engine.url.database

    def drop() -> None:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
        admin.dispose()

    return drop


@contextmanager
def gunicorn(database_url: str, env: dict, workers: int = 1) -> Iterator[str]:
    """The app under gunicorn (how it is deployed: its HTTP parsing, keep-alive, limits),
    on `database_url`, with `env` added to its environment; yields its base URL and stops
    it on the way out."""
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "-w", str(workers), "--threads", "4"),
            *("-b", f"127.0.0.1:{port}", "--no-control-socket", "app:create_app()"),
        ],
        env=os.environ
        | {
            "DATABASE_URL": database_url,
            "SECRET_KEY": "test-secret-key",
            "BASE_URL": "http://localhost",
        }
        | env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                requests.get(f"{base}/healthz", timeout=1)
                break
            except requests.RequestException:  # not listening, or not booted yet
                time.sleep(0.05)
        else:
            pytest.fail("gunicorn did not start")
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
