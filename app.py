"""The application factory, its jobs and its CLI (flaskr's shape). What it assembles
lives in blueprints/common: the extensions (extensions.py, made there so that no
blueprint imports this module), the configuration from the environment (config.py), what
every request gets (web.py), the page requests' unit of work (unit_of_work.py) and the
SQLite writer (sqlite_writer.py). `create_app(overrides)` lets tests and tools replace
any setting.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from blueprints.audit import jobs as audit_jobs
from blueprints.common import outbox, sqlite_writer, unit_of_work
from blueprints.common.config import load_config
from blueprints.common.extensions import csrf, db, login_manager, mail, migrate
from blueprints.common.web import (
    BrowserSessions,
    IdConverter,
    configure_logging,
    install_request_hooks,
)
from blueprints.domains import jobs as domain_jobs
from blueprints.members import jobs as member_jobs
from blueprints.scim_settings import jobs as scim_jobs
from blueprints.sso import jobs as sso_jobs

ROOT = Path(__file__).resolve().parent
log = logging.getLogger("app")


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

    configure_logging(app)
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
    install_request_hooks(app)
    # Installed after (so run before) the headers hook: an error page gets them too.
    unit_of_work.install(app)
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
    "deliver-audit-streams": (
        audit_jobs.deliver_streams,
        {"trigger": "interval", "seconds": 15},
        600,
    ),
    "purge-audit-log": (
        audit_jobs.purge_events,
        {"trigger": "cron", "hour": 4, "minute": 41},
        3600,
    ),
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
    "alert-scim-health": (
        scim_jobs.alert_provisioning,
        {"trigger": "cron", "minute": 23},
        600,
    ),
    "apply-team-rules": (
        member_jobs.apply_team_rules,
        {"trigger": "interval", "seconds": 60},
        900,
    ),
    "remove-suspended-members": (
        member_jobs.remove_suspended_members,
        {"trigger": "cron", "minute": 37},
        900,
    ),
    "recheck-domains": (
        domain_jobs.recheck_verified,
        {"trigger": "cron", "hour": 3, "minute": 17},
        3600,
    ),
}


def run_job(app: Flask, name: str, now: datetime | None = None, due: datetime | None = None):
    """Run job `name` once under its lease; returns its result, or None if another
    process holds the lease or, given the time it fell `due`, has run it since. `now` is
    the job's notion of time (tests pass it); the lease itself always runs on the wall
    clock, since it guards real processes."""
    from blueprints.common import lease

    with app.app_context():
        holder = lease.new_holder()
        if not lease.acquire(name, holder, timedelta(seconds=JOBS[name][2]), due=due):
            log.info("job %s skipped: another process runs it or has run it", name)
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
    """Schedule every job in this process (blueprints/common/schedule.py)."""
    from blueprints.common import schedule

    return schedule.start(app, {name: spec for name, (_, spec, _) in JOBS.items()}, run_job)


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
