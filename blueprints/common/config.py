"""The application's configuration, read from environment variables (SPEC F9; the
names in SPEC "Stable names"); `create_app(overrides)` (app.py) lets tests and tools
replace any of it."""

from __future__ import annotations

import json
import os
import secrets
from functools import partial
from pathlib import Path

json_text = partial(json.dumps, ensure_ascii=False)


def _env_bool(name: str, default: bool | None) -> bool | None:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _json_object(name: str) -> dict:
    """A JSON object from the environment variable `name` ({} when unset); a value that
    is not one stops the start with a message naming the variable."""
    raw = os.environ.get(name, "").strip()
    try:
        value = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise RuntimeError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RuntimeError(f"{name} must be a JSON object.")
    return value


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
        # JSON stored as written (not as \u escapes), so a text search of a JSON column
        # (the audit log's detail) finds "Zoë" on SQLite as on PostgreSQL.
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_recycle": 1800, "json_serializer": json_text},
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
        # Live (not revoked) tokens a connector may have at once (SPEC F11): enough for
        # two IdP apps and a rotation each, few enough that forgotten ones stand out.
        "SCIM_MAX_TOKENS": int(os.environ.get("SCIM_MAX_TOKENS", "5")),
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
        # The audit log (SPEC F10): events older than this are purged (a daily job).
        "AUDIT_RETENTION_DAYS": int(os.environ.get("AUDIT_RETENTION_DAYS", "365")),
        # Development and tests only: the SIEM endpoint may be http:// and on loopback or
        # a private network (blueprints/common/outbound.py refuses them otherwise).
        "OUTBOUND_ALLOW_PRIVATE": _env_bool("OUTBOUND_ALLOW_PRIVATE", False),
        # SCIM on and no request from the IdP for this long: the owners are emailed, daily
        # (blueprints/scim_settings/jobs.py, alert_provisioning).
        "SCIM_SILENCE_HOURS": float(os.environ.get("SCIM_SILENCE_HOURS", "24")),
        "RESET_TOKEN_SECONDS": 60 * 60,
        "RESET_EMAILS_PER_HOUR": 3,
        # Self sign-up (SPEC F13): the confirmation link's lifetime, and how many sign-ups
        # one client address may start per LOGIN_LOCKOUT_SECONDS (the sign-in throttle's
        # table and window, blueprints/auth/signup.py).
        "SIGNUP_TOKEN_SECONDS": 24 * 60 * 60,
        "SIGNUP_MAX_PER_ADDRESS": int(os.environ.get("SIGNUP_MAX_PER_ADDRESS", "10")),
        "HTMX_CDN_URL": "https://unpkg.com/htmx.org@2.0.11/dist/htmx.min.js",
        "HTMX_SRI": "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg",
        # Proxies in front of the app that append to X-Forwarded-For (0: none, the peer
        # is the client). Sign-in throttling and the SCIM log use the client's address.
        "PROXY_FIX_X_FOR": int(os.environ.get("PROXY_FIX_X_FOR", "0")),
        # Job schedules replacing those in app.JOBS: a JSON object of job name ->
        # APScheduler trigger, e.g. {"deliver-outbox": {"trigger": "interval", "seconds": 10}}.
        "JOB_SCHEDULE": _json_object("JOB_SCHEDULE"),
    }
