"""Several instances (SPEC F14): two app instances, each gunicorn with two workers (four
processes), on one PostgreSQL database and one Redis, as a deployment behind a load
balancer runs them. What one instance does, the other sees: sessions, sign-in lock-outs,
the SCIM limits, scheduled jobs (once per due time across all four processes), and
concurrent writes through both lose nothing."""

from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import select

from blueprints.scim_settings import connector as service
from models import JobLease, SsoConnection, utcnow
from tests import factories
from tests.conftest import gunicorn, redis_db

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
FREE_PARALLELISM = 8  # Entra ID sends up to about 10 requests at once
# A job that falls due every 2 seconds in every process (JOB_SCHEDULE), each tick up to a
# second late (jitter, as a loaded machine has them): fast, so a process whose tick comes
# after another's run ended would run it again.
JOB = "purge-scim-log"
EVERY = 2

pytestmark = pytest.mark.skipif(
    os.environ.get("TEST_DATABASE", "sqlite") != "postgresql",
    reason="several instances share one PostgreSQL database (SQLite is one machine's file)",
)


def _ready_account(session, name: str, domain: str):
    """An account with a verified domain, SSO on and SCIM enabled: (account, owner,
    issued)."""
    account = factories.make_account(session, name=name)
    owner = factories.make_user(session, account, f"owner@{domain}", role="owner")
    factories.make_domain(session, account, domain, verified=True)
    session.add(
        SsoConnection(
            account_id=account.id, public_id=f"sso-{domain}", protocol="oidc", enabled=True
        )
    )
    session.flush()
    issued = service.enable(session, account.id, owner, "okta", "90", utcnow())
    session.commit()
    return account, owner, issued


@pytest.fixture
def deployment(database_url, session):
    """Two instances (A and B) of two workers each, sharing the database and Redis; and
    what they serve: an account (its owner, its connector) and a second account whose
    connector is flooded elsewhere (leases in flight in Redis)."""
    redis, redis_uri = redis_db()
    account, owner, issued = _ready_account(session, "Example Inc", "example.com")
    *_, flooded = _ready_account(session, "Flooded Inc", "flooded.test")
    # Outside the SSO domain: a passphrase sign-in, not a redirect to the IdP.
    member = factories.make_user(session, account, "member@partner.test")
    # Connector `flooded` has FREE_PARALLELISM requests in flight elsewhere: each of its
    # requests arrives past its free parallelism and counts against its rate.
    redis.zadd(
        f"scim:in-flight:{flooded.connector.public_id}",
        {f"elsewhere-{i}": time.time() + 120 for i in range(FREE_PARALLELISM)},
    )
    env = {
        "SCIM_LIMITS_STORAGE_URI": redis_uri,
        "SCIM_FREE_PARALLELISM": str(FREE_PARALLELISM),
        "SCIM_RATE_LIMIT": "20/minute",
        "SESSION_COOKIE_SECURE": "0",
        "SCHEDULER_ENABLED": "1",
        "JOB_SCHEDULE": json.dumps({JOB: {"trigger": "cron", "second": f"*/{EVERY}", "jitter": 1}}),
        "SCIM_LOG_FLUSH_SECONDS": "0",
    }
    started = datetime.now(UTC)
    try:
        with ExitStack() as stack:
            a = stack.enter_context(gunicorn(database_url, env, workers=2))
            b = stack.enter_context(gunicorn(database_url, env, workers=2))
            yield {
                "a": a,
                "b": b,
                "owner": owner,
                "member": member,
                "issued": issued,
                "flooded": flooded,
                "started": started,
            }
    finally:
        redis.flushdb()


def _scim(base: str, issued, method: str, path: str, **kwargs) -> requests.Response:
    url = f"{base}/scim/v2/{issued.connector.public_id}{path}"
    headers = {"Authorization": f"Bearer {issued.token}", "Content-Type": "application/scim+json"}
    return requests.request(method, url, headers=headers, timeout=60, **kwargs)


def _sign_in(base: str, http: requests.Session, email: str, passphrase: str) -> requests.Response:
    """The sign-in form as a browser posts it (its CSRF token from the page)."""
    page = http.get(f"{base}/login", timeout=30)
    field = re.search(r'<input[^>]*name="csrf_token"[^>]*>', page.text).group(0)
    token = re.search(r'value="([^"]+)"', field).group(1)
    return http.post(
        f"{base}/login",
        data={"email": email, "passphrase": passphrase, "csrf_token": token},
        allow_redirects=False,
        timeout=30,
    )


def test_a_session_made_on_one_instance_is_valid_on_the_other(deployment):
    a, b = deployment["a"], deployment["b"]
    browser = requests.Session()

    signed_in = _sign_in(a, browser, deployment["owner"].email, factories.PASSPHRASE)
    members = browser.get(f"{b}/enterprise/members", allow_redirects=False, timeout=30)

    assert signed_in.status_code == 302
    assert members.status_code == 200
    assert deployment["member"].email in members.text


def test_a_sign_in_lock_out_holds_on_both_instances(deployment):
    """Five wrong passphrases for one person (LOGIN_MAX_FAILURES_PER_ACCOUNT), alternating
    between the instances: the lock-out then holds on both, even for the right
    passphrase."""
    a, b = deployment["a"], deployment["b"]
    email = deployment["member"].email

    wrong = [
        _sign_in(base, requests.Session(), email, "not the passphrase").status_code
        for base in (a, b, a, b, a)
    ]
    after = [
        _sign_in(base, requests.Session(), email, factories.PASSPHRASE).status_code
        for base in (a, b)
    ]

    assert wrong == [401] * 5
    assert after == [429, 429]


def test_the_scim_limits_hold_across_instances(deployment):
    """A flooded connector fills its rate on A; B holds it to that rate (429 with
    Retry-After), while the other connector's requests through B are served."""
    a, b = deployment["a"], deployment["b"]
    flooded, calm = deployment["flooded"], deployment["issued"]

    through_a = [_scim(a, flooded, "GET", "/ServiceProviderConfig").status_code for _ in range(20)]
    through_b = _scim(b, flooded, "GET", "/ServiceProviderConfig")
    other = [_scim(b, calm, "GET", "/ServiceProviderConfig").status_code for _ in range(5)]

    assert through_a == [200] * 20
    assert through_b.status_code == 429
    assert 1 <= int(through_b.headers["Retry-After"]) <= 60
    assert other == [200] * 5


def test_concurrent_member_adds_through_both_instances_lose_nothing(deployment):
    """Entra ID adds members to a group one PATCH at a time, several at once; with two
    instances behind a load balancer they land on both."""
    a, b = deployment["a"], deployment["b"]
    issued = deployment["issued"]
    ids = []
    for i in range(40):
        created = _scim(
            a if i % 2 else b,
            issued,
            "POST",
            "/Users",
            json={
                "schemas": [USER],
                "userName": f"person{i}@example.com",
            },
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    group = _scim(a, issued, "POST", "/Groups", json={"schemas": [GROUP], "displayName": "All"})
    assert group.status_code == 201, group.text
    path = f"/Groups/{group.json()['id']}"

    def add(index: int) -> int:
        body = {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": ids[index]}]}],
        }
        return _scim(a if index % 2 else b, issued, "PATCH", path, json=body).status_code

    with ThreadPoolExecutor(FREE_PARALLELISM) as pool:
        statuses = list(pool.map(add, range(40)))
    members = _scim(b, issued, "GET", path).json()["members"]

    assert statuses == [204] * 40
    assert sorted(m["value"] for m in members) == sorted(ids)


def test_a_job_runs_once_per_due_time_across_all_processes(deployment, session):
    """Four schedulers (two instances of two workers) each fire the job every EVERY
    seconds; the lease lets one process run it per due time, never two."""
    time.sleep(3 * EVERY + 1)
    ended = datetime.now(UTC)

    session.expire_all()
    lease = session.scalar(select(JobLease).where(JobLease.name == JOB))
    started = deployment["started"]
    due_times = sum(
        1
        for second in range(int(started.timestamp()), int(ended.timestamp()) + 1)
        if second % EVERY == 0
    )
    assert lease is not None
    assert 1 <= lease.runs <= due_times
