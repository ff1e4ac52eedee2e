"""Application factory, configuration, jobs and CLI. The extensions are made in
blueprints/common/extensions.py (so blueprints never import this module) and bound to
the app in `create_app`.

Configuration comes from environment variables (SPEC F9); `create_app(overrides)` lets
tests and tools replace any of it.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import Flask, g, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from blueprints.common import outbox, sqlite_writer
from blueprints.common.extensions import csrf, db, login_manager, mail, migrate
from blueprints.domains import jobs as domain_jobs
from blueprints.scim_settings import jobs as scim_jobs
from blueprints.sso import jobs as sso_jobs

ROOT = Path(__file__).resolve().parent
log = logging.getLogger("app")


def _env_bool(name: str, default: bool | None) -> bool | None:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def load_config(instance_path: str) -> dict:
    """Read the configuration from the environment (names in SPEC "Stable names")."""
    base_url = os.environ.get("BASE_URL", "http://127.0.0.1:5000").rstrip("/")
    secret = os.environ.get("SECRET_KEY")
    if not secret:
        # A stable per-instance key so a dev restart keeps sessions; production sets one.
        key_file = Path(instance_path) / "secret_key"
        key_file.parent.mkdir(parents=True, exist_ok=True)
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(48))
            key_file.chmod(0o600)
        secret = key_file.read_text().strip()
    db_url = os.environ.get("DATABASE_URL") or f"sqlite:///{Path(instance_path) / 'app.db'}"
    if db_url.startswith("postgres://"):
        db_url = "postgresql://" + db_url.removeprefix("postgres://")
    if db_url.startswith("postgresql://"):
        db_url = "postgresql+psycopg://" + db_url.removeprefix("postgresql://")
    mail_server = os.environ.get("MAIL_SERVER") or None
    return {
        "SECRET_KEY": secret,
        "BASE_URL": base_url,
        "SQLALCHEMY_DATABASE_URI": db_url,
        # No ping per checkout (a round trip before every request's first query): a
        # connection the server dropped fails once, is invalidated with the pool, and that
        # request is a 503 to retry; connections are renewed every half hour anyway.
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_recycle": 1800},
        "MAIL_SERVER": mail_server,
        "MAIL_PORT": int(os.environ.get("MAIL_PORT", "25")),
        "MAIL_USE_TLS": _env_bool("MAIL_USE_TLS", False),
        "MAIL_USE_SSL": _env_bool("MAIL_USE_SSL", False),
        "MAIL_USERNAME": os.environ.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": os.environ.get("MAIL_PASSWORD") or None,
        "MAIL_DEFAULT_SENDER": os.environ.get("MAIL_DEFAULT_SENDER", "identity@localhost"),
        # "host" or "host:port", comma separated; empty means the system resolver.
        "DNS_NAMESERVERS": [
            s.strip() for s in os.environ.get("DNS_NAMESERVERS", "").split(",") if s.strip()
        ],
        "DNS_TIMEOUT": float(os.environ.get("DNS_TIMEOUT", "5")),
        "SCHEDULER_ENABLED": _env_bool("SCHEDULER_ENABLED", False),
        # None: decided from BASE_URL in create_app, after overrides (https → Secure).
        "SESSION_COOKIE_SECURE": _env_bool("SESSION_COOKIE_SECURE", None),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": _env_bool("SESSION_COOKIE_SECURE", None),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
        "MAX_CONTENT_LENGTH": int(os.environ.get("MAX_CONTENT_LENGTH", str(1024 * 1024))),
        # argon2id cost; tests lower it, production keeps the library's RFC 9106 defaults.
        "ARGON2_TIME_COST": int(os.environ.get("ARGON2_TIME_COST", "3")),
        "ARGON2_MEMORY_COST": int(os.environ.get("ARGON2_MEMORY_COST", "65536")),
        "LOGIN_MAX_FAILURES_PER_ACCOUNT": 5,
        "LOGIN_MAX_FAILURES_PER_ADDRESS": 20,
        "LOGIN_LOCKOUT_SECONDS": 15 * 60,
        "ENCRYPTION_KEYS": os.environ.get("ENCRYPTION_KEYS", ""),
        "SSO_FLOW_SECONDS": 600,
        # Development and tests only: an OpenID provider on http://localhost.
        "SSO_ALLOW_LOCAL_IDP": _env_bool("SSO_ALLOW_LOCAL_IDP", False),
        "SAML_CLOCK_SKEW_SECONDS": 120,
        "HTTP_TIMEOUT": float(os.environ.get("HTTP_TIMEOUT", "5")),
        # SCIM connector tokens (SPEC F4).
        "SCIM_TOKEN_GRACE_HOURS": float(os.environ.get("SCIM_TOKEN_GRACE_HOURS", "24")),
        "SCIM_REFRESH_AFTER_DAYS": 90,
        "SCIM_WARNING_DAYS": 20,
        # SCIM limits (blueprints/scim_api/limits.py). Up to SCIM_FREE_PARALLELISM requests
        # of a connector at once are never refused; past it, SCIM_RATE_LIMIT applies (a
        # `limits` rate string), and past SCIM_MAX_IN_FLIGHT, 429 at once. Counted per
        # process, or across processes and instances in SCIM_LIMITS_STORAGE_URI (redis://).
        "SCIM_FREE_PARALLELISM": int(os.environ.get("SCIM_FREE_PARALLELISM", "10")),
        "SCIM_RATE_LIMIT": os.environ.get("SCIM_RATE_LIMIT", "100/second"),
        "SCIM_MAX_IN_FLIGHT": int(os.environ.get("SCIM_MAX_IN_FLIGHT", "50")),
        "SCIM_FAILED_AUTH_LIMIT": os.environ.get("SCIM_FAILED_AUTH_LIMIT", "10/second"),
        "SCIM_LIMITS_STORAGE_URI": os.environ.get("SCIM_LIMITS_STORAGE_URI", ""),
        # SCIM requests served at once by one worker process, in turn across connectors
        # (reads, writes); others wait, then 503 with Retry-After. 0 lets every thread in.
        "SCIM_READERS_PER_PROCESS": int(os.environ.get("SCIM_READERS_PER_PROCESS", "2")),
        # Writes: unset, 1 on SQLite (one writer at a time anyway: a second only competes
        # for the interpreter while the first holds the write lock) and 4 on PostgreSQL
        # (row locks: a create waits on the database, and others run meanwhile).
        "SCIM_WRITERS_PER_PROCESS": (
            int(os.environ["SCIM_WRITERS_PER_PROCESS"])
            if os.environ.get("SCIM_WRITERS_PER_PROCESS")
            else None
        ),
        "SCIM_QUEUE_WAIT_SECONDS": 30,
        # Request-log rows are written in batches, this often (seconds; 0 writes each at
        # once): blueprints/scim_api/request_log.py.
        "SCIM_LOG_FLUSH_SECONDS": float(os.environ.get("SCIM_LOG_FLUSH_SECONDS", "0.5")),
        "SCIM_LOG_RETENTION_DAYS": 30,
        "RESET_TOKEN_SECONDS": 60 * 60,
        "RESET_EMAILS_PER_HOUR": 3,
        "HTMX_CDN_URL": "https://unpkg.com/htmx.org@2.0.11/dist/htmx.min.js",
        "HTMX_SRI": "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg",
        # Proxies in front of the app that append to X-Forwarded-For (0: none, the peer
        # is the client). Sign-in throttling and the SCIM log use the client's address.
        "PROXY_FIX_X_FOR": int(os.environ.get("PROXY_FIX_X_FOR", "0")),
    }


class RequestIdFilter(logging.Filter):
    """Put the current request id on every log record (SPEC F9)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.request_id = g.get("request_id", "-")
        except RuntimeError:  # outside a request or app context
            record.request_id = "-"
        return True


def _configure_logging(app: Flask) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")
    )
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    if not any(isinstance(f, RequestIdFilter) for h in root.handlers for f in h.filters):
        root.addHandler(handler)
    root.setLevel(logging.INFO if not app.testing else logging.WARNING)
    # APScheduler logs every run at INFO (every 30 s for the outbox); keep its warnings.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # pysaml2 logs xmlsec1's output at ERROR for every refused signature; the SSO routes
    # log each refusal with its reason code instead.
    logging.getLogger("saml2").setLevel(logging.CRITICAL)
    logging.getLogger("xmlschema").setLevel(logging.WARNING)  # pysaml2 loads its schemas


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _install_request_hooks(app: Flask) -> None:
    csp = (
        "default-src 'self'; script-src 'self' https://unpkg.com; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )

    @app.before_request
    def assign_request_id() -> None:
        incoming = request.headers.get("X-Request-Id", "")
        ok = 0 < len(incoming) <= 64 and all(
            (c.isascii() and c.isalnum()) or c in "-_." for c in incoming
        )
        g.request_id = incoming if ok else uuid.uuid4().hex

    @app.after_request
    def security_headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Content-Security-Policy", csp)
        if app.config["SESSION_COOKIE_SECURE"]:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        response.headers["X-Request-Id"] = g.get("request_id", "-")
        return response


class BrowserSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, for the pages only: the SCIM API is bearer-
    authenticated and never reads a session (STYLE §2), so its requests neither open
    one (an IdP sends no cookie) nor ever set one."""

    def open_session(self, app, request):
        if request.path.startswith("/scim/"):
            return self.null_session_class()
        return super().open_session(app, request)


class IdConverter(IntegerConverter):
    """`<id:name>`: a row id in a URL. Beyond what an integer key holds is no row (404);
    werkzeug's `int` took 99999999999, which PostgreSQL refused in the query: a 500."""

    def __init__(self, url_map) -> None:
        super().__init__(url_map, min=1, max=2**31 - 1)


def create_app(overrides: dict | None = None) -> Flask:
    """Build the application; `overrides` replace environment configuration."""
    app = Flask(__name__, instance_path=os.environ.get("INSTANCE_PATH") or None)
    app.session_interface = BrowserSessions()
    app.url_map.converters["id"] = IdConverter
    app.config.update(load_config(app.instance_path))
    if overrides:
        app.config.update(overrides)
    if app.config["PROXY_FIX_X_FOR"] > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["PROXY_FIX_X_FOR"])
    for key in ("SESSION_COOKIE_SECURE", "REMEMBER_COOKIE_SECURE"):
        if app.config.get(key) is None:
            app.config[key] = app.config["BASE_URL"].startswith("https:")

    _configure_logging(app)
    db.init_app(app)
    with app.app_context():  # (Flask-SQLAlchemy made the engine in init_app)
        if db.engine.dialect.name == "sqlite":
            sqlite_writer.install(db.engine)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    login_manager.init_app(app)
    mail.init_app(app)
    csrf.init_app(app)

    import models  # noqa: F401  (registers the tables on db.metadata)
    from blueprints import register_blueprints

    register_blueprints(app)
    _install_request_hooks(app)
    app.cli.add_command(jobs_cli)
    app.cli.add_command(seed_demo_command)

    @app.context_processor
    def inject_now():
        return {"now": datetime.now(UTC)}

    if app.config["SCHEDULER_ENABLED"] and not app.testing:
        start_scheduler(app)
    return app


# --- Scheduled jobs (SPEC F8) -------------------------------------------------------------
# name -> (function, APScheduler trigger arguments, lease TTL in seconds).
# Each callable is a plain function of `now`; the lease makes one process run it at a time.
JOBS: dict[str, tuple[Callable, dict, int]] = {
    "deliver-outbox": (
        outbox.deliver_due,
        {"trigger": "interval", "seconds": 30},
        600,
    ),
    "purge-sso": (
        sso_jobs.purge_expired,
        {"trigger": "interval", "hours": 1},
        600,
    ),
    "refresh-scim-tokens": (
        scim_jobs.refresh_tokens,
        {"trigger": "cron", "hour": 2, "minute": 7},
        3600,
    ),
    "warn-scim-tokens": (
        scim_jobs.warn_expiring,
        {"trigger": "cron", "hour": 8, "minute": 0},
        3600,
    ),
    "purge-scim-log": (
        scim_jobs.purge_request_log,
        {"trigger": "cron", "hour": 4, "minute": 11},
        3600,
    ),
    "recheck-domains": (
        domain_jobs.recheck_verified,
        {"trigger": "cron", "hour": 3, "minute": 17},
        3600,
    ),
}


def run_job(app: Flask, name: str, now: datetime | None = None):
    """Run job `name` once under its lease; returns its result, or None if another
    process holds the lease. `now` is the job's notion of time (tests pass it); the
    lease itself always runs on the wall clock, since it guards real processes."""
    from datetime import timedelta

    from blueprints.common import lease

    with app.app_context():
        holder = lease.new_holder()
        if not lease.acquire(name, holder, timedelta(seconds=JOBS[name][2])):
            log.info("job %s skipped: another process holds its lease", name)
            return None
        error = None
        try:
            return JOBS[name][0](now or datetime.now(UTC))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            db.session.rollback()
            raise
        finally:
            lease.release(name, holder, error)


def start_scheduler(app: Flask):
    """Start APScheduler in this process; every job goes through `run_job`'s lease."""
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True})
    for name, (_path, trigger, _ttl) in JOBS.items():

        def tick(name=name):
            try:
                run_job(app, name)
            except Exception:
                log.exception("job %s failed", name)

        scheduler.add_job(tick, id=name, name=name, max_instances=1, **trigger)
    scheduler.start()
    app.extensions["scheduler"] = scheduler
    return scheduler


@click.group("jobs")
def jobs_cli() -> None:
    """Scheduled jobs, one run at a time (for cron)."""


@jobs_cli.command("list")
def jobs_list() -> None:
    """List the job names."""
    for name in JOBS:
        click.echo(name)


@jobs_cli.command("run")
@click.argument("name", type=click.Choice(sorted(JOBS)))
def jobs_run(name: str) -> None:
    """Run job NAME once."""
    from flask import current_app

    result = run_job(current_app._get_current_object(), name)
    if result is None:
        click.echo(f"{name}: skipped, another process is running it")
    elif isinstance(result, dict):
        click.echo(f"{name}: " + " ".join(f"{key}={value}" for key, value in result.items()))
    else:
        click.echo(f"{name}: {result}")


@click.command("seed-demo")
@click.option(
    "--with-scim",
    is_flag=True,
    help="Also verify acme.test, turn SSO and SCIM on, and print the SCIM URL and token.",
)
def seed_demo_command(with_scim: bool) -> None:
    """Create (or refresh) the demo account and print its owner's sign-in."""
    from blueprints.common.demo import seed_demo

    for key, value in seed_demo(with_scim=with_scim).items():
        click.echo(f"{key}={value}")
