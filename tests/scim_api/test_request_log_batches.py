"""The request log's rows written in batches by a thread of the process (request_log.py):
every request still gets its row, in order, with the connector's last use, but a read no
longer commits a transaction of its own."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from blueprints.scim_api import unit_of_work
from models import ScimConnector, ScimRequestLog, utcnow

SPC = "/ServiceProviderConfig"


def _rows(session) -> list[tuple]:
    session.expire_all()
    return [
        (r.method, r.resource, r.status)
        for r in session.scalars(select(ScimRequestLog).order_by(ScimRequestLog.id))
    ]


def _queue(app):
    with app.test_request_context():
        return unit_of_work.request_log()


@pytest.mark.parametrize("config_overrides", [{"SCIM_LOG_FLUSH_SECONDS": 3600}])
def test_rows_wait_for_the_batch_then_are_written_in_order(app, scim, session, issued):
    scim("GET", SPC)
    scim("GET", "/Users/nobody")
    scim("POST", "/Users", json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]})

    assert _rows(session) == []  # nothing written per request
    assert _queue(app).flush() == 3
    assert _rows(session) == [
        ("GET", SPC, 200),
        ("GET", "/Users/nobody", 404),
        ("POST", "/Users", 400),
    ]
    connector = session.get(ScimConnector, issued.connector.id)
    assert connector.first_request_at is not None and connector.last_used_at is not None


@pytest.mark.parametrize("config_overrides", [{"SCIM_LOG_FLUSH_SECONDS": 3600}])
def test_a_batch_keeps_every_column_of_every_row(app, scim, session, issued):
    """Each row of a batch keeps its own values, NULLs included, in order."""
    before = utcnow()
    scim("GET", SPC)
    scim("GET", "/Users/nobody")
    scim("GET", "/Users", query_string={"count": 1})

    assert _queue(app).flush() == 3

    session.expire_all()
    rows = session.scalars(select(ScimRequestLog).order_by(ScimRequestLog.id)).all()
    assert [(r.method, r.resource, r.status, r.outcome) for r in rows] == [
        ("GET", SPC, 200, "success"),
        ("GET", "/Users/nobody", 404, "failure"),
        ("GET", "/Users", 200, "success"),
    ]
    assert [r.detail is None for r in rows] == [True, False, True]
    assert "nobody" in rows[1].detail
    assert {r.connector_id for r in rows} == {issued.connector.id}
    assert {r.remote_addr for r in rows} == {"127.0.0.1"}
    assert all(before <= r.created_at <= utcnow() for r in rows)
    assert rows[0].created_at <= rows[1].created_at <= rows[2].created_at


@pytest.mark.parametrize("config_overrides", [{"SCIM_LOG_FLUSH_SECONDS": 0.05}])
def test_the_thread_writes_the_rows_within_its_interval(scim, session):
    scim("GET", SPC)

    deadline = time.monotonic() + 5
    while not _rows(session) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _rows(session) == [("GET", SPC, 200)]


@pytest.mark.parametrize("config_overrides", [{"SCIM_LOG_FLUSH_SECONDS": 3600}])
def test_rows_of_a_connector_deleted_meanwhile_are_dropped_not_retried(
    app, scim, session, issued, other_issued
):
    from tests.scim_api.conftest import Scim

    scim("GET", SPC)
    Scim(scim.client, other_issued)("GET", SPC)
    session.delete(session.get(ScimConnector, issued.connector.id))
    session.commit()

    assert _queue(app).flush() == 1
    rows = session.scalars(select(ScimRequestLog)).all()
    assert [r.connector_id for r in rows] == [other_issued.connector.id]
    assert _queue(app).flush() == 0  # nothing left queued
