"""The SCIM request log (SPEC F4, F5): one row per request to a known connector, with the
method, resource, status, outcome and, for errors, the detail; never a body or a token."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app import db
from blueprints.scim_settings import connector as service
from models import ScimConnector, ScimRequestLog, utcnow
from tests.scim_api.conftest import Scim

SPC = "/ServiceProviderConfig"


def _rows(session) -> list[tuple]:
    session.expire_all()
    return [
        (r.method, r.resource, r.status, r.outcome, r.detail)
        for r in session.scalars(select(ScimRequestLog).order_by(ScimRequestLog.id))
    ]


def _connector(session, issued) -> ScimConnector:
    session.expire_all()
    return session.get(ScimConnector, issued.connector.id)


def test_successful_request_is_logged_without_detail(scim, session, issued):
    scim("GET", SPC)

    assert _rows(session) == [("GET", SPC, 200, "success", None)]
    row = session.scalar(select(ScimRequestLog))
    assert row.connector_id == issued.connector.id
    assert utcnow() - row.created_at < timedelta(minutes=1)


def test_each_request_adds_one_row_in_order(scim, session):
    scim("GET", "/ResourceTypes")
    scim("GET", "/Schemas?attributes=id")
    scim("GET", "/Users/42")
    scim("DELETE", "/Schemas")

    assert _rows(session) == [
        ("GET", "/ResourceTypes", 200, "success", None),
        ("GET", "/Schemas", 200, "success", None),  # the path, not the query string
        ("GET", "/Users/42", 404, "failure", "There is no user '42'."),
        ("DELETE", "/Schemas", 405, "failure", "Discovery endpoints are read-only: use GET."),
    ]


def test_expired_token_request_is_logged_as_failure_with_expiry_detail(
    client, session, ready, owner
):
    issued = service.enable(session, ready.id, owner, "okta", "30", utcnow() - timedelta(days=31))

    Scim(client, issued)("GET", SPC)

    [(method, resource, status, outcome, detail)] = _rows(session)
    assert (method, resource, status, outcome) == ("GET", SPC, 401, "failure")
    assert detail.startswith("The SCIM token expired on ")
    assert session.scalar(select(ScimRequestLog.connector_id)) == issued.connector.id


def test_wrong_token_on_known_connector_is_logged_but_sets_no_first_request(scim, session, issued):
    scim("GET", SPC, token="scim_" + "x" * 43)
    scim("GET", SPC, token=None)

    assert _rows(session) == [
        ("GET", SPC, 401, "failure", "The bearer token is not valid for this SCIM connector."),
        (
            "GET",
            SPC,
            401,
            "failure",
            "Authentication is required: send 'Authorization: Bearer <token>'.",
        ),
    ]
    assert _connector(session, issued).first_request_at is None


def test_another_accounts_token_is_logged_on_the_connector_it_was_sent_to(
    scim, session, issued, other_issued
):
    scim("GET", SPC, token=other_issued.token)

    rows = session.scalars(select(ScimRequestLog)).all()
    assert [(r.connector_id, r.status) for r in rows] == [(issued.connector.id, 401)]
    assert _connector(session, other_issued).first_request_at is None


@pytest.mark.parametrize("connector_id", ["no-such-connector", "%00", "x" * 300])
def test_unknown_connector_id_logs_nothing(scim, session, connector_id):
    scim("GET", SPC, connector_id=connector_id)
    scim("GET", "/Users", connector_id=connector_id)

    assert _rows(session) == []


def test_request_outside_any_connector_logs_nothing(client, session, issued):
    client.get("/scim/v2/")

    assert _rows(session) == []


@pytest.mark.parametrize("config_overrides", [{"MAX_CONTENT_LENGTH": 100}])
def test_oversized_body_is_logged_as_failure(scim, session):
    scim("POST", "/Users", data="x" * 101)

    assert _rows(session) == [
        ("POST", "/Users", 413, "failure", "The request body is over 100 bytes.")
    ]


@pytest.mark.parametrize("config_overrides", [{"SCIM_FAILED_AUTH_LIMIT": "1/minute"}])
def test_request_refused_for_failed_authentications_logs_nothing(scim, session):
    """A token-guessing flood costs no database writes: past the limit of failures, a
    refused token is answered 429 without a log row (the first 401 is logged)."""
    assert scim("GET", SPC, token="scim_wrong").status_code == 401
    assert scim("GET", SPC, token="scim_wrong").status_code == 429

    assert [row[2] for row in _rows(session)] == [401]


def test_path_with_nul_byte_is_logged_readably(scim, session):
    """PostgreSQL refuses NUL in text; the row must still be written."""
    scim("GET", "/Users/a%00b")

    [(method, resource, status, outcome, detail)] = _rows(session)
    assert (method, resource, status, outcome) == ("GET", "/Users/a\\0b", 404, "failure")
    assert "\x00" not in detail


def test_no_body_password_or_token_is_stored_anywhere(scim, session, issued):
    """The user is kept (in its own tables), but neither the log nor any other table holds
    the request body, the password the IdP sent, or a token."""
    marker = "jane.secret-person@example.com"
    created = scim(
        "POST",
        "/Users",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": marker,
            "password": "hunter2-marker",
        },
    )
    scim("GET", SPC, token="scim_wrong-token-marker")
    scim("GET", SPC)

    assert created.status_code == 201
    assert len(_rows(session)) == 3
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            for row in conn.execute(table.select()):
                text = repr(tuple(row))
                for secret in ("hunter2-marker", issued.token, "wrong-token-marker"):
                    assert secret not in text, (table.name, secret)
                # The member's data lives with the member, and in the audit trail of
                # what SCIM changed (SPEC F10): never in the request log.
                kept = ("membership", "user", "outbox_email", "member_email", "audit_event")
                if table.name not in kept:
                    assert marker not in text, table.name


def test_first_authenticated_request_sets_first_request_at(scim, session, issued):
    assert _connector(session, issued).first_request_at is None
    before = utcnow()

    scim("GET", "/Users")
    first = _connector(session, issued).first_request_at
    scim("GET", SPC)

    assert before - timedelta(seconds=1) <= first <= utcnow()
    assert _connector(session, issued).first_request_at == first


def test_scim_page_ticks_step_four_and_shows_the_request(scim, client, owner, login_as):
    login_as(owner)
    page = client.get("/enterprise/scim").get_data(as_text=True)
    assert re.findall(r'<li class="(done|todo)">', page) == ["done", "done", "done", "todo"]

    scim("GET", SPC)

    page = client.get("/enterprise/scim").get_data(as_text=True)
    assert re.findall(r'<li class="(done|todo)">', page) == ["done"] * 4
    log = re.search(r'<section class="card" id="request-log".*?</section>', page, re.S).group(0)
    assert re.findall(r"<td><code>([^<]+)</code></td>", log) == [f"GET {SPC}"]
    assert '<span class="badge ok">200</span>' in log


def test_scim_page_keeps_step_four_open_after_wrong_token(
    scim, client, session, issued, owner, login_as
):
    scim("GET", SPC, token="scim_" + "x" * 43)
    login_as(owner)

    page = client.get("/enterprise/scim").get_data(as_text=True)

    assert _connector(session, issued).first_request_at is None
    assert re.findall(r'<li class="(done|todo)">', page) == ["done", "done", "done", "todo"]
    log = re.search(r'<section class="card" id="request-log".*?</section>', page, re.S).group(0)
    assert '<span class="badge bad">401</span>' in log


# --- who called -----------------------------------------------------------------------------


def _addresses(session) -> list[str | None]:
    session.expire_all()
    return list(session.scalars(select(ScimRequestLog.remote_addr).order_by(ScimRequestLog.id)))


def test_log_keeps_the_client_address_of_accepted_and_refused_requests(scim, session):
    scim("GET", SPC, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    scim("GET", SPC, token="scim_wrong", environ_base={"REMOTE_ADDR": "2001:db8::1"})

    assert _addresses(session) == ["198.51.100.7", "2001:db8::1"]


def test_forwarded_for_is_not_believed_without_a_configured_proxy(scim, session):
    """Anyone can send X-Forwarded-For: without PROXY_FIX_X_FOR the peer is the client."""
    scim(
        "GET",
        SPC,
        headers={"X-Forwarded-For": "203.0.113.9"},
        environ_base={"REMOTE_ADDR": "192.0.2.1"},
    )

    assert _addresses(session) == ["192.0.2.1"]


@pytest.mark.parametrize("config_overrides", [{"PROXY_FIX_X_FOR": 1}])
def test_behind_one_proxy_the_log_keeps_the_address_the_proxy_saw(scim, session):
    """Our proxy appends the address it saw; what the client put before it is not
    trusted."""
    scim(
        "GET",
        SPC,
        headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.9"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )

    assert _addresses(session) == ["203.0.113.9"]
