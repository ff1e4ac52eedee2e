"""Provisioning health on the SCIM page (SPEC F10): the last successful request, requests
and errors in the last 24 hours, and the open problems (uniqueness conflicts, seats
refused, unknown group members skipped, rejected bodies), aggregated, each linking to its
latest request, with Mark resolved; and the emails when the IdP is silent or seats are
being refused. Problems are caused by real SCIM requests through the API."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import event, func, select, update

import app as app_module
from app import db
from blueprints.scim_api import unit_of_work
from blueprints.scim_settings import health
from blueprints.scim_settings.jobs import alert_provisioning
from models import (
    Account,
    AuditEvent,
    OutboxEmail,
    ScimConnector,
    ScimProblem,
    ScimRequestLog,
    ScimToken,
    utcnow,
)
from tests import factories
from tests.scim_api.conftest import Scim, issued, other_issued, provision  # noqa: F401
from tests.scim_settings.conftest import ready  # noqa: F401

PAGE = "/enterprise/scim"
HTMX = {"HX-Request": "true", "HX-Current-URL": "http://localhost/enterprise/scim"}
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
UNKNOWN_ID = "7d1a3c1e-0000-4000-8000-000000000001"


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _problems(page: str) -> list[dict]:
    """The open problems as the panel shows them: kind, title, count, detail, link."""
    shown = []
    for match in re.finditer(
        r'<li class="problem problem-(\w+)" id="problem-(\d+)">(.*?)</li>', page, re.S
    ):
        body = match.group(3)
        link = re.search(r'<a class="problem-request" href="([^"]+)"', body)
        shown.append(
            {
                "kind": match.group(1),
                "id": int(match.group(2)),
                "title": re.search(r"<strong>([^<]+)</strong>", body).group(1),
                "count": re.search(r"(\d[\d,]*) times?</span>", body).group(1),
                "detail": (re.search(r"<code>(.*?)</code>", body, re.S) or [None, None])[1],
                "link": link.group(1) if link else None,
            }
        )
    return shown


def _figure(page: str, name: str) -> str:
    return re.sub(r"<[^>]+>", "", re.search(rf'<dd id="{name}">(.*?)</dd>', page, re.S).group(1))


def _log_ids(session, status: int) -> list[int]:
    session.expire_all()
    return list(
        session.scalars(
            select(ScimRequestLog.id)
            .where(ScimRequestLog.status == status)
            .order_by(ScimRequestLog.id)
        )
    )


def _resolve(client, problem_id: int, **kwargs):
    return client.post(f"{PAGE}/problems/{problem_id}/resolve", headers=HTMX, **kwargs)


@pytest.fixture
def idp(app, issued):  # noqa: F811
    """The IdP: its own client, with the connector's bearer token."""
    return Scim(app.test_client(), issued)


def _conflict(idp, user_name: str = "ada@example.com", times: int = 3) -> None:
    """The IdP creates a user, then tries to create it again `times` times (409 each)."""
    provision(idp, user_name)
    for _ in range(times):
        response = idp("POST", "/Users", json={"schemas": [USER], "userName": user_name})
        assert response.status_code == 409


# --- each kind of problem, aggregated, with its request ---------------------------------------


def test_uniqueness_conflict_retried_is_one_problem_with_count_and_latest_request(
    client, session, idp, signed_in
):
    _conflict(idp, times=3)

    [problem] = _problems(_text(client.get(PAGE)))

    assert problem["kind"] == "uniqueness"
    assert problem["title"] == "Uniqueness conflict"
    assert problem["count"] == "3"
    assert "userName 'ada@example.com'" in problem["detail"]
    latest = _log_ids(session, 409)[-1]
    assert problem["link"] == f"{PAGE}/log/{latest}"
    entry = _text(client.get(problem["link"]))
    assert f'id="log-entry-{latest}"' in entry
    assert "POST /Users" in entry and "A user with userName 'ada@example.com' exists." in entry


def test_conflicts_on_different_users_are_different_problems(client, idp, signed_in):
    _conflict(idp, "ada@example.com", times=2)
    _conflict(idp, "bob@example.com", times=1)

    problems = _problems(_text(client.get(PAGE)))

    assert [(p["kind"], p["count"]) for p in problems] == [("uniqueness", "1"), ("uniqueness", "2")]
    assert "bob@example.com" in problems[0]["detail"]  # the latest first


def test_seats_refused_is_a_problem(client, session, ready, idp, signed_in):  # noqa: F811
    session.execute(update(Account).where(Account.id == ready.id).values(seat_limit=1))
    session.commit()

    for name in ("ada@example.com", "bob@example.com"):
        response = idp("POST", "/Users", json={"schemas": [USER], "userName": name})
        assert response.status_code == 403

    [problem] = _problems(_text(client.get(PAGE)))
    assert (problem["kind"], problem["title"], problem["count"]) == ("seats", "Seats refused", "2")
    assert problem["link"] == f"{PAGE}/log/{_log_ids(session, 403)[-1]}"
    assert "Licence limit reached" in _text(client.get(problem["link"]))


def test_unknown_group_members_skipped_is_one_problem_per_group(client, session, idp, signed_in):
    ada = provision(idp, "ada@example.com")
    body = {
        "schemas": [GROUP],
        "displayName": "Engineering",
        "members": [{"value": ada["id"]}, {"value": UNKNOWN_ID}],
    }
    group = idp("POST", "/Groups", json=body)
    assert group.status_code == 201
    patch = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": UNKNOWN_ID}]}],
    }
    assert idp("PATCH", f"/Groups/{group.get_json()['id']}", json=patch).status_code == 204

    [problem] = _problems(_text(client.get(PAGE)))

    assert problem["kind"] == "unknown_members"
    assert problem["title"] == "Unknown group members skipped"
    assert problem["count"] == "2"
    assert "Group 'Engineering'" in problem["detail"] and UNKNOWN_ID in problem["detail"]
    entry = _text(client.get(problem["link"]))
    assert f"PATCH /Groups/{group.get_json()['id']}" in entry
    assert UNKNOWN_ID in entry


def test_rejected_bodies_are_one_problem_per_reason(client, session, idp, signed_in):
    for _ in range(2):
        response = idp(
            "POST", "/Users", data="{not json", headers={"Content-Type": "application/scim+json"}
        )
        assert response.status_code == 400
    bad_type = idp("POST", "/Users", json={"schemas": [USER], "userName": "x", "active": "maybe"})
    assert bad_type.status_code == 400

    problems = _problems(_text(client.get(PAGE)))

    assert [(p["kind"], p["count"]) for p in problems] == [("rejected", "1"), ("rejected", "2")]
    assert problems[1]["detail"] == "The request body is not valid JSON."
    assert problems[0]["title"] == "Rejected request bodies"


def test_reads_refused_and_unknown_resources_are_no_problem(client, idp, signed_in):
    """A 404 for a user the IdP asks about, a bad filter, a wrong token: in the request
    log, but nothing an owner resolves."""
    assert idp("GET", f"/Users/{UNKNOWN_ID}").status_code == 404
    assert idp("GET", '/Users?filter=nope eq "x"').status_code == 400
    assert idp("GET", "/Users", token="scim_" + "x" * 43).status_code == 401

    page = _text(client.get(PAGE))

    assert _problems(page) == []
    assert "No open problems." in page
    assert _figure(page, "errors-24h") == "3"  # all three are errors all the same


def test_successful_requests_write_nothing_for_health(app, idp, session):
    """The speed rule: a successful SCIM request runs no statement for the health panel
    (its log row is written as before)."""
    statements = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        ada = provision(idp, "ada@example.com")
        assert idp("GET", f"/Users/{ada['id']}").status_code == 200
        assert idp("POST", "/Groups", json={"schemas": [GROUP], "displayName": "Ops"}).status_code
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)

    assert [s for s in statements if "scim_request_log" in s]
    assert not [s for s in statements if "scim_problem" in s]
    assert session.scalar(select(func.count(ScimProblem.id))) == 0


# --- Mark resolved ----------------------------------------------------------------------------


def test_mark_resolved_removes_the_problem_and_audits(client, session, idp, signed_in, owner):
    _conflict(idp, times=2)
    [problem] = _problems(_text(client.get(PAGE)))

    response = _resolve(client, problem["id"])

    fragment = _text(response)
    assert response.status_code == 200
    assert "<html" not in fragment
    assert fragment.lstrip().startswith('<section class="card" id="provisioning-health"')
    assert _problems(fragment) == []
    assert "No open problems." in fragment
    assert _problems(_text(client.get(PAGE))) == []  # and on reload
    session.expire_all()
    [audited] = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "scim.problem_resolved")
    )
    assert audited.actor_user_id == owner.id
    assert audited.account_id == owner.memberships[0].account_id
    assert audited.target.startswith("uniqueness: A user with userName 'ada@example.com'")
    assert audited.detail["count"] == 2


def test_mark_resolved_twice_audits_once(client, session, idp, signed_in):
    _conflict(idp, times=1)
    [problem] = _problems(_text(client.get(PAGE)))

    assert _resolve(client, problem["id"]).status_code == 200
    assert _resolve(client, problem["id"]).status_code == 200

    session.expire_all()
    events = select(func.count(AuditEvent.id)).where(AuditEvent.action == "scim.problem_resolved")
    assert session.scalar(events) == 1


def test_mark_resolved_without_htmx_goes_back_to_the_panel(client, idp, signed_in):
    _conflict(idp, times=1)
    [problem] = _problems(_text(client.get(PAGE)))

    response = client.post(f"{PAGE}/problems/{problem['id']}/resolve")

    assert response.status_code == 302
    assert response.headers["Location"] == f"{PAGE}#provisioning-health"
    assert _problems(_text(client.get(PAGE))) == []


def test_problem_happening_again_reopens_with_its_count_started_again(
    client, session, idp, signed_in
):
    _conflict(idp, times=3)
    [before] = _problems(_text(client.get(PAGE)))
    _resolve(client, before["id"])

    response = idp("POST", "/Users", json={"schemas": [USER], "userName": "ada@example.com"})
    assert response.status_code == 409

    [after] = _problems(_text(client.get(PAGE)))
    assert after["id"] == before["id"]
    assert after["count"] == "1"  # since it was marked resolved
    assert after["link"] == f"{PAGE}/log/{_log_ids(session, 409)[-1]}"


@pytest.mark.parametrize("config_overrides", [{"SCIM_LOG_FLUSH_SECONDS": 3600}])
def test_occurrence_written_after_resolving_but_older_keeps_it_resolved(
    app, client, session, idp, signed_in
):
    """The log is written in batches: an occurrence from before Mark resolved, written
    after it, must not reopen the problem."""
    with app.test_request_context():
        queue = unit_of_work.request_log()
    _conflict(idp, times=1)
    queue.flush()
    [problem] = _problems(_text(client.get(PAGE)))
    response = idp("POST", "/Users", json={"schemas": [USER], "userName": "ada@example.com"})
    assert response.status_code == 409
    _resolve(client, problem["id"])  # (the conflict above is still queued)

    queue.flush()

    assert _problems(_text(client.get(PAGE))) == []
    session.expire_all()
    assert session.get(ScimProblem, problem["id"]).resolved_at is not None


# --- who may see and resolve ------------------------------------------------------------------


def test_co_owner_sees_and_resolves(client, session, ready, idp, login_as):  # noqa: F811
    co_owner = factories.make_user(session, ready, "co@example.com", role="co-owner")
    _conflict(idp, times=1)
    login_as(co_owner)

    [problem] = _problems(_text(client.get(PAGE)))
    assert _resolve(client, problem["id"]).status_code == 200

    session.expire_all()
    assert session.get(ScimProblem, problem["id"]).resolved_by_user_id == co_owner.id


def test_member_can_neither_see_nor_resolve(client, session, ready, idp, login_as):  # noqa: F811
    member = factories.make_user(session, ready, "m@outside.test", role="member")
    _conflict(idp, times=1)
    problem_id = session.scalar(select(ScimProblem.id))
    login_as(member)

    assert client.get(f"{PAGE}/health", headers=HTMX).status_code == 403
    assert _resolve(client, problem_id).status_code == 403
    session.expire_all()
    assert session.get(ScimProblem, problem_id).resolved_at is None


def test_owner_of_another_account_cannot_see_or_resolve(
    client,
    session,
    idp,
    other_issued,  # noqa: F811
    login_as,
):
    _conflict(idp, times=1)
    problem_id = session.scalar(select(ScimProblem.id))
    entry_id = _log_ids(session, 409)[-1]
    other_owner = session.get(ScimToken, other_issued.scim_token.id).bound_user
    login_as(other_owner)

    page = _text(client.get(PAGE))
    assert 'id="provisioning-health"' in page and _problems(page) == []
    assert "ada@example.com" not in page
    assert _resolve(client, problem_id).status_code == 404
    assert client.get(f"{PAGE}/log/{entry_id}").status_code == 404
    session.expire_all()
    assert session.get(ScimProblem, problem_id).resolved_at is None


def test_mark_resolved_needs_the_csrf_token(client, session, idp, signed_in):
    _conflict(idp, times=1)
    [problem] = _problems(_text(client.get(PAGE)))

    response = _resolve(client, problem["id"], csrf=False)

    assert response.status_code == 400
    session.expire_all()
    assert session.get(ScimProblem, problem["id"]).resolved_at is None
    assert len(_problems(_text(client.get(PAGE)))) == 1


# --- the figures ------------------------------------------------------------------------------


def _log(session, connector_id: int, age: timedelta, status: int) -> None:
    session.add(
        ScimRequestLog(
            connector_id=connector_id,
            method="GET",
            resource="/Users",
            status=status,
            outcome="success" if status < 400 else "failure",
            created_at=utcnow() - age,
        )
    )


def test_figures_count_the_last_24_hours_and_show_the_last_success(
    client,
    session,
    issued,  # noqa: F811
    other_issued,  # noqa: F811
    signed_in,
):
    ours, theirs = issued.connector.id, other_issued.connector.id
    for hours, status in [(30, 200), (25, 500), (23, 200), (5, 409), (3, 200), (2, 400)]:
        _log(session, ours, timedelta(hours=hours), status)
    _log(session, ours, timedelta(minutes=90), 503)
    for _ in range(4):
        _log(session, theirs, timedelta(minutes=5), 200)
    session.commit()

    page = _text(client.get(f"{PAGE}/health", headers=HTMX))

    assert page.lstrip().startswith('<section class="card" id="provisioning-health"')
    assert _figure(page, "requests-24h") == "5"
    assert _figure(page, "errors-24h") == "3"
    assert _figure(page, "last-success").startswith("3 hours ago")


def test_figures_before_any_request(client, issued, signed_in):  # noqa: F811
    page = _text(client.get(PAGE))

    assert _figure(page, "last-success") == "None yet"
    assert (_figure(page, "requests-24h"), _figure(page, "errors-24h")) == ("0", "0")


def test_no_panel_before_scim_is_enabled(client, ready, signed_in):  # noqa: F811
    page = _text(client.get(PAGE))

    assert '<div id="provisioning-health" hidden>' in page
    assert "Provisioning health" not in page


def test_enable_scim_swaps_the_panel_in(client, ready, signed_in):  # noqa: F811
    response = client.post(f"{PAGE}/enable", data={"idp": "okta", "lifetime": "90"}, headers=HTMX)

    fragment = _text(response)
    assert re.search(r'id="provisioning-health"[^>]*hx-swap-oob="true"', fragment)
    assert "Provisioning health" in fragment


def test_health_panel_without_htmx_is_the_whole_page(client, issued, signed_in):  # noqa: F811
    page = _text(client.get(f"{PAGE}/health"))

    assert "<html" in page and 'id="request-log"' in page and "Provisioning health" in page


def test_ago_says_how_long():
    now = utcnow()
    assert health.ago(None, now) == "never"
    assert health.ago(now - timedelta(seconds=20), now) == "just now"
    assert health.ago(now - timedelta(minutes=1), now) == "1 minute ago"
    assert health.ago(now - timedelta(hours=5, minutes=59), now) == "5 hours ago"
    assert health.ago(now - timedelta(days=2), now) == "2 days ago"


# --- the request log, purged ------------------------------------------------------------------


def test_problem_outlives_its_purged_request_without_the_link(app, client, session, idp, signed_in):
    _conflict(idp, times=1)

    later = utcnow() + timedelta(days=31)
    app_module.run_job(app, "purge-scim-log", later)

    page = _text(client.get(PAGE))
    [problem] = _problems(page)
    assert problem["link"] is None
    assert "Its requests are no longer in the request log." in page
    session.expire_all()
    assert session.scalar(select(ScimProblem.last_request_log_id)) is None


def test_purge_forgets_old_resolved_problems(app, client, session, idp, signed_in):
    _conflict(idp, "ada@example.com", times=1)
    _conflict(idp, "bob@example.com", times=1)
    [bob, ada] = _problems(_text(client.get(PAGE)))
    _resolve(client, ada["id"])

    app_module.run_job(app, "purge-scim-log", utcnow() + timedelta(days=31))

    session.expire_all()
    assert list(session.scalars(select(ScimProblem.id))) == [bob["id"]]


def test_request_log_rows_link_to_their_entry(client, session, idp, signed_in):
    idp("GET", "/ServiceProviderConfig")
    [entry_id] = _log_ids(session, 200)

    page = _text(client.get(PAGE))

    assert f'id="log-{entry_id}"' in page
    assert f'href="{PAGE}/log/{entry_id}"' in page
    assert client.get(f"{PAGE}/log/{entry_id}").status_code == 200
    assert client.get(f"{PAGE}/log/{entry_id + 1000}").status_code == 404


# --- the emails -------------------------------------------------------------------------------


@pytest.fixture
def team(session, ready, owner):  # noqa: F811
    """Who gets the emails: the owner and an active co-owner; not a plain member."""
    co_owner = factories.make_user(session, ready, "co@example.com", role="co-owner")
    factories.make_user(session, ready, "member@example.com", role="member")
    return [owner, co_owner]


def _emails(session, kind: str = "scim_") -> list[OutboxEmail]:
    """The health emails queued (`kind`: scim_silent or scim_seats_refused), not the
    security notice that enabling SCIM sends."""
    session.expire_all()
    return list(
        session.scalars(
            select(OutboxEmail)
            .where(
                OutboxEmail.dedupe_key.like(f"{kind}%"),
                OutboxEmail.dedupe_key.not_like("scim-%"),
            )
            .order_by(OutboxEmail.id)
        )
    )


def _words(text: str) -> str:
    return " ".join(text.split())


def _set(session, connector_id: int, **values) -> None:
    session.execute(update(ScimConnector).where(ScimConnector.id == connector_id).values(**values))
    session.commit()


def later_that_day(now: datetime) -> datetime:
    """An hour on, or the day's last microsecond if that is sooner (UTC): a test run just
    before midnight must not see the next day's emails."""
    end = datetime.combine(now.date(), time.max, UTC)
    return min(now + timedelta(hours=1), end)


def test_silent_idp_emails_owners_once_a_day(session, issued, team):  # noqa: F811
    now = utcnow()
    _set(
        session,
        issued.connector.id,
        enabled_at=now - timedelta(days=10),
        last_used_at=now - timedelta(hours=25),
        first_request_at=now - timedelta(days=9),
    )

    assert alert_provisioning(now)["queued"] == 2
    assert alert_provisioning(later_that_day(now))["queued"] == 0
    emails = _emails(session, "scim_silent")
    assert sorted(e.to_addr for e in emails) == ["co@example.com", "owner@example.com"]
    assert "Example Inc" in emails[0].subject
    assert "no SCIM request for Example Inc for more than 24 hours" in _words(emails[0].body_text)
    assert "http://localhost/enterprise/scim#provisioning-health" in emails[0].body_text
    assert "http://localhost/enterprise/scim#provisioning-health" in emails[0].body_html

    assert alert_provisioning(now + timedelta(days=1))["queued"] == 2  # the next day
    assert len(_emails(session, "scim_silent")) == 4


def test_idp_that_never_connected_is_reported_after_the_silence(session, issued, team):  # noqa: F811
    now = utcnow()
    _set(session, issued.connector.id, enabled_at=now - timedelta(hours=2), last_used_at=None)
    assert alert_provisioning(now)["queued"] == 0  # still being set up

    later = now + timedelta(hours=23)
    assert alert_provisioning(later)["queued"] == 2

    [email, _] = _emails(session)
    assert email.subject == "Your identity provider has not connected to Example Inc"
    assert "has not sent a single request" in _words(email.body_text)


def test_healthy_idp_gets_no_email(session, issued, team):  # noqa: F811
    now = utcnow()
    _set(
        session,
        issued.connector.id,
        enabled_at=now - timedelta(days=10),
        last_used_at=now - timedelta(hours=1),
    )

    assert alert_provisioning(now) == {"silent": 0, "seats_refused": 0, "queued": 0}
    assert _emails(session) == []


@pytest.mark.parametrize("config_overrides", [{"SCIM_SILENCE_HOURS": 2}])
def test_silence_is_configurable(session, issued, team):  # noqa: F811
    now = utcnow()
    _set(
        session,
        issued.connector.id,
        enabled_at=now - timedelta(days=10),
        last_used_at=now - timedelta(hours=3),
    )

    assert alert_provisioning(now)["silent"] == 1
    assert "more than 2 hours" in _words(_emails(session)[0].body_text)


def test_seats_refused_emails_owners_once_a_day(session, ready, idp, team):  # noqa: F811
    session.execute(update(Account).where(Account.id == ready.id).values(seat_limit=3))
    session.commit()
    for name in ("ada@example.com", "bob@example.com"):
        assert idp("POST", "/Users", json={"schemas": [USER], "userName": name}).status_code == 403
    now = utcnow()

    assert alert_provisioning(now)["queued"] == 2
    assert alert_provisioning(later_that_day(now))["queued"] == 0
    emails = _emails(session, "scim_seats_refused")
    assert sorted(e.to_addr for e in emails) == ["co@example.com", "owner@example.com"]
    assert "2 requests to create or reactivate a user were refused" in _words(emails[0].body_text)
    assert "Seats in use: 3 of 3." in emails[0].body_text


def test_no_seats_email_once_resolved_or_old(session, ready, idp, team):  # noqa: F811
    session.execute(update(Account).where(Account.id == ready.id).values(seat_limit=3))
    session.commit()
    response = idp("POST", "/Users", json={"schemas": [USER], "userName": "ada@example.com"})
    assert response.status_code == 403
    now = utcnow()

    assert alert_provisioning(now + timedelta(hours=25))["seats_refused"] == 0  # long ago
    problem = session.scalar(select(ScimProblem))
    health.resolve(session, problem, team[0].id, ready.id, now)
    session.commit()
    assert alert_provisioning(now)["seats_refused"] == 0
    assert _emails(session, "scim_seats_refused") == []


def test_no_email_when_scim_is_off(session, issued, team):  # noqa: F811
    now = utcnow()
    _set(
        session,
        issued.connector.id,
        enabled=False,
        enabled_at=now - timedelta(days=10),
        last_used_at=now - timedelta(days=5),
    )
    session.add(
        ScimProblem(
            connector_id=issued.connector.id,
            kind=health.SEATS,
            key="licence limit",
            count=3,
            first_seen_at=now - timedelta(hours=2),
            last_seen_at=now - timedelta(hours=1),
        )
    )
    session.commit()

    assert alert_provisioning(now) == {"silent": 0, "seats_refused": 0, "queued": 0}
    assert _emails(session) == []


def test_the_job_runs_under_its_lease_hourly(app, session, issued, team):  # noqa: F811
    now = utcnow()
    _set(
        session,
        issued.connector.id,
        enabled_at=now - timedelta(days=10),
        last_used_at=now - timedelta(days=2),
    )

    assert app_module.JOBS["alert-scim-health"][1] == {"trigger": "cron", "minute": 23}
    assert app_module.run_job(app, "alert-scim-health", now)["queued"] == 2
    assert len(_emails(session)) == 2
